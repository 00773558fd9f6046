/* test_vocab_split.c — the classifier and losses split by vocabulary over S > 1 pipeline stages,
 * and the vt_comm calls they rely on, in one process: ranks are threads of a fake communicator
 * (fake_comm.c). (a) every fake collective and message against its definition, and the fake's
 * own refusals; (b) head_loss.c's teacher and student sides split over 2 and 3 stages (and two
 * replicas) against the same on one stage; (c) VTrans training steps (loss terms, gate and weight
 * gradients) and whole runs (per-step records, pruned weights) on 2 and 3 stages and on 2 stages
 * x 2 replicas against one process. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prune/budget.h"
#include "data/calib.h"
#include "util/error.h"
#include "fake_comm.h"
#include "train/head_loss.h"
#include "dist/partition.h"
#include "testutil.h"
#include "train/train_step.h"
#include "train/trainer.h"
#include "train/vib_train.h"
#include "util/rng.h"

/* cmocka's assertions jump out of the calling thread: inside a rank a failed check ends the rank's
 * function with a message instead, and fake_world_run reports it. */
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) return vt_fail(__VA_ARGS__);                                                                      \
    } while (0)

enum { MAXP = 8 };

/* A value in [-1, 1) that depends only on its arguments. */
static double val(int rank, int i, int salt) {
    uint64_t z = ((uint64_t)(rank + 1) << 40) ^ ((uint64_t)(i + 1) << 16) ^ (uint64_t)salt;
    z = vt_mix64(z);
    return (double)(z >> 11) * 0x1p-52 - 1.0;
}

static fake_world *new_world(int S, int R, const int *begin) {
    int b[MAXP + 1];
    for (int s = 0; s <= S; s++) b[s] = s;
    fake_world *w = fake_world_create(S, R, begin ? begin : b);
    if (!w) fail_msg("%s", vt_error());
    return w;
}

static void run_world(fake_world *w, int (*fn)(vt_comm *, void *), void *arg) {
    if (fake_world_run(w, fn, arg)) fail_msg("%s", vt_error());
}

/* Largest |a - b| over n values, and the largest |b|. */
static double max_diff_f(const float *a, const float *b, size_t n, double *scale) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
        if (isnan(a[i]) != isnan(b[i])) d = INFINITY;
    }
    if (scale) *scale = m;
    return d;
}

/* ---------------------------------------------------------------- (a) the fake collectives */

enum { NW = 7, ND = 5, NB = 13, NP = 6 };

typedef struct {
    double world[MAXP][NW], psum[MAXP][NP], pmax[MAXP][NP];
    float dp[MAXP][ND];
} coll_out;

static int collectives_rank(vt_comm *c, void *arg) {
    coll_out *o = arg;
    int S = c->stages, R = c->replicas, P = S * R, me = c->world_rank, s = c->stage, r = c->replica;
    CHECK(me == r * S + s, "rank %d is stage %d of replica %d", me, s, r);
    /* sum_world: every rank's values summed */
    double *x = o->world[me];
    for (int i = 0; i < NW; i++) x[i] = val(me, i, 1);
    CHECK(vt_comm_sum_world(c, x, NW) == 0, "%s", vt_error());
    for (int i = 0; i < NW; i++) {
        double want = 0;
        for (int q = 0; q < P; q++) want += val(q, i, 1);
        CHECK(fabs(x[i] - want) <= 1e-12, "rank %d: sum_world[%d] = %.17g, want %.17g", me, i, x[i], want);
    }
    /* sum_dp: summed over the replicas of this stage only */
    float *y = o->dp[me];
    for (int i = 0; i < ND; i++) y[i] = (float)val(me, i, 2);
    CHECK(vt_comm_sum_dp(c, y, ND) == 0, "%s", vt_error());
    for (int i = 0; i < ND; i++) {
        double want = 0;
        for (int q = 0; q < R; q++) want += (float)val(q * S + s, i, 2);
        CHECK(fabs(y[i] - want) <= 1e-6, "rank %d: sum_dp[%d] = %.9g, want %.9g", me, i, y[i], want);
    }
    /* bcast: world rank 0's bytes on every rank */
    unsigned char b[NB];
    for (int i = 0; i < NB; i++) b[i] = me == 0 ? (unsigned char)(17 * i + 3) : 0xEE;
    CHECK(vt_comm_bcast(c, b, NB) == 0, "%s", vt_error());
    for (int i = 0; i < NB; i++) CHECK(b[i] == (unsigned char)(17 * i + 3), "rank %d: bcast byte %d = %d", me, i, b[i]);
    /* pipe_bcast from every root: the root stage's floats on every stage of this replica */
    for (int root = 0; root < S; root++) {
        float z[NP];
        for (int i = 0; i < NP; i++) z[i] = (float)val(me, i, 10 + root);
        CHECK(vt_comm_pipe_bcast(c, z, NP, root) == 0, "%s", vt_error());
        for (int i = 0; i < NP; i++)
            CHECK(z[i] == (float)val(r * S + root, i, 10 + root),
                  "rank %d: pipe_bcast from stage %d: [%d] = %g, want %g", me, root, i, z[i],
                  (float)val(r * S + root, i, 10 + root));
    }
    /* pipe_reduce onto every root: the root gets the sum over this replica's stages, others keep theirs */
    for (int root = 0; root < S; root++) {
        float z[NP];
        for (int i = 0; i < NP; i++) z[i] = (float)val(me, i, 20 + root);
        CHECK(vt_comm_pipe_reduce(c, z, NP, root) == 0, "%s", vt_error());
        for (int i = 0; i < NP; i++) {
            double want = 0;
            for (int t = 0; t < S; t++) want += (float)val(r * S + t, i, 20 + root);
            if (s == root)
                CHECK(fabs(z[i] - want) <= 1e-6, "rank %d: pipe_reduce onto %d: [%d] = %.9g, want %.9g", me, root, i,
                      z[i], want);
            else
                CHECK(z[i] == (float)val(me, i, 20 + root), "rank %d: pipe_reduce onto %d changed [%d] of a non-root",
                      me, root, i);
        }
    }
    /* pipe_allreduce: sum and maximum over this replica's stages (the values for the maximum are
     * all negative: a maximum that starts from 0 would show) */
    double *u = o->psum[me], *v = o->pmax[me];
    for (int i = 0; i < NP; i++) {
        u[i] = val(me, i, 30);
        v[i] = val(me, i, 31) - 2.0;
    }
    CHECK(vt_comm_pipe_allreduce(c, u, NP, 0) == 0 && vt_comm_pipe_allreduce(c, v, NP, 1) == 0, "%s", vt_error());
    for (int i = 0; i < NP; i++) {
        double sum = 0, mx = -INFINITY;
        for (int t = 0; t < S; t++) {
            sum += val(r * S + t, i, 30);
            mx = fmax(mx, val(r * S + t, i, 31) - 2.0);
        }
        CHECK(fabs(u[i] - sum) <= 1e-12, "rank %d: pipe_allreduce sum [%d] = %.17g, want %.17g", me, i, u[i], sum);
        CHECK(v[i] == mx, "rank %d: pipe_allreduce max [%d] = %.17g, want %.17g", me, i, v[i], mx);
    }
    /* pipe_send / pipe_recv: three messages (one empty) to every other stage of the replica, taken
     * in the reverse order of their tags */
    for (int t = 0; t < S; t++) {
        if (t == s) continue;
        float m1[3], m2[4];
        for (int i = 0; i < 3; i++) m1[i] = (float)val(me, i, 100 + t);
        for (int i = 0; i < 4; i++) m2[i] = (float)val(me, i, 200 + t);
        CHECK(vt_comm_send(c, m1, 3, t, 1) == 0 && vt_comm_send(c, m2, 4, t, 2) == 0 &&
                  vt_comm_send(c, NULL, 0, t, 32767) == 0,
              "%s", vt_error());
    }
    for (int t = 0; t < S; t++) {
        if (t == s) continue;
        float m1[3], m2[4];
        int from = r * S + t;
        CHECK(vt_comm_recv(c, NULL, 0, t, 32767) == 0 && vt_comm_recv(c, m2, 4, t, 2) == 0 &&
                  vt_comm_recv(c, m1, 3, t, 1) == 0,
              "%s", vt_error());
        for (int i = 0; i < 3; i++)
            CHECK(m1[i] == (float)val(from, i, 100 + s), "rank %d: message tag 1 from stage %d: [%d] = %g", me, t, i,
                  m1[i]);
        for (int i = 0; i < 4; i++)
            CHECK(m2[i] == (float)val(from, i, 200 + s), "rank %d: message tag 2 from stage %d: [%d] = %g", me, t, i,
                  m2[i]);
    }
    /* vt_comm_agree: 0 when every rank passes 0, -1 everywhere when one rank fails */
    CHECK(vt_comm_agree(c, 0) == 0, "rank %d: agree on success failed: %s", me, vt_error());
    int status = me == P - 1 ? vt_fail("rank %d fails on purpose", me) : 0;
    CHECK(vt_comm_agree(c, status) == -1, "rank %d: agree missed rank %d's failure", me, P - 1);
    if (me != P - 1) CHECK(strstr(vt_error(), "another rank failed"), "rank %d: agree says '%s'", me, vt_error());
    return 0;
}

static void test_fake_collectives_match_definitions(void **st) {
    (void)st;
    const int layouts[][2] = {{2, 1}, {3, 1}, {1, 2}, {1, 3}, {2, 2}}; /* stages, replicas */
    for (size_t k = 0; k < sizeof layouts / sizeof *layouts; k++) {
        int S = layouts[k][0], R = layouts[k][1];
        fake_world *w = new_world(S, R, NULL);
        coll_out o;
        memset(&o, 0, sizeof o);
        run_world(w, collectives_rank, &o);
        /* every rank holds the bitwise same sums: every rank then takes the same optimizer step */
        for (int q = 1; q < S * R; q++) assert_memory_equal(o.world[q], o.world[0], sizeof o.world[0]);
        for (int q = 0; q < S * R; q++) {
            int first = q - q % S, stage0 = q % S; /* stage 0 of q's replica; q's stage in replica 0 */
            assert_memory_equal(o.psum[q], o.psum[first], sizeof o.psum[0]);
            assert_memory_equal(o.pmax[q], o.pmax[first], sizeof o.pmax[0]);
            assert_memory_equal(o.dp[q], o.dp[stage0], sizeof o.dp[0]);
        }
        fake_world_free(w);
    }
}

/* ---------------------------------------------------------------- the fake's own refusals */

static int mismatched_count(vt_comm *c, void *arg) {
    (void)arg;
    double x[4] = {0};
    return vt_comm_pipe_allreduce(c, x, c->stage ? 4 : 3, 0);
}

static int mismatched_op(vt_comm *c, void *arg) {
    (void)arg;
    float x[2] = {0};
    return c->stage ? vt_comm_pipe_reduce(c, x, 2, 0) : vt_comm_pipe_bcast(c, x, 2, 0);
}

static int mismatched_root(vt_comm *c, void *arg) {
    (void)arg;
    float x[2] = {0};
    return vt_comm_pipe_reduce(c, x, 2, c->stage);
}

static int returns_early(vt_comm *c, void *arg) {
    (void)arg;
    double x = 1;
    return c->world_rank ? 0 : vt_comm_sum_world(c, &x, 1);
}

static int never_received(vt_comm *c, void *arg) {
    (void)arg;
    float x = 1;
    return c->stage ? 0 : vt_comm_send(c, &x, 1, 1, 5);
}

static int never_sent(vt_comm *c, void *arg) {
    (void)arg;
    float x = 1;
    return c->stage ? vt_comm_recv(c, &x, 1, 0, 5) : 0;
}

static int wrong_count(vt_comm *c, void *arg) {
    (void)arg;
    float x[2] = {1, 2};
    return c->stage ? vt_comm_recv(c, x, 1, 0, 5) : vt_comm_send(c, x, 2, 1, 5);
}

static int to_itself(vt_comm *c, void *arg) {
    (void)arg;
    float x = 0;
    return vt_comm_send(c, &x, 1, c->stage, 0);
}

static int bad_tag(vt_comm *c, void *arg) {
    (void)arg;
    float x = 0;
    return c->stage ? vt_comm_recv(c, &x, 1, 0, 40000) : vt_comm_send(c, &x, 1, 1, 40000);
}

/* Both stages send before they receive: needs buffered sends. */
static int exchange(vt_comm *c, void *arg) {
    (void)arg;
    float a[4], b[4];
    int other = 1 - c->stage;
    for (int i = 0; i < 4; i++) a[i] = (float)(10 * c->stage + i);
    if (vt_comm_send(c, a, 4, other, 0) || vt_comm_recv(c, b, 4, other, 0)) return -1;
    for (int i = 0; i < 4; i++) CHECK(b[i] == (float)(10 * other + i), "exchange: [%d] = %g", i, b[i]);
    return 0;
}

static int aborts(vt_comm *c, void *arg) {
    (void)arg;
    double x = 0;
    if (c->stage == 1) {
        vt_fail("stage 1 gives up");
        vt_comm_abort_all(c, "test");
        return -1;
    }
    return vt_comm_sum_world(c, &x, 1);
}

static void expect_refusal(int (*fn)(vt_comm *, void *), int sync, const char *needle) {
    fake_world *w = new_world(2, 1, NULL);
    fake_world_set_sync(w, sync);
    fake_world_set_timeout(w, 0.5);
    if (fake_world_run(w, fn, NULL) == 0) fail_msg("the fake world accepted what should fail with '%s'", needle);
    if (!strstr(vt_error(), needle))
        fail_msg("the fake world says '%s', which does not mention '%s'", vt_error(), needle);
    fake_world_free(w);
}

static void test_fake_refuses_misuse(void **st) {
    (void)st;
    expect_refusal(mismatched_count, 0, "mismatched collective");
    expect_refusal(mismatched_op, 0, "mismatched collective");
    expect_refusal(mismatched_root, 0, "mismatched collective");
    expect_refusal(returns_early, 0, "rank 1 returned while rank 0 waits");
    expect_refusal(never_received, 0, "never received");
    expect_refusal(never_sent, 0, "returned without sending");
    expect_refusal(wrong_count, 0, "which sent 2");
    expect_refusal(to_itself, 0, "not another stage");
    expect_refusal(bad_tag, 0, "tag 40000");
    expect_refusal(aborts, 0, "stage 1 gives up");
    expect_refusal(exchange, 1, "deadlock"); /* rendezvous sends: both wait for the other's receive */
    fake_world *w = new_world(2, 1, NULL);   /* buffered sends: the same exchange goes through */
    run_world(w, exchange, NULL);
    fake_world_free(w);
}

/* ---------------------------------------------------------------- (b) the split classifier and losses */

enum { HR = 6, HD = 12, HDS = 7, HV = 37 };

/* Teacher classifier w [V, HD] and inputs xt; a student keeping dims cols of HD, its classifier
 * ws [V, HDS] (w's columns cols) and inputs xs; targets (some unscored). */
typedef struct {
    int V;
    float tau;
    double kd, ce;
    float w[HV * HD], ws[HV * HDS], xt[HR * HD], xs[HR * HDS];
    int64_t cols[HDS];
    int32_t tgt[HR];
} head_problem;

typedef struct {
    float e[HR * HD], dxn[HR * HDS];
    double neg[HR], loss[2];
} head_result;

static void head_make(head_problem *p, int V, double ce, int scored, unsigned seed) {
    memset(p, 0, sizeof *p);
    p->V = V;
    p->tau = 2.0f;
    p->kd = 0.75;
    p->ce = ce;
    for (int i = 0; i < V * HD; i++) p->w[i] = (float)val((int)seed, i, 1) * 1.5f;
    for (int i = 0; i < HR * HD; i++) p->xt[i] = (float)val((int)seed, i, 2) * 2.5f;
    for (int i = 0; i < HR * HDS; i++) p->xs[i] = (float)val((int)seed, i, 3) * 2.5f;
    const int64_t cols[HDS] = {0, 2, 3, 5, 8, 10, 11};
    memcpy(p->cols, cols, sizeof cols);
    for (int j = 0; j < V; j++)
        for (int i = 0; i < HDS; i++) p->ws[j * HDS + i] = p->w[j * HD + cols[i]];
    for (int r = 0; r < HR; r++) p->tgt[r] = !scored || r == 2 ? -1 : (int32_t)((r * 7 + (int)seed) % V);
}

/* This stage's share of the problem through head_loss.c; the losses start at {0.5, 0.25} (the
 * student adds its terms to them on the root). */
static int head_compute(vt_comm *c, const head_problem *p, int root, head_result *out) {
    int v0, vs;
    vt_vocab_share(p->V, c->stages, c->stage, &v0, &vs);
    vt_head_part h;
    if (vt_head_part_init(&h, v0, vs, HD, HR)) return -1;
    h.w = p->w + (size_t)v0 * HD;
    int rc = vt_head_teacher(c, &h, p->xt, HR, p->tau, root, out->e, out->neg);
    if (rc == 0) {
        h.w = p->ws + (size_t)v0 * HDS;
        h.d = HDS;
        out->loss[0] = 0.5;
        out->loss[1] = 0.25;
        rc = vt_head_student(c, &h, p->xs, HR, p->tau, p->kd, p->tgt, p->ce, root, out->e, p->cols, HD, out->neg,
                             out->dxn, out->loss);
    }
    vt_head_part_free(&h);
    return rc;
}

typedef struct {
    const head_problem *prob; /* one per replica */
    int root;
    head_result res[MAXP];
} head_run;

static int head_rank(vt_comm *c, void *arg) {
    head_run *hr = arg;
    return head_compute(c, &hr->prob[c->replica], hr->root, &hr->res[c->world_rank]);
}

/* Compares a stage's results with the one-stage reference: the entropies everywhere; on the
 * root the expectations, the gradient and the losses; elsewhere the losses untouched. */
static void head_compare(const head_result *got, const head_result *ref, int is_root, const char *what) {
    for (int r = 0; r < HR; r++)
        if (fabs(got->neg[r] - ref->neg[r]) > 1e-5 * fmax(1.0, fabs(ref->neg[r])))
            fail_msg("%s: negent[%d] = %.9g, one stage %.9g", what, r, got->neg[r], ref->neg[r]);
    if (!is_root) {
        if (got->loss[0] != 0.5 || got->loss[1] != 0.25)
            fail_msg("%s: a stage other than the root changed its losses to %g, %g", what, got->loss[0], got->loss[1]);
        return;
    }
    double scale, d = max_diff_f(got->e, ref->e, HR * HD, &scale);
    if (d > 1e-5 * fmax(1.0, scale)) fail_msg("%s: teacher expectations differ by %g (largest %g)", what, d, scale);
    d = max_diff_f(got->dxn, ref->dxn, HR * HDS, &scale);
    if (d > 1e-5 * fmax(1.0, scale))
        fail_msg("%s: gradient at the classifier input differs by %g (largest %g)", what, d, scale);
    for (int k = 0; k < 2; k++)
        if (fabs(got->loss[k] - ref->loss[k]) > 1e-5 * fmax(1.0, fabs(ref->loss[k])))
            fail_msg("%s: loss[%d] = %.9g, one stage %.9g", what, k, got->loss[k], ref->loss[k]);
}

static void test_head_split_matches_one_stage(void **st) {
    (void)st;
    /* stages, replicas, vocabulary (2 over 3 stages leaves one stage an empty share) */
    const int layouts[][3] = {{2, 1, HV}, {3, 1, HV}, {2, 2, HV}, {3, 1, 2}};
    for (size_t k = 0; k < sizeof layouts / sizeof *layouts; k++) {
        int S = layouts[k][0], R = layouts[k][1], V = layouts[k][2];
        for (int variant = 0; variant < 3; variant++) { /* KL only; KL + CE; CE weight but nothing scored */
            head_problem prob[2];
            head_result ref[2];
            for (int r = 0; r < R; r++) {
                head_make(&prob[r], V, variant ? 0.3 : 0.0, variant != 2, 7u + 5u * (unsigned)r + (unsigned)variant);
                if (head_compute(vt_comm_local(1), &prob[r], 0, &ref[r])) fail_msg("%s", vt_error());
            }
            for (int root = 0; root < S; root += S - 1) {
                fake_world *w = new_world(S, R, NULL);
                head_run hr = {.prob = prob, .root = root};
                run_world(w, head_rank, &hr);
                for (int q = 0; q < S * R; q++) {
                    char what[160];
                    snprintf(what, sizeof what,
                             "%d stages x %d replicas, V %d, variant %d, root %d: stage %d of replica %d", S, R, V,
                             variant, root, q % S, q / S);
                    head_compare(&hr.res[q], &ref[q / S], q % S == root, what);
                }
                fake_world_free(w);
            }
        }
    }
}

/* ---------------------------------------------------------------- (c) VTrans training */

enum { TSEQ = 16, NSEQ = 48 };

typedef struct {
    vt_config c;
    vt_model full;
    int32_t *stream;
    vt_calib calib;
} train_fixture;

/* The small test model with 3 layers, so that it splits into 3 stages. */
static void train_setup(train_fixture *f) {
    tu_small_config(&f->c);
    vt_config_free(&f->c);
    f->c.n_layers = 3;
    vt_config_init_dense(&f->c);
    tu_random_model(&f->full, &f->c, 43);
    size_t n = (size_t)NSEQ * TSEQ;
    f->stream = malloc(sizeof(int32_t) * n);
    unsigned s = 9;
    for (size_t i = 0; i < n; i++)
        f->stream[i] = (int32_t)((vt_lcg32(&s) >> 8) % (unsigned)f->c.vocab);
    assert_int_equal(vt_calib_init(&f->calib, f->stream, n, 1.0, TSEQ, 0), 0);
}

static void train_teardown(train_fixture *f) {
    free(f->stream);
    vt_model_free(&f->full);
    vt_config_free(&f->c);
}

/* Layer l's weights, which vt_model_alloc lays out back to back (NULL for an empty layer). */
static float *layer_block(const vt_model *m, int l) {
    return m->layers[l].attn_norm ? m->layers[l].attn_norm : m->layers[l].ffn_norm;
}

/* What stage s of S holds of the model m: its layers, the embedding on the first stage, the
 * final norm and classifier on the last, as a rank loads them. */
static void part_of(const vt_model *m, const int *begin, int s, int S, vt_model *out) {
    vt_load_parts parts = {begin[s], begin[s + 1], s == 0, s == S - 1};
    assert_int_equal(vt_model_alloc(out, &m->cfg, parts), 0);
    size_t vd = (size_t)m->cfg.vocab * m->cfg.dim;
    if (parts.embed) memcpy(out->embed, m->embed, sizeof(float) * vd);
    if (parts.head) {
        memcpy(out->final_norm, m->final_norm, sizeof(float) * m->cfg.dim);
        if (out->lm_head != out->embed) memcpy(out->lm_head, m->lm_head, sizeof(float) * vd);
    }
    for (int l = begin[s]; l < begin[s + 1]; l++)
        if (vt_layer_params(&m->cfg, l))
            memcpy(layer_block(out, l), layer_block(m, l), sizeof(float) * vt_layer_params(&m->cfg, l));
}

static vt_vib_params train_params(void) {
    vt_vib_params p = tu_vib_params();
    p.vib.ce_weight = 0.5;
    p.vib.mse_weight = 0.5;
    p.schedule.steps = 6;
    p.pipeline.micro_batches = 2;
    p.schedule.lr_mask = 0.5;
    return p;
}

/* --- one training step, through the trainer's own step function (trainer.h) */

enum { NSTEP = 2 };

typedef struct {
    double kd[NSTEP], ce[NSTEP], mse[NSTEP];
    float *g; /* [NSTEP][2 n]: gate gradients (mu, then logvar) after each step */
    size_t n;
    vt_model dw; /* weight gradients of this rank's part after the last step */
} step_out;

typedef struct {
    const vt_vib_params *p;
    const vt_calib *calib;
    const vt_model *parts; /* one per stage */
    step_out out[MAXP];
} step_run;

/* The trainer as vt_vib_prune_part sets it up, with weight gradients, and gates moved away from
 * their initial values (the same on every rank) so that the noise and the gates matter. */
static int trainer_open(trainer *t, const vt_model *part, const vt_calib *cal, const vt_vib_params *p, vt_comm *c) {
    if (vt_trainer_init(t, part, cal, p, c) || vt_trainer_alloc(t)) return -1;
    vt_masks *mk = &t->st.mk;
    for (size_t i = 0; i < mk->n; i++) {
        mk->mu[i] += 0.3f * (float)val(0, (int)i, 7);
        mk->logvar[i] = -3.0f + (float)val(0, (int)i, 8);
    }
    vt_load_parts parts = {part->layer_begin, part->layer_end, part->has_embed, part->has_head};
    if (vt_model_alloc(&t->opt.dw, &part->cfg, parts)) return -1;
    t->opt.train_weights = 1;
    return vt_trainer_cache_teacher(t);
}

static int step_rank(vt_comm *c, void *arg) {
    step_run *sr = arg;
    step_out *o = &sr->out[c->world_rank];
    trainer t;
    int rc = trainer_open(&t, &sr->parts[c->stage], sr->calib, sr->p, c);
    const vt_masks *mk = &t.st.mk;
    o->n = mk->n;
    o->g = rc ? NULL : vt_malloc(sizeof(float) * 2 * NSTEP * mk->n, "gradients");
    if (!o->g) rc = -1;
    for (int k = 0; rc == 0 && k < NSTEP; k++) {
        vt_train_record rec;
        memset(&rec, 0, sizeof rec);
        rc = vt_trainer_step(&t, k, 0, &rec);
        o->kd[k] = rec.kd;
        o->ce[k] = rec.ce;
        o->mse[k] = rec.mse;
        memcpy(o->g + (size_t)2 * k * mk->n, mk->g_mu, sizeof(float) * mk->n);
        memcpy(o->g + (size_t)(2 * k + 1) * mk->n, mk->g_logvar, sizeof(float) * mk->n);
    }
    if (rc == 0) { /* keep the weight gradients */
        o->dw = t.opt.dw;
        memset(&t.opt.dw, 0, sizeof t.opt.dw);
        t.opt.train_weights = 0;
    }
    vt_trainer_free(&t);
    return rc;
}

static void step_out_free(step_out *o) {
    free(o->g);
    if (o->dw.arena) vt_model_free(&o->dw);
    memset(o, 0, sizeof *o);
}

/* Runs the steps on S stages x R replicas (p's micro-batches and chunks); the reference is S = R = 1. */
static void run_steps(train_fixture *f, const vt_vib_params *p, int S, int R, step_run *sr, vt_model *parts,
                      int *begin) {
    assert_int_equal(vt_partition_layers(&f->c, S, VT_PARTITION_TRAIN, begin), 0);
    for (int s = 0; s < S; s++) part_of(&f->full, begin, s, S, &parts[s]);
    memset(sr, 0, sizeof *sr);
    sr->p = p;
    sr->calib = &f->calib;
    sr->parts = parts;
    fake_world *w = new_world(S, R, begin);
    fake_world_set_sync(w, 1); /* no reliance on buffered sends */
    run_world(w, step_rank, sr);
    fake_world_free(w);
}

static void rel_check(double got, double want, double tol, const char *what, int k) {
    if (fabs(got - want) > tol * fmax(1.0, fabs(want)))
        fail_msg("%s at step %d: %.9g, one process %.9g", what, k, got, want);
}

static void test_train_step_split_matches_one_process(void **st) {
    (void)st;
    train_fixture f;
    train_setup(&f);
    vt_vib_params p = train_params();
    step_run *ref = calloc(1, sizeof *ref), *sr = calloc(1, sizeof *sr);
    vt_model ref_part[1], parts[MAXP];
    int ref_begin[2], begin[MAXP + 1];
    run_steps(&f, &p, 1, 1, ref, ref_part, ref_begin);
    const step_out *o1 = &ref->out[0];
    for (int k = 0; k < NSTEP; k++) assert_true(o1->kd[k] > 0 && o1->ce[k] > 0 && o1->mse[k] > 0);
    /* stages x replicas, micro-batches per replica, chunks per sequence (one sequence per
     * micro-batch: the batch of 4 over R replicas) */
    const int layouts[][4] = {{2, 1, 2, 1}, {3, 1, 2, 1}, {2, 2, 2, 1}, {2, 1, 4, 4}, {3, 1, 4, 2}, {2, 2, 2, 8}};
    for (size_t li = 0; li < sizeof layouts / sizeof *layouts; li++) {
        int S = layouts[li][0], R = layouts[li][1];
        vt_vib_params pl = p;
        pl.pipeline.micro_batches = layouts[li][2];
        pl.pipeline.seq_chunks = layouts[li][3];
        run_steps(&f, &pl, S, R, sr, parts, begin);
        for (int q = 0; q < S * R; q++) {
            const step_out *o = &sr->out[q];
            char what[160];
            snprintf(what, sizeof what, "%d stages x %d replicas, %d micro-batches of %d chunks, rank %d", S, R,
                     pl.pipeline.micro_batches, pl.pipeline.seq_chunks, q);
            assert_int_equal(o->n, o1->n);
            for (int k = 0; k < NSTEP; k++) {
                char term[200];
                snprintf(term, sizeof term, "%s: distillation loss", what);
                rel_check(o->kd[k], o1->kd[k], 1e-5, term, k);
                snprintf(term, sizeof term, "%s: cross-entropy", what);
                rel_check(o->ce[k], o1->ce[k], 1e-5, term, k);
                snprintf(term, sizeof term, "%s: hidden-state MSE", what);
                rel_check(o->mse[k], o1->mse[k], 1e-5, term, k);
            }
            double scale, d = max_diff_f(o->g, o1->g, 2 * NSTEP * o->n, &scale);
            if (d > 1e-5 * scale)
                fail_msg("%s: gate gradients differ from one process by %g (largest %g)", what, d, scale);
            /* every rank holds the same gate gradients, bit for bit */
            assert_memory_equal(o->g, sr->out[0].g, sizeof(float) * 2 * NSTEP * o->n);
            /* this stage's weight gradients against the same layers' in one process */
            for (int l = begin[q % S]; l < begin[q % S + 1]; l++) {
                size_t nl = vt_layer_params(&f.c, l);
                d = max_diff_f(layer_block(&o->dw, l), layer_block(&o1->dw, l), nl, &scale);
                if (d > 1e-5 * scale)
                    fail_msg("%s: weight gradients of layer %d differ from one process by %g (largest %g)", what, l, d,
                             scale);
            }
        }
        for (int q = 0; q < S * R; q++) step_out_free(&sr->out[q]);
        for (int s = 0; s < S; s++) vt_model_free(&parts[s]);
    }
    step_out_free(&ref->out[0]);
    vt_model_free(&ref_part[0]);
    free(ref);
    free(sr);
    train_teardown(&f);
}

/* --- whole runs through vt_vib_prune_part */

typedef struct {
    const vt_vib_params *p;
    const vt_calib *calib;
    const vt_model *parts;
    vt_vib_result res[MAXP];
} prune_run;

static int prune_rank(vt_comm *c, void *arg) {
    prune_run *pr = arg;
    return vt_vib_prune_part(&pr->parts[c->stage], pr->calib, pr->p, c, &pr->res[c->world_rank]);
}

static void compare_tensor(const float *got, const float *want, size_t n, const char *what) {
    double scale, d = max_diff_f(got, want, n, &scale);
    if (d > 1e-5 * fmax(scale, 1e-3)) fail_msg("%s differs from one process by %g (largest %g)", what, d, scale);
}

static void test_vib_runs_split_match_one_process(void **st) {
    (void)st;
    train_fixture f;
    train_setup(&f);
    vt_vib_params p = train_params();
    p.vib.beta = 10; /* strong pressure: units go during the mask phase */
    p.schedule.lr_mask = 0.5;
    p.schedule.steps = 12;
    p.vib.prune_interval = 4;
    p.schedule.finetune_steps = 3;
    p.schedule.log_interval = 1;
    vt_vib_result ref;
    assert_int_equal(vt_vib_prune(&f.full, &f.calib, &p, &ref), 0);
    /* the run exercises what the split must follow: units removed during the mask phase and
     * hidden dims removed (the classifier rows of every stage lose columns), fine-tuning (weight
     * gradients summed over replicas, then clipped by their norm over all stages: a norm from one
     * stage's weights alone, or counted once per replica, fails this test) */
    assert_true(ref.removed_early > 0);
    assert_true(ref.pruned.cfg.dim < f.c.dim);
    assert_int_equal(ref.n_records, (size_t)(p.schedule.steps + p.schedule.finetune_steps));
    const int layouts[][2] = {{2, 1}, {3, 1}, {2, 2}};
    for (size_t li = 0; li < sizeof layouts / sizeof *layouts; li++) {
        int S = layouts[li][0], R = layouts[li][1], begin[MAXP + 1];
        vt_model parts[MAXP];
        assert_int_equal(vt_partition_layers(&f.c, S, VT_PARTITION_TRAIN, begin), 0);
        for (int s = 0; s < S; s++) part_of(&f.full, begin, s, S, &parts[s]);
        prune_run *pr = calloc(1, sizeof *pr);
        pr->p = &p;
        pr->calib = &f.calib;
        pr->parts = parts;
        fake_world *w = new_world(S, R, begin);
        fake_world_set_sync(w, 1);
        run_world(w, prune_rank, pr);
        fake_world_free(w);
        for (int q = 0; q < S * R; q++) {
            const vt_vib_result *r = &pr->res[q];
            const vt_model *m = &r->pruned;
            int s = q % S;
            char what[160];
            snprintf(what, sizeof what, "%d stages x %d replicas, rank %d", S, R, q);
            assert_int_equal(r->steps, ref.steps);
            assert_int_equal(r->removed_early, ref.removed_early);
            assert_int_equal(r->n_records, ref.n_records);
            for (size_t k = 0; k < r->n_records; k++) {
                const vt_train_record *a = &r->records[k], *b = &ref.records[k];
                const double got[] = {a->kd, a->ce, a->mse, a->kl, a->size, a->hard_size, a->lambda1, a->lambda2};
                const double want[] = {b->kd, b->ce, b->mse, b->kl, b->size, b->hard_size, b->lambda1, b->lambda2};
                static const char *const name[] = {"kd", "ce", "mse", "kl", "size", "hard size", "lambda1", "lambda2"};
                for (int i = 0; i < 8; i++) {
                    char term[200];
                    snprintf(term, sizeof term, "%s: %s", what, name[i]);
                    rel_check(got[i], want[i], 1e-5, term, (int)k);
                }
            }
            /* the same structure, and this stage's share of the pruned weights */
            assert_int_equal(m->cfg.dim, ref.pruned.cfg.dim);
            for (int l = 0; l < f.c.n_layers; l++) {
                assert_int_equal(m->cfg.layers[l].n_heads, ref.pruned.cfg.layers[l].n_heads);
                assert_int_equal(m->cfg.layers[l].n_kv_heads, ref.pruned.cfg.layers[l].n_kv_heads);
                assert_int_equal(m->cfg.layers[l].ffn, ref.pruned.cfg.layers[l].ffn);
            }
            assert_int_equal(m->layer_begin, begin[s]);
            assert_int_equal(m->layer_end, begin[s + 1]);
            char t[200];
            size_t vd = (size_t)m->cfg.vocab * m->cfg.dim;
            if (s == 0) {
                snprintf(t, sizeof t, "%s: embedding", what);
                compare_tensor(m->embed, ref.pruned.embed, vd, t);
            }
            if (s == S - 1) {
                snprintf(t, sizeof t, "%s: final norm", what);
                compare_tensor(m->final_norm, ref.pruned.final_norm, (size_t)m->cfg.dim, t);
                snprintf(t, sizeof t, "%s: classifier", what);
                compare_tensor(m->lm_head, ref.pruned.lm_head, vd, t);
            }
            for (int l = begin[s]; l < begin[s + 1]; l++) {
                snprintf(t, sizeof t, "%s: layer %d", what, l);
                size_t nl = vt_layer_params(&m->cfg, l);
                if (nl) compare_tensor(layer_block(m, l), layer_block(&ref.pruned, l), nl, t);
            }
        }
        for (int q = 0; q < S * R; q++) vt_vib_result_free(&pr->res[q]);
        for (int s = 0; s < S; s++) vt_model_free(&parts[s]);
        free(pr);
    }
    vt_vib_result_free(&ref);
    train_teardown(&f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fake_collectives_match_definitions),
        cmocka_unit_test(test_fake_refuses_misuse),
        cmocka_unit_test(test_head_split_matches_one_stage),
        cmocka_unit_test(test_train_step_split_matches_one_process),
        cmocka_unit_test(test_vib_runs_split_match_one_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
