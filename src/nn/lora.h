/* lora.h — low-rank adapters on a model's projections: W x + (alpha / r) B (A x) with A [r, in]
 * and B [out, r] per layer and chosen projection, the base weights frozen; their forward and
 * backward terms (hooked into forward.c and backward.c through vt_fwd.lora and vt_bwd.lora) and
 * their merge into the weights. */
#ifndef VT_LORA_H
#define VT_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "nn/model.h"

/* The projections an adapter can sit on; `targets` is a bit set of 1 << vt_lora_proj. */
typedef enum { VT_LORA_Q, VT_LORA_K, VT_LORA_V, VT_LORA_O, VT_LORA_GATE, VT_LORA_UP, VT_LORA_DOWN, VT_LORA_PROJS } vt_lora_proj;
#define VT_LORA_ALL ((1u << VT_LORA_PROJS) - 1u)

/* One adapter: a [rank, in], b [out, rank] inside the owner's arena; a NULL: none here. */
typedef struct {
    float *a, *b;
    int in, out;
} vt_lora_pair;

typedef struct {
    int rank, n_layers, layer_begin, layer_end;
    unsigned targets;
    float scale;          /* alpha / rank */
    vt_lora_pair *ad;     /* [n_layers * VT_LORA_PROJS]; only held layers filled */
    float *arena;         /* every a and b, back to back: the trainable parameters */
    size_t n_params;
    float *u, *du;        /* scratch [max_rows, rank]: A x and its gradient */
    int max_rows;
} vt_lora;

/* The name of a projection ("q", ..., "down") and the bit set a comma list of names gives
 * (-1 on an unknown name, with the error set naming it). */
const char *vt_lora_proj_name(vt_lora_proj p);
int vt_lora_parse_targets(const char *list, unsigned *targets);

/* The adapter parameters (A and B) of layers [l0, l1) of c, laid out as vt_lora_init lays them (a
 * pipeline stage's adapters are the run of the whole model's from vt_lora_count(c, .., 0, l0));
 * *a_floats (may be NULL): how many of them are A's. */
size_t vt_lora_count(const vt_config *c, int rank, unsigned targets, int l0, int l1, size_t *a_floats);

/* Adapters of rank `rank` on the targets of the layers m holds (blocks it lacks get none), for
 * passes of up to max_rows rows: A uniform in +-1/sqrt(in) (PEFT's Kaiming-uniform) from seed,
 * B zero, so the adapted model starts as m; a stage's A values are the whole model's. */
int vt_lora_init(vt_lora *lo, const vt_model *m, int rank, float alpha, unsigned targets, uint64_t seed,
                 int max_rows);
/* Zeroed adapters of like's shapes (gradients), without scratch. */
int vt_lora_init_like(vt_lora *lo, const vt_lora *like);
void vt_lora_free(vt_lora *lo);
static inline const vt_lora_pair *vt_lora_at(const vt_lora *lo, int l, vt_lora_proj p) {
    return &lo->ad[(size_t)l * VT_LORA_PROJS + p];
}

/* y[rows, out] (row stride ldy) += scale (x A^T) B^T for layer l's adapter p; x [rows, in]
 * (row stride in). Nothing when lo is NULL or holds no such adapter. */
void vt_lora_forward(vt_lora *lo, int l, vt_lora_proj p, const float *x, int rows, float *y, int ldy);
/* The backward of vt_lora_forward given dy (row stride ldy): grad's A and B gain their gradients
 * (grad may be NULL), dx [rows, in] gains scale (dy B) A. */
void vt_lora_backward(vt_lora *lo, vt_lora *grad, int l, vt_lora_proj p, const float *x, const float *dy, int ldy,
                      int rows, float *dx);
/* W += scale B A for every adapter, into m's weights (the model the adapters were made for). */
void vt_lora_merge(const vt_lora *lo, vt_model *m);

#endif
