/* test_vib_train.c — the VTrans loop on a tiny model: budgets met, masks-only runs hold no weight
 * state, full runs train weights, results are reproducible, iterative pruning shrinks the model;
 * resumed runs end where uninterrupted ones do, damaged checkpoints fall back, and a resume with
 * changed settings is refused unless they are settings that may change; a bf16 checkpoint's weights
 * held in bf16 give the fp32-held results bit for bit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/calib.h"
#include "io/hf_writer.h"
#include "train/recover.h"
#include "util/error.h"
#include "nn/forward.h"
#include "util/fsutil.h"
#include "run/run_config.h"
#include "testutil.h"
#include "train/vib_train.h"
#include "util/rng.h"

typedef struct {
    vt_config c;
    vt_model m;
    int32_t *stream;
    vt_calib calib;
} fixture;

static void setup(fixture *f) {
    tu_small_config(&f->c);
    tu_random_model(&f->m, &f->c, 41);
    size_t n = 64 * 16;
    f->stream = malloc(sizeof(int32_t) * n);
    unsigned s = 5;
    for (size_t i = 0; i < n; i++) f->stream[i] = (int32_t)(vt_lcg32(&s) >> 8) % f->c.vocab;
    assert_int_equal(vt_calib_init(&f->calib, f->stream, n, 1.0, 16, 0), 0);
}

static void teardown(fixture *f) {
    free(f->stream);
    vt_model_free(&f->m);
    vt_config_free(&f->c);
}

static vt_vib_params params(void) { return tu_vib_params(); }

static void test_faster_meets_budget_without_weight_state(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    vt_vib_params p = params();
    vt_vib_result r, r2;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), 0);
    double dense = (double)vt_params_total(&f.c), kept = (double)vt_params_total(&r.pruned.cfg);
    assert_true(kept <= 0.6 * dense);
    assert_true(kept >= 0.5 * dense);
    assert_int_equal(r.weight_state_bytes, 0);
    assert_int_equal(r.steps, 12);
    assert_int_equal(r.tokens, 12 * 4 * 16);
    /* same seed, same result, bit for bit */
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r2), 0);
    assert_int_equal(r.pruned.arena_floats, r2.pruned.arena_floats);
    assert_memory_equal(r.pruned.arena, r2.pruned.arena, sizeof(float) * r.pruned.arena_floats);
    vt_vib_result_free(&r2);
    /* another seed: different gates, different weights */
    p.vib.seed = 4;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r2), 0);
    assert_true(r.pruned.arena_floats != r2.pruned.arena_floats ||
                memcmp(r.pruned.arena, r2.pruned.arena, sizeof(float) * r.pruned.arena_floats) != 0);
    vt_vib_result_free(&r2);
    vt_vib_result_free(&r);
    teardown(&f);
}

/* Micro-batching changes the order of work, not the result (up to float summation order). */
static void test_micro_batches_same_result(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    vt_vib_params p = params();
    p.schedule.finetune_steps = 3;
    vt_vib_result one, two;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &one), 0);
    p.pipeline.micro_batches = 2;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &two), 0);
    assert_int_equal(one.pruned.arena_floats, two.pruned.arena_floats);
    double err = 0, mx = 0;
    for (size_t i = 0; i < one.pruned.arena_floats; i++) {
        err = fmax(err, fabs(one.pruned.arena[i] - two.pruned.arena[i]));
        mx = fmax(mx, fabs(one.pruned.arena[i]));
    }
    if (err > 1e-4 * mx) fail_msg("micro-batching changed the weights by %g (max %g)", err, mx);
    vt_vib_result_free(&one);
    vt_vib_result_free(&two);
    teardown(&f);
}

static void test_full_trains_weights(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    vt_vib_params p = params();
    vt_vib_result faster, full;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &faster), 0);
    p.schedule.finetune_steps = 6;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &full), 0);
    assert_true(full.weight_state_bytes > 0);
    assert_int_equal(full.steps, 18);
    /* same structure (decided after the same mask phase), different weights */
    assert_int_equal(full.pruned.arena_floats, faster.pruned.arena_floats);
    assert_true(memcmp(full.pruned.arena, faster.pruned.arena, sizeof(float) * full.pruned.arena_floats) != 0);
    for (size_t i = 0; i < full.pruned.arena_floats; i++) assert_true(isfinite(full.pruned.arena[i]));
    vt_vib_result_free(&faster);
    vt_vib_result_free(&full);
    teardown(&f);
}

static void test_iterative_pruning_shrinks(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    vt_vib_params p = params();
    p.vib.beta = 10.0; /* strong pressure: gates cross the threshold within a few steps */
    p.schedule.lr_mask = 0.5;
    p.schedule.steps = 20;
    p.vib.prune_interval = 5;
    vt_vib_result r;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), 0);
    assert_true(r.removed_early > 0);
    /* early removals never go below the budget, so the decision still lands on it */
    double kept = (double)vt_params_total(&r.pruned.cfg), dense = (double)vt_params_total(&f.c);
    assert_true(kept <= 0.6 * dense);
    assert_true(kept >= 0.5 * dense);
    /* the map points into the dense model through the iterative slices: the embedding columns are
     * the dense ones times their folded gates, the fused QKV and gate/up rows the dense rows (on
     * the kept columns; Faster-VTrans leaves weights as they were) */
    const vt_slice_map *mp = &r.map;
    int d = r.pruned.cfg.dim, D = f.c.dim;
    assert_int_equal(mp->n, d);
    for (int v = 0; v < f.c.vocab; v++)
        for (int i = 0; i < d; i++)
            assert_float_equal(r.pruned.embed[(size_t)v * d + i], mp->z[i] * f.m.embed[(size_t)v * D + mp->dims[i]],
                               1e-6);
    for (int l = 0; l < f.c.n_layers; l++) {
        const vt_layer_shape *sh = &r.pruned.cfg.layers[l];
        for (int q = 0; mp->qkv_rows[l] && q < (sh->n_heads + 2 * sh->n_kv_heads) * f.c.head_dim; q++)
            for (int i = 0; i < d; i++)
                assert_float_equal(r.pruned.layers[l].wq[(size_t)q * d + i],
                                   f.m.layers[l].wq[(size_t)mp->qkv_rows[l][q] * D + mp->dims[i]], 1e-6);
        for (int g = 0; mp->gate_up_rows[l] && g < 2 * sh->ffn; g++)
            for (int i = 0; i < d; i++)
                assert_float_equal(r.pruned.layers[l].w_gate[(size_t)g * d + i],
                                   f.m.layers[l].w_gate[(size_t)mp->gate_up_rows[l][g] * D + mp->dims[i]], 1e-6);
    }
    /* the result runs */
    vt_fwd fw;
    assert_int_equal(vt_fwd_init(&fw, &r.pruned, 1, 8, 8), 0);
    float *x = malloc(sizeof(float) * 8 * r.pruned.cfg.dim), *lg = malloc(sizeof(float) * 8 * r.pruned.cfg.vocab);
    vt_embed(&r.pruned, f.stream, 8, x);
    vt_layers_forward(&r.pruned, &fw, 0, r.pruned.cfg.n_layers, x, 1, 8, 0);
    vt_head_forward(&r.pruned, &fw, x, 8, lg);
    for (int i = 0; i < 8 * r.pruned.cfg.vocab; i++) assert_true(isfinite(lg[i]));
    free(x);
    free(lg);
    vt_fwd_free(&fw);
    vt_vib_result_free(&r);
    teardown(&f);
}

/* Inverts the byte at fraction `where` of the file's length (twice restores it). */
static void flip_byte(const char *path, double where) {
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long at = (long)(where * (double)ftell(fp));
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    int ch = fgetc(fp);
    assert_true(ch != EOF);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    assert_int_equal(fputc(ch ^ 0xFF, fp), ch ^ 0xFF);
    assert_int_equal(fclose(fp), 0);
}

/* A run resumed from its checkpoints ends exactly where the uninterrupted run ends; a damaged
 * newest checkpoint falls back to the older one; a run directory without a manifest is refused. */
static void test_resume_matches_uninterrupted(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    char *dir = tu_tempdir(), run[VT_PATH_MAX], path[4400];
    snprintf(run, sizeof run, "%s/run", dir);
    vt_vib_params p = params();
    p.schedule.steps = 10;
    p.schedule.finetune_steps = 6;
    p.vib.prune_interval = 4;
    p.vib.beta = 1.0;
    vt_vib_result whole, resumed, fallback;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &whole), 0); /* no checkpoints */
    snprintf(p.ckpt.dir, sizeof p.ckpt.dir, "%s", run);
    p.ckpt.steps = 3; /* saves at 3, 6, 9 (masks) and 12, 15 (fine-tuning); keeps the last two */
    vt_vib_result with_ckpt;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &with_ckpt), 0);
    assert_memory_equal(with_ckpt.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    vt_vib_result_free(&with_ckpt);
    /* resume from the newest (step 15, fine-tuning) */
    p.run.resume_dir = run;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &resumed), 0);
    assert_int_equal(resumed.pruned.arena_floats, whole.pruned.arena_floats);
    assert_memory_equal(resumed.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    assert_int_equal(resumed.steps, whole.steps);
    /* damage the newest: the older one (step 12) is used, same result. A flipped byte among the
     * weights (the size still right) is found only once the file has been loaded: nothing of it
     * may stay behind. */
    p.ckpt.dir[0] = '\0'; /* resume without saving again */
    snprintf(path, sizeof path, "%s/ckpt-00000015/rank-00000.bin", run);
    flip_byte(path, 0.5);
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &fallback), 0);
    assert_memory_equal(fallback.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    vt_vib_result_free(&fallback);
    flip_byte(path, 0.5); /* repaired; now the gates of state.bin */
    snprintf(path, sizeof path, "%s/ckpt-00000015/state.bin", run);
    flip_byte(path, 0.9);
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &fallback), 0);
    assert_memory_equal(fallback.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    vt_vib_result_free(&fallback);
    flip_byte(path, 0.9);
    snprintf(path, sizeof path, "%s/ckpt-00000015/rank-00000.bin", run);
    assert_int_equal(truncate(path, 10), 0);
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &fallback), 0);
    assert_memory_equal(fallback.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    vt_vib_result_free(&fallback);
    /* resuming from step 12 and saving again writes step 15 anew: the manifest lists 12 and the new
     * 15 once each, and the folder of 12 stays */
    snprintf(p.ckpt.dir, sizeof p.ckpt.dir, "%s", run);
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &fallback), 0);
    vt_vib_result_free(&fallback);
    snprintf(path, sizeof path, "%s/manifest.json", run);
    size_t len;
    char *manifest = NULL;
    assert_int_equal(vt_read_file(path, &manifest, &len), 0);
    const char *at12 = strstr(manifest, "ckpt-00000012\""), *at15 = strstr(manifest, "ckpt-00000015\"");
    assert_non_null(at12);
    assert_non_null(at15);
    assert_null(strstr(at12 + 1, "ckpt-00000012\""));
    assert_null(strstr(at15 + 1, "ckpt-00000015\""));
    free(manifest);
    snprintf(path, sizeof path, "%s/ckpt-00000012/state.bin", run);
    assert_true(vt_path_exists(path));
    /* no manifest: refused with a message naming it */
    snprintf(path, sizeof path, "%s/manifest.json", run);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &fallback), -1);
    assert_non_null(strstr(vt_error(), "manifest"));
    vt_vib_result_free(&resumed);
    vt_vib_result_free(&whole);
    /* masks only: the newest checkpoint is in the mask phase, after iterative pruning sliced the student */
    char run2[VT_PATH_MAX];
    snprintf(run2, sizeof run2, "%s/run2", dir);
    p.schedule.finetune_steps = 0;
    p.vib.beta = 10.0; /* strong pressure: iterative pruning slices the student before the checkpoints */
    p.schedule.lr_mask = 0.5;
    p.run.resume_dir = NULL;
    p.ckpt.dir[0] = '\0';
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &whole), 0);
    snprintf(p.ckpt.dir, sizeof p.ckpt.dir, "%s", run2);
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &with_ckpt), 0);
    vt_vib_result_free(&with_ckpt);
    p.run.resume_dir = run2;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &resumed), 0);
    assert_true(whole.removed_early > 0);
    assert_int_equal(resumed.removed_early, whole.removed_early);
    assert_int_equal(resumed.pruned.arena_floats, whole.pruned.arena_floats);
    assert_memory_equal(resumed.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    vt_vib_result_free(&resumed);
    vt_vib_result_free(&whole);
    tu_tempdir_remove(dir);
    teardown(&f);
}

/* The settings a resume must keep are recorded in the manifest: a resume with a recorded setting
 * changed is refused, naming it with both values; one with only settings that may change (here a
 * longer fine-tuning, another log interval and output) goes on, and with a constant learning rate
 * ends where an uninterrupted run of the longer fine-tuning ends. */
static void test_resume_refuses_changed_settings(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    char *dir = tu_tempdir(), run[VT_PATH_MAX], path[4400];
    snprintf(run, sizeof run, "%s/run", dir);
    vt_vib_params p = params(); /* constant learning rate */
    p.schedule.steps = 8;
    p.schedule.finetune_steps = 4;
    /* the configuration these parameters come from (prune_run.c hands its sub-structs to the trainer) */
    vt_run_config rc;
    vt_run_config_defaults(&rc);
    snprintf(rc.model.path, sizeof rc.model.path, "%s", dir);
    snprintf(rc.data.calib, sizeof rc.data.calib, "%s", dir);
    snprintf(rc.output.dir, sizeof rc.output.dir, "%s/out", dir);
    rc.budget.params = vt_budget_spec_target(&p.budget);
    rc.vib.variant = VT_VARIANT_FULL;
    rc.vib.seed = p.vib.seed;
    rc.schedule.steps = (int)p.schedule.steps;
    rc.schedule.finetune_steps = (int)p.schedule.finetune_steps;
    rc.schedule.batch_size = p.schedule.batch_size;
    rc.schedule.lr_schedule = VT_LR_CONSTANT;
    char *saved = vt_run_config_resume_settings(&rc);
    assert_non_null(saved);
    p.run.settings = saved;
    snprintf(p.ckpt.dir, sizeof p.ckpt.dir, "%s", run);
    p.ckpt.steps = 5; /* saves at 5 (masks) and 10 (fine-tuning step 2 of 4) */
    vt_vib_result r;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), 0);
    vt_vib_result_free(&r);
    snprintf(path, sizeof path, "%s/manifest.json", run);
    size_t len;
    char *manifest = NULL;
    assert_int_equal(vt_read_file(path, &manifest, &len), 0);
    assert_non_null(strstr(manifest, "\"format\": 2"));
    assert_non_null(strstr(manifest, "\"schedule.batch_size\": \"4\""));
    assert_null(strstr(manifest, "schedule.steps"));
    free(manifest);

    p.run.resume_dir = run;
    p.ckpt.dir[0] = '\0';
    /* a recorded setting changed: refused, naming it, before any training */
    vt_run_config changed = rc;
    changed.schedule.batch_size = 8;
    char *now = vt_run_config_resume_settings(&changed);
    p.run.settings = now;
    p.schedule.batch_size = 8;
    vt_error_clear();
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), -1);
    if (!strstr(vt_error(), "manifest.json: 1 setting differs") ||
        !strstr(vt_error(), "schedule.batch_size is 8 now, 4 then"))
        fail_msg("unexpected message: %s", vt_error());
    free(now);
    /* two of them, both named */
    changed.vib.seed = p.vib.seed + 1;
    changed.vib.variant = VT_VARIANT_FAST;
    now = vt_run_config_resume_settings(&changed);
    p.run.settings = now;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), -1);
    if (!strstr(vt_error(), "3 settings differ") || !strstr(vt_error(), "method.seed is 4 now, 3 then") ||
        !strstr(vt_error(), "method.variant is fast now, full then"))
        fail_msg("unexpected message: %s", vt_error());
    free(now);
    p.schedule.batch_size = 4;

    /* the model moved (staged to another directory, say): refused, unless --accept-changed names
     * model.path; naming another key does not accept it */
    changed = rc;
    snprintf(changed.model.path, sizeof changed.model.path, "%.4000s", run);
    now = vt_run_config_resume_settings(&changed);
    p.run.settings = now;
    p.run.resume_accept = "method.seed";
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), -1);
    if (!strstr(vt_error(), "1 setting differs") || !strstr(vt_error(), "model.path is "))
        fail_msg("unexpected message: %s", vt_error());
    p.run.resume_accept = "method.seed,model.path";
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), 0);
    assert_int_equal(r.steps, 12);
    vt_vib_result_free(&r);
    p.run.resume_accept = NULL;
    free(now);

    /* settings that may change: longer fine-tuning, log interval, output directory */
    changed = rc;
    changed.schedule.finetune_steps = 6;
    changed.schedule.log_interval = 1;
    snprintf(changed.output.dir, sizeof changed.output.dir, "%s/elsewhere", dir);
    now = vt_run_config_resume_settings(&changed);
    p.run.settings = now;
    p.schedule.finetune_steps = 6;
    vt_vib_result resumed, whole;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &resumed), 0);
    assert_int_equal(resumed.steps, 14);
    p.run.resume_dir = NULL;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &whole), 0);
    assert_int_equal(resumed.pruned.arena_floats, whole.pruned.arena_floats);
    assert_memory_equal(resumed.pruned.arena, whole.pruned.arena, sizeof(float) * whole.pruned.arena_floats);
    vt_vib_result_free(&resumed);
    vt_vib_result_free(&whole);
    /* shortened below where the checkpoint is: refused, saying how far it got */
    p.run.resume_dir = run;
    p.schedule.finetune_steps = 1;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), -1);
    if (!strstr(vt_error(), "fine-tuning step 2, past schedule.finetune_steps = 1"))
        fail_msg("unexpected message: %s", vt_error());
    /* a run without recorded settings (library use) is not checked */
    p.schedule.finetune_steps = 4;
    p.run.settings = NULL;
    assert_int_equal(vt_vib_prune(&f.m, &f.calib, &p, &r), 0);
    vt_vib_result_free(&r);
    free(now);
    free(saved);
    tu_tempdir_remove(dir);
    teardown(&f);
}

static void assert_same_weights(const vt_model *a, const vt_model *b, const char *what) {
    assert_int_equal(a->raw, VT_F32);
    assert_int_equal(b->raw, VT_F32);
    assert_int_equal(a->arena_floats, b->arena_floats);
    if (memcmp(a->arena, b->arena, sizeof(float) * a->arena_floats))
        fail_msg("%s: the weights differ between bf16-held and fp32-held teachers", what);
}

/* model.hold: a bf16 checkpoint loaded with its matrices held in bf16 (widened a few columns at a
 * time here, so every matrix takes several blocks) computes what it computes loaded in fp32, bit for
 * bit: logits on both of BLIS's paths, a mask phase with its slice, and lora recovery from it. */
static void test_hold16_same_as_fp32(void **st) {
    (void)st;
    vt_config c;
    tu_stories_config(&c);
    c.tied = 0; /* the embedding is held in bf16 too */
    c.n_layers = 2;
    vt_model m, wide, held;
    tu_random_model(&m, &c, 43);
    char *dir = tu_tempdir(), path[512];
    snprintf(path, sizeof path, "%s/bf16", dir);
    assert_int_equal(vt_hf_write(&m, path, VT_BF16, 0, NULL), 0);
    vt_wide_block_set(48 * 64); /* blocks of 48 columns of a 64-deep matrix */
    assert_int_equal(vt_model_load(&wide, path, vt_load_all()), 0);
    assert_int_equal(vt_model_load_held(&held, path, vt_load_all(), 1), 0);
    assert_int_equal(wide.raw, VT_F32);
    assert_int_equal(held.raw, VT_BF16);
    assert_true(held.layers[0].wq == NULL && held.layers[0].wq16 && held.embed16 && held.lm_head);
    /* the layers' matrices and the embedding in 2 bytes, the norms and the classifier in 4 */
    size_t d = (size_t)c.dim, norms = 2 * d * (size_t)c.n_layers + d, head = (size_t)c.vocab * d;
    assert_int_equal(held.arena16_count, vt_params_total(&c) - norms - head);
    assert_int_equal(vt_model_bytes(&held) + 2 * held.arena16_count, vt_model_bytes(&wide));

    int32_t tokens[2 * 40];
    for (int i = 0; i < 2 * 40; i++) tokens[i] = (int32_t)(vt_uniform(9, (uint64_t)i) * c.vocab);
    int shapes[2][2] = {{2, 40}, {1, 3}}; /* 80 rows: the packed path; 3 rows: the small-matrix path */
    for (int k = 0; k < 2; k++) {
        float *a = tu_model_logits(&wide, tokens, shapes[k][0], shapes[k][1]), *b = tu_model_logits(&held, tokens, shapes[k][0], shapes[k][1]);
        assert_memory_equal(a, b, sizeof(float) * (size_t)shapes[k][0] * shapes[k][1] * c.vocab);
        free(a);
        free(b);
    }

    size_t n = 64 * 16;
    int32_t *stream = malloc(sizeof(int32_t) * n);
    for (size_t i = 0; i < n; i++) stream[i] = (int32_t)(vt_uniform(5, i) * c.vocab);
    vt_calib calib;
    assert_int_equal(vt_calib_init(&calib, stream, n, 1.0, 16, 0), 0);
    vt_vib_params p = params();
    p.schedule.steps = 4;
    p.schedule.log_interval = 1; /* a record per step */
    vt_vib_result ra, rb;
    assert_int_equal(vt_vib_prune(&wide, &calib, &p, &ra), 0);
    assert_int_equal(vt_vib_prune(&held, &calib, &p, &rb), 0);
    assert_true(ra.n_records == rb.n_records && ra.n_records > 0);
    for (size_t i = 0; i < ra.n_records; i++) {
        const vt_train_record *x = &ra.records[i], *y = &rb.records[i];
        if (x->kd != y->kd || x->ce != y->ce || x->kl != y->kl || x->size != y->size || x->lambda1 != y->lambda1)
            fail_msg("mask step %ld: kd %.17g / %.17g, ce %.17g / %.17g", x->step, x->kd, y->kd, x->ce, y->ce);
    }
    assert_same_weights(&ra.pruned, &rb.pruned, "the mask phase's slice");

    vt_recover_spec s = vt_recover_defaults();
    s.method = VT_RECOVER_LORA;
    s.steps = 3;
    s.batch_size = 4;
    s.rank = 4;
    vt_recover_result qa, qb;
    assert_int_equal(vt_recover(&ra.pruned, &wide, &calib, &s, vt_comm_local(c.n_layers), NULL, NULL, &qa), 0);
    assert_int_equal(vt_recover(&rb.pruned, &held, &calib, &s, vt_comm_local(c.n_layers), NULL, NULL, &qb), 0);
    assert_true(qa.first_loss == qb.first_loss && qa.last_loss == qb.last_loss);
    assert_same_weights(&ra.pruned, &rb.pruned, "lora recovery");

    vt_wide_block_set(VT_WIDE_FLOATS);
    vt_vib_result_free(&ra);
    vt_vib_result_free(&rb);
    free(stream);
    vt_model_free(&wide);
    vt_model_free(&held);
    vt_model_free(&m);
    vt_config_free(&c);
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faster_meets_budget_without_weight_state),
        cmocka_unit_test(test_full_trains_weights),
        cmocka_unit_test(test_micro_batches_same_result),
        cmocka_unit_test(test_iterative_pruning_shrinks),
        cmocka_unit_test(test_resume_matches_uninterrupted),
        cmocka_unit_test(test_resume_refuses_changed_settings),
        cmocka_unit_test(test_hold16_same_as_fp32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
