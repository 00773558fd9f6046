/* testutil.c — shared helpers for the cmocka unit tests. */
#define _GNU_SOURCE
#include "testutil.h"
#include "util/rng.h"
#include "nn/forward.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fsutil.h"

const char *tu_fixture(const char *relative) {
    static char buf[8][4096];
    static int slot;
    const char *root = getenv("VT_FIXTURES");
    char *out = buf[slot++ % 8];
    snprintf(out, 4096, "%s/%s", root ? root : "../shared/fixtures", relative);
    return out;
}

int tu_have_fixture(const char *relative) { return access(tu_fixture(relative), R_OK) == 0; }

char *tu_tempdir(void) {
    const char *tmp = getenv("TMPDIR");
    char *path = malloc(VT_PATH_MAX);
    if (!path) return NULL;
    int n = snprintf(path, VT_PATH_MAX, "%s/vt-test-XXXXXX", tmp ? tmp : "/tmp");
    if (n < 0 || n >= VT_PATH_MAX || !mkdtemp(path)) {
        free(path);
        return NULL;
    }
    return path;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

void tu_rmtree(const char *path) {
    if (path) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void tu_tempdir_remove(char *dir) {
    tu_rmtree(dir);
    free(dir);
}

char *tu_dir;

int tu_group_setup(void **state) {
    (void)state;
    tu_dir = tu_tempdir();
    return tu_dir ? 0 : -1;
}

int tu_group_teardown(void **state) {
    (void)state;
    tu_tempdir_remove(tu_dir);
    tu_dir = NULL;
    return 0;
}

const char *tu_in_dir(const char *name) {
    static char buf[8][VT_PATH_MAX];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, VT_PATH_MAX, "%s/%s", tu_dir, name);
    return p;
}

int tu_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

void tu_small_config(vt_config *c) {
    memset(c, 0, sizeof *c);
    c->dim = 16;
    c->n_layers = 2;
    c->n_heads = 4;
    c->n_kv_heads = 2;
    c->head_dim = 4;
    c->ffn_dim = 24;
    c->vocab = 32;
    c->seq_len = 64;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->tied = 1;
    c->rope = VT_ROPE_INTERLEAVED;
    vt_config_init_dense(c);
}

void tu_stories_config(vt_config *c) {
    tu_small_config(c);
    vt_config_free(c);
    c->dim = 64;
    c->n_layers = 5;
    c->n_heads = 8;
    c->n_kv_heads = 4;
    c->head_dim = 8;
    c->ffn_dim = 172;
    c->vocab = 512;
    c->seq_len = 64;
    vt_config_init_dense(c);
}

void tu_random_model(vt_model *m, const vt_config *c, uint64_t seed) {
    assert_int_equal(vt_model_alloc(m, c, vt_load_all()), 0);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < m->arena_floats; i++) {
        vt_xorshift64(&s);
        m->arena[i] = ((float)(s >> 40) / (float)(1u << 24) - 0.5f) * 0.5f;
    }
    /* Norm weights near 1, like a trained model. */
    for (int l = m->layer_begin; l < m->layer_end; l++)
        for (int i = 0; i < c->dim; i++) {
            if (m->layers[l].attn_norm) m->layers[l].attn_norm[i] += 1.0f;
            if (m->layers[l].ffn_norm) m->layers[l].ffn_norm[i] += 1.0f;
        }
    if (m->final_norm)
        for (int i = 0; i < c->dim; i++) m->final_norm[i] += 1.0f;
}

vt_vib_params tu_vib_params(void) {
    vt_vib_params p;
    memset(&p, 0, sizeof p);
    p.budget.params = 0.6;
    p.budget.round_to = 1;
    p.budget.warmup = 0.5;
    p.vib.beta = 1e-2;
    for (int g = 0; g < 4; g++) p.vib.kl_mult[g] = 1.0;
    p.vib.temperature = 2.0;
    p.vib.sharpness = 10.0;
    p.vib.seed = 3;
    p.vib.variant = VT_VARIANT_FULL; /* schedule.finetune_steps (0 here) fine-tunes when a test sets it */
    p.schedule.steps = 12;
    p.schedule.batch_size = 4;
    p.schedule.lr_mask = 0.1;
    p.schedule.lr_weight = 1e-3;
    p.schedule.lr_lambda = 0.05;
    p.schedule.clip = 1.0;
    p.schedule.lr_schedule = VT_LR_CONSTANT;
    return p;
}

double tu_rel_diff(const float *a, const float *b, size_t n) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(b[i]));
        err = fmax(err, fabs((double)a[i] - b[i]));
    }
    return err / mx;
}

double tu_urand(unsigned *s) {
    vt_lcg32(s);
    return ((*s >> 8) & 0xFFFFFF) / (double)0x1000000 - 0.5;
}

void tu_assert_grad(const char *what, const double *analytic, const double *fd, size_t n, double tol) {
    double err = 0, scale = 1e-8;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        scale = fmax(scale, fabs(fd[i]));
        if (fabs(analytic[i] - fd[i]) > err) {
            err = fabs(analytic[i] - fd[i]);
            worst = i;
        }
    }
    if (err > tol * scale)
        fail_msg("%s: gradient %zu: analytic %.8g vs finite difference %.8g (max error %.3g > %.3g x %.3g)", what, worst,
                 analytic[worst], fd[worst], err, tol, scale);
}

int tu_have_torch(void) {
    return getenv("VT_SOURCE_DIR") && system("/usr/bin/python3 -c 'import torch' 2>/dev/null") == 0;
}

const char *tu_run_reference(const char *script, const char *args_fmt, ...) {
    static char out[1 << 16];
    char args[16384], cmd[20480];
    va_list ap;
    va_start(ap, args_fmt);
    int n = vsnprintf(args, sizeof args, args_fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof args);
    n = snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/reference/%s %s", getenv("VT_SOURCE_DIR"), script, args);
    assert_true(n >= 0 && (size_t)n < sizeof cmd);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    if (pclose(p) != 0) fail_msg("%s failed; its output:\n%s", cmd, out);
    return out;
}

double tu_json_number(const char *out, const char *key) {
    char pattern[128];
    snprintf(pattern, sizeof pattern, "\"%s\": ", key);
    const char *q = strstr(out, pattern);
    if (!q) fail_msg("no \"%s\" in the reference's output:\n%s", key, out);
    return strtod(q + strlen(pattern), NULL);
}

float *tu_model_logits(const vt_model *m, const int32_t *tokens, int B, int T) {
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, B, T, T), 0);
    float *x = malloc(sizeof(float) * (size_t)B * T * m->cfg.dim), *lg = malloc(sizeof(float) * (size_t)B * T * m->cfg.vocab);
    vt_embed(m, tokens, B * T, x);
    vt_layers_forward(m, &f, 0, m->cfg.n_layers, x, B, T, 0);
    vt_head_forward(m, &f, x, B * T, lg);
    vt_fwd_free(&f);
    free(x);
    return lg;
}
