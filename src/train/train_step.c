/* train_step.c — one VTrans training step over micro-batches and pipeline stages in three phases
 * (every micro-batch forward through the layers; the classifier and losses of every micro-batch,
 * split by vocabulary over the stages; every micro-batch backward), then the sums over the world
 * and the terms of the gate parameters alone (see train_step.h). */
#include "train/train_step.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "prune/lagrangian.h"
#include "prune/size.h"
#include "util/clock.h"

/* The classifier and losses of micro-batch k on every stage (each its share of the vocabulary);
 * the last stage turns the gradient into dL/d(final hidden) and adds the MSE term. Losses are
 * scaled to means over the global batch and added to acc[0..2]. */
static int head_and_loss(trainer *t, int k, const int32_t *tgt, double *acc) {
    const vt_vib_params *p = t->p;
    const vt_train_geom *g = &t->g;
    vt_comm *cm = t->comm;
    vt_student *st = &t->st;
    const vt_model *s = st->model;
    int rows = g->Bm * g->Tc, d = s->cfg.dim, dt = t->teacher->cfg.dim, last = cm->stages - 1;
    double share = (double)rows / ((double)g->B * g->T); /* this micro-batch's share of the global batch */
    vt_tape *tp = &st->tapes[k];
    float *xn = vt_comm_last(cm) ? tp->xn_final : t->head.hx;
    if (vt_comm_pipe_bcast(cm, xn, (size_t)rows * d, last)) return -1;
    size_t r0 = (size_t)k * rows; /* the micro-batch's first row among the replica's [Bd, T] */
    const float *e = vt_comm_last(cm) ? t->cache.step_e + r0 * dt : NULL;
    const double *neg = vt_comm_last(cm) ? t->cache.step_negent + r0 : NULL;
    int scored = 0; /* cross-entropy is a mean over the batch's scored tokens (T - 1 per sequence) */
    for (int r = 0; r < rows; r++) scored += tgt[r] >= 0;
    double ce_share = (double)scored / ((double)g->B * (g->T - 1));
    if (vt_head_student(cm, &t->head.part, xn, rows, (float)p->vib.temperature, share, tgt, p->vib.ce_weight * ce_share, last,
                        e, st->mk.unit_id, dt, neg, t->head.hdx, acc))
        return -1;
    if (!vt_comm_last(cm)) return 0;
    float *dx = st->dx_last[k];
    vt_rmsnorm_backward(dx, NULL, t->head.hdx, tp->x_final, s->final_norm, tp->inv_rms_final, rows, d, 0);
    if (p->vib.mse_weight > 0) { /* last hidden states against the teacher's, dims matched by unit id */
        double scale = p->vib.mse_weight / ((double)g->B * g->T * d), total = 0.0;
        const float *xf = tp->x_final;
        for (int r = 0; r < rows; r++) {
            const float *h = t->cache.step_h + (r0 + (size_t)r) * dt;
            for (int i = 0; i < d; i++) {
                size_t q = (size_t)r * d + i;
                double err = (double)xf[q] - h[st->mk.unit_id[i]];
                total += err * err;
                dx[q] += (float)(2.0 * scale * err);
            }
        }
        acc[2] += total * scale;
    }
    return 0;
}

/* The trace of a step: wall seconds and the communicator's seconds so far. */
static void trace_mark(const trainer *t, double at[2]) {
    at[0] = t->trace ? vt_seconds() : 0.0;
    at[1] = t->comm->comm_seconds;
}

static void trace_print(const trainer *t, long step, double tr[5][2]) {
    static const char *const name[4] = {"forward", "classifier", "backward", "sums"};
    char line[256];
    int o = snprintf(line, sizeof line, "trace: rank %d step %ld:", t->comm->world_rank, step + 1);
    for (int i = 0; i < 4 && o > 0 && (size_t)o < sizeof line; i++)
        o += snprintf(line + o, sizeof line - (size_t)o, " %s %.2f s (comm %.2f)", name[i], tr[i + 1][0] - tr[i][0],
                      tr[i + 1][1] - tr[i][1]);
    fprintf(stderr, "%s\n", line);
}

/* The step's batch (this replica's sequences, tokens and next-token targets), its gate samples,
 * and every gradient zeroed. */
static void start_step(trainer *t, long step, vt_model *dw) {
    const vt_train_geom *g = &t->g;
    vt_train_batch *b = &t->batch;
    vt_student *st = &t->st;
    int T = g->T;
    vt_calib_batch(t->calib, t->p->vib.seed, step, g->B, b->ids);
    const int64_t *ids = b->ids + (size_t)t->comm->replica * g->Bd; /* this replica's sequences */
    for (int i = 0; i < g->Bd; i++) {
        const int32_t *q = vt_calib_seq(t->calib, ids[i]);
        memcpy(b->tok + (size_t)i * T, q, sizeof(int32_t) * (size_t)T);
        for (int j = 0; j < T; j++) b->tgt[i * T + j] = j + 1 < T ? q[j + 1] : -1;
    }
    vt_masks_sample(&st->mk, t->p->vib.seed, (uint64_t)step, ids, g->Bd, st->z, st->eps);
    memset(st->dz, 0, sizeof(float) * st->mk.n * (size_t)g->Bd);
    vt_masks_zero_grad(&st->mk);
    if (dw) memset(dw->arena, 0, sizeof(float) * dw->arena_floats);
}

/* Every micro-batch forward through this stage's layers (a sequence's chunks in order). */
static int forward_all(trainer *t) {
    const vt_train_geom *g = &t->g;
    vt_comm *cm = t->comm;
    vt_student *st = &t->st;
    const vt_model *s = st->model;
    size_t n = st->mk.n, d = (size_t)s->cfg.dim, rows = (size_t)g->Bm * g->Tc, act = rows * d;
    for (int k = 0; k < g->K; k++) {
        vt_gates gt = {&st->mk, st->z + (size_t)(k / g->C) * g->Bm * n, n};
        const int32_t *tok = t->batch.tok + (size_t)k * rows;
        if (vt_comm_first(cm)) vt_embed_gated(s, tok, g->Bm, g->Tc, &gt, st->x);
        else if (vt_recv_prev(cm, st->x, act, k)) return -1;
        vt_layers_forward_ex(s, &st->fs, s->layer_begin, s->layer_end, st->x, g->Bm, g->Tc, k % g->C * g->Tc, &gt,
                             &st->tapes[k]);
        if (!vt_comm_last(cm)) {
            if (vt_send_next(cm, st->x, act, k)) return -1;
        } else { /* the final norm, kept on the tape for the classifier */
            vt_tape *tp = &st->tapes[k];
            memcpy(tp->x_final, st->x, act * sizeof(float));
            vt_rmsnorm(tp->xn_final, st->x, s->final_norm, (int)rows, (int)d, s->cfg.norm_eps, tp->inv_rms_final);
        }
    }
    return 0;
}

/* Every micro-batch backward, last first (so a sequence's later chunks before its earlier ones). */
static int backward_all(trainer *t, vt_model *dw) {
    const vt_train_geom *g = &t->g;
    vt_comm *cm = t->comm;
    vt_student *st = &t->st;
    const vt_model *s = st->model;
    size_t n = st->mk.n, rows = (size_t)g->Bm * g->Tc, act = rows * (size_t)s->cfg.dim;
    for (int k = g->K - 1; k >= 0; k--) {
        vt_gates gt = {&st->mk, st->z + (size_t)(k / g->C) * g->Bm * n, n};
        float *dx = vt_comm_last(cm) ? st->dx_last[k] : st->x;
        if (!vt_comm_last(cm) && vt_recv_next(cm, dx, act, k)) return -1;
        float *dzm = st->dz + (size_t)(k / g->C) * g->Bm * n;
        vt_layers_backward(s, &st->fs, &st->bw, s->layer_begin, s->layer_end, dx, g->Bm, g->Tc, &gt, &st->tapes[k],
                           dzm, dw);
        if (vt_comm_first(cm)) vt_embed_backward(s, t->batch.tok + (size_t)k * rows, g->Bm, g->Tc, dx, dzm, n);
        else if (vt_send_prev(cm, dx, act, k)) return -1;
    }
    return 0;
}

/* Sums gate gradients and losses (and the checkpoint votes, riding on this sum rather than one
 * of their own) over the world: every rank then holds the same totals; weight gradients over the
 * replicas of the stage. */
static int sum_gradients(trainer *t, long step, const double acc[3], vt_model *dw, vt_train_record *rec) {
    vt_comm *cm = t->comm;
    vt_masks *mk = &t->st.mk;
    double *red = t->st.red;
    size_t n = mk->n;
    vt_masks_backward(mk, t->g.Bd, t->st.eps, t->st.dz);
    for (size_t i = 0; i < n; i++) {
        red[i] = mk->g_mu[i];
        red[n + i] = mk->g_logvar[i];
    }
    memcpy(red + 2 * n, acc, sizeof(double) * 3);
    vt_save_clock_votes(&t->clock, t->p, cm->world_rank, step + 1, red + 2 * n + 3);
    if (vt_comm_sum_world(cm, red, 2 * n + 5)) return -1;
    for (size_t i = 0; i < n; i++) {
        mk->g_mu[i] = (float)red[i];
        mk->g_logvar[i] = (float)red[n + i];
    }
    rec->kd = red[2 * n];
    rec->ce = red[2 * n + 1];
    rec->mse = red[2 * n + 2];
    memcpy(t->clock.votes, red + 2 * n + 3, sizeof t->clock.votes);
    if (dw) {
        size_t w0, wn = vt_layer_region(dw, &w0);
        if (vt_comm_sum_dp(cm, dw->arena + w0, wn)) return -1;
    }
    return 0;
}

/* Terms of the gate parameters alone: the same on every rank. The soft expected size gives the
 * CoFi gradient near the threshold; far from it the keep probabilities saturate, so the KL weight
 * itself is a multiplier too: beta * exp(kl_log_scale), raised by dual ascent while the hard size
 * (every gate kept or not by theta) is over the target, lowered while under. */
static void gate_terms(trainer *t, long step, int phase, vt_train_record *rec) {
    const vt_vib_params *p = t->p;
    vt_masks *mk = &t->st.mk;
    const vt_config *c = &t->st.model->cfg;
    vt_train_optim *o = &t->opt;
    rec->target = phase == 0 ? vt_budget_target(vt_budget_spec_target(&p->budget), step, (long)(p->budget.warmup * p->schedule.steps))
                             : vt_budget_spec_target(&p->budget);
    rec->size = vt_expected_size(mk, c, vt_budget_spec_kind(&p->budget), t->ctx, p->vib.sharpness, 0.0, NULL, NULL) / t->dense_size;
    rec->hard_size = vt_expected_size(mk, c, vt_budget_spec_kind(&p->budget), t->ctx, 1e6, 0.0, NULL, NULL) / t->dense_size;
    if (phase == 0) o->kl_log_scale += p->schedule.lr_lambda * (rec->hard_size - rec->target) / rec->target;
    rec->beta = p->vib.beta * exp(o->kl_log_scale);
    rec->kl = vt_masks_kl(mk, p->vib.kl_mult, rec->beta);
    rec->budget = 0.0;
    if (phase == 0) {
        double ds, dl1, dl2;
        rec->budget = vt_budget_term(rec->size, rec->target, &o->lg, &ds, &dl1, &dl2);
        vt_expected_size(mk, c, vt_budget_spec_kind(&p->budget), t->ctx, p->vib.sharpness, ds / t->dense_size, mk->g_mu, mk->g_logvar);
        o->lg.lambda1 += p->schedule.lr_lambda * dl1; /* gradient ascent on the multipliers */
        o->lg.lambda2 += p->schedule.lr_lambda * dl2;
    }
    rec->lambda1 = o->lg.lambda1;
    rec->lambda2 = o->lg.lambda2;
}

int vt_trainer_step(trainer *t, long step, int phase, vt_train_record *rec) {
    vt_comm *cm = t->comm;
    size_t rows = (size_t)t->g.Bm * t->g.Tc;
    vt_model *dw = t->opt.train_weights ? &t->opt.dw : NULL;
    double acc[3] = {0, 0, 0};
    double tr[5][2]; /* the trace: wall and communication seconds at each phase's end */
    start_step(t, step, dw);
    trace_mark(t, tr[0]);
    if (vt_comm_last(cm) && vt_teacher_cache_fetch(&t->cache, cm, &t->g, t->batch.ids, t->teacher->cfg.dim))
        return -1;
    if (forward_all(t)) return -1;
    trace_mark(t, tr[1]);
    /* the classifier and losses, every stage computing its share of the vocabulary */
    for (int k = 0; k < t->g.K; k++)
        if (head_and_loss(t, k, t->batch.tgt + (size_t)k * rows, acc)) return -1;
    trace_mark(t, tr[2]);
    if (backward_all(t, dw)) return -1;
    trace_mark(t, tr[3]);
    if (sum_gradients(t, step, acc, dw, rec)) return -1;
    trace_mark(t, tr[4]);
    if (t->trace) trace_print(t, step, tr);
    gate_terms(t, step, phase, rec);
    t->tokens += (long)t->g.B * t->g.T;
    return 0;
}
