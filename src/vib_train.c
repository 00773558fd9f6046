/* vib_train.c — the VTrans training loop in one process (see vib_train.h). */
#include "vib_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backward.h"
#include "error.h"
#include "forward.h"
#include "loss.h"
#include "masks.h"
#include "slice.h"

/* Everything one training step touches, for the current student structure. */
typedef struct {
    const vt_vib_params *p;
    const vt_model *teacher;
    const vt_calib *calib;
    vt_model own;            /* the student once it differs from the teacher */
    const vt_model *student; /* teacher until the first slice */
    vt_masks mk;
    vt_adam adam_mu, adam_lv, adam_w;
    vt_model dw;             /* weight gradients (fine-tuning only) */
    int train_weights;
    vt_lagrangian lg;
    double dense_size, ctx;
    int B, T;
    vt_fwd ft, fs;           /* teacher and student forward state */
    vt_tape tape;
    vt_bwd bw;
    float *x, *xt, *lt, *ls, *dl, *z, *eps, *dz;
    int32_t *tok, *tgt;
    int64_t *ids;
    long tokens;
} trainer;

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void free_student_buffers(trainer *t) {
    vt_fwd_free(&t->fs);
    vt_tape_free(&t->tape);
    vt_bwd_free(&t->bw);
    free(t->z);
    free(t->eps);
    free(t->dz);
    t->z = t->eps = t->dz = NULL;
}

/* (Re)allocates what depends on the student's structure. */
static int alloc_student_buffers(trainer *t) {
    size_t n = t->mk.n;
    if (vt_fwd_init(&t->fs, t->student, t->B, t->T, t->T) || vt_tape_init(&t->tape, t->student, t->B, t->T) ||
        vt_bwd_init(&t->bw, t->student, t->B, t->T))
        return -1;
    t->z = vt_malloc(sizeof(float) * n * t->B, "gate values");
    t->eps = vt_malloc(sizeof(float) * n * t->B, "gate noise");
    t->dz = vt_malloc(sizeof(float) * n * t->B, "gate gradients");
    return t->z && t->eps && t->dz ? 0 : -1;
}

/* Floats of the layer weights at the end of the arena (what fine-tuning trains). */
static size_t layer_region(const vt_model *m, size_t *start) {
    size_t n = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) n += vt_layer_params(&m->cfg, l);
    *start = m->arena_floats - n;
    return n;
}

/* Carries Adam moments over to a sliced gate layout, matching gates by unit id. */
static int remap_adam(vt_adam *a, const vt_masks *old, const vt_masks *nw) {
    int64_t max_id = 0;
    for (size_t i = 0; i < old->n; i++) max_id = old->unit_id[i] > max_id ? old->unit_id[i] : max_id;
    size_t *where = vt_malloc(sizeof(size_t) * (size_t)(max_id + 1), "gate map");
    vt_adam b;
    if (!where || vt_adam_init(&b, nw->n, a->weight_decay)) {
        free(where);
        return -1;
    }
    for (size_t i = 0; i < old->n; i++) where[old->unit_id[i]] = i;
    for (size_t i = 0; i < nw->n; i++) {
        size_t o = where[nw->unit_id[i]];
        b.m[i] = a->m[o];
        b.v[i] = a->v[o];
    }
    b.t = a->t;
    free(where);
    vt_adam_free(a);
    *a = b;
    return 0;
}

/* Replaces the student by its slice to the units in keep (gates not folded: training goes on). */
static int slice_student(trainer *t, const uint8_t *keep) {
    vt_model next;
    vt_masks mk2;
    if (vt_slice_model(t->student, &t->mk, NULL, keep, 0, &next)) return -1;
    if (vt_slice_masks(&t->mk, keep, &mk2)) {
        vt_model_free(&next);
        return -1;
    }
    if (remap_adam(&t->adam_mu, &t->mk, &mk2) || remap_adam(&t->adam_lv, &t->mk, &mk2)) {
        vt_model_free(&next);
        vt_masks_free(&mk2);
        return -1;
    }
    free_student_buffers(t);
    if (t->student == &t->own) vt_model_free(&t->own);
    t->own = next;
    t->student = &t->own;
    vt_masks_free(&t->mk);
    t->mk = mk2;
    return alloc_student_buffers(t);
}

/* A group of gates iterative pruning removes together: one hidden dim, one neuron, one block, or
 * in grouped-query layers a whole KV group of heads (so every layer stays a valid GQA layer). */
typedef struct {
    size_t first;   /* first gate */
    int count;      /* gates first .. first+count-1 */
    float log_alpha; /* the group's smallest log alpha: it goes only when all its gates crossed */
} removal;

static int by_log_alpha_desc(const void *a, const void *b) {
    float x = ((const removal *)a)->log_alpha, y = ((const removal *)b)->log_alpha;
    return (x < y) - (x > y);
}

/* Exact size after removing the first n groups, or -1 when no valid structure remains. */
static double size_without(trainer *t, const removal *r, size_t n, uint8_t *keep) {
    memset(keep, 1, t->mk.n);
    for (size_t i = 0; i < n; i++) memset(keep + r[i].first, 0, (size_t)r[i].count);
    vt_config c;
    if (vt_keep_structure(&t->mk, &t->student->cfg, keep, &c)) {
        vt_error_clear();
        return -1.0;
    }
    double size = vt_structure_size(&c, t->p->kind, t->ctx);
    vt_config_free(&c);
    return size;
}

/* Iterative pruning: groups whose log alpha passed theta leave the computation for good, worst
 * first, as many as keep the exact size at or above the final budget (so the final decision can
 * still land on it). */
static int prune_crossed(trainer *t, int *removed) {
    const vt_masks *mk = &t->mk;
    const vt_config *c = &t->student->cfg;
    float theta = (float)t->p->theta;
    removal *r = vt_malloc(sizeof *r * mk->n, "pruning candidates");
    uint8_t *keep = vt_malloc(mk->n, "keep flags");
    size_t n = 0;
    int rc = -1;
    *removed = 0;
    if (!r || !keep) goto out;
    for (size_t i = 0; i < mk->n; i++) {
        float la = vt_log_alpha(mk->mu[i], mk->logvar[i]);
        int l = mk->layer[i];
        if (la < theta) continue;
        if (mk->group[i] == VT_GROUP_HEADS) {
            int g = c->layers[l].n_heads / c->layers[l].n_kv_heads;
            size_t h = i - vt_gate_heads(mk, l);
            if (h % (size_t)g) continue; /* groups start at their first head */
            float lo = la;
            for (int k = 1; k < g; k++) {
                float x = vt_log_alpha(mk->mu[i + k], mk->logvar[i + k]);
                lo = x < lo ? x : lo;
            }
            if (lo < theta) continue;
            r[n++] = (removal){i, g, lo};
        } else if (mk->group[i] == VT_GROUP_BLOCKS) {
            int is_mlp = i != vt_gate_blocks(mk, l);
            if (is_mlp ? c->layers[l].ffn : c->layers[l].n_heads) r[n++] = (removal){i, 1, la};
        } else {
            r[n++] = (removal){i, 1, la};
        }
    }
    qsort(r, n, sizeof *r, by_log_alpha_desc);
    double floor_size = t->p->target_fraction * t->dense_size;
    size_t lo = 0, hi = n; /* largest count whose size stays >= the final budget */
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (size_without(t, r, mid, keep) >= floor_size) lo = mid;
        else hi = mid - 1;
    }
    rc = 0;
    if (lo > 0) {
        size_without(t, r, lo, keep);
        for (size_t i = 0; i < mk->n; i++) *removed += !keep[i];
        rc = slice_student(t, keep);
    }
out:
    free(r);
    free(keep);
    return rc;
}

/* weight * mean squared difference of the last hidden states (student dims matched to the
 * teacher's through the hidden gates' unit ids); its gradient joins dx (t->x). */
static double hidden_mse(trainer *t, int rows) {
    int d = t->student->cfg.dim, dt = t->teacher->cfg.dim;
    double scale = t->p->mse_weight / ((double)rows * d), total = 0.0;
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < d; i++) {
            double e = (double)t->tape.x_final[(size_t)r * d + i] - t->xt[(size_t)r * dt + t->mk.unit_id[i]];
            total += e * e;
            t->x[(size_t)r * d + i] += (float)(2.0 * scale * e);
        }
    return total * scale;
}

/* One step on batch `step`: forward teacher and student, losses, backward into gate (and weight)
 * gradients. Fills the record's loss terms. */
static void train_step(trainer *t, long step, int phase, vt_train_record *rec) {
    const vt_vib_params *p = t->p;
    const vt_config *c = &t->student->cfg;
    int B = t->B, T = t->T, rows = B * T;
    size_t V = (size_t)c->vocab;
    vt_calib_batch(t->calib, p->seed, step, B, t->ids);
    for (int b = 0; b < B; b++) {
        const int32_t *s = vt_calib_seq(t->calib, t->ids[b]);
        memcpy(t->tok + (size_t)b * T, s, sizeof(int32_t) * (size_t)T);
        for (int i = 0; i < T; i++) t->tgt[b * T + i] = i + 1 < T ? s[i + 1] : -1;
    }
    /* teacher */
    vt_embed(t->teacher, t->tok, rows, t->xt);
    vt_layers_forward(t->teacher, &t->ft, 0, t->teacher->cfg.n_layers, t->xt, B, T, 0);
    vt_head_forward(t->teacher, &t->ft, t->xt, rows, t->lt);
    /* student with sampled gates */
    vt_masks_sample(&t->mk, p->seed, (uint64_t)step, t->ids, B, t->z, t->eps);
    vt_gates g = {&t->mk, t->z, t->mk.n};
    vt_embed_gated(t->student, t->tok, B, T, &g, t->x);
    vt_layers_forward_ex(t->student, &t->fs, 0, c->n_layers, t->x, B, T, 0, &g, &t->tape);
    vt_head_forward_ex(t->student, &t->fs, t->x, rows, t->ls, &t->tape);
    memset(t->dl, 0, sizeof(float) * rows * V);
    rec->kd = vt_loss_distill(t->ls, t->lt, rows, c->vocab, (float)p->temperature, 1.0f, t->dl);
    rec->ce = p->ce_weight > 0 ? vt_loss_ce(t->ls, t->tgt, rows, c->vocab, (float)p->ce_weight, t->dl) : 0.0;
    /* backward */
    memset(t->dz, 0, sizeof(float) * t->mk.n * B);
    vt_masks_zero_grad(&t->mk);
    if (t->train_weights) memset(t->dw.arena, 0, sizeof(float) * t->dw.arena_floats);
    vt_model *dw = t->train_weights ? &t->dw : NULL;
    vt_head_backward(t->student, &t->bw, &t->tape, t->dl, rows, t->x, dw);
    rec->mse = p->mse_weight > 0 ? hidden_mse(t, rows) : 0.0;
    vt_layers_backward(t->student, &t->fs, &t->bw, 0, c->n_layers, t->x, B, T, &g, &t->tape, t->dz, dw);
    vt_embed_backward(t->student, t->tok, B, T, t->x, t->dz, t->mk.n);
    vt_masks_backward(&t->mk, B, t->eps, t->dz);
    rec->kl = vt_masks_kl(&t->mk, p->kl_mult, p->beta);
    /* budget (mask phase): expected size against the ramped target */
    rec->size = vt_expected_size(&t->mk, c, p->kind, t->ctx, p->sharpness, 0.0, NULL, NULL) / t->dense_size;
    rec->target = phase == 0 ? vt_budget_target(p->target_fraction, (int)step, (int)(p->ramp_fraction * p->steps))
                             : p->target_fraction;
    rec->budget = 0.0;
    if (phase == 0) {
        double ds, dl1, dl2;
        rec->budget = vt_budget_term(rec->size, rec->target, &t->lg, &ds, &dl1, &dl2);
        vt_expected_size(&t->mk, c, p->kind, t->ctx, p->sharpness, ds / t->dense_size, t->mk.g_mu, t->mk.g_logvar);
        t->lg.lambda1 += p->lr_lambda * dl1; /* gradient ascent on the multipliers */
        t->lg.lambda2 += p->lr_lambda * dl2;
    }
    rec->lambda1 = t->lg.lambda1;
    rec->lambda2 = t->lg.lambda2;
    t->tokens += rows;
}

/* Global gradient-norm clipping over the gate (and weight) gradients. */
static void clip_gradients(trainer *t, size_t w0, size_t wn) {
    if (t->p->clip <= 0) return;
    double ss = vt_sumsq(t->mk.g_mu, t->mk.n) + vt_sumsq(t->mk.g_logvar, t->mk.n);
    if (t->train_weights) ss += vt_sumsq(t->dw.arena + w0, wn);
    double norm = sqrt(ss);
    if (norm <= t->p->clip) return;
    float s = (float)(t->p->clip / norm);
    vt_scale(t->mk.g_mu, t->mk.n, s);
    vt_scale(t->mk.g_logvar, t->mk.n, s);
    if (t->train_weights) vt_scale(t->dw.arena + w0, wn, s);
}

static void report(trainer *t, const vt_train_record *r, long step, long total, double t0) {
    const vt_vib_params *p = t->p;
    double el = seconds_now() - t0, rate = t->tokens / (el > 0 ? el : 1e-9);
    double eta = step > 0 ? el / (double)(step + 1) * (double)(total - step - 1) : 0.0;
    if (p->log)
        fprintf(p->log,
                "%s step %ld/%ld | kd %.4f ce %.4f mse %.4f kl %.4f budget %+.4f | size %.4f target %.4f | "
                "%.0f tok/s | ETA %.0f s\n",
                r->phase ? "finetune" : "masks", step + 1, total, r->kd, r->ce, r->mse, r->kl, r->budget, r->size,
                r->target, rate, eta);
    if (p->jsonl)
        fprintf(p->jsonl,
                "{\"phase\": \"%s\", \"step\": %ld, \"kd\": %.6g, \"ce\": %.6g, \"mse\": %.6g, \"kl\": %.6g, "
                "\"budget\": %.6g, \"size\": %.6g, \"target\": %.6g, \"lambda1\": %.6g, \"lambda2\": %.6g, "
                "\"seconds\": %.3f, \"tokens\": %ld}\n",
                r->phase ? "finetune" : "masks", step + 1, r->kd, r->ce, r->mse, r->kl, r->budget, r->size, r->target,
                r->lambda1, r->lambda2, el, t->tokens);
    if (p->log) fflush(p->log);
    if (p->jsonl) fflush(p->jsonl);
}

static int keep_record(vt_vib_result *out, const vt_train_record *r) {
    vt_train_record *nr = realloc(out->records, sizeof *nr * (out->n_records + 1));
    if (!nr) return vt_fail("out of memory for the training log");
    out->records = nr;
    out->records[out->n_records++] = *r;
    return 0;
}

/* Runs `total` steps of one phase. */
static int run_phase(trainer *t, int phase, long total, long *global_step, double t0, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    double lr_base = phase == 0 ? p->lr_mask : p->lr_weight;
    for (long s = 0; s < total; s++, (*global_step)++) {
        vt_train_record rec = {.step = *global_step, .phase = phase};
        train_step(t, *global_step, phase, &rec);
        size_t w0 = 0, wn = t->train_weights ? layer_region(t->student, &w0) : 0;
        clip_gradients(t, w0, wn);
        double lr = vt_lr_at(p->schedule, p->lr_mask, s, total, p->warmup_steps);
        vt_adam_step(&t->adam_mu, t->mk.mu, t->mk.g_mu, lr);
        vt_adam_step(&t->adam_lv, t->mk.logvar, t->mk.g_logvar, lr);
        if (t->train_weights)
            vt_adam_step(&t->adam_w, t->own.arena + w0, t->dw.arena + w0, vt_lr_at(p->schedule, lr_base, s, total,
                                                                                    p->warmup_steps));
        rec.seconds = seconds_now() - t0;
        out->final_kd = rec.kd;
        if (p->log_interval > 0 && ((s + 1) % p->log_interval == 0 || s + 1 == total)) {
            report(t, &rec, s, total, t0);
            if (keep_record(out, &rec)) return -1;
        }
        if (phase == 0 && p->prune_interval > 0 && (s + 1) % p->prune_interval == 0 && s + 1 < total) {
            int removed;
            if (prune_crossed(t, &removed)) return -1;
            out->removed_early += (size_t)removed;
            if (removed && p->log)
                fprintf(p->log, "masks step %ld: %d units pruned for good; %zu parameters remain\n", s + 1, removed,
                        vt_params_total(&t->student->cfg));
        }
    }
    return 0;
}

static void trainer_free(trainer *t) {
    free_student_buffers(t);
    vt_fwd_free(&t->ft);
    if (t->student == &t->own) vt_model_free(&t->own);
    if (t->train_weights) vt_model_free(&t->dw);
    vt_masks_free(&t->mk);
    vt_adam_free(&t->adam_mu);
    vt_adam_free(&t->adam_lv);
    vt_adam_free(&t->adam_w);
    free(t->x);
    free(t->xt);
    free(t->lt);
    free(t->ls);
    free(t->dl);
    free(t->tok);
    free(t->tgt);
    free(t->ids);
}

/* Decides the kept units (global ranking by log alpha against the budget) and either slices
 * the final model (folding z = mu of kept units) or, for fine-tuning, the trainable student. */
static int decide(trainer *t, uint8_t **keep_out) {
    const vt_vib_params *p = t->p;
    uint8_t *keep = vt_malloc(t->mk.n, "keep flags");
    if (!keep) return -1;
    vt_config pruned;
    double size;
    if (vt_budget_decide(&t->mk, &t->student->cfg, p->kind, t->ctx, p->target_fraction * t->dense_size, p->round_to,
                         NULL, keep, &pruned, &size)) {
        free(keep);
        return -1;
    }
    vt_config_free(&pruned);
    *keep_out = keep;
    return 0;
}

int vt_vib_prune(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_vib_result *out) {
    memset(out, 0, sizeof *out);
    trainer t;
    memset(&t, 0, sizeof t);
    t.p = p;
    t.teacher = teacher;
    t.calib = calib;
    t.student = teacher;
    t.B = p->batch_size;
    t.T = calib->seq_len;
    t.ctx = vt_mean_ctx(t.T);
    t.dense_size = vt_structure_size(&teacher->cfg, p->kind, t.ctx);
    size_t rows = (size_t)t.B * t.T, V = (size_t)teacher->cfg.vocab, d = (size_t)teacher->cfg.dim;
    double t0 = seconds_now();
    int rc = -1;
    uint8_t *keep = NULL;
    if (vt_masks_init(&t.mk, &teacher->cfg, p->seed) || vt_adam_init(&t.adam_mu, t.mk.n, 0.0) ||
        vt_adam_init(&t.adam_lv, t.mk.n, 0.0) || vt_fwd_init(&t.ft, teacher, t.B, t.T, t.T) ||
        alloc_student_buffers(&t))
        goto done;
    t.x = vt_malloc(sizeof(float) * rows * d, "activations");
    t.xt = vt_malloc(sizeof(float) * rows * d, "teacher activations");
    t.lt = vt_malloc(sizeof(float) * rows * V, "teacher logits");
    t.ls = vt_malloc(sizeof(float) * rows * V, "student logits");
    t.dl = vt_malloc(sizeof(float) * rows * V, "logit gradients");
    t.tok = vt_malloc(sizeof(int32_t) * rows, "batch tokens");
    t.tgt = vt_malloc(sizeof(int32_t) * rows, "batch targets");
    t.ids = vt_malloc(sizeof(int64_t) * (size_t)t.B, "batch ids");
    if (!t.x || !t.xt || !t.lt || !t.ls || !t.dl || !t.tok || !t.tgt || !t.ids) goto done;

    long step = 0;
    if (run_phase(&t, 0, p->steps, &step, t0, out) || decide(&t, &keep)) goto done;
    if (p->finetune_steps > 0) {
        /* Joint fine-tuning: slice to the decided structure without folding, train weights too. */
        if (slice_student(&t, keep)) goto done;
        if (vt_model_alloc(&t.dw, &t.own.cfg, vt_load_all())) goto done;
        size_t w0, wn = layer_region(&t.own, &w0);
        if (vt_adam_init(&t.adam_w, wn, p->weight_decay)) goto done;
        t.train_weights = 1;
        out->weight_state_bytes = sizeof(float) * (t.dw.arena_floats + 2 * t.adam_w.n);
        if (run_phase(&t, 1, p->finetune_steps, &step, t0, out)) goto done;
        free(keep);
        keep = vt_malloc(t.mk.n, "keep flags");
        if (!keep) goto done;
        memset(keep, 1, t.mk.n); /* the structure is decided: every remaining unit stays */
    }
    /* Export: kept units carry z = mu folded into the weights. */
    float *z = vt_malloc(sizeof(float) * t.mk.n, "final gates");
    if (!z) goto done;
    for (size_t i = 0; i < t.mk.n; i++) z[i] = keep[i] ? t.mk.mu[i] : 0.0f;
    rc = vt_slice_model(t.student, &t.mk, z, keep, 1, &out->pruned);
    free(z);
    out->steps = step;
    out->tokens = t.tokens;
    out->seconds = seconds_now() - t0;
done:
    free(keep);
    trainer_free(&t);
    if (rc) vt_vib_result_free(out);
    return rc;
}

void vt_vib_result_free(vt_vib_result *r) {
    if (r->pruned.arena) vt_model_free(&r->pruned);
    free(r->records);
    r->records = NULL;
    r->n_records = 0;
}
