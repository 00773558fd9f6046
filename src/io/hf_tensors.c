/* hf_tensors.c — HF tensor names, shapes and model buffers per checkpoint part; RoPE row order. */
#include "io/hf_tensors.h"

#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"

void vt_hf_tensor_name(vt_hf_kind kind, int layer, char *out, int cap) {
    static const char *const layer_names[VT_HF_BDOWN + 1] = {
        [VT_HF_ATTN_NORM] = "input_layernorm",        [VT_HF_WQ] = "self_attn.q_proj",
        [VT_HF_WK] = "self_attn.k_proj",              [VT_HF_WV] = "self_attn.v_proj",
        [VT_HF_WO] = "self_attn.o_proj",              [VT_HF_FFN_NORM] = "post_attention_layernorm",
        [VT_HF_GATE] = "mlp.gate_proj",               [VT_HF_UP] = "mlp.up_proj",
        [VT_HF_DOWN] = "mlp.down_proj",
    };
    int weight = vt_hf_bias_of(kind);
    if (weight >= 0) {
        snprintf(out, (size_t)cap, "model.layers.%d.%s.bias", layer, layer_names[weight]);
        return;
    }
    switch (kind) {
    case VT_HF_EMBED: snprintf(out, (size_t)cap, "model.embed_tokens.weight"); break;
    case VT_HF_FINAL_NORM: snprintf(out, (size_t)cap, "model.norm.weight"); break;
    case VT_HF_LM_HEAD: snprintf(out, (size_t)cap, "lm_head.weight"); break;
    default: snprintf(out, (size_t)cap, "model.layers.%d.%s.weight", layer, layer_names[kind]); break;
    }
}

int vt_hf_bias_of(vt_hf_kind kind) {
    static const int of[] = {VT_HF_WQ, VT_HF_WK, VT_HF_WV, VT_HF_WO, VT_HF_GATE, VT_HF_UP, VT_HF_DOWN};
    return kind >= VT_HF_BQ && kind <= VT_HF_BDOWN ? of[kind - VT_HF_BQ] : -1;
}

static void add(vt_hf_tensor *list, int *n, vt_hf_kind kind, int layer, int64_t rows, int64_t cols, float *data,
                uint16_t *data16) {
    vt_hf_tensor *t = &list[(*n)++];
    t->kind = kind;
    t->layer = layer;
    vt_hf_tensor_name(kind, layer, t->name, (int)sizeof t->name);
    t->ndim = cols ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols;
    t->data = data;
    t->data16 = data16;
    t->optional = kind != VT_HF_BO && kind != VT_HF_BDOWN && vt_hf_bias_of(kind) >= 0;
}

int vt_hf_tensor_list(const vt_config *c, vt_load_parts parts, const vt_model *m, vt_hf_tensor **out, int *n) {
    int end = parts.layer_end < 0 ? c->n_layers : parts.layer_end;
    if (parts.layer_begin < 0 || parts.layer_begin > end || end > c->n_layers)
        return vt_fail("layer range [%d, %d) is outside the model's %d layers", parts.layer_begin, end, c->n_layers);
    if (m && (parts.layer_begin < m->layer_begin || end > m->layer_end || (parts.embed && !m->has_embed) ||
              (parts.head && !m->has_head)))
        return vt_fail("the model does not hold the parts asked for");
    vt_hf_tensor *list = vt_calloc((size_t)(16 * (end - parts.layer_begin) + 3), sizeof *list, "tensor list");
    if (!list) return -1;
    int k = 0;
    int64_t d = c->dim, hd = c->head_dim, vocab = c->vocab;
    if (parts.embed) add(list, &k, VT_HF_EMBED, -1, vocab, d, m ? m->embed : NULL, m ? m->embed16 : NULL);
    for (int l = parts.layer_begin; l < end; l++) {
        const vt_layer_shape *s = &c->layers[l];
        const vt_layer_weights *w = m ? &m->layers[l] : NULL;
        int64_t q = s->n_heads * hd, kv = s->n_kv_heads * hd, f = s->ffn;
        if (s->n_heads) {
            add(list, &k, VT_HF_ATTN_NORM, l, d, 0, w ? w->attn_norm : NULL, NULL);
            add(list, &k, VT_HF_WQ, l, q, d, w ? w->wq : NULL, w ? w->wq16 : NULL);
            add(list, &k, VT_HF_WK, l, kv, d, w ? w->wk : NULL, w ? w->wk16 : NULL);
            add(list, &k, VT_HF_WV, l, kv, d, w ? w->wv : NULL, w ? w->wv16 : NULL);
            add(list, &k, VT_HF_WO, l, d, q, w ? w->wo : NULL, w ? w->wo16 : NULL);
        }
        if (s->n_heads && c->attn_bias) {
            float *b = w ? w->b_qkv : NULL;
            add(list, &k, VT_HF_BQ, l, q, 0, b, NULL);
            add(list, &k, VT_HF_BK, l, kv, 0, b ? b + q : NULL, NULL);
            add(list, &k, VT_HF_BV, l, kv, 0, b ? b + q + kv : NULL, NULL);
            add(list, &k, VT_HF_BO, l, d, 0, w ? w->bo : NULL, NULL);
        }
        if (s->ffn) {
            add(list, &k, VT_HF_FFN_NORM, l, d, 0, w ? w->ffn_norm : NULL, NULL);
            add(list, &k, VT_HF_GATE, l, f, d, w ? w->w_gate : NULL, w ? w->w_gate16 : NULL);
            add(list, &k, VT_HF_UP, l, f, d, w ? w->w_up : NULL, w ? w->w_up16 : NULL);
            add(list, &k, VT_HF_DOWN, l, d, f, w ? w->w_down : NULL, w ? w->w_down16 : NULL);
        }
        if (s->ffn && c->mlp_bias) {
            add(list, &k, VT_HF_BGATE, l, f, 0, w ? w->b_gate_up : NULL, NULL);
            add(list, &k, VT_HF_BUP, l, f, 0, w ? w->b_gate_up + f : NULL, NULL);
            add(list, &k, VT_HF_BDOWN, l, d, 0, w ? w->b_down : NULL, NULL);
        }
    }
    if (parts.head) {
        add(list, &k, VT_HF_FINAL_NORM, -1, d, 0, m ? m->final_norm : NULL, NULL);
        if (!c->tied) add(list, &k, VT_HF_LM_HEAD, -1, vocab, d, m ? m->lm_head : NULL, NULL);
    }
    *out = list;
    *n = k;
    return 0;
}

void vt_rope_half_row_order(int n_heads, int head_dim, int *order) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < 2; j++)
            for (int i = 0; i < half; i++) order[h * head_dim + j * half + i] = h * head_dim + 2 * i + j;
}
