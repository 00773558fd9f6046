/* recover.c — the recovery loop: distillation from the dense model into the kept one, training
 * adapters (lora) or every layer weight (full) with Adam on a cosine schedule; the teacher's
 * logits are recomputed per micro-batch (the teacher is frozen; packed once with spec.pack). Over
 * pipeline stages both models' hidden states pass the stages as plug's do, the loss on the last,
 * the activation gradients back; each stage trains its layers' run of the whole layout. */
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
#include "dist/pipeline.h"
#include "train/plug_step.h"
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
    float *param, *grad;  /* the trained parameters and their gradients, flat: this stage's run */
    size_t n, off, total; /* the run [off, off + n) of the whole model's layout of total */
    vt_adam adam;
    vt_arena_group whole[VT_ARENA_GROUPS]; /* world rank 0 over stages: the whole state for checkpoints */
    vt_adam whole_adam;
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

/* Stage st's run of group k (0: the adapters or layer weights, 1: lora's norm gains) in the whole
 * model's layout: its offset in *off, its length returned. Both are laid out layer by layer (the
 * final norm's gain after the last layer's), so a stage's share is one contiguous run. */
static size_t stage_run(const recover_ctx *x, int k, int st, size_t *off) {
    const vt_config *c = &x->st->cfg;
    int l0 = x->comm->stage_begin[st], l1 = x->comm->stage_begin[st + 1], last = st == x->comm->stages - 1;
    if (k == 1) {
        *off = x->normp ? (size_t)2 * l0 * c->dim : 0;
        return x->normp ? (size_t)(2 * (l1 - l0) + last) * c->dim : 0;
    }
    if (x->s->method == VT_RECOVER_LORA) {
        *off = vt_lora_count(c, x->s->rank, x->s->targets, 0, l0, NULL);
        return vt_lora_count(c, x->s->rank, x->s->targets, l0, l1, NULL);
    }
    size_t n = 0;
    *off = 0;
    for (int l = 0; l < l1; l++) *(l < l0 ? off : &n) += vt_layer_params(c, l);
    return n;
}

/* What the trained parameters are: the adapters (the base frozen, packed with s->pack) or the layer
 * region; where they sit in the whole layout. */
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
        vt_load_parts parts = {x->st->layer_begin, x->st->layer_end, x->st->has_embed, x->st->has_head};
        if (vt_model_alloc(&x->dw, &x->st->cfg, parts)) return -1;
        x->n = vt_layer_region(x->st, &start);
        x->param = x->st->arena + start, x->grad = x->dw.arena + start;
    }
    size_t run = stage_run(x, 0, x->comm->stage, &x->off), at;
    x->total = x->off + run;
    for (int st = x->comm->stage + 1; st < x->comm->stages; st++) x->total += stage_run(x, 0, st, &at);
    return vt_adam_init(&x->adam, x->n, 0.0);
}

/* World rank 0 over stages: the whole trained state it gathers for checkpoints (lora's gains are
 * whole on every rank already). */
static int alloc_whole(recover_ctx *x) {
    if (x->comm->stages == 1 || x->comm->world_rank != 0) return 0;
    float *p = vt_malloc(sizeof(float) * (x->total ? x->total : 1), "the whole recovery state");
    if (!p || vt_adam_init(&x->whole_adam, x->total, 0.0)) return free(p), -1;
    x->whole[0] = (vt_arena_group){p, x->total, &x->whole_adam, 0, 0};
    x->whole[1] = (vt_arena_group){x->normp, x->n_norm, &x->adam_norm, 0, 0};
    return 0;
}

static int recover_alloc(recover_ctx *x) {
    size_t rows = (size_t)x->Bm * x->T, logits = x->st->has_head ? rows * x->V : 1;
    if (vt_fwd_init(&x->ft, x->te, x->Bm, x->T, x->T) || vt_fwd_init(&x->fs, x->st, x->Bm, x->T, x->T) ||
        vt_tape_init(&x->tape, x->st, x->Bm, x->T, 0) || vt_bwd_init(&x->bw, x->st, x->Bm, x->T, x->T))
        return -1;
    if (x->s->pack && vt_pack_available() && vt_model_packs_init(&x->ft.packs, x->te, 0)) return -1;
    x->tok = vt_malloc(rows * sizeof(int32_t), "recovery tokens");
    x->tgt = vt_malloc(rows * sizeof(int32_t), "recovery targets");
    x->xt = vt_malloc(rows * x->te->cfg.dim * sizeof(float), "recovery activations");
    x->xs = vt_malloc(rows * x->st->cfg.dim * sizeof(float), "recovery activations");
    x->lt = vt_malloc(logits * sizeof(float), "teacher logits"); /* the logits live on the last stage */
    x->ls = vt_malloc(logits * sizeof(float), "student logits");
    x->dl = vt_malloc(logits * sizeof(float), "logit gradients");
    x->ids = vt_malloc((size_t)x->Bg * sizeof(int64_t), "recovery batch");
    if (!x->tok || !x->tgt || !x->xt || !x->xs || !x->lt || !x->ls || !x->dl || !x->ids) return -1;
    return alloc_trained(x) || alloc_whole(x) ? -1 : 0;
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
    free(x->whole[0].param);
    vt_adam_free(&x->whole_adam);
    free(x->normp), free(x->normg);
    free(x->tok), free(x->tgt), free(x->xt), free(x->xs), free(x->lt), free(x->ls), free(x->dl), free(x->ids);
}

enum { TAG_TEACHER = 0, TAG_STUDENT = 1, TAG_BACKWARD = 2, TAG_GATHER = 3 };

/* The last stage: both models' logits, the loss times weight and its gradient at the student's
 * final hidden states (into x->xs). Returns the weighted loss. */
static double head_loss(recover_ctx *x, int rows, double weight) {
    vt_head_forward(x->te, &x->ft, x->xt, rows, x->lt);
    vt_head_forward_ex(x->st, &x->fs, x->xs, rows, x->ls, &x->tape);
    memset(x->dl, 0, (size_t)rows * x->V * sizeof(float));
    double loss = vt_loss_distill(x->ls, x->lt, rows, x->V, 1.0f, (float)weight, x->dl);
    if (x->s->lm_weight > 0)
        loss += vt_loss_ce(x->ls, x->tgt, rows, x->V, (float)(weight * x->s->lm_weight), x->dl);
    vt_head_backward(x->st, &x->bw, &x->tape, x->dl, rows, x->xs, NULL);
    return loss;
}

/* One forward/backward pass over nb sequences (ids) on this rank's stage: the teacher's hidden
 * states, then the student's with its tape, through the stages; on the last the loss (*loss, times
 * weight), then the activation gradients back through the stages into x->grad. A failed transfer
 * ends every rank (the other stages wait on this one). */
static int micro_batch(recover_ctx *x, const int64_t *ids, int nb, double weight, double *loss) {
    vt_comm *c = x->comm;
    int T = x->T, rows = nb * T, l0 = x->st->layer_begin, l1 = x->st->layer_end;
    size_t count = (size_t)rows * x->st->cfg.dim;
    for (int b = 0; b < nb; b++) {
        const int32_t *seq = vt_calib_seq(x->calib, ids[b]);
        memcpy(x->tok + (size_t)b * T, seq, (size_t)T * sizeof(int32_t));
        for (int t = 0; t < T; t++) x->tgt[(size_t)b * T + t] = t + 1 < T ? seq[t + 1] : -1;
    }
    if (vt_pipeline_step(c, x->te, &x->ft, x->tok, x->xt, nb, T, 0, TAG_TEACHER)) return -1; /* aborts all itself */
    if (vt_stage_input(c, x->st, x->tok, rows, x->xs, TAG_STUDENT)) goto fail;
    vt_layers_forward_ex(x->st, &x->fs, l0, l1, x->xs, nb, T, 0, NULL, &x->tape);
    *loss = 0.0;
    if (vt_comm_last(c)) *loss = head_loss(x, rows, weight);
    else if (vt_send_next(c, x->xs, count, TAG_STUDENT) || vt_recv_next(c, x->xs, count, TAG_BACKWARD)) goto fail;
    vt_layers_backward(x->st, &x->fs, &x->bw, l0, l1, x->xs, nb, T, NULL, &x->tape, NULL, x->dw.arena ? &x->dw : NULL);
    if (!vt_comm_first(c) && vt_send_prev(c, x->xs, count, TAG_BACKWARD)) goto fail;
    return 0;
fail:
    vt_comm_abort_all(c, "recovery step");
    return -1;
}

/* Step `step`: this replica's sequences of the global batch (every D-th) through the stages,
 * gradients summed over the stage's replicas, one Adam step on this stage's parameters. *loss: the
 * global batch's mean loss (summed over the last stages), on every rank. */
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
        double part;
        if (micro_batch(x, x->ids + b0, nb, (double)nb / x->Bg, &part)) return -1;
        sum += part;
    }
    if (vt_comm_sum_dp(c, x->grad, x->n) || vt_comm_sum_world(c, &sum, 1)) return -1;
    if (x->normg && vt_comm_sum_dp(c, x->normg, x->n_norm)) return -1;
    double lr = vt_lr_at(VT_LR_COSINE, vt_recover_lr(s), step, s->steps, s->warmup);
    vt_adam_step(&x->adam, x->param, x->grad, lr);
    if (x->normg) vt_adam_step(&x->adam_norm, x->normp, x->normg, lr), scatter_norms(x);
    *loss = sum;
    return 0;
}

/* Over stages, replica 0: world rank 0 receives every other stage's run of one array of group k
 * into whole (its whole layout); mine is this stage's run. */
static int gather_group(recover_ctx *x, int k, float *whole, const float *mine) {
    vt_comm *c = x->comm;
    size_t off, n = stage_run(x, k, c->stage, &off);
    if (c->stage != 0) return n ? vt_comm_send(c, mine, n, 0, TAG_GATHER) : 0;
    if (whole + off != mine) memcpy(whole + off, mine, sizeof(float) * n);
    for (int st = 1; st < c->stages; st++) {
        n = stage_run(x, k, st, &off);
        if (n && vt_comm_recv(c, whole + off, n, st, TAG_GATHER)) return -1;
    }
    return 0;
}

/* arena_ckpt's gather: before a checkpoint, the parameters and moments of every stage to world rank
 * 0 (x->whole; lora's gains into their own whole arrays there). */
static int gather_state(void *arg, vt_comm *c) {
    recover_ctx *x = arg;
    if (c->stages == 1 || c->replica != 0) return 0;
    size_t off;
    stage_run(x, 1, c->stage, &off);
    float *w[3] = {x->whole[0].param, x->whole_adam.m, x->whole_adam.v};
    const float *mine[3] = {x->param, x->adam.m, x->adam.v};
    float *norms[3] = {x->normp, x->adam_norm.m, x->adam_norm.v};
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) rc = gather_group(x, 0, w[i], mine[i]);
    for (int i = 0; i < 3 && !rc && x->normp; i++) rc = gather_group(x, 1, norms[i], norms[i] + off);
    x->whole_adam.t = x->adam.t;
    if (rc) vt_comm_abort_all(c, "recovery: gathering the checkpoint"); /* the peer waits on this one */
    return rc;
}

static int check_spec(const vt_recover_spec *s, const vt_model *st, const vt_model *te, const vt_calib *calib,
                      const vt_comm *c) {
    if (s->steps < 1 || s->batch_size < c->replicas)
        return vt_fail("recover: steps (%ld) must be positive and batch_size (%d) at least the %d replicas", s->steps,
                       s->batch_size, c->replicas);
    if (st->cfg.vocab != te->cfg.vocab) return vt_fail("recover: student and teacher vocabularies differ");
    if (st->layer_begin != te->layer_begin || st->layer_end != te->layer_end)
        return vt_fail("recover: the student holds layers [%d, %d), the teacher [%d, %d)", st->layer_begin,
                       st->layer_end, te->layer_begin, te->layer_end);
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
    vt_arena_state as = {.g = {{x.param, x.n, &x.adam, x.off, x.total}, {.param = x.normp, .n = x.n_norm, .adam = &x.adam_norm}}};
    vt_arena_run run; /* the caller's, with the stages' runs gathered to world rank 0 before a save */
    if (ck) {
        run = *ck, ck = &run;
        if (comm->stages > 1) run.gather = gather_state, run.gather_arg = &x, run.whole = x.whole[0].param ? x.whole : NULL;
    }
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
    out->trained_params = x.total + x.n_norm;
    out->adam_bytes = 2 * (x.n + x.n_norm) * sizeof(float);
    if (rc == 0 && !out->stopped && s->method == VT_RECOVER_LORA) vt_lora_merge(&x.lo, student);
    recover_free(&x);
    return rc ? vt_fail_context("recovery (%s)", vt_recover_method_name(s->method)) : 0;
}
