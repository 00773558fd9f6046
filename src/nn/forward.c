/* forward.c — batched LLaMA forward pass in fp32 with BLIS sgemm: RMSNorm, RoPE (both layouts),
 * grouped-query causal attention with a key/value cache, SwiGLU, classifier. */
#include "nn/forward.h"

#include <blis.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fastexp.h"
#include "nn/matmul.h"

void vt_linear(float *y, const float *x, const float *w, const vt_packed *pk, int rows, int n_in, int n_out,
               float beta) {
    vt_linear_w(y, x, (vt_wmat){w, NULL, VT_F32}, pk, NULL, rows, n_in, n_out, beta);
}

void vt_linear_w(float *y, const float *x, vt_wmat w, const vt_packed *pk, float *wide, int rows, int n_in, int n_out,
                 float beta) {
    if (pk && pk->k == n_in && pk->n == n_out && vt_packed_use(pk, rows))
        vt_sgemm_packed(rows, x, n_in, pk, beta, y, n_out);
    else
        vt_sgemm_w(1, rows, n_out, n_in, x, n_in, w, beta, y, n_out, wide);
}

size_t vt_model_wide_floats(const vt_model *m) {
    return m->raw == VT_F32 ? 0 : vt_layers_wide_floats(&m->cfg, m->layer_begin, m->layer_end);
}

size_t vt_layers_wide_floats(const vt_config *c, int l0, int l1) {
    size_t most = 0, hd = (size_t)c->head_dim;
    for (int l = l0; l < l1; l++) {
        const vt_layer_shape *s = &c->layers[l];
        int qd = s->n_heads * (int)hd, width = qd + 2 * s->n_kv_heads * (int)hd;
        int in[4] = {c->dim, qd, c->dim, s->ffn}, out[4] = {width, c->dim, 2 * s->ffn, c->dim};
        for (int i = 0; i < 4; i++) { /* x W^T and dY W */
            size_t f = vt_wide_floats(out[i], in[i]), b = vt_wide_floats(in[i], out[i]);
            if (f > most) most = f;
            if (b > most) most = b;
        }
    }
    return most;
}

/* One matrix packed for its direction: the backward one as a view of the forward pack `fwd` when
 * that is 16-bit (its slivers are widened per block anyway), else a pack of its own. */
static int pack_one(vt_packed *p, vt_wmat w, int n_in, int n_out, int backward, vt_dtype hold, const vt_packed *fwd) {
    if (backward && fwd && fwd->data && fwd->dtype != VT_F32) {
        vt_pack_transposed(p, fwd);
        return 0;
    }
    return vt_pack_linear_w(p, w, n_in, n_out, backward, hold);
}

static int packs_build(vt_model_packs *p, const vt_model *m, int backward, const vt_model_packs *fwd) {
    const vt_config *c = &m->cfg;
    vt_model_packs_free(p);
    p->layers = vt_calloc((size_t)c->n_layers, sizeof *p->layers, "packed weights");
    if (!p->layers) return -1;
    p->n_layers = c->n_layers;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        const vt_layer_weights *w = &m->layers[l];
        const vt_layer_packs *f = fwd && fwd->layers ? &fwd->layers[l] : NULL;
        vt_layer_packs *lp = &p->layers[l];
        int qd = s->n_heads * c->head_dim, width = qd + 2 * s->n_kv_heads * c->head_dim;
        if ((s->n_heads && (pack_one(&lp->qkv, VT_WMAT(m, w, wq), c->dim, width, backward, m->hold, f ? &f->qkv : NULL) ||
                            pack_one(&lp->o, VT_WMAT(m, w, wo), qd, c->dim, backward, m->hold, f ? &f->o : NULL))) ||
            (s->ffn && (pack_one(&lp->gate_up, VT_WMAT(m, w, w_gate), c->dim, 2 * s->ffn, backward, m->hold,
                                 f ? &f->gate_up : NULL) ||
                        pack_one(&lp->down, VT_WMAT(m, w, w_down), s->ffn, c->dim, backward, m->hold,
                                 f ? &f->down : NULL)))) {
            vt_model_packs_free(p);
            return -1;
        }
        p->bytes += lp->qkv.bytes + lp->o.bytes + lp->gate_up.bytes + lp->down.bytes;
    }
    return 0;
}

int vt_model_packs_init(vt_model_packs *p, const vt_model *m, int backward) {
    return packs_build(p, m, backward, NULL);
}

int vt_model_packs_backward(vt_model_packs *p, const vt_model *m, const vt_model_packs *fwd) {
    return packs_build(p, m, 1, fwd);
}

void vt_model_packs_free(vt_model_packs *p) {
    if (p->layers)
        for (int l = 0; l < p->n_layers; l++) {
            vt_packed_free(&p->layers[l].qkv);
            vt_packed_free(&p->layers[l].o);
            vt_packed_free(&p->layers[l].gate_up);
            vt_packed_free(&p->layers[l].down);
        }
    free(p->layers);
    memset(p, 0, sizeof *p);
}

void vt_rmsnorm(float *out, const float *x, const float *w, int rows, int dim, float eps, float *inv_rms) {
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * dim))
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        double ss = 0.0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        if (inv_rms) inv_rms[r] = scale;
        for (int i = 0; i < dim; i++) o[i] = xr[i] * scale * w[i];
    }
}

static int max_q_dim(const vt_model *m, int *kv_dim, int *ffn) {
    int q = 0;
    *kv_dim = 0;
    *ffn = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        const vt_layer_shape *s = &m->cfg.layers[l];
        if (s->n_heads * m->cfg.head_dim > q) q = s->n_heads * m->cfg.head_dim;
        if (s->n_kv_heads * m->cfg.head_dim > *kv_dim) *kv_dim = s->n_kv_heads * m->cfg.head_dim;
        if (s->ffn > *ffn) *ffn = s->ffn;
    }
    return q;
}

int vt_fwd_init(vt_fwd *f, const vt_model *m, int max_batch, int max_tokens, int max_ctx) {
    memset(f, 0, sizeof *f);
    const vt_config *c = &m->cfg;
    if (max_ctx > c->seq_len)
        return vt_fail("context of %d tokens exceeds the model's %d positions", max_ctx, c->seq_len);
    f->max_batch = max_batch;
    f->max_tokens = max_tokens;
    f->max_ctx = max_ctx;
    f->query_block = VT_ATTN_QUERY_BLOCK;
    f->threads = vt_threads();
    f->layer_begin = m->layer_begin;
    f->layer_end = m->layer_end;
    int kv, ffn, q = max_q_dim(m, &kv, &ffn), hd2 = c->head_dim / 2;
    size_t rows = (size_t)max_batch * max_tokens, d = (size_t)c->dim;
    size_t scores = (size_t)f->threads * (max_tokens < VT_ATTN_QUERY_BLOCK ? max_tokens : VT_ATTN_QUERY_BLOCK) * max_ctx;
    f->k_cache = vt_calloc((size_t)c->n_layers, sizeof(float *), "key cache table");
    f->v_cache = vt_calloc((size_t)c->n_layers, sizeof(float *), "value cache table");
    f->xn = vt_malloc(rows * d * sizeof(float), "normalised activations");
    f->qkv = vt_malloc(rows * (size_t)(q + 2 * kv + 1) * sizeof(float), "q/k/v activations");
    f->att_out = vt_malloc(rows * (size_t)(q + 1) * sizeof(float), "attention outputs");
    f->scores = vt_malloc(scores * sizeof(float), "attention scores");
    f->gate_up = vt_malloc(rows * (size_t)(2 * ffn + 1) * sizeof(float), "FFN activations");
    f->ffn_act = vt_malloc(rows * (size_t)(ffn + 1) * sizeof(float), "FFN activations");
    f->block_out = vt_malloc(rows * d * sizeof(float), "block outputs");
    f->rope_cos = vt_malloc((size_t)max_ctx * hd2 * sizeof(float), "RoPE table");
    f->rope_sin = vt_malloc((size_t)max_ctx * hd2 * sizeof(float), "RoPE table");
    size_t wide = vt_model_wide_floats(m);
    if (wide) f->wide = vt_malloc(wide * sizeof(float), "16-bit weights widened for a matmul");
    f->bytes = sizeof(float) * (rows * (2 * d + (size_t)(2 * q + 2 * kv + 3 * ffn + 4)) + scores +
                                2 * (size_t)max_ctx * hd2 + wide);
    if (!f->k_cache || !f->v_cache || !f->xn || !f->qkv || !f->att_out || !f->scores || !f->gate_up ||
        !f->ffn_act || !f->block_out || !f->rope_cos || !f->rope_sin || (wide && !f->wide))
        goto fail;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        size_t n = (size_t)max_batch * max_ctx * (size_t)(c->layers[l].n_kv_heads * c->head_dim);
        if (!n) continue;
        f->k_cache[l] = vt_malloc(n * sizeof(float), "key cache");
        f->v_cache[l] = vt_malloc(n * sizeof(float), "value cache");
        f->bytes += 2 * n * sizeof(float);
        if (!f->k_cache[l] || !f->v_cache[l]) goto fail;
    }
    for (int p = 0; p < max_ctx; p++)
        for (int i = 0; i < hd2; i++) {
            double freq = pow((double)c->rope_theta, -2.0 * i / c->head_dim);
            f->rope_cos[(size_t)p * hd2 + i] = (float)cos(p * freq);
            f->rope_sin[(size_t)p * hd2 + i] = (float)sin(p * freq);
        }
    return 0;
fail:
    vt_fwd_free(f);
    return -1;
}

void vt_fwd_free(vt_fwd *f) {
    vt_model_packs_free(&f->packs);
    if (f->k_cache)
        for (int l = f->layer_begin; l < f->layer_end; l++) free(f->k_cache[l]);
    if (f->v_cache)
        for (int l = f->layer_begin; l < f->layer_end; l++) free(f->v_cache[l]);
    free(f->k_cache);
    free(f->v_cache);
    free(f->xn);
    free(f->qkv);
    free(f->att_out);
    free(f->scores);
    free(f->gate_up);
    free(f->ffn_act);
    free(f->block_out);
    free(f->rope_cos);
    free(f->rope_sin);
    free(f->wide);
    memset(f, 0, sizeof *f);
}

void vt_embed(const vt_model *m, const int32_t *tokens, int rows, float *x) {
    size_t d = (size_t)m->cfg.dim;
    if (m->embed16)
        for (int r = 0; r < rows; r++) vt_convert_to_f32(x + r * d, m->embed16 + (size_t)tokens[r] * d, m->raw, d);
    else
        for (int r = 0; r < rows; r++) memcpy(x + r * d, m->embed + (size_t)tokens[r] * d, d * sizeof(float));
}

void vt_embed_gated(const vt_model *m, const int32_t *tokens, int B, int T, const vt_gates *g, float *x) {
    vt_embed(m, tokens, B * T, x);
    if (!g) return;
    size_t d = (size_t)m->cfg.dim;
    for (int b = 0; b < B; b++) {
        const float *zh = g->z + (size_t)b * g->stride; /* hidden gates sit at the start of a row */
        for (int t = 0; t < T; t++) {
            float *xr = x + ((size_t)b * T + t) * d;
            for (size_t i = 0; i < d; i++) xr[i] *= zh[i];
        }
    }
}

/* Rotates one head vector in place at table row `cs`/`sn` (head_dim/2 entries). */
static void rope_head(float *v, const float *cs, const float *sn, int hd, vt_rope_layout layout) {
    int h2 = hd / 2;
    for (int i = 0; i < h2; i++) {
        int a = layout == VT_ROPE_INTERLEAVED ? 2 * i : i;
        int b = layout == VT_ROPE_INTERLEAVED ? 2 * i + 1 : i + h2;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x0 * sn[i] + x1 * cs[i];
    }
}

void vt_apply_unit_gates(float *gated, const float *pre, int B, int T, int units, int width, const vt_gates *g,
                         size_t off) {
#pragma omp parallel for collapse(2) schedule(static) if(vt_par((size_t)B * T * units * width))
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *z = g->z + (size_t)b * g->stride + off;
            size_t r = ((size_t)b * T + t) * (size_t)units * width;
            for (int u = 0; u < units; u++)
                for (int i = 0; i < width; i++) gated[r + (size_t)u * width + i] = pre[r + (size_t)u * width + i] * z[u];
        }
    }
}

void vt_add_bias(float *y, const float *b, int rows, int n) {
    if (!b) return;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (int i = 0; i < n; i++) y[r * n + i] += b[i];
}

/* x += (z_block[b] * z_hidden[b]) o y: a gated block output joins the residual stream. */
static void add_gated(float *x, const float *y, int B, int T, int dim, const vt_gates *g, size_t block_gate) {
#pragma omp parallel for collapse(2) schedule(static) if(vt_par((size_t)B * T * dim))
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *z = g->z + (size_t)b * g->stride;
            float zb = z[block_gate];
            size_t r = ((size_t)b * T + t) * dim;
            for (int i = 0; i < dim; i++) x[r + i] += zb * z[i] * y[r + i];
        }
    }
}

/* RoPE on the queries and keys of every row; the keys and values into layer l's cache. */
static void rope_rows(const vt_config *c, const vt_layer_shape *s, vt_fwd *f, int l, float *qkv, int B, int T,
                      int pos0) {
    int hd = c->head_dim, hd2 = hd / 2, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd, width = qd + 2 * kvd;
#pragma omp parallel for schedule(static) if(vt_par((size_t)B * T * width))
    for (int r = 0; r < B * T; r++) {
        int b = r / T, t = r % T;
        float *row = qkv + (size_t)r * width;
        const float *cs = f->rope_cos + (size_t)(pos0 + t) * hd2, *sn = f->rope_sin + (size_t)(pos0 + t) * hd2;
        for (int h = 0; h < s->n_heads + s->n_kv_heads; h++) rope_head(row + h * hd, cs, sn, hd, c->rope);
        size_t at = ((size_t)b * f->max_ctx + pos0 + t) * kvd;
        memcpy(f->k_cache[l] + at, row + qd, (size_t)kvd * sizeof(float));
        memcpy(f->v_cache[l] + at, row + qd + kvd, (size_t)kvd * sizeof(float));
    }
}

/* Causal softmax of one row of scores in place: its first n entries, the rest up to ctx set to 0. */
static void softmax_causal(float *sr, int n, int ctx) {
    float mx = sr[0];
    for (int j = 1; j < n; j++) mx = sr[j] > mx ? sr[j] : mx;
    for (int j = 0; j < n; j++) sr[j] = sr[j] - mx < -87.0f ? -87.0f : sr[j] - mx;
    vt_exp_nonpositive(sr, n);
    float sum = 0.0f;
    for (int j = 0; j < n; j++) sum += sr[j];
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) sr[j] *= inv;
    for (int j = n; j < ctx; j++) sr[j] = 0.0f;
}

/* One head of one sequence: out[T, hd] (row stride ld_out) = softmax(scale Q K^T) V with Q's rows
 * at stride ld_q and K, V at kvd, by blocks of query rows, each only over the keys its rows may see
 * (causal). The probabilities go to probs [T, pos0 + T] (the tape), else a block at a time to
 * scratch. Runs on the calling thread. */
static void attend_head(const vt_fwd *f, const float *q, int ld_q, const float *k, const float *v, int kvd, float *out,
                        int ld_out, int T, int pos0, int hd, float *probs, float *scratch) {
    int ctx = pos0 + T;
    float scale = 1.0f / sqrtf((float)hd);
    for (int t0 = 0; t0 < T; t0 += f->query_block) {
        int nt, kb = vt_query_block(f, T, pos0, t0, &nt);
        float *sc = probs ? probs + (size_t)t0 * ctx : scratch;
        vt_sgemm_one_thread(0, 1, nt, kb, hd, scale, q + (size_t)t0 * ld_q, ld_q, k, kvd, 0.0f, sc, ctx);
        for (int t = 0; t < nt; t++) softmax_causal(sc + (size_t)t * ctx, pos0 + t0 + t + 1, ctx);
        vt_sgemm_one_thread(0, 0, nt, hd, kb, 1.0f, sc, ctx, v, kvd, 0.0f, out + (size_t)t0 * ld_out, ld_out);
    }
}

void vt_attention_forward(const vt_model *m, vt_fwd *f, int l, float *x, int B, int T, int pos0, const vt_gates *g,
                          vt_tape_layer *tp) {
    const vt_config *c = &m->cfg;
    const vt_layer_shape *s = &c->layers[l];
    const vt_layer_weights *w = &m->layers[l];
    int hd = c->head_dim, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd;
    int rows = B * T, width = qd + 2 * kvd, group = s->n_heads / s->n_kv_heads, ctx = pos0 + T;
    float *xn = tp ? tp->xn_attn : f->xn, *qkv = tp ? tp->qkv : f->qkv, *att = tp ? tp->att : f->att_out;

    if (tp) memcpy(tp->x_attn, x, (size_t)rows * c->dim * sizeof(float));
    vt_rmsnorm(xn, x, w->attn_norm, rows, c->dim, c->norm_eps, tp ? tp->inv_rms_attn : NULL);
    const vt_layer_packs *pk = vt_model_packs_layer(&f->packs, l);
    vt_linear_w(qkv, xn, VT_WMAT(m, w, wq), pk ? &pk->qkv : NULL, f->wide, rows, c->dim, width, 0.0f); /* wq, wk, wv contiguous */
    vt_add_bias(qkv, w->b_qkv, rows, width);
    vt_lora_forward(f->lora, l, VT_LORA_Q, xn, rows, qkv, width);
    vt_lora_forward(f->lora, l, VT_LORA_K, xn, rows, qkv + qd, width);
    vt_lora_forward(f->lora, l, VT_LORA_V, xn, rows, qkv + qd + kvd, width);
    rope_rows(c, s, f, l, qkv, B, T, pos0);
    size_t scratch = (size_t)(f->max_tokens < VT_ATTN_QUERY_BLOCK ? f->max_tokens : VT_ATTN_QUERY_BLOCK) * f->max_ctx;
    int team = f->threads < vt_threads() ? f->threads : vt_threads(); /* the score buffers there are */
#pragma omp parallel for collapse(2) schedule(static) num_threads(team) \
    if(vt_par((size_t)B * s->n_heads * T * ctx * hd))
    for (int b = 0; b < B; b++)
        for (int h = 0; h < s->n_heads; h++) {
            size_t kv = (size_t)b * f->max_ctx * kvd + (size_t)(h / group) * hd;
            float *probs = tp ? tp->probs + ((size_t)b * s->n_heads + h) * T * ctx : NULL;
            attend_head(f, qkv + (size_t)b * T * width + h * hd, width, f->k_cache[l] + kv, f->v_cache[l] + kv, kvd,
                        att + (size_t)b * T * qd + h * hd, qd, T, pos0, hd, probs,
                        f->scores + scratch * (size_t)omp_get_thread_num());
        }
    if (!g) {
        vt_linear_w(x, att, VT_WMAT(m, w, wo), pk ? &pk->o : NULL, f->wide, rows, qd, c->dim, 1.0f); /* residual add: beta = 1 */
        vt_add_bias(x, w->bo, rows, c->dim);
        vt_lora_forward(f->lora, l, VT_LORA_O, att, rows, x, c->dim);
        return;
    }
    /* Head gates on the heads' outputs, then o_proj, then block and hidden gates. */
    vt_apply_unit_gates(f->att_out, att, B, T, s->n_heads, hd, g, vt_gate_heads(g->layout, l));
    float *y = tp ? tp->y_attn : f->block_out;
    vt_linear_w(y, f->att_out, VT_WMAT(m, w, wo), pk ? &pk->o : NULL, f->wide, rows, qd, c->dim, 0.0f);
    vt_add_bias(y, w->bo, rows, c->dim); /* part of the block's output: the gates scale it too */
    vt_lora_forward(f->lora, l, VT_LORA_O, f->att_out, rows, y, c->dim);
    add_gated(x, y, B, T, c->dim, g, vt_gate_blocks(g->layout, l));
}

void vt_mlp_forward(const vt_model *m, vt_fwd *f, int l, float *x, int B, int T, const vt_gates *g,
                    vt_tape_layer *tp) {
    const vt_config *c = &m->cfg;
    const vt_layer_weights *w = &m->layers[l];
    int ffn = c->layers[l].ffn, rows = B * T;
    float *xn = tp ? tp->xn_mlp : f->xn, *gu = tp ? tp->gate_up : f->gate_up, *act = tp ? tp->act : f->ffn_act;
    if (tp) memcpy(tp->x_mlp, x, (size_t)rows * c->dim * sizeof(float));
    vt_rmsnorm(xn, x, w->ffn_norm, rows, c->dim, c->norm_eps, tp ? tp->inv_rms_mlp : NULL);
    const vt_layer_packs *pk = vt_model_packs_layer(&f->packs, l);
    vt_linear_w(gu, xn, VT_WMAT(m, w, w_gate), pk ? &pk->gate_up : NULL, f->wide, rows, c->dim, 2 * ffn, 0.0f); /* gate, up contiguous */
    vt_add_bias(gu, w->b_gate_up, rows, 2 * ffn);
    vt_lora_forward(f->lora, l, VT_LORA_GATE, xn, rows, gu, 2 * ffn);
    vt_lora_forward(f->lora, l, VT_LORA_UP, xn, rows, gu + ffn, 2 * ffn);
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * ffn))
    for (int r = 0; r < rows; r++) {
        const float *gt = gu + (size_t)r * 2 * ffn, *u = gt + ffn;
        float *a = act + (size_t)r * ffn;
        for (int i = 0; i < ffn; i++) a[i] = gt[i] / (1.0f + expf(-gt[i])) * u[i];
    }
    if (!g) {
        vt_linear_w(x, act, VT_WMAT(m, w, w_down), pk ? &pk->down : NULL, f->wide, rows, ffn, c->dim, 1.0f);
        vt_add_bias(x, w->b_down, rows, c->dim);
        vt_lora_forward(f->lora, l, VT_LORA_DOWN, act, rows, x, c->dim);
        return;
    }
    vt_apply_unit_gates(f->ffn_act, act, B, T, ffn, 1, g, vt_gate_ffn(g->layout, l));
    float *y = tp ? tp->y_mlp : f->block_out;
    vt_linear_w(y, f->ffn_act, VT_WMAT(m, w, w_down), pk ? &pk->down : NULL, f->wide, rows, ffn, c->dim, 0.0f);
    vt_add_bias(y, w->b_down, rows, c->dim);
    vt_lora_forward(f->lora, l, VT_LORA_DOWN, f->ffn_act, rows, y, c->dim);
    add_gated(x, y, B, T, c->dim, g, vt_gate_blocks(g->layout, l) + 1);
}

void vt_layers_forward_ex(const vt_model *m, vt_fwd *f, int l0, int l1, float *x, int B, int T, int pos0,
                          const vt_gates *g, vt_tape *tape) {
    for (int l = l0; l < l1; l++) {
        vt_tape_layer *tp = tape ? &tape->layers[l] : NULL;
        if (m->cfg.layers[l].n_heads) vt_attention_forward(m, f, l, x, B, T, pos0, g, tp);
        if (m->cfg.layers[l].ffn) vt_mlp_forward(m, f, l, x, B, T, g, tp);
    }
}

void vt_layers_forward(const vt_model *m, vt_fwd *f, int l0, int l1, float *x, int B, int T, int pos0) {
    vt_layers_forward_ex(m, f, l0, l1, x, B, T, pos0, NULL, NULL);
}

void vt_head_forward_ex(const vt_model *m, vt_fwd *f, const float *x, int rows, float *logits, vt_tape *tape) {
    float *xn = tape ? tape->xn_final : f->xn;
    if (tape) memcpy(tape->x_final, x, (size_t)rows * m->cfg.dim * sizeof(float));
    vt_rmsnorm(xn, x, m->final_norm, rows, m->cfg.dim, m->cfg.norm_eps, tape ? tape->inv_rms_final : NULL);
    vt_linear(logits, xn, m->lm_head, NULL, rows, m->cfg.dim, m->cfg.vocab, 0.0f);
}

void vt_head_forward(const vt_model *m, vt_fwd *f, const float *x, int rows, float *logits) {
    vt_head_forward_ex(m, f, x, rows, logits, NULL);
}

int vt_tape_init(vt_tape *tp, const vt_model *m, int B, int T, int pos0) {
    memset(tp, 0, sizeof *tp);
    size_t ctx = (size_t)pos0 + T;
    const vt_config *c = &m->cfg;
    size_t rows = (size_t)B * T, d = (size_t)c->dim, total = 2 * rows * d + rows;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        size_t qd = (size_t)s->n_heads * c->head_dim, kvd = (size_t)s->n_kv_heads * c->head_dim;
        if (s->n_heads) total += rows * (3 * d + 1 + qd + 2 * kvd + qd) + (size_t)B * s->n_heads * T * ctx;
        if (s->ffn) total += rows * (3 * d + 1 + 3 * (size_t)s->ffn);
    }
    tp->B = B;
    tp->T = T;
    tp->pos0 = pos0;
    tp->layer_begin = m->layer_begin;
    tp->layer_end = m->layer_end;
    tp->layers = vt_calloc((size_t)c->n_layers, sizeof *tp->layers, "activation tape");
    tp->arena = vt_malloc(total * sizeof(float), "activation tape");
    tp->bytes = total * sizeof(float);
    if (!tp->layers || !tp->arena) {
        vt_tape_free(tp);
        return -1;
    }
    float *p = tp->arena;
#define TAKE(n) (p += (n), p - (n))
    tp->x_final = TAKE(rows * d);
    tp->xn_final = TAKE(rows * d);
    tp->inv_rms_final = TAKE(rows);
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        vt_tape_layer *t = &tp->layers[l];
        size_t qd = (size_t)s->n_heads * c->head_dim, kvd = (size_t)s->n_kv_heads * c->head_dim, f = (size_t)s->ffn;
        if (s->n_heads) {
            t->x_attn = TAKE(rows * d);
            t->xn_attn = TAKE(rows * d);
            t->y_attn = TAKE(rows * d);
            t->inv_rms_attn = TAKE(rows);
            t->qkv = TAKE(rows * (qd + 2 * kvd));
            t->att = TAKE(rows * qd);
            t->probs = TAKE((size_t)B * s->n_heads * T * ctx);
        }
        if (s->ffn) {
            t->x_mlp = TAKE(rows * d);
            t->xn_mlp = TAKE(rows * d);
            t->y_mlp = TAKE(rows * d);
            t->inv_rms_mlp = TAKE(rows);
            t->gate_up = TAKE(rows * 2 * f);
            t->act = TAKE(rows * f);
        }
    }
#undef TAKE
    return 0;
}

void vt_tape_link(vt_tape *tapes, int n) {
    for (int i = 0; i < n; i++) {
        tapes[i].prev = i > 0 ? &tapes[i - 1] : NULL;
        tapes[i].next = i + 1 < n ? &tapes[i + 1] : NULL;
    }
}

void vt_tape_free(vt_tape *tp) {
    free(tp->layers);
    free(tp->arena);
    memset(tp, 0, sizeof *tp);
}
