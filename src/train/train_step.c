/* train_step.c — one VTrans training step over micro-batches and pipeline stages in three phases
 * (every micro-batch forward through the layers; the classifier and losses of every micro-batch,
 * split by vocabulary over the stages; every micro-batch backward), and the teacher cache: the
 * dense model's expected classifier rows per calibration token, computed once, so distillation
 * needs neither a second copy of the weights nor teacher logits per step (head_loss.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "train/trainer.h"

size_t vt_trainer_layer_region(const vt_model *m, size_t *start) {
    size_t n = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) n += vt_layer_params(&m->cfg, l);
    *start = m->arena_floats - n; /* vt_model_alloc puts the layers last */
    return n;
}

void vt_trainer_free_student(trainer *t) {
    vt_fwd_free(&t->fs);
    if (t->tapes)
        for (int k = 0; k < t->K; k++) vt_tape_free(&t->tapes[k]);
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
        for (int k = 0; k < t->K; k++) free(t->dx_last[k]);
    free(t->dx_last);
    t->dx_last = NULL;
}

/* (Re)allocates what depends on the student's structure. */
int vt_trainer_alloc_student(trainer *t) {
    const vt_config *c = &t->student->cfg;
    size_t n = t->mk.n, rows = (size_t)t->Bm * t->T, rows_mb = (size_t)t->Bm * t->Tc, d = (size_t)c->dim;
    if (vt_fwd_init(&t->fs, t->student, t->Bm, t->Tc, t->T) || vt_bwd_init(&t->bw, t->student, t->Bm, t->Tc, t->T))
        return -1;
    if (vt_comm_last(t->comm)) { /* the last stage computes with the student's own classifier rows */
        t->head.w = t->student->lm_head + (size_t)t->head.v0 * d;
        t->head.d = (int)d;
    }
    t->tapes = vt_calloc((size_t)t->K, sizeof *t->tapes, "activation tapes");
    if (!t->tapes) return -1;
    for (int k = 0; k < t->K; k++)
        if (vt_tape_init(&t->tapes[k], t->student, t->Bm, t->Tc, k % t->C * t->Tc)) return -1;
    for (int k = 0; k < t->K; k += t->C) vt_tape_link(t->tapes + k, t->C);
    t->x = vt_malloc(sizeof(float) * rows * d, "activations");
    t->z = vt_malloc(sizeof(float) * n * (size_t)t->Bd, "gate values");
    t->eps = vt_malloc(sizeof(float) * n * (size_t)t->Bd, "gate noise");
    t->dz = vt_malloc(sizeof(float) * n * (size_t)t->Bd, "gate gradients");
    t->red = vt_malloc(sizeof(double) * (2 * n + 8), "reduction buffer");
    if (!t->x || !t->z || !t->eps || !t->dz || !t->red) return -1;
    if (vt_comm_last(t->comm)) {
        t->dx_last = vt_calloc((size_t)t->K, sizeof(float *), "gradient buffers");
        if (!t->dx_last) return -1;
        for (int k = 0; k < t->K; k++)
            if (!(t->dx_last[k] = vt_malloc(sizeof(float) * rows_mb * d, "gradient buffers"))) return -1;
    }
    /* frozen weights multiply through copies packed once (matmul.h); rebuilt with every new student */
    t->packed = t->p->pipeline.pack_weights && !t->train_weights && vt_pack_available();
    if (t->packed && (vt_model_packs_init(&t->fs.packs, t->student, 0) || vt_model_packs_init(&t->bw.packs, t->student, 1) ||
                      vt_head_part_pack(&t->head)))
        return -1;
    return 0;
}

/* This stage's share of the classifier's vocabulary: the last stage, which holds the classifier,
 * sends every other stage its rows once; they keep a copy (sliced along with the student). Called
 * before vt_trainer_alloc_student, which points the last stage at the student's own rows. */
int vt_trainer_head_init(trainer *t) {
    vt_comm *cm = t->comm;
    const vt_config *c = &t->teacher->cfg;
    int V = c->vocab, d = c->dim, S = cm->stages, v0, vs;
    size_t rows = (size_t)t->Bm * t->T;
    vt_vocab_share(V, S, cm->stage, &v0, &vs);
    if (vt_head_part_init(&t->head, v0, vs, d, (int)rows)) return -1;
    t->hx = vt_malloc(sizeof(float) * rows * d, "classifier inputs");
    t->hdx = vt_malloc(sizeof(float) * rows * d, "classifier input gradients");
    t->hneg = vt_malloc(sizeof(double) * rows, "teacher entropies");
    if (!t->hx || !t->hdx || !t->hneg) return -1;
    if (vt_comm_last(cm)) {
        for (int s = 0; s < S - 1; s++) {
            int w0, ws;
            vt_vocab_share(V, S, s, &w0, &ws);
            if (cm->pipe_send(cm, t->teacher->lm_head + (size_t)w0 * d, (size_t)ws * d, s, 0x7ffe)) return -1;
        }
        return 0;
    }
    t->head_rows = vt_malloc(sizeof(float) * ((size_t)vs * d + 1), "classifier rows");
    if (!t->head_rows) return -1;
    t->head.w = t->head_rows;
    return cm->pipe_recv(cm, t->head_rows, (size_t)vs * d, S - 1, 0x7ffe);
}

/* Follows a change of the student's hidden dims: its classifier rows keep columns cols[0, n) of
 * their current columns. */
void vt_trainer_head_columns(trainer *t, const int64_t *cols, int n) {
    int d = t->head.d;
    vt_head_part_unpack(&t->head); /* its rows change: vt_trainer_alloc_student packs them again */
    if (t->head_rows) {
        size_t o = 0;
        for (int j = 0; j < t->head.vs; j++) {
            const float *src = t->head_rows + (size_t)j * d;
            for (int i = 0; i < n; i++) t->head_rows[o++] = src[cols[i]];
        }
    }
    t->head.d = n;
}

/* How many calibration sequences replica r of D holds in the teacher cache: i = r, r + D, ... */
static size_t shard_size(size_t n_seq, int r, int D) { return n_seq > (size_t)r ? (n_seq - (size_t)r + D - 1) / D : 0; }

size_t vt_trainer_pack_bytes(const trainer *t) {
    return t->fs.packs.bytes + t->bw.packs.bytes + t->head.pk[0].bytes + t->head.pk[1].bytes;
}

void vt_trainer_bytes(const trainer *t, size_t *weights, size_t *work) {
    size_t F = sizeof(float), rows = (size_t)t->Bm * t->T, rows_mb = (size_t)t->Bm * t->Tc;
    size_t d = (size_t)t->teacher->cfg.dim, n = t->mk.n;
    size_t cached = shard_size(t->calib->n_seq, t->comm->replica, t->comm->replicas) * (size_t)t->T;
    size_t step_rows = (size_t)t->Bd * t->T;
    *weights = F * t->teacher->arena_floats + (t->student == &t->own ? F * t->own.arena_floats : 0) +
               (t->train_weights ? F * (t->dw.arena_floats + 2 * t->adam_w.n) : 0) +
               (t->head_rows ? F * (size_t)t->head.vs * d : 0);
    *weights += vt_trainer_pack_bytes(t); /* packed copies */
    size_t w = t->fs.bytes + t->bw.bytes + F * rows * d + (t->dx_last ? F * (size_t)t->K * rows_mb * d : 0);
    for (int k = 0; k < t->K; k++) w += t->tapes[k].bytes;
    w += F * 3 * n * (size_t)t->Bd + sizeof(double) * (2 * n + 8) + 4 * F * n; /* gates, masks, moments */
    w += t->head.bytes + sizeof(double) * rows + F * 2 * rows * d; /* hneg, hx, hdx */
    w += (t->cache_e ? F * cached * d + sizeof(double) * cached : 0) + (t->cache ? F * cached * d : 0);
    w += (t->step_e ? F * step_rows * d + sizeof(double) * step_rows + sizeof(vt_transfer) * 3 * (size_t)t->B : 0) +
         (t->step_h ? F * step_rows * d : 0);
    *work = w;
}

void vt_trainer_head_free(trainer *t) {
    vt_head_part_free(&t->head);
    free(t->head_rows);
    free(t->hx);
    free(t->hdx);
    free(t->hneg);
    free(t->cache_e);
    free(t->cache_negent);
    free(t->cache);
    free(t->step_e);
    free(t->step_h);
    free(t->step_negent);
    free(t->xfer);
    t->head_rows = t->hx = t->hdx = t->cache_e = t->cache = t->step_e = t->step_h = NULL;
    t->hneg = t->cache_negent = t->step_negent = NULL;
    t->xfer = NULL;
}

/* The teacher cache, on the last stage: for every calibration sequence and token, the teacher's
 * expected classifier row and its sum p log p (head_loss.h), and with an MSE term its final hidden
 * state. The cache is sharded: replica r runs sequences r, r + D, r + 2D, ... through its own
 * pipeline (every stage takes its share of the classifier), so D replicas build it D times faster
 * and each holds 1/D of it; a step fetches the rows it needs (fetch_teacher_rows). */
int vt_trainer_cache_teacher(trainer *t) {
    const vt_model *m = t->teacher;
    const vt_calib *cal = t->calib;
    vt_comm *cm = t->comm;
    int D = cm->replicas, r = cm->replica, last = cm->stages - 1;
    size_t d = (size_t)m->cfg.dim, T = (size_t)t->T, own = shard_size(cal->n_seq, r, D), tokens = own * T;
    size_t step_rows = (size_t)t->Bd * T;
    vt_fwd f;
    if (vt_fwd_init(&f, m, t->Bm, t->T, t->T)) return -1;
    if (vt_comm_last(cm)) {
        int mse = t->p->vib.mse_weight > 0;
        t->cache_e = vt_malloc(sizeof(float) * (tokens * d + 1), "teacher cache");
        t->cache_negent = vt_malloc(sizeof(double) * (tokens + 1), "teacher cache");
        t->step_e = vt_malloc(sizeof(float) * step_rows * d, "teacher rows of a step");
        t->step_negent = vt_malloc(sizeof(double) * step_rows, "teacher rows of a step");
        t->xfer = vt_malloc(sizeof(vt_transfer) * 3 * (size_t)t->B, "teacher row transfers");
        if (!t->cache_e || !t->cache_negent || !t->step_e || !t->step_negent || !t->xfer) goto fail;
        if (mse && (!(t->cache = vt_malloc(sizeof(float) * (tokens * d + 1), "teacher cache")) ||
                    !(t->step_h = vt_malloc(sizeof(float) * step_rows * d, "teacher rows of a step"))))
            goto fail;
    }
    for (size_t j0 = 0; j0 < own; j0 += (size_t)t->Bm) {
        int B = (int)(own - j0 < (size_t)t->Bm ? own - j0 : (size_t)t->Bm), rows = B * t->T;
        size_t n = (size_t)rows * d;
        int tag = (int)(j0 / (size_t)t->Bm) & 0x7fff;
        if (vt_comm_first(cm)) {
            for (int b = 0; b < B; b++)
                memcpy(t->tok + (size_t)b * T, vt_calib_seq(cal, (int64_t)((j0 + (size_t)b) * D + (size_t)r)),
                       sizeof(int32_t) * T);
            vt_embed(m, t->tok, rows, t->x);
        } else if (vt_recv_prev(cm, t->x, n, tag))
            goto fail;
        vt_layers_forward(m, &f, m->layer_begin, m->layer_end, t->x, B, t->T, 0);
        if (!vt_comm_last(cm)) {
            if (vt_send_next(cm, t->x, n, tag)) goto fail;
        } else {
            if (t->cache) memcpy(t->cache + j0 * T * d, t->x, n * sizeof(float));
            vt_rmsnorm(t->hx, t->x, m->final_norm, rows, (int)d, m->cfg.norm_eps, NULL);
        }
        if (cm->pipe_bcast(cm, t->hx, n, last)) goto fail;
        float *e = vt_comm_last(cm) ? t->cache_e + j0 * T * d : t->hdx;
        double *neg = vt_comm_last(cm) ? t->cache_negent + j0 * T : t->hneg;
        if (vt_head_teacher(cm, &t->head, t->hx, rows, (float)t->p->vib.temperature, last, e, neg)) goto fail;
    }
    vt_fwd_free(&f);
    return 0;
fail:
    vt_fwd_free(&f);
    return -1;
}

/* Last stage: the teacher cache's rows of this replica's sequences in this step, into step_e,
 * step_negent (and step_h), from the replicas that hold them; every replica sends the rows it
 * holds of the others' sequences. All replicas know the whole batch, so each lists the same
 * transfers in the same order. */
static int fetch_teacher_rows(trainer *t) {
    vt_comm *cm = t->comm;
    int D = cm->replicas, me = cm->replica, n = 0;
    size_t T = (size_t)t->T, d = (size_t)t->teacher->cfg.dim;
    for (int k = 0; k < t->B; k++) {
        int owner = (int)(t->ids[k] % D), user = k / t->Bd;
        if (owner != me && user != me) continue;
        size_t j = (size_t)(t->ids[k] / D), b = (size_t)(k % t->Bd);
        void *held[3] = {t->cache_e + j * T * d, t->cache_negent + j * T, t->cache ? t->cache + j * T * d : NULL};
        void *need[3] = {t->step_e + b * T * d, t->step_negent + b * T, t->step_h ? t->step_h + b * T * d : NULL};
        size_t bytes[3] = {sizeof(float) * T * d, sizeof(double) * T, sizeof(float) * T * d};
        for (int q = 0; q < (t->cache ? 3 : 2); q++) {
            if (owner == me && user == me) memcpy(need[q], held[q], bytes[q]);
            else if (owner == me) t->xfer[n++] = (vt_transfer){held[q], bytes[q], user, 1};
            else t->xfer[n++] = (vt_transfer){need[q], bytes[q], owner, 0};
        }
    }
    return n ? cm->dp_exchange(cm, t->xfer, n) : 0;
}

/* The classifier and losses of micro-batch k on every stage (each its share of the vocabulary);
 * the last stage turns the gradient into dL/d(final hidden) and adds the MSE term. Losses are
 * scaled to means over the global batch and added to acc[0..2]. */
static int head_and_loss(trainer *t, int k, const int32_t *tgt, double *acc) {
    const vt_vib_params *p = t->p;
    vt_comm *cm = t->comm;
    const vt_model *s = t->student;
    int rows = t->Bm * t->Tc, d = s->cfg.dim, dt = t->teacher->cfg.dim, last = cm->stages - 1;
    double share = (double)rows / ((double)t->B * t->T); /* this micro-batch's share of the global batch */
    vt_tape *tp = &t->tapes[k];
    float *xn = vt_comm_last(cm) ? tp->xn_final : t->hx;
    if (cm->pipe_bcast(cm, xn, (size_t)rows * d, last)) return -1;
    size_t r0 = (size_t)k * rows; /* the micro-batch's first row among the replica's [Bd, T] */
    const float *e = vt_comm_last(cm) ? t->step_e + r0 * dt : NULL;
    const double *neg = vt_comm_last(cm) ? t->step_negent + r0 : NULL;
    int scored = 0; /* cross-entropy is a mean over the batch's scored tokens (T - 1 per sequence) */
    for (int r = 0; r < rows; r++) scored += tgt[r] >= 0;
    double ce_share = (double)scored / ((double)t->B * (t->T - 1));
    if (vt_head_student(cm, &t->head, xn, rows, (float)p->vib.temperature, share, tgt, p->vib.ce_weight * ce_share, last, e,
                        t->mk.unit_id, dt, neg, t->hdx, acc))
        return -1;
    if (!vt_comm_last(cm)) return 0;
    float *dx = t->dx_last[k];
    vt_rmsnorm_backward(dx, NULL, t->hdx, tp->x_final, s->final_norm, tp->inv_rms_final, rows, d, 0);
    if (p->vib.mse_weight > 0) { /* last hidden states against the teacher's, dims matched by unit id */
        double scale = p->vib.mse_weight / ((double)t->B * t->T * d), total = 0.0;
        const float *xf = tp->x_final;
        for (int r = 0; r < rows; r++) {
            const float *h = t->step_h + (r0 + (size_t)r) * dt;
            for (int i = 0; i < d; i++) {
                size_t q = (size_t)r * d + i;
                double err = (double)xf[q] - h[t->mk.unit_id[i]];
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

int vt_trainer_step(trainer *t, long step, int phase, vt_train_record *rec) {
    const vt_vib_params *p = t->p;
    vt_comm *cm = t->comm;
    const vt_model *s = t->student;
    int T = t->T, Bm = t->Bm;
    size_t n = t->mk.n, d = (size_t)s->cfg.dim, rows = (size_t)Bm * t->Tc, act = rows * d;
    vt_model *dw = t->train_weights ? &t->dw : NULL;
    vt_calib_batch(t->calib, p->vib.seed, step, t->B, t->ids);
    const int64_t *ids = t->ids + (size_t)cm->replica * t->Bd; /* this replica's sequences */
    for (int b = 0; b < t->Bd; b++) {
        const int32_t *q = vt_calib_seq(t->calib, ids[b]);
        memcpy(t->tok + (size_t)b * T, q, sizeof(int32_t) * (size_t)T);
        for (int i = 0; i < T; i++) t->tgt[b * T + i] = i + 1 < T ? q[i + 1] : -1;
    }
    vt_masks_sample(&t->mk, p->vib.seed, (uint64_t)step, ids, t->Bd, t->z, t->eps);
    memset(t->dz, 0, sizeof(float) * n * (size_t)t->Bd);
    vt_masks_zero_grad(&t->mk);
    if (dw) memset(dw->arena, 0, sizeof(float) * dw->arena_floats);
    double acc[3] = {0, 0, 0};
    double tr[5][2]; /* the trace: wall and communication seconds at each phase's end */
    trace_mark(t, tr[0]);
    if (vt_comm_last(cm) && fetch_teacher_rows(t)) return -1;
    /* forward, micro-batch by micro-batch (a sequence's chunks in order) */
    for (int k = 0; k < t->K; k++) {
        vt_gates g = {&t->mk, t->z + (size_t)(k / t->C) * Bm * n, n};
        const int32_t *tok = t->tok + (size_t)k * rows;
        if (vt_comm_first(cm)) vt_embed_gated(s, tok, Bm, t->Tc, &g, t->x);
        else if (vt_recv_prev(cm, t->x, act, k)) return -1;
        vt_layers_forward_ex(s, &t->fs, s->layer_begin, s->layer_end, t->x, Bm, t->Tc, k % t->C * t->Tc, &g,
                             &t->tapes[k]);
        if (!vt_comm_last(cm)) {
            if (vt_send_next(cm, t->x, act, k)) return -1;
        } else { /* the final norm, kept on the tape for the classifier */
            vt_tape *tp = &t->tapes[k];
            memcpy(tp->x_final, t->x, act * sizeof(float));
            vt_rmsnorm(tp->xn_final, t->x, s->final_norm, (int)rows, (int)d, s->cfg.norm_eps, tp->inv_rms_final);
        }
    }
    trace_mark(t, tr[1]);
    /* the classifier and losses, every stage computing its share of the vocabulary */
    for (int k = 0; k < t->K; k++)
        if (head_and_loss(t, k, t->tgt + (size_t)k * rows, acc)) return -1;
    trace_mark(t, tr[2]);
    /* backward, last micro-batch first (so a sequence's later chunks before its earlier ones) */
    for (int k = t->K - 1; k >= 0; k--) {
        vt_gates g = {&t->mk, t->z + (size_t)(k / t->C) * Bm * n, n};
        float *dx = vt_comm_last(cm) ? t->dx_last[k] : t->x;
        if (!vt_comm_last(cm) && vt_recv_next(cm, dx, act, k)) return -1;
        float *dzm = t->dz + (size_t)(k / t->C) * Bm * n;
        vt_layers_backward(s, &t->fs, &t->bw, s->layer_begin, s->layer_end, dx, Bm, t->Tc, &g, &t->tapes[k], dzm, dw);
        if (vt_comm_first(cm)) vt_embed_backward(s, t->tok + (size_t)k * rows, Bm, t->Tc, dx, dzm, n);
        else if (vt_send_prev(cm, dx, act, k)) return -1;
    }
    trace_mark(t, tr[3]);
    vt_masks_backward(&t->mk, t->Bd, t->eps, t->dz);
    /* Sum gate gradients and losses over the world: every rank then holds the same totals. */
    for (size_t i = 0; i < n; i++) {
        t->red[i] = t->mk.g_mu[i];
        t->red[n + i] = t->mk.g_logvar[i];
    }
    memcpy(t->red + 2 * n, acc, sizeof acc);
    vt_trainer_save_votes(t, step + 1, t->red + 2 * n + 3); /* riding on this sum, not one of their own */
    if (cm->sum_world(cm, t->red, 2 * n + 5)) return -1;
    for (size_t i = 0; i < n; i++) {
        t->mk.g_mu[i] = (float)t->red[i];
        t->mk.g_logvar[i] = (float)t->red[n + i];
    }
    rec->kd = t->red[2 * n];
    rec->ce = t->red[2 * n + 1];
    rec->mse = t->red[2 * n + 2];
    memcpy(t->save_votes, t->red + 2 * n + 3, sizeof t->save_votes);
    if (dw) {
        size_t w0, wn = vt_trainer_layer_region(dw, &w0);
        if (cm->sum_dp(cm, dw->arena + w0, wn)) return -1;
    }
    trace_mark(t, tr[4]);
    if (t->trace) {
        static const char *const name[4] = {"forward", "classifier", "backward", "sums"};
        char line[256];
        int o = snprintf(line, sizeof line, "trace: rank %d step %ld:", cm->world_rank, step + 1);
        for (int i = 0; i < 4 && o > 0 && (size_t)o < sizeof line; i++)
            o += snprintf(line + o, sizeof line - (size_t)o, " %s %.2f s (comm %.2f)", name[i],
                          tr[i + 1][0] - tr[i][0], tr[i + 1][1] - tr[i][1]);
        fprintf(stderr, "%s\n", line);
    }
    /* Terms of the gate parameters alone: the same on every rank. The soft expected size gives
     * the CoFi gradient near the threshold; far from it the keep probabilities saturate, so the
     * KL weight itself is a multiplier too: beta * exp(kl_log_scale), raised by dual ascent while
     * the hard size (every gate kept or not by theta) is over the target, lowered while under. */
    rec->target = phase == 0 ? vt_budget_target(vt_budget_spec_target(&p->budget), step, (long)(p->budget.warmup * p->schedule.steps))
                             : vt_budget_spec_target(&p->budget);
    rec->size = vt_expected_size(&t->mk, &s->cfg, vt_budget_spec_kind(&p->budget), t->ctx, p->vib.sharpness, 0.0, NULL, NULL) / t->dense_size;
    rec->hard_size = vt_expected_size(&t->mk, &s->cfg, vt_budget_spec_kind(&p->budget), t->ctx, 1e6, 0.0, NULL, NULL) / t->dense_size;
    if (phase == 0) t->kl_log_scale += p->schedule.lr_lambda * (rec->hard_size - rec->target) / rec->target;
    rec->beta = p->vib.beta * exp(t->kl_log_scale);
    rec->kl = vt_masks_kl(&t->mk, p->vib.kl_mult, rec->beta);
    rec->budget = 0.0;
    if (phase == 0) {
        double ds, dl1, dl2;
        rec->budget = vt_budget_term(rec->size, rec->target, &t->lg, &ds, &dl1, &dl2);
        vt_expected_size(&t->mk, &s->cfg, vt_budget_spec_kind(&p->budget), t->ctx, p->vib.sharpness, ds / t->dense_size, t->mk.g_mu,
                         t->mk.g_logvar);
        t->lg.lambda1 += p->schedule.lr_lambda * dl1; /* gradient ascent on the multipliers */
        t->lg.lambda2 += p->schedule.lr_lambda * dl2;
    }
    rec->lambda1 = t->lg.lambda1;
    rec->lambda2 = t->lg.lambda2;
    t->tokens += (long)t->B * T;
    return 0;
}
