/* backward.c — reverse-mode gradients of the gated LLaMA stack over the saved activation tape. */
#include "nn/backward.h"

#include <blis.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "nn/matmul.h"

/* Columns (floats) of one thread's share where threads split sums over rows by columns: each
 * column's sum runs on one thread in row order, so the result does not depend on the thread count;
 * 64 floats are a whole number of cache lines. */
enum { COLUMN_CHUNK = 64 };

void vt_linear_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const vt_packed *pk,
                        int rows, int n_in, int n_out, float beta_dx) {
    vt_linear_backward_w(dx, dw, dy, x, (vt_wmat){w, NULL, VT_F32}, pk, NULL, rows, n_in, n_out, beta_dx);
}

void vt_linear_backward_w(float *dx, float *dw, const float *dy, const float *x, vt_wmat w, const vt_packed *pk,
                          float *wide, int rows, int n_in, int n_out, float beta_dx) {
    if (dw) /* dW[n_out, n_in] += dY^T[n_out, rows] X[rows, n_in] */
        vt_sgemm(1, 0, n_out, n_in, rows, 1.0f, dy, n_out, x, n_in, 1.0f, dw, n_in);
    if (dx && pk && pk->k == n_out && pk->n == n_in && vt_packed_use(pk, rows))
        vt_sgemm_packed(rows, dy, n_out, pk, beta_dx, dx, n_in);
    else if (dx) /* dX[rows, n_in] = dY[rows, n_out] W[n_out, n_in] */
        vt_sgemm_w(0, rows, n_in, n_out, dy, n_out, w, beta_dx, dx, n_in, wide);
}

void vt_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         const float *inv_rms, int rows, int dim, int accumulate) {
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * dim))
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *g = dout + (size_t)r * dim;
        float *d = dx + (size_t)r * dim, s = inv_rms[r];
        double dot = 0.0; /* sum_j w_j g_j x_j */
        for (int i = 0; i < dim; i++) dot += (double)w[i] * g[i] * xr[i];
        float k = (float)(dot * s * s * s / dim);
        for (int i = 0; i < dim; i++) {
            float v = s * w[i] * g[i] - k * xr[i];
            d[i] = accumulate ? d[i] + v : v;
        }
    }
    if (!dw) return;
    /* by columns, each over the rows in order: the sums of one thread */
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * dim))
    for (int i0 = 0; i0 < dim; i0 += COLUMN_CHUNK)
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * dim, *g = dout + (size_t)r * dim;
            for (int i = i0; i < dim && i < i0 + COLUMN_CHUNK; i++) dw[i] += g[i] * xr[i] * inv_rms[r];
        }
}

int vt_bwd_init(vt_bwd *w, const vt_model *m, int B, int T, int ctx) {
    memset(w, 0, sizeof *w);
    const vt_config *c = &m->cfg;
    size_t rows = (size_t)B * T, wide = 1, qkv = 1;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        size_t q = (size_t)s->n_heads * c->head_dim, kv = (size_t)s->n_kv_heads * c->head_dim;
        if (q > wide) wide = q;
        if ((size_t)s->ffn > wide) wide = (size_t)s->ffn;
        if (q + 2 * kv > qkv) qkv = q + 2 * kv;
        if (2 * (size_t)s->ffn > qkv) qkv = 2 * (size_t)s->ffn;
    }
    if (ctx < T) ctx = T;
    w->B = B;
    w->T = T;
    w->ctx = ctx;
    w->layer_begin = m->layer_begin;
    w->layers = m->layer_end - m->layer_begin;
    w->dxn = vt_malloc(rows * c->dim * sizeof(float), "backward buffers");
    w->dy = vt_malloc(rows * c->dim * sizeof(float), "backward buffers");
    w->dgated = vt_malloc(rows * wide * sizeof(float), "backward buffers");
    w->dpre = vt_malloc(rows * wide * sizeof(float), "backward buffers");
    w->gated = vt_malloc(rows * wide * sizeof(float), "backward buffers");
    w->dqkv = vt_malloc(rows * qkv * sizeof(float), "backward buffers");
    w->threads = vt_threads();
    size_t dp = (size_t)w->threads * (T < VT_ATTN_QUERY_BLOCK ? T : VT_ATTN_QUERY_BLOCK) * ctx;
    w->dp = vt_malloc(dp * sizeof(float), "backward buffers");
    size_t widen = vt_model_wide_floats(m);
    if (widen) w->wide = vt_malloc(widen * sizeof(float), "16-bit weights widened for a matmul");
    w->bytes = sizeof(float) * (rows * (2 * (size_t)c->dim + 3 * wide + qkv) + dp + widen);
    if (!w->dxn || !w->dy || !w->dgated || !w->dpre || !w->gated || !w->dqkv || !w->dp || (widen && !w->wide))
        goto fail;
    if (ctx > T) {
        w->dkv = vt_calloc((size_t)w->layers + 1, sizeof(float *), "backward buffers");
        if (!w->dkv) goto fail;
        for (int l = m->layer_begin; l < m->layer_end; l++) {
            size_t n = (size_t)B * ctx * 2 * (size_t)(c->layers[l].n_kv_heads * c->head_dim);
            if (!n) continue;
            if (!(w->dkv[l - m->layer_begin] = vt_malloc(n * sizeof(float), "chunk key/value gradients"))) goto fail;
            w->bytes += n * sizeof(float);
        }
    }
    return 0;
fail:
    vt_bwd_free(w);
    return -1;
}

void vt_bwd_free(vt_bwd *w) {
    vt_model_packs_free(&w->packs);
    free(w->dxn);
    free(w->dy);
    free(w->dgated);
    free(w->dpre);
    free(w->gated);
    free(w->dqkv);
    free(w->dp);
    free(w->wide);
    if (w->dkv)
        for (int i = 0; i < w->layers; i++) free(w->dkv[i]);
    free(w->dkv);
    memset(w, 0, sizeof *w);
}

void vt_head_backward(const vt_model *m, vt_bwd *w, const vt_tape *tp, const float *dlogits, int rows, float *dx,
                      vt_model *dw) {
    const vt_config *c = &m->cfg;
    vt_linear_backward(w->dxn, dw ? dw->lm_head : NULL, dlogits, tp->xn_final, m->lm_head, NULL, rows, c->dim, c->vocab,
                       0.0f);
    float *dgain = dw ? dw->final_norm : vt_norm_grad_at(w->norm_grad, c->n_layers, 0, c->dim);
    vt_rmsnorm_backward(dx, dgain, w->dxn, tp->x_final, m->final_norm, tp->inv_rms_final, rows, c->dim, 0);
}

/* Gradient through x_out = x_in + (zb * zh) o y: the gradient of y goes to dy; gate gradients to dz.
 * Without gates dy = dx. */
static void gated_residual_backward(const float *dx, const float *y, float *dy, int B, int T, int dim,
                                    const vt_gates *g, float *dz, size_t block_gate) {
    size_t rows = (size_t)B * T;
    if (!g) {
        memcpy(dy, dx, rows * dim * sizeof(float));
        return;
    }
    size_t n = g->layout->n;
    for (int b = 0; b < B; b++) {
        const float *z = g->z + (size_t)b * g->stride;
        float zb = z[block_gate], *dzb = dz + (size_t)b * n;
        /* by columns, each over the tokens in order (the hidden gates' sums stay a thread's own) */
#pragma omp parallel for schedule(static) if(vt_par((size_t)T * dim))
        for (int i0 = 0; i0 < dim; i0 += COLUMN_CHUNK)
            for (int t = 0; t < T; t++) {
                size_t r = ((size_t)b * T + t) * dim;
                for (int i = i0; i < dim && i < i0 + COLUMN_CHUNK; i++) {
                    dzb[i] += dx[r + i] * y[r + i] * zb; /* hidden gate */
                    dy[r + i] = dx[r + i] * zb * z[i];
                }
            }
        double dblock = 0.0; /* one sum over all of it, in order: on one thread */
        for (int t = 0; t < T; t++) {
            size_t r = ((size_t)b * T + t) * dim;
            for (int i = 0; i < dim; i++) dblock += (double)(dx[r + i] * y[r + i]) * z[i];
        }
        dzb[block_gate] += (float)dblock;
    }
}

/* Gradient through gated = pre * z (z per unit, [B, units] at gate offset `off`): into dpre and dz. */
static void unit_gate_backward(const float *dgated, const float *pre, float *dpre, int B, int T, int units, int width,
                               const vt_gates *g, float *dz, size_t off) {
    size_t n = g->layout->n;
    int chunk = width >= COLUMN_CHUNK ? 1 : COLUMN_CHUNK / width; /* units per thread's share */
    /* by units, each over the tokens in order (a unit's gate sum stays a thread's own) */
#pragma omp parallel for schedule(static) if(vt_par((size_t)B * T * units * width))
    for (int u0 = 0; u0 < units; u0 += chunk)
        for (int b = 0; b < B; b++) {
            const float *z = g->z + (size_t)b * g->stride + off;
            float *dzb = dz + (size_t)b * n + off;
            for (int t = 0; t < T; t++) {
                size_t r = ((size_t)b * T + t) * (size_t)units * width;
                for (int u = u0; u < units && u < u0 + chunk; u++) {
                    double acc = 0.0;
                    for (int i = 0; i < width; i++) {
                        size_t k = r + (size_t)u * width + i;
                        acc += (double)dgated[k] * pre[k];
                        dpre[k] = dgated[k] * z[u];
                    }
                    dzb[u] += (float)acc;
                }
            }
        }
}

/* Inverse rotation of one head's gradient (RoPE is orthogonal). */
static void rope_head_backward(float *v, const float *cs, const float *sn, int hd, vt_rope_layout layout) {
    int h2 = hd / 2;
    for (int i = 0; i < h2; i++) {
        int a = layout == VT_ROPE_INTERLEAVED ? 2 * i : i;
        int b = layout == VT_ROPE_INTERLEAVED ? 2 * i + 1 : i + h2;
        float g0 = v[a], g1 = v[b];
        v[a] = g0 * cs[i] + g1 * sn[i];
        v[b] = -g0 * sn[i] + g1 * cs[i];
    }
}

/* Sequence b's keys (off = the head's column) or values (off = kv + column) in chunk ch, as rows
 * of its tape's qkv (row stride: the qkv width); where their gradients go and that row stride:
 * the backward's dqkv for the chunk being differentiated (`own`), else the chunk key/value
 * gradients acc ([B, w->ctx, 2 kv], row stride 2 kv). */
static const float *chunk_kv(const vt_config *c, const vt_tape *ch, const vt_tape *own, vt_bwd *w, float *acc, int l,
                             int b, int off, float **grad, inc_t *ld) {
    const vt_layer_shape *s = &c->layers[l];
    int hd = c->head_dim, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd, width = qd + 2 * kvd;
    if (ch == own) {
        *grad = w->dqkv + (size_t)b * own->T * width + qd + off;
        *ld = width;
    } else {
        *grad = acc + ((size_t)b * w->ctx + ch->pos0) * 2 * kvd + off;
        *ld = 2 * kvd;
    }
    return ch->layers[l].qkv + (size_t)b * ch->T * width + qd + off;
}

/* Query head h of sequence b of the chunk of tape `tape`: by blocks of query rows (f->query_block),
 * each over the keys its rows see (causal), and per chunk of those keys (columns j0..j0+n of P):
 * dV += P^T dO, dP = dO V^T; dS = P o (dP - rowsum(dP o P)); dQ += scale dS K, dK += scale dS^T Q.
 * dp: one block of dP for this thread. Runs on the calling thread. */
static void head_backward(const vt_fwd *f, vt_bwd *w, const vt_config *c, int l, int b, int h, const vt_tape *tape,
                          float *acc, float *dp) {
    const vt_layer_shape *s = &c->layers[l];
    int hd = c->head_dim, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd, width = qd + 2 * kvd;
    int group = s->n_heads / s->n_kv_heads, T = tape->T, pos0 = tape->pos0, ctx = pos0 + T;
    float scale = 1.0f / sqrtf((float)hd);
    const float *P = tape->layers[l].probs + ((size_t)b * s->n_heads + h) * T * ctx;
    const float *dO = w->dpre + (size_t)b * T * qd + h * hd;
    const float *Q = tape->layers[l].qkv + (size_t)b * T * width + h * hd;
    float *dQ = w->dqkv + (size_t)b * T * width + h * hd;
    for (int t0 = 0; t0 < T; t0 += f->query_block) {
        int nt, kb = vt_query_block(f, T, pos0, t0, &nt);
        for (const vt_tape *ch = tape; ch; ch = ch->prev) {
            int j0 = ch->pos0, n = ch->T < kb - j0 ? ch->T : kb - j0;
            inc_t ld;
            float *dV;
            const float *V = chunk_kv(c, ch, tape, w, acc, l, b, kvd + (h / group) * hd, &dV, &ld);
            vt_sgemm_one_thread(1, 0, n, hd, nt, 1.0f, P + (size_t)t0 * ctx + j0, ctx, dO + (size_t)t0 * qd, qd, 1.0f,
                                dV, (int)ld);
            vt_sgemm_one_thread(0, 1, nt, n, hd, 1.0f, dO + (size_t)t0 * qd, qd, V, width, 0.0f, dp + j0, ctx);
        }
        for (int t = 0; t < nt; t++) { /* causal entries only (P is 0 after position pos0 + t) */
            const float *pr = P + (size_t)(t0 + t) * ctx;
            float *dr = dp + (size_t)t * ctx;
            int n = pos0 + t0 + t + 1;
            double dot = 0.0;
            for (int j = 0; j < n; j++) dot += (double)dr[j] * pr[j];
            for (int j = 0; j < n; j++) dr[j] = pr[j] * (dr[j] - (float)dot);
            for (int j = n; j < ctx; j++) dr[j] = 0.0f;
        }
        for (const vt_tape *ch = tape; ch; ch = ch->prev) {
            int j0 = ch->pos0, n = ch->T < kb - j0 ? ch->T : kb - j0;
            inc_t ld;
            float *dK;
            const float *K = chunk_kv(c, ch, tape, w, acc, l, b, (h / group) * hd, &dK, &ld);
            vt_sgemm_one_thread(0, 0, nt, hd, n, scale, dp + j0, ctx, K, width, 1.0f, dQ + (size_t)t0 * width, width);
            vt_sgemm_one_thread(1, 0, n, hd, nt, scale, dp + j0, ctx, Q + (size_t)t0 * width, width, 1.0f, dK, (int)ld);
        }
    }
}

/* Gradients through attention for the chunk of tape `tape` (the whole sequences when not chunked):
 * dQ, dK, dV of its own tokens into w->dqkv; keys and values of its earlier chunks (read from their
 * tapes) get their gradients from these queries in w->dkv, and this chunk adds what its later
 * chunks left there for its own keys and values. The threads take (sequence, key/value head)
 * pairs: the query heads that share a key/value head add to its gradients in order, on one thread. */
static void attention_qkv_backward(const vt_fwd *f, vt_bwd *w, const vt_config *c, int l, int B, int T,
                                   const vt_tape *tape) {
    const vt_layer_shape *s = &c->layers[l];
    int hd = c->head_dim, hd2 = hd / 2, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd, rows = B * T;
    int width = qd + 2 * kvd, group = s->n_heads / s->n_kv_heads, pos0 = tape->pos0;
    float *acc = tape->prev || tape->next ? w->dkv[l - w->layer_begin] : NULL; /* [B, w->ctx, 2 kvd] */
    size_t accw = 2 * (size_t)kvd, dp = (size_t)(T < VT_ATTN_QUERY_BLOCK ? T : VT_ATTN_QUERY_BLOCK) * w->ctx;
    memset(w->dqkv, 0, (size_t)rows * width * sizeof(float));
    if (acc && !tape->next) /* the last chunk is the first to reach the earlier chunks' keys */
        for (int b = 0; b < B; b++) memset(acc + (size_t)b * w->ctx * accw, 0, (size_t)pos0 * accw * sizeof(float));
    int team = w->threads < vt_threads() ? w->threads : vt_threads(); /* the dP buffers there are */
#pragma omp parallel for collapse(2) schedule(static) num_threads(team) \
    if(vt_par((size_t)B * s->n_heads * T * (pos0 + T) * hd))
    for (int b = 0; b < B; b++)
        for (int kh = 0; kh < s->n_kv_heads; kh++)
            for (int h = kh * group; h < (kh + 1) * group; h++)
                head_backward(f, w, c, l, b, h, tape, acc, w->dp + dp * (size_t)omp_get_thread_num());
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * width))
    for (int r = 0; r < rows; r++) {
        int t = r % T;
        float *row = w->dqkv + (size_t)r * width;
        if (acc && tape->next) { /* what the later chunks' queries sent this chunk's keys and values */
            const float *a = acc + ((size_t)(r / T) * w->ctx + pos0 + t) * accw;
            for (size_t i = 0; i < accw; i++) row[qd + i] += a[i];
        }
        const float *cs = f->rope_cos + (size_t)(pos0 + t) * hd2, *sn = f->rope_sin + (size_t)(pos0 + t) * hd2;
        for (int h = 0; h < s->n_heads + s->n_kv_heads; h++) rope_head_backward(row + h * hd, cs, sn, hd, c->rope);
    }
}

void vt_attention_backward(const vt_model *m, const vt_fwd *f, vt_bwd *w, int l, float *dx, int B, int T,
                           const vt_gates *g, const vt_tape *tape, float *dz, vt_model *dw) {
    const vt_config *c = &m->cfg;
    const vt_layer_shape *s = &c->layers[l];
    const vt_layer_weights *wt = &m->layers[l];
    const vt_tape_layer *tp = &tape->layers[l];
    vt_layer_weights *gw = dw ? &dw->layers[l] : NULL;
    int hd = c->head_dim, qd = s->n_heads * hd, kvd = s->n_kv_heads * hd, rows = B * T, width = qd + 2 * kvd;

    gated_residual_backward(dx, tp->y_attn, w->dy, B, T, c->dim, g, dz, g ? vt_gate_blocks(g->layout, l) : 0);
    const float *att_in = tp->att; /* input of o_proj: the gated head outputs */
    if (g) {
        vt_apply_unit_gates(w->gated, tp->att, B, T, s->n_heads, hd, g, vt_gate_heads(g->layout, l));
        att_in = w->gated;
    }
    float *datt = g ? w->dgated : w->dpre;
    const vt_layer_packs *pk = vt_model_packs_layer(&w->packs, l);
    vt_linear_backward_w(datt, gw ? gw->wo : NULL, w->dy, att_in, VT_WMAT(m, wt, wo), pk ? &pk->o : NULL, w->wide, rows,
                         qd, c->dim, 0.0f);
    vt_lora_backward(w->lora, w->lora_grad, l, VT_LORA_O, att_in, w->dy, c->dim, rows, datt);
    if (g) unit_gate_backward(w->dgated, tp->att, w->dpre, B, T, s->n_heads, hd, g, dz, vt_gate_heads(g->layout, l));
    attention_qkv_backward(f, w, c, l, B, T, tape);
    vt_linear_backward_w(w->dxn, gw ? gw->wq : NULL, w->dqkv, tp->xn_attn, VT_WMAT(m, wt, wq), pk ? &pk->qkv : NULL,
                         w->wide, rows, c->dim, width, 0.0f);
    for (int p = VT_LORA_Q; p <= VT_LORA_V; p++) /* q, k, v: column blocks of the fused qkv */
        vt_lora_backward(w->lora, w->lora_grad, l, (vt_lora_proj)p, tp->xn_attn,
                         w->dqkv + (p == VT_LORA_Q ? 0 : p == VT_LORA_K ? qd : qd + kvd), width, rows, w->dxn);
    float *dgain = gw ? gw->attn_norm : vt_norm_grad_at(w->norm_grad, l, 0, c->dim);
    vt_rmsnorm_backward(dx, dgain, w->dxn, tp->x_attn, wt->attn_norm, tp->inv_rms_attn, rows, c->dim, 1);
}

static void mlp_backward(const vt_model *m, vt_bwd *w, int l, float *dx, int B, int T, const vt_gates *g,
                         const vt_tape_layer *tp, float *dz, vt_model *dw) {
    const vt_config *c = &m->cfg;
    const vt_layer_weights *wt = &m->layers[l];
    vt_layer_weights *gw = dw ? &dw->layers[l] : NULL;
    int ffn = c->layers[l].ffn, rows = B * T;
    gated_residual_backward(dx, tp->y_mlp, w->dy, B, T, c->dim, g, dz, g ? vt_gate_blocks(g->layout, l) + 1 : 0);
    const float *act_in = tp->act;
    if (g) {
        vt_apply_unit_gates(w->gated, tp->act, B, T, ffn, 1, g, vt_gate_ffn(g->layout, l));
        act_in = w->gated;
    }
    float *dact = g ? w->dgated : w->dpre;
    const vt_layer_packs *pk = vt_model_packs_layer(&w->packs, l);
    vt_linear_backward_w(dact, gw ? gw->w_down : NULL, w->dy, act_in, VT_WMAT(m, wt, w_down), pk ? &pk->down : NULL,
                         w->wide, rows, ffn, c->dim, 0.0f);
    vt_lora_backward(w->lora, w->lora_grad, l, VT_LORA_DOWN, act_in, w->dy, c->dim, rows, dact);
    if (g) unit_gate_backward(w->dgated, tp->act, w->dpre, B, T, ffn, 1, g, dz, vt_gate_ffn(g->layout, l));
    /* act = silu(gate) * up */
#pragma omp parallel for schedule(static) if(vt_par((size_t)rows * ffn))
    for (int r = 0; r < rows; r++) {
        const float *gt = tp->gate_up + (size_t)r * 2 * ffn, *u = gt + ffn, *da = w->dpre + (size_t)r * ffn;
        float *dg = w->dqkv + (size_t)r * 2 * ffn, *du = dg + ffn;
        for (int i = 0; i < ffn; i++) {
            float sg = 1.0f / (1.0f + expf(-gt[i])), silu = gt[i] * sg;
            du[i] = da[i] * silu;
            dg[i] = da[i] * u[i] * sg * (1.0f + gt[i] * (1.0f - sg));
        }
    }
    vt_linear_backward_w(w->dxn, gw ? gw->w_gate : NULL, w->dqkv, tp->xn_mlp, VT_WMAT(m, wt, w_gate),
                         pk ? &pk->gate_up : NULL, w->wide, rows, c->dim, 2 * ffn, 0.0f);
    vt_lora_backward(w->lora, w->lora_grad, l, VT_LORA_GATE, tp->xn_mlp, w->dqkv, 2 * ffn, rows, w->dxn);
    vt_lora_backward(w->lora, w->lora_grad, l, VT_LORA_UP, tp->xn_mlp, w->dqkv + ffn, 2 * ffn, rows, w->dxn);
    float *dgain = gw ? gw->ffn_norm : vt_norm_grad_at(w->norm_grad, l, 1, c->dim);
    vt_rmsnorm_backward(dx, dgain, w->dxn, tp->x_mlp, wt->ffn_norm, tp->inv_rms_mlp, rows, c->dim, 1);
}

void vt_layers_backward(const vt_model *m, const vt_fwd *f, vt_bwd *w, int l0, int l1, float *dx, int B, int T,
                        const vt_gates *g, const vt_tape *tp, float *dz, vt_model *dw) {
    for (int l = l1 - 1; l >= l0; l--) {
        if (m->cfg.layers[l].ffn) mlp_backward(m, w, l, dx, B, T, g, &tp->layers[l], dz, dw);
        if (m->cfg.layers[l].n_heads) vt_attention_backward(m, f, w, l, dx, B, T, g, tp, dz, dw);
    }
}

void vt_embed_backward(const vt_model *m, const int32_t *tokens, int B, int T, const float *dx, float *dz,
                       size_t stride) {
    size_t d = (size_t)m->cfg.dim;
    vt_wmat emb = vt_embed_wmat(m);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t r = (size_t)b * T + t;
            size_t e = (size_t)tokens[r] * d;
            for (size_t i = 0; i < d; i++) dz[(size_t)b * stride + i] += dx[r * d + i] * vt_wmat_at(emb, e + i);
        }
}
