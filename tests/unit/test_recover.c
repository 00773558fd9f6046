/* test_recover.c — the recovery stage: lora (with and without the norm gains) and full distillation
 * lower the loss of a perturbed copy of a teacher, lora leaves its adapters merged (the plain forward pass sees the change),
 * method none moves nothing, and two data-parallel replicas, 2 pipeline stages and 2 x 2 (ranks as
 * threads, fake_comm.c) train the same weights as one process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "fake_comm.h"
#include "nn/lora.h"
#include "train/recover.h"
#include "train/student.h"
#include "testutil.h"
#include "util/error.h"
#include "util/rng.h"

enum { NSEQ = 8, SEQ = 32 };

typedef struct {
    vt_config c;
    vt_model teacher, student;
    int32_t tokens[NSEQ * SEQ];
    vt_calib calib;
} fixture;

/* A stories-shaped random teacher; the student is the teacher with 30% noise on its layer weights. */
static void setup(fixture *f) {
    tu_stories_config(&f->c);
    tu_random_model(&f->teacher, &f->c, 3);
    tu_random_model(&f->student, &f->c, 3);
    size_t start = f->student.arena_floats / 4; /* past the embedding: layer weights and norms */
    for (size_t i = start; i < f->student.arena_floats; i++)
        f->student.arena[i] *= (float)(1.0 + 0.6 * (vt_uniform(7, i) - 0.5));
    for (int i = 0; i < NSEQ * SEQ; i++) f->tokens[i] = (int32_t)(vt_uniform(5, (uint64_t)i) * f->c.vocab);
    assert_int_equal(vt_calib_init(&f->calib, f->tokens, NSEQ * SEQ, 1.0, SEQ, 0), 0);
}

static void teardown(fixture *f) {
    vt_model_free(&f->teacher);
    vt_model_free(&f->student);
    vt_config_free(&f->c);
}

static void check_lowers_loss(vt_recover_method method, double lr, int norms) {
    fixture f;
    setup(&f);
    vt_recover_spec s = vt_recover_defaults();
    s.method = method;
    s.steps = 30;
    s.lr = lr;
    s.batch_size = 4;
    s.micro_batch = 2;
    s.rank = 4;
    s.pack = 1; /* the frozen weights packed (matmul.h), when BLIS allows */
    s.norms = norms;
    float *before = malloc(f.student.arena_floats * sizeof(float));
    memcpy(before, f.student.arena, f.student.arena_floats * sizeof(float));
    vt_recover_result r;
    assert_int_equal(vt_recover(&f.student, &f.teacher, &f.calib, &s, vt_comm_local(f.c.n_layers), NULL, NULL, &r), 0);
    assert_int_equal(r.steps, 30);
    assert_int_equal(r.tokens, 30L * 4 * SEQ);
    if (!(r.last_loss < 0.7 * r.first_loss))
        fail_msg("%s recovery: loss %.5f -> %.5f, not lowered by 30%%", vt_recover_method_name(method), r.first_loss,
                 r.last_loss);
    double moved = 0;
    for (size_t i = 0; i < f.student.arena_floats; i++) moved = fmax(moved, fabs(f.student.arena[i] - before[i]));
    if (moved == 0) fail_msg("%s recovery left the weights as they were", vt_recover_method_name(method));
    size_t n = method == VT_RECOVER_LORA ? 0 : 1;
    assert_true(r.trained_params > n && r.adam_bytes == 2 * r.trained_params * sizeof(float));
    /* lora moves the norm gains (the last layer's ffn_norm, the final norm) only with norms */
    const float *ffn = f.student.layers[f.c.n_layers - 1].ffn_norm, *fin = f.student.final_norm;
    int gains_moved = ffn[0] != before[ffn - f.student.arena] && fin[1] != before[fin + 1 - f.student.arena];
    if (method == VT_RECOVER_LORA) assert_int_equal(gains_moved, norms);
    if (norms) assert_true(r.trained_params > (size_t)(2 * f.c.n_layers + 1) * f.c.dim);
    free(before);
    teardown(&f);
}

static void test_lora_lowers_loss(void **st) {
    (void)st;
    check_lowers_loss(VT_RECOVER_LORA, 1e-2, 0);
}

/* recover.norms: the RMSNorm gains train next to the adapters (their own Adam moments). */
static void test_lora_norms_lowers_loss(void **st) {
    (void)st;
    check_lowers_loss(VT_RECOVER_LORA, 1e-2, 1);
}

static void test_full_lowers_loss(void **st) {
    (void)st;
    check_lowers_loss(VT_RECOVER_FULL, 1e-3, 0);
}

static void test_none(void **st) {
    (void)st;
    fixture f;
    setup(&f);
    vt_recover_spec s = vt_recover_defaults();
    vt_recover_result r;
    float keep = f.student.arena[f.student.arena_floats - 1];
    assert_int_equal(vt_recover(&f.student, &f.teacher, &f.calib, &s, vt_comm_local(f.c.n_layers), NULL, NULL, &r), 0);
    assert_int_equal(r.steps, 0);
    assert_true(f.student.arena[f.student.arena_floats - 1] == keep);
    vt_recover_method m;
    assert_int_equal(vt_recover_method_parse("full", &m), 0);
    assert_int_equal(m, VT_RECOVER_FULL);
    assert_int_equal(vt_recover_method_parse("adapters", &m), -1);
    teardown(&f);
}

typedef struct {
    fixture f[2];
    vt_recover_spec s;
} replicas_arg;

static int run_replica(vt_comm *c, void *arg) {
    replicas_arg *a = arg;
    fixture *f = &a->f[c->replica];
    vt_recover_result r;
    return vt_recover(&f->student, &f->teacher, &f->calib, &a->s, c, NULL, NULL, &r);
}

static void test_replicas_equal_one_process(void **st) {
    (void)st;
    for (int m = VT_RECOVER_LORA; m <= VT_RECOVER_FULL; m++) {
        fixture one;
        setup(&one);
        replicas_arg a;
        setup(&a.f[0]);
        setup(&a.f[1]);
        a.s = vt_recover_defaults();
        a.s.method = (vt_recover_method)m;
        a.s.norms = 1; /* lora: the gains' gradients summed over the replicas too (full trains them anyway) */
        a.s.steps = 8;
        a.s.batch_size = 4;
        a.s.micro_batch = 2;
        vt_recover_result r;
        assert_int_equal(vt_recover(&one.student, &one.teacher, &one.calib, &a.s, vt_comm_local(one.c.n_layers), NULL, NULL,
                                    &r), 0);
        int begin[2] = {0, one.c.n_layers};
        fake_world *w = fake_world_create(1, 2, begin);
        assert_non_null(w);
        if (fake_world_run(w, run_replica, &a)) fail_msg("%s", vt_error());
        fake_world_free(w);
        double diff = 0, top = 0, moved = 0;
        for (size_t i = 0; i < one.student.arena_floats; i++) {
            diff = fmax(diff, fabs(one.student.arena[i] - a.f[0].student.arena[i]));
            diff = fmax(diff, fabs(a.f[1].student.arena[i] - a.f[0].student.arena[i]));
            top = fmax(top, fabs(one.student.arena[i]));
            moved = fmax(moved, fabs(one.student.arena[i] - one.teacher.arena[i]));
        }
        if (diff > 1e-4 * top)
            fail_msg("%s: 2 replicas differ from one process by %.3g (largest weight %.3g)",
                     vt_recover_method_name(a.s.method), diff, top);
        assert_true(moved > 0);
        teardown(&one);
        teardown(&a.f[0]);
        teardown(&a.f[1]);
    }
}

/* The part of w a stage holds: layers [l0, l1), the embedding on the first, the final norm and
 * classifier on the last; vt_model_alloc puts the layers last, in order, in both. */
static void part_of(const vt_model *w, int l0, int l1, int first, int last, vt_model *p) {
    assert_int_equal(vt_model_alloc(p, &w->cfg, (vt_load_parts){l0, l1, first, last}), 0);
    size_t d = (size_t)w->cfg.dim, V = (size_t)w->cfg.vocab, ws, ps, skip = 0;
    if (first) memcpy(p->embed, w->embed, V * d * sizeof(float));
    if (last) memcpy(p->final_norm, w->final_norm, d * sizeof(float));
    if (last && p->lm_head != p->embed) memcpy(p->lm_head, w->lm_head, V * d * sizeof(float));
    size_t n = vt_layer_region(p, &ps);
    vt_layer_region(w, &ws);
    for (int l = 0; l < l0; l++) skip += vt_layer_params(&w->cfg, l);
    memcpy(p->arena + ps, w->arena + ws + skip, n * sizeof(float));
}

typedef struct {
    fixture f;
    vt_model te[4], st[4]; /* world rank r's parts */
    vt_recover_spec s;
} stages_arg;

static int run_stage(vt_comm *c, void *arg) {
    stages_arg *a = arg;
    vt_recover_result r;
    int w = c->world_rank;
    return vt_recover(&a->st[w], &a->te[w], &a->f.calib, &a->s, c, NULL, NULL, &r);
}

/* Largest difference of the stage parts' layers (and the last stage's final norm) from whole's. */
static double parts_diff(const stages_arg *a, int S, int R, const int *begin, const vt_model *whole) {
    size_t ws, ps;
    vt_layer_region(whole, &ws);
    double diff = 0;
    for (int r = 0; r < S * R; r++) {
        const vt_model *p = &a->st[r];
        size_t n = vt_layer_region(p, &ps), skip = 0;
        for (int l = 0; l < begin[r % S]; l++) skip += vt_layer_params(&whole->cfg, l);
        for (size_t i = 0; i < n; i++) diff = fmax(diff, fabs(p->arena[ps + i] - whole->arena[ws + skip + i]));
        for (int i = 0; p->has_head && i < whole->cfg.dim; i++)
            diff = fmax(diff, fabs(p->final_norm[i] - whole->final_norm[i]));
    }
    return diff;
}

/* 2 stages x 2 replicas (and 2 x 1) train what one process trains, lora with the norm gains (and
 * full on 2 x 2): each stage its layers, hidden states and their gradients through the stages; sends wait
 * for their receives (MPI's rendezvous), so an order that needs buffering would fail. */
static void test_stages_equal_one_process(void **st) {
    (void)st;
    const struct {
        vt_recover_method m;
        int R;
    } cases[] = {{VT_RECOVER_LORA, 1}, {VT_RECOVER_LORA, 2}, {VT_RECOVER_FULL, 2}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int R = cases[k].R;
        fixture one;
        setup(&one);
        stages_arg *a = calloc(1, sizeof *a);
        setup(&a->f);
        a->s = vt_recover_defaults();
        a->s.method = cases[k].m;
        a->s.norms = 1;
        a->s.steps = 4;
        a->s.batch_size = 4;
        a->s.micro_batch = 1;
        vt_recover_result r;
        assert_int_equal(vt_recover(&one.student, &one.teacher, &one.calib, &a->s, vt_comm_local(one.c.n_layers),
                                    NULL, NULL, &r), 0);
        int L = one.c.n_layers, begin[3] = {0, L / 2, L};
        for (int w = 0; w < 2 * R; w++) {
            part_of(&a->f.teacher, begin[w % 2], begin[w % 2 + 1], w % 2 == 0, w % 2 == 1, &a->te[w]);
            part_of(&a->f.student, begin[w % 2], begin[w % 2 + 1], w % 2 == 0, w % 2 == 1, &a->st[w]);
        }
        fake_world *fw = fake_world_create(2, R, begin);
        assert_non_null(fw);
        fake_world_set_sync(fw, 1);
        if (fake_world_run(fw, run_stage, a)) fail_msg("%s", vt_error());
        fake_world_free(fw);
        double top = 0;
        for (size_t i = 0; i < one.student.arena_floats; i++) top = fmax(top, fabs(one.student.arena[i]));
        double diff = parts_diff(a, 2, R, begin, &one.student), moved = 0;
        for (size_t i = 0; i < one.student.arena_floats; i++)
            moved = fmax(moved, fabs(one.student.arena[i] - a->f.student.arena[i]));
        assert_true(moved > 1e-3 * top); /* the recovery moved the weights: the comparison says something */
        if (diff > 1e-4 * top)
            fail_msg("%s: 2 stages x %d differ from one process by %.3g (largest weight %.3g)",
                     vt_recover_method_name(a->s.method), R, diff, top);
        for (int w = 0; w < 2 * R; w++) vt_model_free(&a->te[w]), vt_model_free(&a->st[w]);
        teardown(&a->f);
        free(a);
        teardown(&one);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lora_lowers_loss),
        cmocka_unit_test(test_lora_norms_lowers_loss),
        cmocka_unit_test(test_full_lowers_loss),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_replicas_equal_one_process),
        cmocka_unit_test(test_stages_equal_one_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
