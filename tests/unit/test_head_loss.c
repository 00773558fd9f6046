/* test_head_loss.c — the classifier losses with the teacher as cached expectations (head_loss.c)
 * against explicit teacher logits through vt_loss_distill / vt_loss_ce and a dense classifier
 * backward (both checked against PyTorch and finite differences elsewhere), a finite-difference
 * check of its own gradient, and the vocabulary split. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "train/head_loss.h"
#include "testutil.h"
#include "nn/loss.h"
#include "util/rng.h"

enum { R = 6, V = 37, D = 12, DS = 7 };

typedef struct {
    float w[V * D], ws[V * DS], xt[R * D], xs[R * DS];
    int64_t cols[DS];
    int32_t tgt[R];
} problem;

static void make(problem *p, unsigned seed) {
    for (int i = 0; i < V * D; i++) p->w[i] = (float)tu_urand(&seed) * 2;
    for (int i = 0; i < R * D; i++) p->xt[i] = (float)tu_urand(&seed) * 4;
    for (int i = 0; i < R * DS; i++) p->xs[i] = (float)tu_urand(&seed) * 4;
    const int64_t cols[DS] = {0, 2, 3, 5, 8, 10, 11}; /* the student keeps these teacher dims */
    memcpy(p->cols, cols, sizeof cols);
    for (int j = 0; j < V; j++)
        for (int i = 0; i < DS; i++) p->ws[j * DS + i] = p->w[j * D + cols[i]];
    for (int r = 0; r < R; r++) p->tgt[r] = r == 2 ? -1 : (int32_t)((r * 7 + 3) % V);
}

/* Loss of the student side for inputs xs, through head_loss.c. */
static double head_loss(problem *p, const float *xs, double ce, float *dxn) {
    vt_comm *c = vt_comm_local(1);
    vt_head_part h;
    float e[R * D];
    double neg[R], loss[2] = {0, 0};
    assert_int_equal(vt_head_part_init(&h, 0, V, D, R), 0);
    h.w = p->w;
    assert_int_equal(vt_head_teacher(c, &h, p->xt, R, 2.0f, 0, e, neg), 0);
    h.w = p->ws;
    h.d = DS;
    assert_int_equal(vt_head_student(c, &h, xs, R, 2.0f, 0.75, p->tgt, ce, 0, e, p->cols, D, neg, dxn, loss), 0);
    vt_head_part_free(&h);
    return loss[0] + loss[1];
}

static void test_matches_explicit_teacher_logits(void **st) {
    (void)st;
    problem p;
    make(&p, 7);
    for (int with_ce = 0; with_ce < 2; with_ce++) {
        double ce = with_ce ? 0.3 : 0.0;
        float dxn[R * DS], sl[R * V], tl[R * V], dl[R * V], ref[R * DS];
        double L = head_loss(&p, p.xs, ce, dxn);
        vt_linear(tl, p.xt, p.w, NULL, R, D, V, 0.0f);
        vt_linear(sl, p.xs, p.ws, NULL, R, DS, V, 0.0f);
        memset(dl, 0, sizeof dl);
        double Lr = vt_loss_distill(sl, tl, R, V, 2.0f, 0.75f, dl);
        if (ce > 0) Lr += vt_loss_ce(sl, p.tgt, R, V, (float)ce, dl);
        vt_linear_backward(ref, NULL, dl, NULL, p.ws, NULL, R, DS, V, 0.0f);
        if (fabs(L - Lr) > 1e-5 * fmax(1.0, fabs(Lr))) fail_msg("loss %.9g vs explicit logits %.9g", L, Lr);
        for (int i = 0; i < R * DS; i++)
            if (fabsf(dxn[i] - ref[i]) > 1e-5f * fmaxf(1.0f, fabsf(ref[i])))
                fail_msg("dxn[%d] = %g vs explicit logits %g (ce %g)", i, dxn[i], ref[i], ce);
    }
}

static void test_gradient_by_finite_differences(void **st) {
    (void)st;
    problem p;
    make(&p, 11);
    float dxn[R * DS], scratch[R * DS], x[R * DS];
    head_loss(&p, p.xs, 0.3, dxn);
    memcpy(x, p.xs, sizeof x);
    for (int i = 0; i < R * DS; i++) {
        float keep = x[i], h = 1e-2f;
        x[i] = keep + h;
        double up = head_loss(&p, x, 0.3, scratch);
        x[i] = keep - h;
        double down = head_loss(&p, x, 0.3, scratch);
        x[i] = keep;
        double fd = (up - down) / (2.0 * h);
        if (fabs(fd - dxn[i]) > 2e-3 * fmax(1.0, fabs(fd))) fail_msg("dxn[%d] = %g, finite difference %g", i, dxn[i], fd);
    }
}

static void test_identical_student_has_zero_kl(void **st) {
    (void)st;
    problem p;
    make(&p, 5);
    for (int i = 0; i < DS; i++) p.cols[i] = i; /* the student is the teacher itself */
    vt_comm *c = vt_comm_local(1);
    vt_head_part h;
    float e[R * D], dxn[R * D];
    double neg[R], loss[2] = {0, 0};
    assert_int_equal(vt_head_part_init(&h, 0, V, D, R), 0);
    h.w = p.w;
    assert_int_equal(vt_head_teacher(c, &h, p.xt, R, 2.0f, 0, e, neg), 0);
    int64_t all[D];
    for (int i = 0; i < D; i++) all[i] = i;
    assert_int_equal(vt_head_student(c, &h, p.xt, R, 2.0f, 1.0, p.tgt, 0.0, 0, e, all, D, neg, dxn, loss), 0);
    if (fabs(loss[0]) > 1e-5) fail_msg("KL of the teacher with itself %g", loss[0]);
    for (int i = 0; i < R * D; i++)
        if (fabsf(dxn[i]) > 1e-5f) fail_msg("gradient %g at %d", dxn[i], i);
    vt_head_part_free(&h);
}

static void test_vocab_shares_cover_the_vocabulary(void **st) {
    (void)st;
    for (int n = 1; n <= 7; n++) {
        int next = 0, lo = V, hi = 0;
        for (int s = 0; s < n; s++) {
            int v0, vs;
            vt_vocab_share(V, n, s, &v0, &vs);
            assert_int_equal(v0, next);
            next = v0 + vs;
            lo = vs < lo ? vs : lo;
            hi = vs > hi ? vs : hi;
        }
        assert_int_equal(next, V);
        assert_true(hi - lo <= 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_explicit_teacher_logits),
        cmocka_unit_test(test_gradient_by_finite_differences),
        cmocka_unit_test(test_identical_student_has_zero_kl),
        cmocka_unit_test(test_vocab_shares_cover_the_vocabulary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
