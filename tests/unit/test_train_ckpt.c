/* test_train_ckpt.c — a training checkpoint whose files have valid checksums but contents no run
 * writes is damaged: non-finite values, gates whose groups and layers do not follow from the
 * student's structure (fuzz finding 4), gate ids outside the dense numbering (finding 5). The
 * error names the file and the array; the older checkpoint is tried first. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/calib.h"
#include "testutil.h"
#include "train/vib_train.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/rng.h"

enum { MANIFEST, STATE6, STATE9, RANK9, N_FILES };
static const char *const NAMES[N_FILES] = {"manifest.json", "ckpt-00000006/state.bin", "ckpt-00000009/state.bin",
                                           "ckpt-00000009/rank-00000.bin"};

typedef struct {
    vt_config c;
    vt_model m;
    int32_t stream[64 * 16];
    vt_calib calib;
    vt_vib_params p;
    vt_vib_result whole;
    char *dir, run[VT_PATH_MAX];
    char *pristine[N_FILES];
    size_t size[N_FILES];
} fixture;

static const char *path_of(fixture *f, int k) {
    static char path[VT_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", f->run, NAMES[k]);
    return path;
}

/* A run of 6 mask steps and 3 fine-tuning steps saving every 3: checkpoints 6 (masks) and 9
 * (fine-tuning) are kept. Then set to resume from it without saving. */
static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    tu_small_config(&f->c);
    tu_random_model(&f->m, &f->c, 41);
    unsigned s = 5;
    for (size_t i = 0; i < sizeof f->stream / sizeof *f->stream; i++)
        f->stream[i] = (int32_t)(vt_lcg32(&s) >> 8) % f->c.vocab;
    assert_int_equal(vt_calib_init(&f->calib, f->stream, sizeof f->stream / sizeof *f->stream, 1.0, 16, 0), 0);
    f->p = tu_vib_params();
    f->p.schedule.steps = 6;
    f->p.schedule.finetune_steps = 3;
    f->p.vib.prune_interval = 4;
    f->dir = tu_tempdir();
    snprintf(f->run, sizeof f->run, "%s/run", f->dir);
    snprintf(f->p.ckpt.dir, sizeof f->p.ckpt.dir, "%s", f->run);
    f->p.ckpt.steps = 3;
    assert_int_equal(vt_vib_prune(&f->m, &f->calib, &f->p, &f->whole), 0);
    for (int k = 0; k < N_FILES; k++) assert_int_equal(vt_read_file(path_of(f, k), &f->pristine[k], &f->size[k]), 0);
    f->p.ckpt.dir[0] = '\0';
    f->p.run.resume_dir = f->run;
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    for (int k = 0; k < N_FILES; k++) free(f->pristine[k]);
    vt_vib_result_free(&f->whole);
    vt_model_free(&f->m);
    vt_config_free(&f->c);
    tu_tempdir_remove(f->dir);
    free(f);
    return 0;
}

static void restore(fixture *f) {
    for (int k = 0; k < N_FILES; k++) assert_int_equal(vt_write_file(path_of(f, k), f->pristine[k], f->size[k]), 0);
}

/* File k (a copy of the pristine one) changed by edit, and its manifest entry updated to match, so
 * only the contents can give it away. */
static void edit(fixture *f, int k, void (*change)(char *buf, size_t n)) {
    char *buf = malloc(f->size[k]);
    memcpy(buf, f->pristine[k], f->size[k]);
    change(buf, f->size[k]);
    assert_int_equal(vt_write_file(path_of(f, k), buf, f->size[k]), 0);
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < f->size[k]; i++) h = (h ^ (unsigned char)buf[i]) * 0x100000001B3ull;
    free(buf);
    char hex[17], dir[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
    snprintf(dir, sizeof dir, "%.13s", NAMES[k]);
    json_t *m = json_load_file(path_of(f, MANIFEST), 0, NULL), *list = json_object_get(m, "checkpoints");
    assert_non_null(list);
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        if (strcmp(json_string_value(json_object_get(e, "dir")), dir) != 0) continue;
        json_t *entry = json_object_get(json_object_get(e, "files"), NAMES[k] + 14);
        assert_non_null(entry);
        json_object_set_new(entry, "fnv1a64", json_string(hex));
    }
    assert_int_equal(json_dump_file(m, path_of(f, MANIFEST), JSON_INDENT(2)), 0);
    json_decref(m);
}

/* state.bin's layout (train_ckpt.c, state_io): the fixed header, then the curve records, the
 * structure, then the gates: their count, mu, logvar, unit ids, groups, layers. */
enum { KL_LOG_SCALE_AT = 52, N_RECORDS_AT = 76, RECORDS_AT = 84 };
static size_t gates_at(const char *buf) {
    size_t n_records;
    memcpy(&n_records, buf + N_RECORDS_AT, sizeof n_records);
    vt_config c;
    tu_small_config(&c);
    size_t at = RECORDS_AT + n_records * sizeof(vt_train_record) + sizeof(int) + sizeof(float) +
                (size_t)c.n_layers * sizeof(vt_layer_shape);
    vt_config_free(&c);
    return at;
}

static void nan_kl_log_scale(char *buf, size_t n) {
    double x = NAN;
    assert_true(n > KL_LOG_SCALE_AT + 8);
    memcpy(buf + KL_LOG_SCALE_AT, &x, sizeof x);
}

static void inf_mu(char *buf, size_t n) {
    float x = INFINITY;
    size_t at = gates_at(buf) + sizeof(size_t);
    assert_true(at + 4 <= n);
    memcpy(buf + at, &x, sizeof x);
}

static void wrong_group(char *buf, size_t n) {
    size_t at = gates_at(buf), gates;
    memcpy(&gates, buf + at, sizeof gates);
    at += sizeof(size_t) + 16 * gates; /* past mu, logvar, unit ids */
    assert_true(at < n);
    buf[at] ^= 1;
}

static void huge_id(char *buf, size_t n) {
    size_t at = gates_at(buf), gates;
    memcpy(&gates, buf + at, sizeof gates);
    at += sizeof(size_t) + 8 * gates; /* past mu, logvar */
    int64_t id = (int64_t)1 << 40;
    assert_true(at + 8 <= n);
    memcpy(buf + at, &id, sizeof id);
}

/* rank-00000.bin in fine-tuning: the owned flag, the weight count, then the weights. */
static void nan_first_weight(char *buf, size_t n) {
    int owned;
    memcpy(&owned, buf, sizeof owned);
    assert_int_equal(owned, 1);
    float x = NAN;
    assert_true(sizeof(int) + sizeof(size_t) + 4 <= n);
    memcpy(buf + sizeof(int) + sizeof(size_t), &x, sizeof x);
}

/* Both checkpoints damaged: the resume fails with the newest's reason, which names the file and
 * what is wrong in it. */
static void expect_refused(fixture *f, const char *file, const char *what) {
    vt_vib_result r;
    assert_int_equal(vt_vib_prune(&f->m, &f->calib, &f->p, &r), -1);
    if (!strstr(vt_error(), file) || !strstr(vt_error(), what))
        fail_msg("error \"%s\" does not name %s and \"%s\"", vt_error(), file, what);
    restore(f);
}

/* Only the newest damaged: the older one is used, and the run ends where the uninterrupted one did. */
static void expect_fallback(fixture *f) {
    vt_vib_result r;
    assert_int_equal(vt_vib_prune(&f->m, &f->calib, &f->p, &r), 0);
    assert_int_equal(r.pruned.arena_floats, f->whole.pruned.arena_floats);
    assert_memory_equal(r.pruned.arena, f->whole.pruned.arena, sizeof(float) * f->whole.pruned.arena_floats);
    vt_vib_result_free(&r);
}

static void test_nonfinite_refused(void **state) {
    fixture *f = *state;
    restore(f); /* whatever an earlier failed test left */
    edit(f, STATE9, nan_kl_log_scale);
    expect_fallback(f);
    edit(f, STATE6, nan_kl_log_scale);
    expect_refused(f, "ckpt-00000009/state.bin", "kl_log_scale is nan, not a finite number");
    edit(f, STATE9, inf_mu);
    expect_fallback(f);
    edit(f, STATE6, inf_mu);
    expect_refused(f, "ckpt-00000009/state.bin", "gate mu[0] is inf, not a finite number");
    edit(f, RANK9, nan_first_weight);
    expect_fallback(f);
    edit(f, STATE6, nan_kl_log_scale);
    expect_refused(f, "ckpt-00000009/rank-00000.bin", "weight model.embed_tokens.weight[0] is nan");
}

/* Fuzz finding 4: groups and layers that disagree with the structure sent the budget decision
 * out of its per-layer arrays. */
static void test_gate_layout_refused(void **state) {
    fixture *f = *state;
    restore(f); /* whatever an earlier failed test left */
    edit(f, STATE9, wrong_group);
    expect_fallback(f);
    edit(f, STATE6, wrong_group);
    expect_refused(f, "ckpt-00000009/state.bin", "groups and layers do not match the student's structure");
}

/* Fuzz finding 5: one huge gate id sized the optimizer's remapping table at 128 MB and more. */
static void test_gate_id_refused(void **state) {
    fixture *f = *state;
    restore(f); /* whatever an earlier failed test left */
    edit(f, STATE9, huge_id);
    expect_fallback(f);
    edit(f, STATE6, huge_id);
    expect_refused(f, "ckpt-00000009/state.bin", "gate 0 has id 1099511627776, outside the model's 0 to");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nonfinite_refused),
        cmocka_unit_test(test_gate_layout_refused),
        cmocka_unit_test(test_gate_id_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
