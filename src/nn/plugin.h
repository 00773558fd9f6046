/* plugin.h — Variator plugins (docs/PLUGINS.md): per-layer merge of k prompt positions before the FFN
 * and an adapter after it, the plugged prefill of a prompt, its backward pass and FLOP counts. */
#ifndef VT_PLUGIN_H
#define VT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/model.h"

/* One layer's plugin. Compression: score s_i = w . x_i (no bias: a softmax within a group ignores
 * a constant), a = softmax over the group, c_g = sum a_i x_i. Decompression: position i of group g
 * gets y_i = f_g + W2 silu(W1 [x_i ; f_g] + b1) + b2 with f_g = FFN(c_g). SiLU: smooth (the
 * finite-difference checks need no kinks) and the model's own nonlinearity. */
typedef struct {
    float *w;  /* [dim] score vector */
    float *w1; /* [r, 2 dim]: columns 0..dim-1 act on x_i, dim..2 dim-1 on f_g */
    float *b1; /* [r] */
    float *w2; /* [dim, r], zero-initialised: an untrained plugin is the merged FFN output */
    float *b2; /* [dim], zero-initialised */
} vt_plugin_layer;

/* The last-layer rule: the model's last layer's FFN output at a prompt position feeds only that
 * position's own logits (its keys and values were made before it), and no prompt logit but the
 * last one's is read. So the plugged prefill runs the last layer's FFN exactly at the prompt's last
 * position and not at all at the others (their outputs are left without it), exact for every
 * scored logit; that layer keeps no plugin. The other layers with an FFN have one. */
static inline int vt_plugin_has_layer(const vt_config *c, int l) { return c->layers[l].ffn > 0 && l < c->n_layers - 1; }

/* The plugins of every layer of a model (layers without one, vt_plugin_has_layer: pointers NULL). */
typedef struct {
    int k, r, dim, n_layers;
    int tail; /* the exact tail: at least the prompt's last `tail` positions run exactly (>= 1; 1 by default) */
    vt_plugin_layer *layers; /* n_layers entries */
    float *arena;            /* owns every tensor above, layer by layer in the order w, w1, b1, w2, b2 */
    size_t arena_floats;
} vt_plugin;

/* Plugin parameters of one layer with a plugin, and of a whole model (vt_plugin_has_layer). */
size_t vt_plugin_layer_params(int dim, int r);
size_t vt_plugin_params(const vt_config *c, int r);

/* The plugins of layers [l0, l1) are one run of p's arena (it is laid out layer by layer): its
 * first float goes to *off, its length is returned (0, *off = 0: none of those layers has one).
 * A pipeline stage trains, sums and sends just this run of its layers. */
size_t vt_plugin_region(const vt_plugin *p, int l0, int l1, size_t *off);

/* Allocates zeroed plugins for the layers of c that have one (k >= 1, r >= 1), exact tail 1. */
int vt_plugin_alloc(vt_plugin *p, const vt_config *c, int k, int r);
void vt_plugin_free(vt_plugin *p);
/* The training start: w = 0 (a uniform merge), W1 ~ U(-1/sqrt(2 dim), 1/sqrt(2 dim)) (PyTorch's
 * Linear default, from seed), b1 = 0, W2 = 0, b2 = 0 (the adapter starts at zero output). */
void vt_plugin_init(vt_plugin *p, uint64_t seed);

/* The grouping of a prompt of P positions: groups of k from position 0, as many full groups as fit
 * in the first P - tail positions; the rest (the last `tail` positions always among them, tail >= 1)
 * runs exactly. The continuation attends most to the prompt's last positions, so keeping more of
 * them exact buys quality for FLOPs (plugin.exact_tail, docs/PLUGINS.md). */
static inline int vt_plugin_groups(int P, int k, int tail) { return P > tail ? (P - tail) / k : 0; }

/* Prefill FLOPs of one prompt of P tokens through the layers: matmuls and attention as
 * vt_layer_flops counts them (position t at context t + 1), no classifier. k = 0: dense; k >= 1:
 * the FFN runs on the merged groups (vt_plugin_groups with `tail`) and the exact positions, plus the plugins (scores and merge
 * 4 dim per grouped position, adapter 4 dim r per grouped position and 2 dim r per group); the
 * model's last layer runs its FFN on one row (the last-layer rule). */
double vt_prefill_flops(const vt_config *c, int P, int k, int r, int tail);

/* What a plugged prefill saves for backward: per layer, for B prompts of P positions with G groups
 * and E = P - G k exact positions (M = B (G + E) FFN rows, per prompt G merged rows then E exact). */
typedef struct {
    float *a;  /* [B G k] softmax weights within each group */
    float *c;  /* [M, dim] FFN inputs: merged vectors and exact positions' xn */
    float *gu; /* [M, 2 ffn] gate and up projections */
    float *f;  /* [M, dim] FFN outputs */
    float *h;  /* [B G k, r] adapter pre-activations */
} vt_plugin_tape_layer;

typedef struct {
    int B, P, G, E;
    vt_plugin_tape_layer *layers; /* indexed by layer; [layer_begin, layer_end) of the model with an FFN */
    float *arena;
    size_t bytes;
} vt_plugin_tape;

int vt_plugin_tape_init(vt_plugin_tape *t, const vt_model *m, const vt_plugin *p, int B, int P);
void vt_plugin_tape_free(vt_plugin_tape *t);

/* Scratch of the plugged FFN for up to B prompts of P positions (forward and backward). */
typedef struct {
    int B, P;
    vt_plugin_tape_layer fwd; /* the forward's buffers when no tape is kept */
    float *u;                 /* [B G k, r] adapter activations */
    float *y;                 /* [B P, dim] block outputs */
    float *dc, *df, *dh;      /* gradients at c, f, h */
    float *dhs;               /* [B G, r] group sums of dh */
    float *arena;
    size_t bytes;
} vt_plugin_work;

int vt_plugin_work_init(vt_plugin_work *w, const vt_model *m, const vt_plugin *p, int B, int P);
void vt_plugin_work_free(vt_plugin_work *w);

/* The plugged FFN of layer l on xn [B P, dim] (the FFN's normalised inputs) into y [B P, dim]; its
 * activations go to tl when not NULL. The FFN itself runs through the model's matmuls (f's packs). */
void vt_plugged_ffn_forward(const vt_model *m, vt_fwd *f, const vt_plugin *p, vt_plugin_work *w, int l,
                            const float *xn, float *y, int B, int P, vt_plugin_tape_layer *tl);
/* Its backward from dy [B P, dim]: dxn [B P, dim] (overwritten) and the plugin's gradients into dp
 * (added; may be NULL). The base weights get no gradient. bw's buffers serve as scratch. */
void vt_plugged_ffn_backward(const vt_model *m, vt_bwd *bw, const vt_plugin *p, vt_plugin_work *w, int l,
                             const float *xn, const float *dy, float *dxn, int B, int P,
                             const vt_plugin_tape_layer *tl, vt_plugin *dp);

/* The plugged prefill: B prompts of P tokens at positions 0..P-1 through layers [l0, l1), in place
 * on x; attention runs exactly and fills f's key/value cache, each FFN is plugged (the model's last
 * layer's by the last-layer rule: rows 0..P-2 of its output then lack that FFN). Later tokens
 * then run exactly on the cache (vt_layers_forward_ex at pos0 = P). With tape (made for B x P at 0)
 * and pt, activations are saved for vt_plugged_backward. */
void vt_plugged_forward(const vt_model *m, vt_fwd *f, const vt_plugin *p, vt_plugin_work *w, int l0, int l1,
                        float *x, int B, int P, vt_tape *tape, vt_plugin_tape *pt);
/* Layers [l0, l1) of the plugged prompt in reverse, as vt_layers_backward does for a chunk: dx
 * holds dL/d(output of layer l1-1) and becomes dL/d(input of l0). When the continuation's tape is
 * linked after this one (vt_tape_link) and went backward first through the same bw, the gradients
 * its queries sent to the prompt's keys and values join here. Plugin gradients add into dp. */
void vt_plugged_backward(const vt_model *m, const vt_fwd *f, vt_bwd *bw, const vt_plugin *p, vt_plugin_work *w,
                         int l0, int l1, float *dx, int B, int P, const vt_tape *tape, const vt_plugin_tape *pt,
                         vt_plugin *dp);

#endif
