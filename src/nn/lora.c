/* lora.c — low-rank adapters: their layout, the forward and backward terms, the merge. */
#include "nn/lora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/matmul.h"
#include "util/error.h"
#include "util/rng.h"

static const char *const proj_names[VT_LORA_PROJS] = {"q", "k", "v", "o", "gate", "up", "down"};

const char *vt_lora_proj_name(vt_lora_proj p) { return p < VT_LORA_PROJS ? proj_names[p] : "?"; }

int vt_lora_parse_targets(const char *list, unsigned *targets) {
    *targets = 0;
    const char *s = list;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        size_t n = strcspn(s, " ,");
        if (!n) break;
        int found = -1;
        for (int p = 0; p < VT_LORA_PROJS; p++)
            if (strlen(proj_names[p]) == n && strncmp(s, proj_names[p], n) == 0) found = p;
        if (found < 0)
            return vt_fail("adapter target '%.*s' is none of q, k, v, o, gate, up, down", (int)n, s);
        *targets |= 1u << found;
        s += n;
    }
    return *targets ? 0 : vt_fail("no adapter targets in '%s'", list);
}

/* Layer l's projection p of c: 1 and its shape [out, in], or 0 when the block is absent. */
static int proj_shape(const vt_config *c, int l, vt_lora_proj p, int *in, int *out) {
    const vt_layer_shape *s = &c->layers[l];
    int qd = s->n_heads * c->head_dim, kvd = s->n_kv_heads * c->head_dim;
    if (p <= VT_LORA_O ? !s->n_heads : !s->ffn) return 0;
    *in = p == VT_LORA_O ? qd : p == VT_LORA_DOWN ? s->ffn : c->dim;
    *out = p == VT_LORA_Q ? qd : p <= VT_LORA_V ? kvd : p == VT_LORA_O || p == VT_LORA_DOWN ? c->dim : s->ffn;
    return 1;
}

/* Layer l's projection p of m: its weight [out, in] (NULL when the block is absent). */
static float *proj_weight(const vt_model *m, int l, vt_lora_proj p, int *in, int *out) {
    const vt_layer_weights *w = &m->layers[l];
    float *const ws[VT_LORA_PROJS] = {w->wq, w->wk, w->wv, w->wo, w->w_gate, w->w_up, w->w_down};
    return proj_shape(&m->cfg, l, p, in, out) ? ws[p] : NULL;
}

size_t vt_lora_count(const vt_config *c, int rank, unsigned targets, int l0, int l1, size_t *a_floats) {
    size_t n = 0, a = 0;
    for (int l = l0; l < l1; l++)
        for (int p = 0; p < VT_LORA_PROJS; p++) {
            int in, out;
            if (!(targets & (1u << p)) || !proj_shape(c, l, p, &in, &out)) continue;
            n += (size_t)rank * ((size_t)in + out);
            a += (size_t)rank * in;
        }
    if (a_floats) *a_floats = a;
    return n;
}

/* The adapters' shapes from m (or like), their arena carved; the arena zeroed. */
static int lay_out(vt_lora *lo, int n_layers, int l0, int l1, const vt_model *m, const vt_lora *like) {
    lo->n_layers = n_layers;
    lo->layer_begin = l0;
    lo->layer_end = l1;
    lo->ad = vt_calloc((size_t)n_layers * VT_LORA_PROJS, sizeof *lo->ad, "adapters");
    if (!lo->ad) return -1;
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        float *at = lo->arena;
        for (int l = l0; l < l1; l++)
            for (int p = 0; p < VT_LORA_PROJS; p++) {
                vt_lora_pair *ad = &lo->ad[(size_t)l * VT_LORA_PROJS + p];
                int in = 0, out = 0;
                if (like) {
                    const vt_lora_pair *o = vt_lora_at(like, l, p);
                    if (!o->a) continue;
                    in = o->in, out = o->out;
                } else if (!(lo->targets & (1u << p)) || !proj_weight(m, l, p, &in, &out)) {
                    continue;
                }
                size_t n = (size_t)lo->rank * ((size_t)in + out);
                if (pass == 0) total += n;
                else *ad = (vt_lora_pair){at, at + (size_t)lo->rank * in, in, out}, at += n;
            }
        if (pass == 0 && !(lo->arena = vt_calloc(total ? total : 1, sizeof(float), "adapter weights"))) return -1;
    }
    lo->n_params = total;
    return 0;
}

int vt_lora_init(vt_lora *lo, const vt_model *m, int rank, float alpha, unsigned targets, uint64_t seed,
                 int max_rows) {
    memset(lo, 0, sizeof *lo);
    if (rank < 1) return vt_fail("adapter rank %d must be at least 1", rank);
    lo->rank = rank;
    lo->targets = targets;
    lo->scale = alpha / (float)rank;
    lo->max_rows = max_rows;
    if (lay_out(lo, m->cfg.n_layers, m->layer_begin, m->layer_end, m, NULL)) goto fail;
    lo->u = vt_malloc((size_t)max_rows * rank * sizeof(float), "adapter scratch");
    lo->du = vt_malloc((size_t)max_rows * rank * sizeof(float), "adapter scratch");
    if (!lo->u || !lo->du) goto fail;
    size_t before; /* the A values of the layers before this part: the same draws whatever the stages */
    vt_lora_count(&m->cfg, rank, targets, 0, m->layer_begin, &before);
    uint64_t counter = before;
    for (size_t i = 0; i < (size_t)m->cfg.n_layers * VT_LORA_PROJS; i++) {
        vt_lora_pair *ad = &lo->ad[i];
        if (!ad->a) continue;
        double bound = 1.0 / sqrt((double)ad->in);
        for (size_t k = 0; k < (size_t)rank * ad->in; k++)
            ad->a[k] = (float)((2.0 * vt_uniform(seed, counter++) - 1.0) * bound);
    }
    return 0;
fail:
    vt_lora_free(lo);
    return -1;
}

int vt_lora_init_like(vt_lora *lo, const vt_lora *like) {
    memset(lo, 0, sizeof *lo);
    lo->rank = like->rank;
    lo->targets = like->targets;
    lo->scale = like->scale;
    if (lay_out(lo, like->n_layers, like->layer_begin, like->layer_end, NULL, like)) {
        vt_lora_free(lo);
        return -1;
    }
    return 0;
}

void vt_lora_free(vt_lora *lo) {
    free(lo->ad);
    free(lo->arena);
    free(lo->u);
    free(lo->du);
    memset(lo, 0, sizeof *lo);
}

void vt_lora_forward(vt_lora *lo, int l, vt_lora_proj p, const float *x, int rows, float *y, int ldy) {
    if (!lo) return;
    const vt_lora_pair *ad = vt_lora_at(lo, l, p);
    if (!ad->a) return;
    int r = lo->rank;
    vt_sgemm(0, 1, rows, r, ad->in, 1.0f, x, ad->in, ad->a, ad->in, 0.0f, lo->u, r);          /* u = x A^T */
    vt_sgemm(0, 1, rows, ad->out, r, lo->scale, lo->u, r, ad->b, r, 1.0f, y, ldy);             /* y += s u B^T */
}

void vt_lora_backward(vt_lora *lo, vt_lora *grad, int l, vt_lora_proj p, const float *x, const float *dy, int ldy,
                      int rows, float *dx) {
    if (!lo) return;
    const vt_lora_pair *ad = vt_lora_at(lo, l, p);
    if (!ad->a) return;
    int r = lo->rank;
    const vt_lora_pair *g = grad ? vt_lora_at(grad, l, p) : NULL;
    vt_sgemm(0, 0, rows, r, ad->out, lo->scale, dy, ldy, ad->b, r, 0.0f, lo->du, r); /* du = s dy B */
    if (g) {
        vt_sgemm(0, 1, rows, r, ad->in, 1.0f, x, ad->in, ad->a, ad->in, 0.0f, lo->u, r); /* u = x A^T again */
        vt_sgemm(1, 0, ad->out, r, rows, lo->scale, dy, ldy, lo->u, r, 1.0f, g->b, r);     /* dB += s dy^T u */
        vt_sgemm(1, 0, r, ad->in, rows, 1.0f, lo->du, r, x, ad->in, 1.0f, g->a, ad->in);   /* dA += du^T x */
    }
    vt_sgemm(0, 0, rows, ad->in, r, 1.0f, lo->du, r, ad->a, ad->in, 1.0f, dx, ad->in);     /* dx += du A */
}

void vt_lora_merge(const vt_lora *lo, vt_model *m) {
    for (int l = lo->layer_begin; l < lo->layer_end; l++)
        for (int p = 0; p < VT_LORA_PROJS; p++) {
            const vt_lora_pair *ad = vt_lora_at(lo, l, p);
            int in, out;
            float *w = ad->a ? proj_weight(m, l, p, &in, &out) : NULL;
            if (w) vt_sgemm(0, 0, out, in, lo->rank, lo->scale, ad->b, lo->rank, ad->a, in, 1.0f, w, in);
        }
}
