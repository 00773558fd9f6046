/* model.c — configuration helpers, parameter and FLOP counts, weight arena allocation. */
#include "nn/model.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

vt_load_parts vt_load_all(void) {
    vt_load_parts p = {0, -1, 1, 1};
    return p;
}

int vt_config_init_dense(vt_config *c) {
    /* every reader bounds its own key first (naming it); this guards any reader that does not */
    if (c->n_layers > VT_MAX_LAYERS) return vt_fail("%d layers is more than the %d supported", c->n_layers, VT_MAX_LAYERS);
    c->layers = vt_calloc((size_t)(c->n_layers > 0 ? c->n_layers : 1), sizeof *c->layers, "layer shapes");
    if (!c->layers) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        c->layers[l].n_heads = c->n_heads;
        c->layers[l].n_kv_heads = c->n_kv_heads;
        c->layers[l].ffn = c->ffn_dim;
    }
    return 0;
}

int vt_config_copy(vt_config *dst, const vt_config *src) {
    *dst = *src;
    dst->layers = vt_malloc(sizeof *dst->layers * (size_t)(src->n_layers > 0 ? src->n_layers : 1), "layer shapes");
    if (!dst->layers) return -1;
    memcpy(dst->layers, src->layers, sizeof *dst->layers * (size_t)src->n_layers);
    return 0;
}

void vt_config_free(vt_config *c) {
    free(c->layers);
    c->layers = NULL;
}

int vt_config_validate(const vt_config *c, const char *source) {
    if (c->dim <= 0 || c->n_layers <= 0 || c->vocab <= 0 || c->head_dim <= 0 || c->seq_len <= 0)
        return vt_fail("%s: sizes must be positive (hidden %d, layers %d, vocab %d, head_dim %d, max positions %d)",
                       source, c->dim, c->n_layers, c->vocab, c->head_dim, c->seq_len);
    if (c->head_dim % 2)
        return vt_fail("%s: head_dim %d must be even for RoPE", source, c->head_dim);
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads)
        return vt_fail("%s: %d attention heads is not a positive multiple of %d key/value heads", source,
                       c->n_heads, c->n_kv_heads);
    if (!(c->norm_eps > 0.0f) || !(c->rope_theta > 0.0f))
        return vt_fail("%s: rms_norm_eps (%g) and rope_theta (%g) must be positive", source, c->norm_eps,
                       c->rope_theta);
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        if (s->n_heads < 0 || s->n_kv_heads < 0 || s->ffn < 0)
            return vt_fail("%s: layer %d has negative sizes", source, l);
        if ((s->n_heads == 0) != (s->n_kv_heads == 0) || (s->n_kv_heads && s->n_heads % s->n_kv_heads))
            return vt_fail("%s: layer %d: %d query heads is not a multiple of %d key/value heads", source, l,
                           s->n_heads, s->n_kv_heads);
    }
    return 0;
}

size_t vt_layer_params(const vt_config *c, int l) {
    const vt_layer_shape *s = &c->layers[l];
    size_t d = (size_t)c->dim, hd = (size_t)c->head_dim, n = 0;
    if (s->n_heads) n += d + 2 * d * (size_t)s->n_heads * hd + 2 * d * (size_t)s->n_kv_heads * hd;
    if (s->ffn) n += d + 3 * d * (size_t)s->ffn;
    return n;
}

size_t vt_layer_bias_params(const vt_config *c, int l) {
    const vt_layer_shape *s = &c->layers[l];
    size_t d = (size_t)c->dim, n = 0;
    if (s->n_heads && c->attn_bias) n += d + (size_t)(s->n_heads + 2 * s->n_kv_heads) * c->head_dim;
    if (s->ffn && c->mlp_bias) n += d + 2 * (size_t)s->ffn;
    return n;
}

size_t vt_params_non_embedding(const vt_config *c) {
    size_t n = (size_t)c->dim; /* final norm */
    for (int l = 0; l < c->n_layers; l++) n += vt_layer_params(c, l) + vt_layer_bias_params(c, l);
    return n;
}

size_t vt_params_total(const vt_config *c) {
    size_t emb = (size_t)c->vocab * (size_t)c->dim;
    return vt_params_non_embedding(c) + emb * (c->tied ? 1 : 2);
}

double vt_layer_flops(const vt_config *c, int l, double ctx) {
    const vt_layer_shape *s = &c->layers[l];
    double d = c->dim, hd = c->head_dim;
    return 2.0 * d * hd * (2.0 * s->n_heads + 2.0 * s->n_kv_heads) /* q, o, k, v */
           + 4.0 * s->n_heads * hd * ctx                            /* scores and weighted values */
           + 6.0 * d * s->ffn;                                      /* gate, up, down */
}

double vt_flops_per_token(const vt_config *c, double ctx) {
    double f = 0.0;
    for (int l = 0; l < c->n_layers; l++) f += vt_layer_flops(c, l, ctx);
    return f + 2.0 * c->dim * (double)c->vocab; /* classifier */
}


int vt_model_alloc(vt_model *m, const vt_config *c, vt_load_parts parts) {
    return vt_model_alloc_raw(m, c, parts, VT_F32);
}

/* Lays the parts out in m's arenas: fp32 weights (norms; matrices when raw is fp32) and 16-bit ones;
 * *np and *nh count the elements each takes (with the arenas NULL, only counted). */
static void lay_out(vt_model *m, const vt_config *c, vt_load_parts parts, size_t *np, size_t *nh) {
    float *p = m->arena;
    uint16_t *h = m->arena16;
    size_t fi = 0, hi = 0;
    int wide = m->raw == VT_F32;
#define TAKE(n) (fi += (n), p ? p + fi - (n) : NULL)
#define MAT(field, n)                                                                                                 \
    do {                                                                                                              \
        if (wide) field = TAKE(n);                                                                                    \
        else {                                                                                                        \
            hi += (n);                                                                                                \
            field##16 = h ? h + hi - (n) : NULL;                                                                      \
        }                                                                                                             \
    } while (0)
    size_t d = (size_t)c->dim, emb = (size_t)c->vocab * d;
    if (parts.embed) {
        if (c->tied) m->embed = TAKE(emb); /* the classifier reads it: fp32 */
        else MAT(m->embed, emb);
    }
    if (parts.head) {
        m->final_norm = TAKE(d);
        m->lm_head = (c->tied && parts.embed) ? m->embed : TAKE(emb);
    }
    size_t hd = (size_t)c->head_dim;
    for (int l = parts.layer_begin; l < parts.layer_end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        vt_layer_weights *w = &m->layers[l];
        size_t q = (size_t)s->n_heads * hd, kv = (size_t)s->n_kv_heads * hd, f = (size_t)s->ffn;
        if (s->n_heads) {
            w->attn_norm = TAKE(d);
            MAT(w->wq, q * d);
            MAT(w->wk, kv * d);
            MAT(w->wv, kv * d);
            MAT(w->wo, d * q);
        }
        if (s->ffn) {
            w->ffn_norm = TAKE(d);
            MAT(w->w_gate, f * d);
            MAT(w->w_up, f * d);
            MAT(w->w_down, d * f);
        }
    }
#undef MAT
#undef TAKE
    *np = fi;
    *nh = hi;
}

int vt_model_alloc_raw(vt_model *m, const vt_config *c, vt_load_parts parts, vt_dtype raw) {
    memset(m, 0, sizeof *m);
    if (parts.layer_end < 0) parts.layer_end = c->n_layers;
    if (parts.layer_begin < 0 || parts.layer_begin > parts.layer_end || parts.layer_end > c->n_layers)
        return vt_fail("layer range [%d, %d) is outside the model's %d layers", parts.layer_begin,
                       parts.layer_end, c->n_layers);
    if (vt_config_copy(&m->cfg, c)) return -1;
    m->layer_begin = parts.layer_begin;
    m->layer_end = parts.layer_end;
    m->has_embed = parts.embed;
    m->has_head = parts.head;
    m->raw = raw;
    m->layers = vt_calloc((size_t)c->n_layers, sizeof *m->layers, "layer table");
    if (!m->layers) {
        vt_model_free(m);
        return -1;
    }
    lay_out(m, c, parts, &m->arena_floats, &m->arena16_count); /* counts (no arenas yet) */
    m->arena = vt_calloc(m->arena_floats ? m->arena_floats : 1, sizeof(float), "model weights");
    if (raw != VT_F32) m->arena16 = vt_calloc(m->arena16_count ? m->arena16_count : 1, sizeof(uint16_t), "16-bit model weights");
    if (!m->arena || (raw != VT_F32 && !m->arena16)) {
        vt_model_free(m);
        return -1;
    }
    lay_out(m, c, parts, &m->arena_floats, &m->arena16_count);
    if ((c->attn_bias || c->mlp_bias) && vt_model_add_biases(m, c->attn_bias, c->mlp_bias)) {
        vt_model_free(m);
        return -1;
    }
    return 0;
}

int vt_model_add_biases(vt_model *m, int attn, int mlp) {
    vt_config *c = &m->cfg;
    if ((!attn || c->attn_bias) && (!mlp || c->mlp_bias) && m->bias) return 0;
    c->attn_bias |= attn;
    c->mlp_bias |= mlp;
    size_t total = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) total += vt_layer_bias_params(c, l);
    float *old = m->bias, *p = vt_calloc(total ? total : 1, sizeof(float), "model biases");
    if (!p) return -1;
    m->bias = p;
    size_t d = (size_t)c->dim, hd = (size_t)c->head_dim;
    for (int l = m->layer_begin; l < m->layer_end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        vt_layer_weights *w = &m->layers[l];
        size_t q = (size_t)(s->n_heads + 2 * s->n_kv_heads) * hd, f = 2 * (size_t)s->ffn;
        /* biases already held keep their values */
        if (s->n_heads && c->attn_bias) {
            if (w->b_qkv) memcpy(p, w->b_qkv, q * sizeof(float)), memcpy(p + q, w->bo, d * sizeof(float));
            w->b_qkv = p, w->bo = p + q, p += q + d;
        }
        if (s->ffn && c->mlp_bias) {
            if (w->b_gate_up) memcpy(p, w->b_gate_up, f * sizeof(float)), memcpy(p + f, w->b_down, d * sizeof(float));
            w->b_gate_up = p, w->b_down = p + f, p += f + d;
        }
    }
    free(old);
    return 0;
}

size_t vt_model_bytes(const vt_model *m) {
    return sizeof(float) * m->arena_floats + sizeof(uint16_t) * m->arena16_count;
}

int vt_hold_merge(int held, int ndim, vt_dtype t) {
    if (ndim != 2) return held;
    return held == -1 || held == (int)t ? (int)t : -2;
}

vt_dtype vt_hold_of(int held) { return held == VT_F16 || held == VT_BF16 ? (vt_dtype)held : VT_F32; }

void vt_model_free(vt_model *m) {
    vt_config_free(&m->cfg);
    free(m->layers);
    free(m->arena);
    free(m->arena16);
    free(m->bias);
    memset(m, 0, sizeof *m);
}
