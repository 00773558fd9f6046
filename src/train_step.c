/* train_step.c — one VTrans training step over micro-batches and pipeline stages (GPipe: every
 * micro-batch forward, then every micro-batch backward), and the teacher cache: the dense
 * model's final hidden states for every calibration sequence, computed once, so distillation
 * needs no second copy of the weights (teacher logits = the original head on the cached state). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "loss.h"
#include "trainer.h"

size_t vt_trainer_layer_region(const vt_model *m, size_t *start) {
    size_t n = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) n += vt_layer_params(&m->cfg, l);
    *start = m->arena_floats - n; /* vt_model_alloc puts the layers last */
    return n;
}

void vt_trainer_free_student(trainer *t) {
    vt_fwd_free(&t->fs);
    if (t->tapes)
        for (int m = 0; m < t->M; m++) vt_tape_free(&t->tapes[m]);
    free(t->tapes);
    t->tapes = NULL;
    vt_bwd_free(&t->bw);
    free(t->x);
    free(t->z);
    free(t->eps);
    free(t->dz);
    free(t->red);
    t->x = t->z = t->eps = t->dz = NULL;
    t->red = NULL;
    if (t->dx_last)
        for (int m = 0; m < t->M; m++) free(t->dx_last[m]);
    free(t->dx_last);
    t->dx_last = NULL;
}

/* (Re)allocates what depends on the student's structure. */
int vt_trainer_alloc_student(trainer *t) {
    const vt_config *c = &t->student->cfg;
    size_t n = t->mk.n, rows = (size_t)t->Bm * t->T, d = (size_t)c->dim;
    if (vt_fwd_init(&t->fs, t->student, t->Bm, t->T, t->T) || vt_bwd_init(&t->bw, t->student, t->Bm, t->T)) return -1;
    t->tapes = vt_calloc((size_t)t->M, sizeof *t->tapes, "activation tapes");
    if (!t->tapes) return -1;
    for (int m = 0; m < t->M; m++)
        if (vt_tape_init(&t->tapes[m], t->student, t->Bm, t->T)) return -1;
    t->x = vt_malloc(sizeof(float) * rows * d, "activations");
    t->z = vt_malloc(sizeof(float) * n * (size_t)t->Bd, "gate values");
    t->eps = vt_malloc(sizeof(float) * n * (size_t)t->Bd, "gate noise");
    t->dz = vt_malloc(sizeof(float) * n * (size_t)t->Bd, "gate gradients");
    t->red = vt_malloc(sizeof(double) * (2 * n + 8), "reduction buffer");
    if (!t->x || !t->z || !t->eps || !t->dz || !t->red) return -1;
    if (vt_comm_last(t->comm)) {
        t->dx_last = vt_calloc((size_t)t->M, sizeof(float *), "gradient buffers");
        if (!t->dx_last) return -1;
        for (int m = 0; m < t->M; m++)
            if (!(t->dx_last[m] = vt_malloc(sizeof(float) * rows * d, "gradient buffers"))) return -1;
    }
    return 0;
}

/* The dense model's final hidden states of every calibration sequence, on the last stage. Every
 * replica runs all sequences through its own pipeline, so no replica waits for another. */
int vt_trainer_cache_teacher(trainer *t) {
    const vt_model *m = t->teacher;
    const vt_calib *cal = t->calib;
    vt_comm *cm = t->comm;
    size_t d = (size_t)m->cfg.dim;
    vt_fwd f;
    if (vt_fwd_init(&f, m, t->Bm, t->T, t->T)) return -1;
    if (vt_comm_last(cm)) {
        t->cache = vt_malloc(sizeof(float) * cal->n_seq * (size_t)cal->seq_len * d, "teacher cache");
        if (!t->cache) goto fail;
    }
    for (size_t s0 = 0; s0 < cal->n_seq; s0 += (size_t)t->Bm) {
        int B = (int)(cal->n_seq - s0 < (size_t)t->Bm ? cal->n_seq - s0 : (size_t)t->Bm);
        size_t n = (size_t)B * t->T * d;
        int tag = (int)(s0 / (size_t)t->Bm) & 0x7fff;
        if (vt_comm_first(cm)) vt_embed(m, vt_calib_seq(cal, (int64_t)s0), B * t->T, t->x);
        else if (cm->recv_prev(cm, t->x, n, tag)) goto fail;
        vt_layers_forward(m, &f, m->layer_begin, m->layer_end, t->x, B, t->T, 0);
        if (!vt_comm_last(cm)) {
            if (cm->send_next(cm, t->x, n, tag)) goto fail;
        } else {
            memcpy(t->cache + s0 * (size_t)t->T * d, t->x, n * sizeof(float));
        }
    }
    vt_fwd_free(&f);
    return 0;
fail:
    vt_fwd_free(&f);
    return -1;
}

/* Teacher logits of micro-batch sequences ids[Bm] from the cache: the original final norm and
 * classifier on the cached hidden states. */
static void teacher_logits(trainer *t, const int64_t *ids, float *out) {
    const vt_model *m = t->teacher;
    size_t d = (size_t)m->cfg.dim, T = (size_t)t->T;
    for (int b = 0; b < t->Bm; b++) {
        const float *h = t->cache + (size_t)ids[b] * T * d;
        vt_rmsnorm(t->xn_t + (size_t)b * T * d, h, m->final_norm, (int)T, (int)d, m->cfg.norm_eps, NULL);
    }
    vt_linear(out, t->xn_t, m->lm_head, t->Bm * t->T, (int)d, m->cfg.vocab, 0.0f);
}

/* Last stage: student head, losses against the teacher, gradient into dx; returns the losses'
 * contributions (already scaled to means over the global batch) in acc[0..2]. */
static void head_and_loss(trainer *t, int mb, const int64_t *ids, const int32_t *tgt, double *acc) {
    const vt_vib_params *p = t->p;
    const vt_model *s = t->student;
    int rows = t->Bm * t->T, V = s->cfg.vocab;
    double share = (double)t->Bm / t->B; /* this micro-batch's share of the global batch */
    vt_head_forward_ex(s, &t->fs, t->x, rows, t->ls, &t->tapes[mb]);
    teacher_logits(t, ids, t->lt);
    memset(t->dl, 0, sizeof(float) * (size_t)rows * V);
    acc[0] += vt_loss_distill(t->ls, t->lt, rows, V, (float)p->temperature, (float)share, t->dl);
    if (p->ce_weight > 0) acc[1] += vt_loss_ce(t->ls, tgt, rows, V, (float)(p->ce_weight * share), t->dl);
    float *dx = t->dx_last[mb];
    vt_head_backward(s, &t->bw, &t->tapes[mb], t->dl, rows, dx, t->train_weights ? &t->dw : NULL);
    if (p->mse_weight > 0) { /* last hidden states against the teacher's, dims matched by unit id */
        int d = s->cfg.dim, dt = t->teacher->cfg.dim;
        double scale = p->mse_weight / ((double)t->B * t->T * d), total = 0.0;
        const float *xf = t->tapes[mb].x_final;
        for (int b = 0; b < t->Bm; b++) {
            const float *h = t->cache + (size_t)ids[b] * t->T * dt;
            for (int r = 0; r < t->T; r++)
                for (int i = 0; i < d; i++) {
                    size_t k = ((size_t)b * t->T + r) * d + i;
                    double e = (double)xf[k] - h[(size_t)r * dt + t->mk.unit_id[i]];
                    total += e * e;
                    dx[k] += (float)(2.0 * scale * e);
                }
        }
        acc[2] += total * scale;
    }
}

int vt_trainer_step(trainer *t, long step, int phase, vt_train_record *rec) {
    const vt_vib_params *p = t->p;
    vt_comm *cm = t->comm;
    const vt_model *s = t->student;
    int T = t->T, Bm = t->Bm;
    size_t n = t->mk.n, d = (size_t)s->cfg.dim, act = (size_t)Bm * T * d;
    vt_model *dw = t->train_weights ? &t->dw : NULL;
    vt_calib_batch(t->calib, p->seed, step, t->B, t->ids);
    const int64_t *ids = t->ids + (size_t)cm->replica * t->Bd; /* this replica's sequences */
    for (int b = 0; b < t->Bd; b++) {
        const int32_t *q = vt_calib_seq(t->calib, ids[b]);
        memcpy(t->tok + (size_t)b * T, q, sizeof(int32_t) * (size_t)T);
        for (int i = 0; i < T; i++) t->tgt[b * T + i] = i + 1 < T ? q[i + 1] : -1;
    }
    vt_masks_sample(&t->mk, p->seed, (uint64_t)step, ids, t->Bd, t->z, t->eps);
    memset(t->dz, 0, sizeof(float) * n * (size_t)t->Bd);
    vt_masks_zero_grad(&t->mk);
    if (dw) memset(dw->arena, 0, sizeof(float) * dw->arena_floats);
    double acc[3] = {0, 0, 0};
    /* forward, micro-batch by micro-batch */
    for (int mb = 0; mb < t->M; mb++) {
        vt_gates g = {&t->mk, t->z + (size_t)mb * Bm * n, n};
        const int32_t *tok = t->tok + (size_t)mb * Bm * T;
        if (vt_comm_first(cm)) vt_embed_gated(s, tok, Bm, T, &g, t->x);
        else if (cm->recv_prev(cm, t->x, act, mb)) return -1;
        vt_layers_forward_ex(s, &t->fs, s->layer_begin, s->layer_end, t->x, Bm, T, 0, &g, &t->tapes[mb]);
        if (!vt_comm_last(cm)) {
            if (cm->send_next(cm, t->x, act, mb)) return -1;
        } else {
            head_and_loss(t, mb, ids + (size_t)mb * Bm, t->tgt + (size_t)mb * Bm * T, acc);
        }
    }
    /* backward, last micro-batch first */
    for (int mb = t->M - 1; mb >= 0; mb--) {
        vt_gates g = {&t->mk, t->z + (size_t)mb * Bm * n, n};
        float *dx = vt_comm_last(cm) ? t->dx_last[mb] : t->x;
        if (!vt_comm_last(cm) && cm->recv_next(cm, dx, act, mb)) return -1;
        float *dzm = t->dz + (size_t)mb * Bm * n;
        vt_layers_backward(s, &t->fs, &t->bw, s->layer_begin, s->layer_end, dx, Bm, T, &g, &t->tapes[mb], dzm, dw);
        if (vt_comm_first(cm)) vt_embed_backward(s, t->tok + (size_t)mb * Bm * T, Bm, T, dx, dzm, n);
        else if (cm->send_prev(cm, dx, act, mb)) return -1;
    }
    vt_masks_backward(&t->mk, t->Bd, t->eps, t->dz);
    /* Sum gate gradients and losses over the world: every rank then holds the same totals. */
    for (size_t i = 0; i < n; i++) {
        t->red[i] = t->mk.g_mu[i];
        t->red[n + i] = t->mk.g_logvar[i];
    }
    memcpy(t->red + 2 * n, acc, sizeof acc);
    if (cm->sum_world(cm, t->red, 2 * n + 3)) return -1;
    for (size_t i = 0; i < n; i++) {
        t->mk.g_mu[i] = (float)t->red[i];
        t->mk.g_logvar[i] = (float)t->red[n + i];
    }
    rec->kd = t->red[2 * n];
    rec->ce = t->red[2 * n + 1];
    rec->mse = t->red[2 * n + 2];
    if (dw) {
        size_t w0, wn = vt_trainer_layer_region(dw, &w0);
        if (cm->sum_dp(cm, dw->arena + w0, wn)) return -1;
    }
    /* Terms of the gate parameters alone: the same on every rank. The soft expected size gives
     * the CoFi gradient near the threshold; far from it the keep probabilities saturate, so the
     * KL weight itself is a multiplier too: beta * exp(kl_log_scale), raised by dual ascent while
     * the hard size (every gate kept or not by theta) is over the target, lowered while under. */
    rec->target = phase == 0 ? vt_budget_target(p->target_fraction, step, (long)(p->ramp_fraction * p->steps))
                             : p->target_fraction;
    rec->size = vt_expected_size(&t->mk, &s->cfg, p->kind, t->ctx, p->sharpness, 0.0, NULL, NULL) / t->dense_size;
    rec->hard_size = vt_expected_size(&t->mk, &s->cfg, p->kind, t->ctx, 1e6, 0.0, NULL, NULL) / t->dense_size;
    if (phase == 0) t->kl_log_scale += p->lr_lambda * (rec->hard_size - rec->target) / rec->target;
    rec->beta = p->beta * exp(t->kl_log_scale);
    rec->kl = vt_masks_kl(&t->mk, p->kl_mult, rec->beta);
    rec->budget = 0.0;
    if (phase == 0) {
        double ds, dl1, dl2;
        rec->budget = vt_budget_term(rec->size, rec->target, &t->lg, &ds, &dl1, &dl2);
        vt_expected_size(&t->mk, &s->cfg, p->kind, t->ctx, p->sharpness, ds / t->dense_size, t->mk.g_mu,
                         t->mk.g_logvar);
        t->lg.lambda1 += p->lr_lambda * dl1; /* gradient ascent on the multipliers */
        t->lg.lambda2 += p->lr_lambda * dl2;
    }
    rec->lambda1 = t->lg.lambda1;
    rec->lambda2 = t->lg.lambda2;
    t->tokens += (long)t->B * T;
    return 0;
}
