/* recover.c — the recovery loop: distillation from the dense model into the kept one, training
 * adapters (lora) or every layer weight (full) with Adam on a cosine schedule; the teacher's
 * logits are recomputed per micro-batch (the teacher is frozen; packed once with spec.pack). */
#include "train/recover.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/lora.h"
#include "nn/loss.h"
#include "nn/matmul.h"
#include "nn/optim.h"
#include "train/student.h"
#include "util/clock.h"
#include "util/error.h"

vt_recover_spec vt_recover_defaults(void) {
    return (vt_recover_spec){.method = VT_RECOVER_NONE, .steps = 300, .rank = 8, .targets = VT_LORA_ALL,
                             .lm_weight = 0.5, .batch_size = 8, .seed = 1};
}

static const char *const method_names[] = {"none", "lora", "full"};

const char *vt_recover_method_name(vt_recover_method m) { return m <= VT_RECOVER_FULL ? method_names[m] : "?"; }

int vt_recover_method_parse(const char *s, vt_recover_method *m) {
    for (int i = 0; i <= VT_RECOVER_FULL; i++)
        if (strcmp(s, method_names[i]) == 0) {
            *m = (vt_recover_method)i;
            return 0;
        }
    return -1;
}

double vt_recover_lr(const vt_recover_spec *s) {
    return s->lr > 0 ? s->lr : s->method == VT_RECOVER_LORA ? 1e-2 : 1e-3;
}

/* The loop's state on one rank. */
typedef struct {
    const vt_recover_spec *s;
    vt_model *st;
    const vt_model *te;
    const vt_calib *calib;
    vt_comm *comm;
    int T, Bm, Bg, V;
    vt_fwd ft, fs;
    vt_tape tape;
    vt_bwd bw;
    vt_lora lo, lg;       /* lora: the adapters and their gradients */
    float *normp, *normg; /* lora with norms: the gains (a copy, scattered into st) and their gradients */
    size_t n_norm;
    vt_adam adam_norm;
    vt_model dw;          /* full: the weight gradients */
    float *param, *grad;  /* the trained parameters and their gradients, flat */
    size_t n;
    vt_adam adam;
    int32_t *tok, *tgt;
    float *xt, *xs, *lt, *ls, *dl;
    int64_t *ids;
} recover_ctx;

/* The gain of norm k of the flat layout of vt_norm_grad_at: layer k / 2's attn_norm or ffn_norm,
 * then the final norm; NULL for a block pruned away (its slot stays unused). */
static float *norm_gain(vt_model *m, int k) {
    return k == 2 * m->cfg.n_layers ? m->final_norm : k % 2 ? m->layers[k / 2].ffn_norm : m->layers[k / 2].attn_norm;
}

/* lora with norms: the gains as a second parameter group (their own Adam moments), trained in a
 * flat copy that each step scatters back into the student. */
static int alloc_norms(recover_ctx *x) {
    int D = x->st->cfg.dim, K = 2 * x->st->cfg.n_layers + 1;
    x->n_norm = (size_t)K * D;
    x->normp = vt_calloc(x->n_norm, sizeof(float), "recovery norm gains"); /* slots of removed blocks stay 0 */
    x->normg = vt_malloc(x->n_norm * sizeof(float), "recovery norm gains");
    if (!x->normp || !x->normg) return -1;
    for (int k = 0; k < K; k++)
        if (norm_gain(x->st, k)) memcpy(x->normp + (size_t)k * D, norm_gain(x->st, k), D * sizeof(float));
    x->bw.norm_grad = x->normg;
    return vt_adam_init(&x->adam_norm, x->n_norm, 0.0);
}

static void scatter_norms(recover_ctx *x) {
    int D = x->st->cfg.dim, K = 2 * x->st->cfg.n_layers + 1;
    for (int k = 0; k < K; k++)
        if (norm_gain(x->st, k)) memcpy(norm_gain(x->st, k), x->normp + (size_t)k * D, D * sizeof(float));
}

/* What the trained parameters are: the adapters (the base frozen, packed with s->pack) or the layer
 * region. */
static int alloc_trained(recover_ctx *x) {
    const vt_recover_spec *s = x->s;
    int rows = x->Bm * x->T;
    if (s->method == VT_RECOVER_LORA) {
        float alpha = s->alpha > 0 ? (float)s->alpha : (float)s->rank;
        if (vt_lora_init(&x->lo, x->st, s->rank, alpha, s->targets, s->seed ^ 0x6c6f7261u, rows) ||
            vt_lora_init_like(&x->lg, &x->lo))
            return -1;
        x->fs.lora = x->bw.lora = &x->lo;
        x->bw.lora_grad = &x->lg;
        x->param = x->lo.arena, x->grad = x->lg.arena, x->n = x->lo.n_params;
        if (s->norms && alloc_norms(x)) return -1;
        if (s->pack && vt_pack_available() && (vt_model_packs_init(&x->fs.packs, x->st, 0) ||
                                    vt_model_packs_backward(&x->bw.packs, x->st, &x->fs.packs)))
            return -1;
    } else {
        size_t start;
        if (vt_model_alloc(&x->dw, &x->st->cfg, vt_load_all())) return -1;
        x->n = vt_layer_region(x->st, &start);
        x->param = x->st->arena + start, x->grad = x->dw.arena + start;
    }
    return vt_adam_init(&x->adam, x->n, 0.0);
}

static int recover_alloc(recover_ctx *x) {
    size_t rows = (size_t)x->Bm * x->T;
    if (vt_fwd_init(&x->ft, x->te, x->Bm, x->T, x->T) || vt_fwd_init(&x->fs, x->st, x->Bm, x->T, x->T) ||
        vt_tape_init(&x->tape, x->st, x->Bm, x->T, 0) || vt_bwd_init(&x->bw, x->st, x->Bm, x->T, x->T))
        return -1;
    if (x->s->pack && vt_pack_available() && vt_model_packs_init(&x->ft.packs, x->te, 0)) return -1;
    x->tok = vt_malloc(rows * sizeof(int32_t), "recovery tokens");
    x->tgt = vt_malloc(rows * sizeof(int32_t), "recovery targets");
    x->xt = vt_malloc(rows * x->te->cfg.dim * sizeof(float), "recovery activations");
    x->xs = vt_malloc(rows * x->st->cfg.dim * sizeof(float), "recovery activations");
    x->lt = vt_malloc(rows * x->V * sizeof(float), "teacher logits");
    x->ls = vt_malloc(rows * x->V * sizeof(float), "student logits");
    x->dl = vt_malloc(rows * x->V * sizeof(float), "logit gradients");
    x->ids = vt_malloc((size_t)x->Bg * sizeof(int64_t), "recovery batch");
    if (!x->tok || !x->tgt || !x->xt || !x->xs || !x->lt || !x->ls || !x->dl || !x->ids) return -1;
    return alloc_trained(x);
}

static void recover_free(recover_ctx *x) {
    vt_fwd_free(&x->ft);
    vt_fwd_free(&x->fs);
    vt_tape_free(&x->tape);
    vt_bwd_free(&x->bw);
    vt_lora_free(&x->lo);
    vt_lora_free(&x->lg);
    if (x->dw.arena) vt_model_free(&x->dw);
    vt_adam_free(&x->adam);
    vt_adam_free(&x->adam_norm);
    free(x->normp), free(x->normg);
    free(x->tok), free(x->tgt), free(x->xt), free(x->xs), free(x->lt), free(x->ls), free(x->dl), free(x->ids);
}

/* One forward/backward pass over nb sequences (ids): the teacher's logits, the student's, the
 * loss times weight, its gradient into x->grad. Returns the weighted loss. */
static double micro_batch(recover_ctx *x, const int64_t *ids, int nb, double weight) {
    int T = x->T, rows = nb * T, L = x->st->cfg.n_layers;
    for (int b = 0; b < nb; b++) {
        const int32_t *seq = vt_calib_seq(x->calib, ids[b]);
        memcpy(x->tok + (size_t)b * T, seq, (size_t)T * sizeof(int32_t));
        for (int t = 0; t < T; t++) x->tgt[(size_t)b * T + t] = t + 1 < T ? seq[t + 1] : -1;
    }
    vt_embed(x->te, x->tok, rows, x->xt);
    vt_layers_forward(x->te, &x->ft, 0, x->te->cfg.n_layers, x->xt, nb, T, 0);
    vt_head_forward(x->te, &x->ft, x->xt, rows, x->lt);
    vt_embed(x->st, x->tok, rows, x->xs);
    vt_layers_forward_ex(x->st, &x->fs, 0, L, x->xs, nb, T, 0, NULL, &x->tape);
    vt_head_forward_ex(x->st, &x->fs, x->xs, rows, x->ls, &x->tape);
    memset(x->dl, 0, (size_t)rows * x->V * sizeof(float));
    double loss = vt_loss_distill(x->ls, x->lt, rows, x->V, 1.0f, (float)weight, x->dl);
    if (x->s->lm_weight > 0)
        loss += vt_loss_ce(x->ls, x->tgt, rows, x->V, (float)(weight * x->s->lm_weight), x->dl);
    vt_model *dw = x->dw.arena ? &x->dw : NULL;
    vt_head_backward(x->st, &x->bw, &x->tape, x->dl, rows, x->xs, NULL);
    vt_layers_backward(x->st, &x->fs, &x->bw, 0, L, x->xs, nb, T, NULL, &x->tape, NULL, dw);
    return loss;
}

/* Step `step`: this replica's sequences of the global batch (every D-th), gradients summed over
 * the replicas, one Adam step. *loss: the global batch's mean loss. */
static int recover_step(recover_ctx *x, long step, double *loss) {
    const vt_recover_spec *s = x->s;
    vt_comm *c = x->comm;
    vt_calib_batch(x->calib, s->seed, step, x->Bg, x->ids);
    int mine = 0;
    for (int i = c->replica; i < x->Bg; i += c->replicas) x->ids[mine++] = x->ids[i];
    memset(x->grad, 0, x->n * sizeof(float));
    if (x->normg) memset(x->normg, 0, x->n_norm * sizeof(float));
    double sum = 0.0;
    for (int b0 = 0; b0 < mine; b0 += x->Bm) {
        int nb = mine - b0 < x->Bm ? mine - b0 : x->Bm;
        sum += micro_batch(x, x->ids + b0, nb, (double)nb / x->Bg);
    }
    if (vt_comm_sum_dp(c, x->grad, x->n) || c->reduce(c, VT_DP, VT_SUM, VT_DOUBLE, &sum, 1, -1)) return -1;
    if (x->normg && vt_comm_sum_dp(c, x->normg, x->n_norm)) return -1;
    double lr = vt_lr_at(VT_LR_COSINE, vt_recover_lr(s), step, s->steps, s->warmup);
    vt_adam_step(&x->adam, x->param, x->grad, lr);
    if (x->normg) vt_adam_step(&x->adam_norm, x->normp, x->normg, lr), scatter_norms(x);
    *loss = sum;
    return 0;
}

static int check_spec(const vt_recover_spec *s, const vt_model *st, const vt_model *te, const vt_calib *calib,
                      const vt_comm *c) {
    if (c->stages > 1)
        return vt_fail("recover.method = %s runs on whole models only: use parallel.stages = 1 (the recovery does "
                       "not run over pipeline stages yet)", vt_recover_method_name(s->method));
    if (s->steps < 1 || s->batch_size < c->replicas)
        return vt_fail("recover: steps (%ld) must be positive and batch_size (%d) at least the %d replicas", s->steps,
                       s->batch_size, c->replicas);
    if (st->cfg.vocab != te->cfg.vocab) return vt_fail("recover: student and teacher vocabularies differ");
    if (calib->seq_len > st->cfg.seq_len)
        return vt_fail("recover: sequences of %d tokens exceed the model's %d positions", calib->seq_len,
                       st->cfg.seq_len);
    return 0;
}

/* The loop from step start (0, or where a checkpoint left it) to the end or a requested stop. */
static int recover_loop(recover_ctx *x, const vt_arena_run *ck, vt_arena_state *as, FILE *log, vt_recover_result *out) {
    const vt_recover_spec *s = x->s;
    vt_save_clock clock = {.last_save = vt_seconds()};
    double t0 = vt_seconds();
    long start = as->step;
    for (long step = start; step < s->steps; step++) {
        double loss = 0.0;
        if (vt_comm_agree(x->comm, recover_step(x, step, &loss))) return -1;
        if (step == 0) as->stats[0] = loss;
        as->stats[1] = loss;
        as->step = step + 1;
        if (log && (step % 50 == 0 || step + 1 == s->steps))
            fprintf(log, "recover %s step %ld/%ld: loss %.4f (%.2f s/step)\n", vt_recover_method_name(s->method),
                    step + 1, s->steps, loss, (vt_seconds() - t0) / (double)(step + 1 - start));
        int stop = ck ? vt_arena_ckpt_tick(ck, &clock, x->comm, as) : 0;
        if (stop < 0) return -1;
        if (stop) {
            out->stopped = 1;
            break;
        }
    }
    return 0;
}

int vt_recover(vt_model *student, const vt_model *teacher, const vt_calib *calib, const vt_recover_spec *s,
               vt_comm *comm, const vt_arena_run *ck, FILE *log, vt_recover_result *out) {
    memset(out, 0, sizeof *out);
    if (s->method == VT_RECOVER_NONE) return 0;
    if (vt_comm_agree(comm, check_spec(s, student, teacher, calib, comm))) return -1;
    recover_ctx x = {.s = s, .st = student, .te = teacher, .calib = calib, .comm = comm, .T = calib->seq_len,
                     .Bg = s->batch_size, .V = student->cfg.vocab};
    int share = (s->batch_size + comm->replicas - 1) / comm->replicas;
    x.Bm = s->micro_batch > 0 && s->micro_batch < share ? s->micro_batch : share;
    int rc = vt_comm_agree(comm, recover_alloc(&x));
    vt_arena_state as = {.g = {{x.param, x.n, &x.adam}, {x.normp, x.n_norm, &x.adam_norm}}};
    if (rc == 0 && ck && vt_arena_ckpt_load(ck, comm, &as) < 0) rc = -1;
    if (rc == 0 && as.step > 0 && x.normp) scatter_norms(&x); /* the gains act from the model's weights */
    if (rc == 0 && as.step > s->steps)
        rc = vt_fail("%s: the recovery checkpoint is at step %ld, past recover.steps = %ld", ck->policy.dir, as.step,
                     s->steps);
    out->resumed_at = as.step;
    double t0 = vt_seconds();
    if (rc == 0) rc = recover_loop(&x, ck, &as, log, out);
    out->seconds = vt_seconds() - t0;
    out->steps = as.step;
    out->first_loss = as.stats[0], out->last_loss = as.stats[1];
    out->tokens = out->steps * (long)s->batch_size * x.T;
    out->trained_params = x.n + x.n_norm;
    out->adam_bytes = 2 * out->trained_params * sizeof(float);
    if (rc == 0 && !out->stopped && s->method == VT_RECOVER_LORA) vt_lora_merge(&x.lo, student);
    recover_free(&x);
    return rc ? vt_fail_context("recovery (%s)", vt_recover_method_name(s->method)) : 0;
}
