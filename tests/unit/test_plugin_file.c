/* test_plugin_file.c — the plugin file: the weights fingerprint, a round trip, atomic replacement,
 * and a clear refusal of every kind of bad file or wrong model. */
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/plugin_file.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "util/error.h"

static const char *const PARTS[5] = {"score", "w1", "b1", "w2", "b2"};

static void random_plugin(vt_plugin *p, const vt_config *c, int k, int r, unsigned seed) {
    assert_int_equal(vt_plugin_alloc(p, c, k, r), 0);
    srand(seed);
    for (size_t i = 0; i < p->arena_floats; i++) p->arena[i] = (float)rand() / (float)RAND_MAX - 0.5f;
}

/* An error message must contain each of the fragments given. */
static void expect_error(int rc, const char *a, const char *b, const char *c) {
    const char *e = vt_error();
    print_message("  expected failure: %s\n", e);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(e, a));
    if (b) assert_non_null(strstr(e, b));
    if (c) assert_non_null(strstr(e, c));
}

/* Published XXH64 values (xxHash's and python-xxhash's documentation), then the fingerprint:
 * sensitive to one ulp of one weight anywhere, to the shape, and the same from its pieces. */
static void test_fingerprint(void **st) {
    (void)st;
    assert_true(vt_xxh64("", 0, 0) == 0xEF46DB3751D8E999ull);
    assert_true(vt_xxh64("a", 1, 0) == 0xD24EC4F1A98C6E5Bull);
    assert_true(vt_xxh64("abc", 3, 0) == 0x44BC2CF5AD770999ull);
    const char *s = "Nobody inspects the spammish repetition"; /* 39 bytes: stripes and every tail */
    assert_true(vt_xxh64(s, strlen(s), 0) == 0xFBCEA83C8A378BF1ull);
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 3);
    uint64_t fp, fp2;
    assert_int_equal(vt_model_fingerprint(&m, &fp), 0);
    uint64_t lh[8];
    for (int l = 0; l < c.n_layers; l++) lh[l] = vt_fingerprint_layer(&m, l);
    assert_true(vt_fingerprint_combine(&c, vt_fingerprint_embed(&m), lh, vt_fingerprint_head(&m)) == fp);
    float *where[] = {m.embed + 5, m.layers[0].wq + 7, m.layers[1].w_down + 3, m.layers[1].ffn_norm, m.final_norm + 2};
    for (size_t i = 0; i < sizeof where / sizeof *where; i++) {
        float keep = *where[i];
        *where[i] = nextafterf(keep, 1e9f);
        assert_int_equal(vt_model_fingerprint(&m, &fp2), 0);
        assert_true(fp2 != fp);
        *where[i] = keep;
    }
    assert_int_equal(vt_model_fingerprint(&m, &fp2), 0);
    assert_true(fp2 == fp);
    vt_model part; /* a pipeline stage's part cannot give the whole model's fingerprint */
    vt_load_parts parts = {0, 1, 1, 0};
    assert_int_equal(vt_model_alloc(&part, &c, parts), 0);
    expect_error(vt_model_fingerprint(&part, &fp2), "needs the whole model", "no head", NULL);
    vt_model_free(&part);
    vt_model_free(&m);
    vt_config_free(&c);
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Save, load back bit for bit, replace atomically (no temporary file left), read the metadata. */
static void test_round_trip(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_config_free(&c);
    c.n_layers = 3; /* layer 2, the last, has no plugin (the last-layer rule) */
    assert_int_equal(vt_config_init_dense(&c), 0);
    c.layers[1].ffn = 0; /* a pruned model: no FFN in layer 1, so no plugin there */
    vt_model m;
    tu_random_model(&m, &c, 4);
    uint64_t fp;
    assert_int_equal(vt_model_fingerprint(&m, &fp), 0);
    vt_plugin p, q, p2;
    random_plugin(&p, &c, 4, 3, 1);
    random_plugin(&p2, &c, 2, 5, 2);
    p.tail = 5; /* plugin.exact_tail changes inference: the file carries it */
    char *dir = tu_tempdir(), path[4200];
    snprintf(path, sizeof path, "%s/k4.plugin.safetensors", dir);
    assert_int_equal(vt_plugin_save(path, &p2, &c, fp, "model-a"), 0);
    assert_int_equal(vt_plugin_save(path, &p, &c, fp, "model-a"), 0); /* replaces it */
    assert_int_equal(count_entries(dir), 1);
    assert_int_equal(vt_plugin_load(path, &c, fp, "model-a", &q), 0);
    assert_int_equal(q.k, 4);
    assert_int_equal(q.r, 3);
    assert_int_equal(q.tail, 5);
    assert_non_null(q.layers[0].w);
    assert_null(q.layers[1].w);
    assert_null(q.layers[2].w);
    assert_int_equal(q.arena_floats, p.arena_floats);
    assert_memory_equal(q.arena, p.arena, p.arena_floats * sizeof(float));
    vt_plugin_meta meta;
    assert_int_equal(vt_plugin_file_meta(path, &meta), 0);
    assert_int_equal(meta.version, VT_PLUGIN_VERSION);
    assert_int_equal(meta.exact_tail, 5);
    assert_int_equal(meta.dim, c.dim);
    assert_int_equal(meta.ffn[0], c.layers[0].ffn);
    assert_int_equal(meta.ffn[1], 0);
    assert_true(meta.fingerprint == fp);
    assert_string_equal(meta.base_model, "model-a");
    vt_plugin_meta_free(&meta);
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", dir);
    expect_error(vt_plugin_save(bad, &p, &c, fp, "model-a"), bad, "temporary file", NULL);
    assert_int_equal(count_entries(dir), 1);
    vt_plugin_free(&q), vt_plugin_free(&p), vt_plugin_free(&p2);
    tu_tempdir_remove(dir);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* Another model's weights (same shape) and another shape are refused, naming both sides. */
static void test_wrong_model(void **st) {
    (void)st;
    vt_config c, c2;
    tu_small_config(&c);
    tu_small_config(&c2);
    c2.layers[1].ffn = 12; /* the same model pruned */
    vt_model a, b;
    tu_random_model(&a, &c, 5);
    tu_random_model(&b, &c, 6);
    uint64_t fa, fb;
    assert_int_equal(vt_model_fingerprint(&a, &fa), 0);
    assert_int_equal(vt_model_fingerprint(&b, &fb), 0);
    assert_true(fa != fb);
    vt_plugin p, q;
    random_plugin(&p, &c, 2, 4, 3);
    char *dir = tu_tempdir(), path[4200], fpa[17], fpb[17];
    snprintf(path, sizeof path, "%s/p.safetensors", dir);
    snprintf(fpa, sizeof fpa, "%016" PRIx64, fa);
    snprintf(fpb, sizeof fpb, "%016" PRIx64, fb);
    assert_int_equal(vt_plugin_save(path, &p, &c, fa, "dir/model-a"), 0);
    expect_error(vt_plugin_load(path, &c, fb, "dir/model-b", &q), "dir/model-a", "dir/model-b", fpb);
    assert_non_null(strstr(vt_error(), fpa));
    assert_non_null(strstr(vt_error(), path));
    assert_null(q.arena);
    expect_error(vt_plugin_load(path, &c2, fa, "dir/pruned", &q), "another model", "layer 1 has FFN size 24",
                 "dir/pruned");
    vt_plugin_free(&p);
    tu_tempdir_remove(dir);
    vt_model_free(&a), vt_model_free(&b);
    vt_config_free(&c), vt_config_free(&c2);
}

/* A hand-made plugin file: the entries of p, minus tensor `skip`, with tensor `reshape` given a
 * wrong first dimension, an extra tensor when extra is set, and metadata key `key` set to value
 * (NULL value: the key left out; NULL key: the right metadata). */
static void craft(const char *path, const vt_plugin *p, const vt_config *c, uint64_t fp, int skip, int reshape,
                  int extra, const char *key, const char *value) {
    char ffn[256] = "", kstr[16], rstr[16], dstr[16], lstr[16], fstr[32];
    for (int l = 0; l < c->n_layers; l++)
        snprintf(ffn + strlen(ffn), sizeof ffn - strlen(ffn), "%s%d", l ? "," : "", c->layers[l].ffn);
    snprintf(kstr, sizeof kstr, "%d", p->k), snprintf(rstr, sizeof rstr, "%d", p->r);
    snprintf(dstr, sizeof dstr, "%d", c->dim), snprintf(lstr, sizeof lstr, "%d", c->n_layers);
    snprintf(fstr, sizeof fstr, "%016" PRIx64, fp);
    char vstr[16], tstr[16];
    snprintf(vstr, sizeof vstr, "%d", VT_PLUGIN_VERSION), snprintf(tstr, sizeof tstr, "%d", p->tail);
    const char *kv[22] = {"format", VT_PLUGIN_FORMAT, "version", vstr, "activation", "silu", "k", kstr, "r", rstr,
                          "exact_tail", tstr, "dim", dstr, "n_layers", lstr, "ffn", ffn, "fingerprint", fstr,
                          "base_model", "m"};
    int nk = 0;
    const char *out[22];
    for (int i = 0; i < 11; i++) {
        if (key && strcmp(kv[2 * i], key) == 0 && !value) continue;
        out[2 * nk] = kv[2 * i];
        out[2 * nk + 1] = key && strcmp(kv[2 * i], key) == 0 ? value : kv[2 * i + 1];
        nk++;
    }
    vt_st_entry e[64];
    char names[64][48];
    int n = 0, idx = 0;
    int64_t d = p->dim, r = p->r;
    for (int l = 0; l < c->n_layers; l++) {
        const vt_plugin_layer *L = &p->layers[l];
        if (!L->w) continue; /* no plugin there (no FFN, or the model's last layer) */
        const float *ptr[5] = {L->w, L->w1, L->b1, L->w2, L->b2};
        int64_t sh[5][2] = {{d, 0}, {r, 2 * d}, {r, 0}, {d, r}, {d, 0}};
        for (int i = 0; i < 5; i++, idx++) {
            if (idx == skip) continue;
            snprintf(names[n], 48, "layers.%d.plugin.%s", l, PARTS[i]);
            e[n] = (vt_st_entry){.name = names[n], .ndim = sh[i][1] ? 2 : 1, .shape = {sh[i][0], sh[i][1]},
                                 .data = ptr[i]};
            if (idx == reshape) e[n].shape[0] -= 1;
            n++;
        }
    }
    if (extra) e[n++] = (vt_st_entry){.name = "layers.0.plugin.bias", .ndim = 1, .shape = {1}, .data = p->arena};
    assert_int_equal(vt_st_write_meta(path, e, n, VT_F32, out, nk), 0);
}

static void test_bad_files(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_plugin p, q;
    random_plugin(&p, &c, 2, 4, 9);
    uint64_t fp = 0x0123456789abcdefull;
    char *dir = tu_tempdir(), path[4200];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    craft(path, &p, &c, fp, -1, -1, 0, NULL, NULL); /* the crafted file itself is good */
    assert_int_equal(vt_plugin_load(path, &c, fp, "m", &q), 0);
    assert_memory_equal(q.arena, p.arena, p.arena_floats * sizeof(float));
    vt_plugin_free(&q);
    craft(path, &p, &c, fp, 1, -1, 0, NULL, NULL);
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), path, "layers.0.plugin.w1 is missing", NULL);
    craft(path, &p, &c, fp, -1, 3, 0, NULL, NULL);
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "layers.0.plugin.w2 has shape [15, 4]", "needs [16, 4]",
                 NULL);
    craft(path, &p, &c, fp, -1, -1, 1, NULL, NULL);
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "unexpected tensor layers.0.plugin.bias", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "format", "pt");
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "not a plugin file", "\"pt\"", NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "version", "1"); /* before the last-layer rule */
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "version 1", NULL, NULL);
    p.tail = 3;
    craft(path, &p, &c, fp, -1, -1, 0, "version", "2"); /* before exact_tail: the last position only */
    assert_int_equal(vt_plugin_load(path, &c, fp, "m", &q), 0);
    assert_int_equal(q.tail, 1);
    vt_plugin_free(&q);
    craft(path, &p, &c, fp, -1, -1, 0, NULL, NULL);
    assert_int_equal(vt_plugin_load(path, &c, fp, "m", &q), 0);
    assert_int_equal(q.tail, 3);
    vt_plugin_free(&q);
    craft(path, &p, &c, fp, -1, -1, 0, "exact_tail", NULL); /* version 3 records it */
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "has no \"exact_tail\"", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "exact_tail", "0");
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "\"exact_tail\" is \"0\"", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "k", "two");
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "\"k\" is \"two\"", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "r", NULL);
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "has no \"r\"", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "ffn", "24");
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "\"ffn\" is \"24\"", "2 comma-separated", NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "fingerprint", "xyz");
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "\"fingerprint\" is \"xyz\"", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "activation", "gelu");
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "activation is gelu", NULL, NULL);
    craft(path, &p, &c, fp, -1, -1, 0, "k", "3"); /* wrong k: the shapes still fit (k shapes nothing) */
    assert_int_equal(vt_plugin_load(path, &c, fp, "m", &q), 0);
    assert_int_equal(q.k, 3);
    vt_plugin_free(&q);
    craft(path, &p, &c, fp, -1, -1, 0, "r", "5"); /* wrong r: every adapter tensor misshapen */
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "layers.0.plugin.w1 has shape [4, 32]", "r = 5", NULL);
    craft(path, &p, &c, fp, -1, -1, 0, NULL, NULL);
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(path, size - 10), 0);
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), "loading plugin", path, NULL);
    assert_int_equal(truncate(path, 5), 0);
    expect_error(vt_plugin_load(path, &c, fp, "m", &q), path, "too short", NULL);
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/none.safetensors", dir);
    expect_error(vt_plugin_load(missing, &c, fp, "m", &q), missing, NULL, NULL);
    vt_plugin_free(&p);
    tu_tempdir_remove(dir);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_model),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
