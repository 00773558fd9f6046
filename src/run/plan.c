/* plan.c — per-rank memory and FLOPs of a distributed run, estimated from the configuration. */
#include "run/plan.h"
#include "train/head_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "nn/matmul.h"
#include "dist/partition.h"

/* Bytes per VIB gate on every rank: mu, logvar and their gradients (4 floats), the unit id
 * (int64), group (u8) and layer (i16), Adam m and v of mu and of logvar (4 floats), and the
 * two doubles of the world reduction of its gradients. */
#define GATE_BYTES (4 * 4 + 8 + 1 + 2 + 4 * 4 + 2 * 8)

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
 * and RoPE tables of ctx positions. */
static size_t fwd_floats(const vt_config *c, int l0, int l1, int B, int T, int ctx) {
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
    return rows * d + rows * (q + 2 * kv + 1) + rows * (q + 1) + (size_t)T * ctx + rows * (2 * f + 1) +
           rows * (f + 1) + rows * d + (size_t)ctx * hd + cache;
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
    st->weights = w + student + (last ? 0.0 : (double)vs * d * f4); /* other stages' classifier rows */
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
    /* the last stage: the teacher cache's rows of the replica's sequences, fetched for a step */
    if (last) st->activations += p->cache_per_sequence * p->seqs_per_replica;

    st->optimizer = (double)p->gates * GATE_BYTES;
    if (finetune) st->optimizer += keep * (w + 2.0 * layers); /* weight gradients, Adam m and v of layers */

    /* the last stage: its replica's share of the teacher cache (sequences r, r + D, ...) */
    st->teacher_cache = last ? p->cache_per_sequence * ceil((double)in->calib_sequences / p->replicas) : 0.0;
    st->total = st->weights + st->activations + st->optimizer + st->teacher_cache;
}

/* The re-fit's memory and FLOPs (vt_refit_plan): per layer, the output projections' systems over
 * the kept inputs (dense widths here) and with refit_inputs the input projections' over the hidden
 * size; a pass of the dense model and two of the pruned one (gather, advance) per block. */
static void plan_refit(const vt_plan_input *in, vt_plan *p) {
    const vt_config *c = in->cfg;
    vt_refit_plan *r = &p->refit;
    double T = in->seq_len, D = c->dim, hd = c->head_dim, rows = (double)in->refit_sequences * T, M = D, N = D;
    int B = in->refit_batch < in->refit_sequences ? in->refit_batch : in->refit_sequences, L0 = 0, L1 = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        double q = s->n_heads * hd, qkv = (s->n_heads + 2.0 * s->n_kv_heads) * hd, f = s->ffn;
        M = fmax(M, fmax(q, f));
        if (in->refit_inputs) N = fmax(N, fmax(qkv, 2 * f));
        r->flops += 2 * rows * (q * q + D * q + f * f + D * f); /* G and C of o_proj, down_proj */
        r->flops += (q * q * q + f * f * f) / 3 + 2 * D * (q * q + f * f); /* their solves */
        if (in->refit_inputs) r->flops += 2 * rows * (2 * D * D + (qkv + 2 * f) * D) + 2 * D * D * D / 3 +
                                          2 * D * D * (qkv + 2 * f);
    }
    for (int s = 0; s < p->stages; s++) /* the largest stage's forward buffers */
        if (p->stage[s].layer_end - p->stage[s].layer_begin > L1 - L0) L0 = p->stage[s].layer_begin, L1 = p->stage[s].layer_end;
    r->flops += 3 * rows * p->flops_token;
    double share = ceil((double)in->refit_sequences / p->replicas) * T, brows = (double)B * T;
    r->widest_in = (int)M;
    r->widest_out = (int)N;
    r->streams = 2 * share * D * sizeof(float);
    r->work = 2.0 * fwd_floats(c, L0, L1, B, (int)T, (int)T) * sizeof(float) +
              brows * (2 * D + 2 * N + fmax(N, 2 * c->ffn_dim)) * sizeof(float) + brows * (M + N) * sizeof(double) +
              (M * M + 2 * N * M) * sizeof(double);
    r->solver = (M * M + N * M) / p->replicas * sizeof(double);
    r->total = r->streams + r->work + r->solver;
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
    if (!begin || !out->stage || vt_partition_layers(c, S, VT_PARTITION_TRAIN, begin)) {
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
        for (int l = begin[s]; l < begin[s + 1]; l++) st->flops_token += vt_layer_flops(c, l, out->ctx);
        st->flops_token += head / S; /* every stage computes its share of the classifier */
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
    if (in->refit_sequences > 0) {
        plan_refit(in, out);
        out->flops_run += out->refit.flops;
    }
    return 0;
}

void vt_plan_free(vt_plan *p) {
    free(p->stage);
    p->stage = NULL;
}
