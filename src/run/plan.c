/* plan.c — per-rank memory and FLOPs of a distributed run, estimated from the configuration. */
#include "run/plan.h"
#include "train/head_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "nn/forward.h"
#include "nn/lora.h"
#include "nn/matmul.h"
#include "dist/partition.h"

/* Bytes per VIB gate on every rank: mu, logvar and their gradients (4 floats), the unit id
 * (int64), group (u8) and layer (i16), Adam m and v of mu and of logvar (4 floats), and the
 * two doubles of the world reduction of its gradients. */
#define GATE_BYTES (4 * 4 + 8 + 1 + 2 + 4 * 4 + 2 * 8)

double vt_plan_frozen_weights(const vt_plan_input *in, int stages, int s, int l0, int l1) {
    const vt_config *c = in->cfg;
    double all = (double)vt_plan_weight_floats(c, stages, s, l0, l1), narrow = 0.0, d = c->dim;
    if (!in->checkpoint_16bit) return 4.0 * all;
    for (int l = l0; l < l1; l++) /* the layer's matrices: all but its norms */
        narrow += (double)vt_layer_params(c, l) - (c->layers[l].n_heads ? d : 0.0) - (c->layers[l].ffn ? d : 0.0);
    if (s == 0 && !c->tied) narrow += (double)c->vocab * d;
    return 4.0 * all - 2.0 * narrow;
}

size_t vt_plan_weight_floats(const vt_config *c, int stages, int s, int l0, int l1) {
    size_t d = (size_t)c->dim, emb = (size_t)c->vocab * d, n = 0;
    int embed = s == 0, head = s == stages - 1;
    if (embed) n += emb;
    if (head) n += d + ((c->tied && embed) ? 0 : emb);
    for (int l = l0; l < l1; l++) n += vt_layer_params(c, l);
    return n;
}

size_t vt_plan_tape_floats(const vt_config *c, int l0, int l1, int B, int T, int pos0) {
    size_t rows = (size_t)B * T, d = (size_t)c->dim, n = 2 * rows * d + rows; /* final norm input */
    size_t ctx = (size_t)pos0 + T; /* keys a chunk's queries attend to */
    for (int l = l0; l < l1; l++) {
        const vt_layer_shape *s = &c->layers[l];
        size_t q = (size_t)s->n_heads * c->head_dim, kv = (size_t)s->n_kv_heads * c->head_dim;
        if (s->n_heads) n += rows * (3 * d + 1 + q + 2 * kv + q) + (size_t)B * s->n_heads * T * ctx;
        if (s->ffn) n += rows * (3 * d + 1 + 3 * (size_t)s->ffn);
    }
    return n;
}

/* Floats of vt_fwd_init(B, T, ctx): rows = B T, the key/value cache of B sequences x ctx positions
 * (per layer; with one_cache the widest layer's only, as the re-fit shares it) and RoPE tables of
 * ctx positions. */
static size_t fwd_floats_ex(const vt_config *c, int l0, int l1, int B, int T, int ctx, int one_cache) {
    size_t rows = (size_t)B * T, d = (size_t)c->dim, hd = (size_t)c->head_dim;
    size_t q = 0, kv = 0, f = 0, cache = 0;
    for (int l = l0; l < l1; l++) {
        const vt_layer_shape *s = &c->layers[l];
        size_t ql = (size_t)s->n_heads * hd, kvl = (size_t)s->n_kv_heads * hd;
        q = ql > q ? ql : q;
        kv = kvl > kv ? kvl : kv;
        f = (size_t)s->ffn > f ? (size_t)s->ffn : f;
        cache += 2 * (size_t)B * ctx * kvl; /* keys and values */
    }
    if (one_cache) cache = 2 * (size_t)B * ctx * kv;
    return rows * d + rows * (q + 2 * kv + 1) + rows * (q + 1) + (size_t)T * ctx + rows * (2 * f + 1) +
           rows * (f + 1) + rows * d + (size_t)ctx * hd + cache;
}
static size_t fwd_floats(const vt_config *c, int l0, int l1, int B, int T, int ctx) {
    return fwd_floats_ex(c, l0, l1, B, T, ctx, 0);
}

/* Floats of vt_bwd_init(B, T, ctx): rows = B T, scores' gradient [T, ctx], and for chunks of longer
 * sequences (ctx > T) per layer the key/value gradients of B sequences x ctx positions. */
static size_t bwd_floats(const vt_config *c, int l0, int l1, int B, int T, int ctx) {
    size_t rows = (size_t)B * T, d = (size_t)c->dim, hd = (size_t)c->head_dim;
    size_t wide = 1, qkv = 1, dkv = 0;
    for (int l = l0; l < l1; l++) {
        const vt_layer_shape *s = &c->layers[l];
        size_t ql = (size_t)s->n_heads * hd, kvl = (size_t)s->n_kv_heads * hd, fl = (size_t)s->ffn;
        wide = ql > wide ? ql : wide;
        wide = fl > wide ? fl : wide;
        qkv = ql + 2 * kvl > qkv ? ql + 2 * kvl : qkv;
        qkv = 2 * fl > qkv ? 2 * fl : qkv;
        dkv += (size_t)B * ctx * 2 * kvl;
    }
    return rows * (2 * d + 3 * wide + qkv) + (size_t)T * ctx + (ctx > T ? dkv : 0);
}

/* Floats of the forward and backward scratch of a rank training micro-batches of B sequences x Tc
 * tokens (chunks of sequences of T tokens when Tc < T), plus the teacher's forward state of the
 * teacher cache pass (B whole sequences; allocated while the student's buffers exist). */
static size_t scratch_floats(const vt_config *c, int l0, int l1, int B, int Tc, int T) {
    return fwd_floats(c, l0, l1, B, Tc, T) + fwd_floats(c, l0, l1, B, T, T) + bwd_floats(c, l0, l1, B, Tc, T);
}

static size_t gate_count(const vt_config *c) {
    size_t n = (size_t)c->dim;
    for (int l = 0; l < c->n_layers; l++) n += (size_t)c->layers[l].n_heads + (size_t)c->layers[l].ffn + 2;
    return n;
}

/* Bytes of the packed copies of layers [l0, l1) and of vs classifier rows, for x W^T and dY W,
 * held in t; 16-bit backward packs are views of the forward ones (vt_pack_transposed), no bytes. */
static double pack_bytes(const vt_config *c, int l0, int l1, int vs, vt_dtype t) {
    double fwd = 0.0, bwd = 0.0;
    int d = c->dim;
    for (int l = l0; l < l1; l++) {
        const vt_layer_shape *s = &c->layers[l];
        int q = s->n_heads * c->head_dim, width = q + 2 * s->n_kv_heads * c->head_dim;
        if (s->n_heads) {
            fwd += (double)vt_packed_bytes(d, width, t) + (double)vt_packed_bytes(q, d, t);
            bwd += (double)vt_packed_bytes(width, d, t) + (double)vt_packed_bytes(d, q, t);
        }
        if (s->ffn) {
            fwd += (double)vt_packed_bytes(d, 2 * s->ffn, t) + (double)vt_packed_bytes(s->ffn, d, t);
            bwd += (double)vt_packed_bytes(2 * s->ffn, d, t) + (double)vt_packed_bytes(d, s->ffn, t);
        }
    }
    if (vs) {
        fwd += (double)vt_packed_bytes(d, vs, t);
        bwd += (double)vt_packed_bytes(vs, d, t);
    }
    return t == VT_F32 ? fwd + bwd : fwd;
}

/* Memory of stage s's ranks (see docs/CLUSTER.md for each term). */
static void stage_memory(const vt_plan_input *in, vt_plan *p, int s) {
    const vt_config *c = in->cfg;
    vt_stage_plan *st = &p->stage[s];
    int l0 = st->layer_begin, l1 = st->layer_end, last = s == p->stages - 1;
    int M = p->micro_batches, Bm = p->micro_batch, T = in->seq_len, C = p->seq_chunks, Tc = p->chunk_tokens;
    double rows = (double)Bm * T, rows_mb = (double)Bm * Tc, d = c->dim, f4 = sizeof(float);
    double w = (double)vt_plan_weight_floats(c, p->stages, s, l0, l1) * f4;
    double layers = 0.0;
    for (int l = l0; l < l1; l++) layers += (double)vt_layer_params(c, l) * f4;
    int finetune = in->finetune_steps > 0;
    double keep = in->keep_fraction;

    /* The student stays the teacher's weights until its first slice: iterative pruning may slice
     * it at nearly full size; fine-tuning trains a slice of about the kept fraction. */
    double student = in->prune_interval > 0 ? w : (finetune ? keep * w : 0.0);
    int S = p->stages, v0, vs;
    vt_vocab_share(c->vocab, S, s, &v0, &vs);
    /* the frozen model as held, the trained student in fp32, other stages' classifier rows (fp32) */
    st->weights = vt_plan_frozen_weights(in, p->stages, s, l0, l1) + student + (last ? 0.0 : (double)vs * d * f4);
    /* packed copies of the student's frozen weights (the dense size: an upper bound once sliced);
     * fine-tuning frees them, the plan counts them with its moments all the same */
    st->packs = pack_bytes(c, l0, l1, vs, in->hold);
    if (in->pack_weights) st->weights += st->packs;

    /* GPipe: the tape of every micro-batch, M groups of C chunks, chunk k at positions k Tc.. */
    double tapes = 0.0;
    for (int k = 0; k < C; k++) tapes += (double)vt_plan_tape_floats(c, l0, l1, Bm, Tc, k * Tc);
    st->activations = f4 * (M * tapes + (double)scratch_floats(c, l0, l1, Bm, Tc, T) +
                            rows * d +                                     /* passing activations */
                            3.0 * (double)p->gates * p->seqs_per_replica); /* gate values, noise, grads */
    /* every stage: its share of the logits, probabilities and their gradient, the classifier's input
     * and its gradient, for the whole sequences of a micro-batch; the last stage: the gradients at
     * the final hidden states of every micro-batch (M C chunks); 7 doubles a row: the softmax statistics
     * (6) and hneg */
    st->activations += f4 * (3.0 * rows * vs + 2.0 * rows * d) + 7.0 * sizeof(double) * rows;
    if (last) st->activations += f4 * (double)M * C * rows_mb * d;
    /* 16-bit matrices: the student's and the teacher's forward and the backward scratch each widen a block */
    if (in->checkpoint_16bit) st->activations += 3.0 * f4 * (double)vt_layers_wide_floats(c, l0, l1);
    /* the last stage: the teacher cache's rows of the replica's sequences, fetched for a step */
    if (last) st->activations += p->cache_per_sequence * p->seqs_per_replica;

    st->optimizer = (double)p->gates * GATE_BYTES;
    if (finetune) st->optimizer += keep * (w + 2.0 * layers); /* weight gradients, Adam m and v of layers */

    /* the last stage: its replica's share of the teacher cache (sequences r, r + D, ...) */
    st->teacher_cache = last ? p->cache_per_sequence * ceil((double)in->calib_sequences / p->replicas) : 0.0;
    st->total = st->weights + st->activations + st->optimizer + st->teacher_cache;
}

/* The re-fit's memory and FLOPs (vt_refit_plan), as prune/refit.c allocates and computes: per layer
 * the output projections' systems over the kept inputs (dense widths here) and with refit_inputs
 * the input projections' over the hidden size; a pass of the dense model and two of the pruned one
 * (gather, advance) per block. Buffers: both models' forward scratch sharing one key/value cache,
 * a batch's streams, targets and predictions (fp32), its system inputs and targets (fp64), the
 * largest system's G and C and its solution. */
static void plan_refit(const vt_plan_input *in, vt_plan *p) {
    const vt_config *c = in->cfg;
    vt_refit_plan *r = &p->refit;
    double T = in->refit_seq_len > 0 ? in->refit_seq_len : in->seq_len, D = c->dim, hd = c->head_dim;
    double rows = (double)in->refit_sequences * T;
    double M = D, N = D, W = 1, sys = 0, sol = 0, f4 = sizeof(float), f8 = sizeof(double);
    int B = in->refit_batch < in->refit_sequences ? in->refit_batch : in->refit_sequences, L0 = 0, L1 = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        double q = s->n_heads * hd, qkv = (s->n_heads + 2.0 * s->n_kv_heads) * hd, f = s->ffn;
        M = fmax(M, fmax(q, f));
        sys = fmax(sys, fmax(q * q + D * q, f * f + D * f)); /* o_proj, down_proj: m inputs, D outputs */
        sol = fmax(sol, D * fmax(q, f));
        /* G (its lower triangle, dsyrk) and C of o_proj, down_proj */
        r->flops_double += rows * (q * (q + 1) + f * (f + 1)) + 2 * rows * D * (q + f);
        r->flops_double += (q * q * q + f * f * f) / 3 + 2 * D * (q * q + f * f); /* their solves */
        if (!in->refit_inputs) continue;
        N = fmax(N, fmax(qkv, 2 * f));
        W = N;
        sys = fmax(sys, D * D + fmax(qkv, 2 * f) * D); /* QKV, gate/up: D inputs */
        sol = fmax(sol, fmax(qkv, 2 * f) * D);
        r->flops_double += 2 * rows * D * (D + 1) + 2 * rows * (qkv + 2 * f) * D + 2 * D * D * D / 3 + 2 * D * D * (qkv + 2 * f);
    }
    for (int s = 0; s < p->stages; s++) /* the largest stage's forward buffers */
        if (p->stage[s].layer_end - p->stage[s].layer_begin > L1 - L0) L0 = p->stage[s].layer_begin, L1 = p->stage[s].layer_end;
    r->flops = 3 * rows * p->flops_token;
    double share = ceil((double)in->refit_sequences / p->replicas) * T, brows = (double)B * T;
    r->widest_in = (int)M;
    r->widest_out = (int)N;
    r->streams = 2 * share * D * f4;
    r->work = 2.0 * (double)fwd_floats_ex(c, L0, L1, B, (int)T, (int)T, 1) * f4 + brows * (2 * D + W + N) * f4 +
              brows * (M + N) * f8 + (sys + sol) * f8;
    if (in->checkpoint_16bit) r->work += f4 * (double)vt_layers_wide_floats(c, L0, L1); /* the dense pass widens */
    r->solver = sys / p->replicas * f8;
    r->models = 0.0; /* the largest stage's dense weights as held, its pruned ones in fp32 */
    for (int s = 0; s < p->stages; s++) {
        const vt_stage_plan *st = &p->stage[s];
        double both = vt_plan_frozen_weights(in, p->stages, s, st->layer_begin, st->layer_end) +
                      in->keep_fraction * (double)st->params * f4;
        r->models = fmax(r->models, both);
    }
    r->total = r->streams + r->work + r->solver;
}

/* One pipeline stage's recovery memory (layers [l0, l1), the embedding on the first, the final
 * norm and classifier with the logits on the last), as train/recover.c allocates it there: the
 * teacher's and the student's forward scratch, the student's tape and backward scratch for a
 * micro-batch, the activations passed on, both models' logits and their gradient (last stage);
 * lora's adapters, gradients and moments, or full's weight gradients and the layers' moments. The
 * student at the dense widths (scratch, adapters) or the kept fraction (weights, full's state). */
static void recover_stage(const vt_plan_input *in, int stages, int s, int l0, int l1, int Bm, vt_recover_plan *r) {
    const vt_config *c = in->cfg;
    int first = s == 0, last = s == stages - 1;
    int T = in->seq_len, lora = in->recover_method == 1;
    double f4 = sizeof(float), keep = in->keep_fraction, rows = (double)Bm * T, layers = 0.0;
    for (int l = l0; l < l1; l++) layers += (double)vt_layer_params(c, l);
    double ends = (first ? (double)c->vocab * c->dim : 0.0) + (last ? (double)c->vocab * c->dim + c->dim : 0.0);
    double part = layers + ends, lora_n = (double)vt_lora_count(c, in->recover_rank, in->recover_targets, l0, l1, NULL);
    r->weights = vt_plan_frozen_weights(in, stages, s, l0, l1) + keep * part * f4;
    if (in->pack_weights) { /* the teacher's forward packs in the hold type; lora's pruned student (re-fitted: fp32) both */
        double f32 = pack_bytes(c, l0, l1, last ? c->vocab : 0, VT_F32);
        r->weights += (in->hold == VT_F32 ? 0.5 * f32 : pack_bytes(c, l0, l1, last ? c->vocab : 0, in->hold)) +
                      (lora ? keep * f32 : 0.0);
    }
    r->trained = lora ? 4.0 * f4 * lora_n : keep * part * f4 + 2.0 * f4 * keep * layers;
    r->activations = f4 * (2.0 * (double)fwd_floats(c, l0, l1, Bm, T, T) + (double)vt_plan_tape_floats(c, l0, l1, Bm, T, 0) +
                           (double)bwd_floats(c, l0, l1, Bm, T, T) + rows * 2.0 * c->dim +
                           (last ? rows * 3.0 * c->vocab : 0.0) + (lora ? 2.0 * rows * in->recover_rank : 0.0));
    if (in->checkpoint_16bit) r->activations += f4 * (double)vt_layers_wide_floats(c, l0, l1); /* the teacher widens */
    r->total = r->weights + r->trained + r->activations;
}

/* The recovery (vt_recover_plan): the largest stage's memory; the optimizer states of the whole
 * model (lora against full); the FLOPs of a step. */
static void plan_recover(const vt_plan_input *in, vt_plan *p) {
    const vt_config *c = in->cfg;
    vt_recover_plan *r = &p->recover;
    int L = c->n_layers, T = in->seq_len, lora = in->recover_method == 1, S = p->stages;
    int share = (in->recover_batch + p->replicas - 1) / p->replicas;
    int Bm = in->recover_micro > 0 && in->recover_micro < share ? in->recover_micro : share;
    r->micro = Bm;
    double f4 = sizeof(float), keep = in->keep_fraction, layers = 0.0, head = 2.0 * c->dim * c->vocab;
    for (int l = 0; l < L; l++) layers += (double)vt_layer_params(c, l);
    r->lora_params = vt_lora_count(c, in->recover_rank, in->recover_targets, 0, L, NULL);
    r->full_params = (size_t)(keep * layers);
    for (int s = 0; s < S; s++) {
        vt_recover_plan st;
        recover_stage(in, S, s, p->stage[s].layer_begin, p->stage[s].layer_end, Bm, &st);
        if (s == 0 && S > 1) { /* world rank 0 gathers the whole trained state and its moments for checkpoints */
            double whole = 3.0 * f4 * (double)(lora ? r->lora_params : r->full_params);
            st.trained += whole, st.total += whole;
        }
        if (st.total > r->total) r->weights = st.weights, r->trained = st.trained, r->activations = st.activations,
                                 r->total = st.total;
    }
    r->adam_lora = 2.0 * f4 * (double)r->lora_params;
    r->adam_full = 2.0 * f4 * (double)r->full_params;
    /* the teacher's forward, the student's forward and backward to its activations, and lora's
     * adapter products (3 matmuls of 2 FLOPs per parameter) or full's weight gradients */
    double student = keep * (p->flops_token - head) + head;
    r->flops_token = p->flops_token + 2.0 * student +
                     (lora ? 6.0 * (double)r->lora_params : keep * (p->flops_token - head));
    r->flops_step = r->flops_token * (double)in->recover_batch * T;
}

int vt_plan_make(const vt_plan_input *in, vt_plan *out) {
    memset(out, 0, sizeof *out);
    const vt_config *c = in->cfg;
    if (in->batch_size < 1 || in->seq_len < 2)
        return vt_fail("a step of %d sequences of %d tokens: need at least 1 sequence of 2 tokens", in->batch_size,
                       in->seq_len);
    if (in->seq_len > c->seq_len)
        return vt_fail("data.seq_len %d exceeds the model's %d positions", in->seq_len, c->seq_len);
    if (vt_topology_choose(in->ranks, c->n_layers, in->stages, &out->stages, &out->replicas)) return -1;
    if (in->recover_method > 0 && in->recover_batch < out->replicas)
        return vt_fail("recover.batch_size %d is less than the %d replicas", in->recover_batch, out->replicas);
    out->ranks = in->ranks;
    int D = out->replicas, S = out->stages;
    if (in->batch_size % D)
        return vt_fail("schedule.batch_size %d does not split evenly over %d data-parallel replicas (%d ranks / %d "
                       "stages); use a multiple of %d",
                       in->batch_size, D, in->ranks, S, D);
    out->seqs_per_replica = in->batch_size / D;
    if (vt_micro_batches_choose(S, out->seqs_per_replica, in->micro_batches, &out->micro_batches)) return -1;
    out->micro_batch = out->seqs_per_replica / out->micro_batches;
    if (vt_seq_chunks_choose(S, out->micro_batches, out->micro_batch, in->seq_len, in->seq_chunks,
                             &out->seq_chunks))
        return -1;
    out->chunk_tokens = in->seq_len / out->seq_chunks;
    out->bubble = vt_pipeline_bubble(S, out->micro_batches * out->seq_chunks);

    int *begin = vt_malloc(sizeof(int) * (size_t)(S + 1), "partition");
    out->stage = vt_calloc((size_t)S, sizeof *out->stage, "stage plans");
    out->sched = vt_calloc((size_t)S * (size_t)(out->seq_chunks + 1), sizeof(double), "plan step schedule");
    if (!begin || !out->stage || !out->sched || vt_partition_layers(c, S, VT_PARTITION_TRAIN, begin)) {
        free(begin);
        vt_plan_free(out);
        return -1;
    }
    double T = in->seq_len, d = c->dim, head = 2.0 * d * c->vocab;
    double tokens_replica = (double)out->seqs_per_replica * T, tokens_step = (double)in->batch_size * T;
    out->ctx = (T + 1.0) / 2.0;
    out->flops_token = vt_flops_per_token(c, out->ctx);
    out->gates = gate_count(c);
    out->cache_per_sequence = T * (d * sizeof(float) + sizeof(double)); /* expectations, sum p log p */
    for (int s = 0; s < S; s++) {
        vt_stage_plan *st = &out->stage[s];
        st->layer_begin = begin[s];
        st->layer_end = begin[s + 1];
        st->params = vt_plan_weight_floats(c, S, s, begin[s], begin[s + 1]);
        for (int l = begin[s]; l < begin[s + 1]; l++) st->flops_layers += vt_layer_flops(c, l, out->ctx);
        int v0, vs;
        vt_vocab_share(c->vocab, S, s, &v0, &vs); /* every stage computes its share of the classifier */
        st->flops_head = 2.0 * d * vs;
        st->flops_token = st->flops_layers + st->flops_head;
        /* mask phase: forward + activation gradients (~2 forward); the teacher costs nothing per
         * step (its expectations are cached) */
        st->flops_rank_step = 2.0 * st->flops_token * tokens_replica;
        stage_memory(in, out, s);
    }
    free(begin);
    out->flops_step_masks = 2.0 * out->flops_token * tokens_step;
    /* fine-tuning adds the layers' weight gradients (the classifier is not trained) */
    out->flops_step_finetune = in->finetune_steps > 0 ? (3.0 * out->flops_token - head) * tokens_step : 0.0;
    /* every replica runs every calibration sequence through its layers and the classifier once,
     * plus the expectations (one more classifier-sized matmul) */
    out->flops_teacher = (double)in->calib_sequences * T * (out->flops_token + head); /* sharded over replicas */
    out->flops_run = out->flops_step_masks * (double)in->steps +
                     out->flops_step_finetune * (double)in->finetune_steps + out->flops_teacher;
    for (int s = 0; s < S; s++) out->peak = fmax(out->peak, out->stage[s].total);
    if (in->refit_sequences > 0) {
        plan_refit(in, out);
        out->flops_run += out->refit.flops + out->refit.flops_double;
        out->peak = fmax(out->peak, out->refit.models + out->refit.total);
    }
    if (in->recover_method > 0) {
        plan_recover(in, out);
        out->flops_run += out->recover.flops_step * (double)in->recover_steps;
        out->peak = fmax(out->peak, out->recover.total);
    }
    return 0;
}

void vt_plan_free(vt_plan *p) {
    free(p->stage);
    free(p->sched);
    p->stage = NULL;
    p->sched = NULL;
}

double vt_plan_rows_rate(int packed, double rate, double rows) {
    return packed ? rate : rate * rows / (rows + VT_PLAN_REPACK_ROWS);
}

/* Forward FLOPs per token of stage s's layers for the tokens of chunk `chunk` (chunk_tokens wide)
 * of a sequence: their queries attend to the positions up to theirs, chunk x chunk_tokens +
 * (chunk_tokens + 1) / 2 on average. */
static double chunk_layer_flops(const vt_config *c, const vt_stage_plan *st, int chunk, int chunk_tokens) {
    double ctx = (double)chunk * chunk_tokens + (chunk_tokens + 1.0) / 2.0, f = 0.0;
    for (int l = st->layer_begin; l < st->layer_end; l++) f += vt_layer_flops(c, l, ctx);
    return f;
}

void vt_plan_step_phases(const vt_plan_input *in, const vt_plan *p, double rate, double bwd, int packed,
                         double phase[3]) {
    int S = p->stages, C = p->seq_chunks, K = p->micro_batches * C;
    double tokens = (double)p->micro_batch * p->chunk_tokens, r = vt_plan_rows_rate(packed, rate, tokens);
    double *fwd = p->sched, *done = fwd + S * C;
    memset(done, 0, sizeof(double) * (size_t)S);
    for (int s = 0; s < S; s++)
        for (int ch = 0; ch < C; ch++) fwd[s * C + ch] = chunk_layer_flops(in->cfg, &p->stage[s], ch, p->chunk_tokens) * tokens / r;
    for (int k = 0; k < K; k++) /* forward: micro-batch k is chunk k % C of its sequences */
        for (int s = 0; s < S; s++) done[s] = fmax(done[s], s ? done[s - 1] : 0.0) + fwd[s * C + k % C];
    phase[0] = done[S - 1]; /* the last stage is the last to finish */
    double head = 0.0;
    for (int s = 0; s < S; s++) head = fmax(head, p->stage[s].flops_head);
    phase[1] = K * 2.0 * head * tokens / r; /* the share's logits and the gradient to its inputs */
    memset(done, 0, sizeof(double) * (size_t)S);
    for (int k = K - 1; k >= 0; k--) /* backward: the last micro-batch first, the last stage first */
        for (int s = S - 1; s >= 0; s--) done[s] = fmax(done[s], s < S - 1 ? done[s + 1] : 0.0) + bwd * fwd[s * C + k % C];
    phase[2] = done[0]; /* the first stage is the last to finish; the gradient sums wait for it */
}

/* Hours of the teacher cache pass (teacher_cache.c): each replica runs its share of the calibration
 * sequences, micro_batch whole sequences at a time, through its stages; before stage 0 takes the
 * next micro-batch, every stage computes its classifier share of this one (the logits and the
 * expected rows, two classifier products) in lock step on the last stage's output, so the stages
 * do not overlap: S stages take what one rank takes for the layers, and only the classifier is
 * split. */
static double teacher_hours(const vt_plan_input *in, const vt_plan *p, double rate) {
    if (in->calib_sequences <= 0) return 0.0;
    double tokens = (double)p->micro_batch * in->seq_len, r = vt_plan_rows_rate(in->pack_weights, rate, tokens);
    double own = ceil((double)in->calib_sequences / p->replicas), layers = 0.0, head = 0.0;
    for (int s = 0; s < p->stages; s++) {
        layers += p->stage[s].flops_layers;
        head = fmax(head, p->stage[s].flops_head);
    }
    return ceil(own / p->micro_batch) * (layers + 2.0 * head) * tokens / r / 3600.0;
}

void vt_plan_times(const vt_plan_input *in, const vt_plan *p, const vt_speed *sp, vt_plan_time *t) {
    memset(t, 0, sizeof *t);
    t->rank_gflops = sp->gflops_core * (1.0 + sp->thread_eff * (in->threads > 1 ? in->threads - 1 : 0));
    double rate = t->rank_gflops * 1e9, cluster = rate * p->ranks, busiest = 0.0, ft[3];
    vt_plan_step_phases(in, p, rate, 1.0, in->pack_weights, t->mask_phase_s);
    t->mask_step_s = t->mask_phase_s[0] + t->mask_phase_s[1] + t->mask_phase_s[2];
    double tokens = (double)p->micro_batch * p->chunk_tokens;
    for (int s = 0; s < p->stages; s++) busiest = fmax(busiest, p->stage[s].flops_rank_step);
    t->mask_idle = 1.0 - busiest / vt_plan_rows_rate(in->pack_weights, rate, tokens) / t->mask_step_s;
    if (p->flops_step_finetune > 0) { /* the weights change: never packed */
        vt_plan_step_phases(in, p, rate, 2.0, 0, ft);
        t->finetune_step_s = ft[0] + ft[1] + ft[2];
    }
    if (in->recover_method > 0) { /* its passes run recover_micro sequences' rows at a time, and its
                                   * micro-batches pass the stages one after another: the replicas' rate */
        double rows = (double)p->recover.micro * in->seq_len;
        t->recover_step_s = p->recover.flops_step / vt_plan_rows_rate(in->pack_weights, rate * p->replicas, rows);
    }
    t->teacher_h = teacher_hours(in, p, rate);
    t->masks_h = t->mask_step_s * (double)in->steps / 3600.0;
    t->finetune_h = t->finetune_step_s * (double)in->finetune_steps / 3600.0;
    t->refit_h = (p->refit.flops + p->refit.flops_double / sp->double_ratio) / cluster / 3600.0;
    t->recover_h = in->recover_method > 0 ? t->recover_step_s * (double)in->recover_steps / 3600.0 : 0.0;
    t->hours = t->teacher_h + t->masks_h + t->finetune_h + t->refit_h + t->recover_h;
}

/* A plan of in with its configured micro-batches and chunks, else automatic ones; -1 (error
 * cleared) when the layout cannot be made. */
static int plan_or_automatic(vt_plan_input *in, vt_plan *p) {
    if (vt_plan_make(in, p) == 0) return 0;
    vt_error_clear();
    in->micro_batches = 0;
    in->seq_chunks = 0;
    if (vt_plan_make(in, p) == 0) return 0;
    vt_error_clear();
    return -1;
}

/* Whether candidate (peak x ranks per node, hours, fits) beats the best so far. */
static int better(int fits, double hours, double node_bytes, int best_fits, double best_hours, double best_bytes) {
    if (fits != best_fits) return fits;
    return fits ? hours < best_hours : node_bytes < best_bytes;
}

int vt_plan_search(const vt_plan_input *in, const vt_machine *m, const vt_speed *sp, vt_plan_input *best_in,
                   vt_plan *best, int *fits) {
    int found = 0, L = in->cfg->n_layers;
    double best_hours = 0.0, best_bytes = 0.0;
    *fits = 0;
    memset(best, 0, sizeof *best);
    for (int t = 1; t <= m->cores_per_node; t++) {
        if (m->cores_per_node % t) continue;
        int ranks = m->nodes * (m->cores_per_node / t);
        for (int S = 1; S <= ranks && S <= L; S++) {
            if (ranks % S || (in->stages > 0 && S != in->stages)) continue;
            vt_plan_input cand = *in;
            cand.ranks = ranks, cand.stages = S, cand.threads = t;
            vt_plan p;
            if (plan_or_automatic(&cand, &p)) continue;
            vt_plan_time tm;
            vt_plan_times(&cand, &p, sp, &tm);
            double node_bytes = p.peak * (ranks / m->nodes);
            int ok = node_bytes <= m->memory_per_node;
            if (!found || better(ok, tm.hours, node_bytes, *fits, best_hours, best_bytes)) {
                vt_plan_free(best);
                *best = p, *best_in = cand, *fits = ok, best_hours = tm.hours, best_bytes = node_bytes;
                found = 1;
            } else {
                vt_plan_free(&p);
            }
        }
    }
    if (!found)
        return vt_fail("no layout of %d node%s x %d cores can run this configuration (batch sizes and stages do not "
                       "divide)", m->nodes, m->nodes == 1 ? "" : "s", m->cores_per_node);
    return 0;
}
