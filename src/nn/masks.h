/* masks.h — VIB gates (VTrans): one gate per hidden dim, per query head, per FFN neuron and per
 * block (attention, MLP) of each layer; their mu/logvar parameters in one flat vector, sampling
 * with counter-based noise, deterministic values, log-alpha and the KL term. */
#ifndef VT_MASKS_H
#define VT_MASKS_H

#include <stddef.h>
#include <stdint.h>

#include "nn/model.h"

typedef enum { VT_GROUP_HIDDEN = 0, VT_GROUP_HEADS, VT_GROUP_FFN, VT_GROUP_BLOCKS, VT_N_GROUPS } vt_group;

/* Flat layout of the gates: hidden[dim] at 0, then for each layer l at off[l]: heads[heads[l]],
 * ffn[ffn[l]], blocks[2] (attention, MLP). A removed block keeps its (unused) block gate. */
typedef struct {
    int n_layers, dim;
    int *heads, *ffn; /* per layer, current sizes (0 = block removed) */
    size_t *off;      /* per layer: index of the layer's first head gate */
    size_t n;         /* number of gates */
    float *mu, *logvar;
    float *g_mu, *g_logvar; /* gradients, accumulated */
    int64_t *unit_id;       /* stable id of each gate in the dense model's numbering (noise, reports) */
    uint8_t *group;         /* vt_group of each gate */
    int16_t *layer;         /* layer of each gate, -1 for hidden */
} vt_masks;

static inline size_t vt_gate_heads(const vt_masks *mk, int l) { return mk->off[l]; }
static inline size_t vt_gate_ffn(const vt_masks *mk, int l) { return mk->off[l] + (size_t)mk->heads[l]; }
static inline size_t vt_gate_blocks(const vt_masks *mk, int l) {
    return mk->off[l] + (size_t)mk->heads[l] + (size_t)mk->ffn[l];
}

/* Builds the layout for config c (its current per-layer sizes) and initialises the parameters as
 * the authors' code: mu ~ N(1, 0.01), logvar ~ N(-9, 0.01), drawn as a pure function of
 * (seed, unit id). Unit ids: hidden i -> i; layer l head h -> dim + l*U + h; neuron j ->
 * dim + l*U + H + j; blocks -> dim + l*U + H + F + {0,1}, with H, F, U the dense sizes. */
int vt_masks_init(vt_masks *mk, const vt_config *c, uint64_t seed);
/* The layout alone (hidden dims, per-layer heads and neurons), arrays allocated, values unset. */
int vt_masks_alloc(vt_masks *mk, int dim, int n_layers, const int *heads, const int *ffn);
void vt_masks_free(vt_masks *mk);
void vt_masks_zero_grad(vt_masks *mk);

/* log alpha = logvar - log(mu^2): large means the gate is noise, the unit can go. */
float vt_log_alpha(float mu, float logvar);

/* Training gates: z[b*n + i] = mu_i + sigma_i * eps[b*n + i], eps = vt_gauss(seed, step,
 * sample_ids[b], unit_id[i]) (util/rng.h). eps is kept for the backward pass. */
void vt_masks_sample(const vt_masks *mk, uint64_t seed, uint64_t step, const int64_t *sample_ids, int B, float *z,
                     float *eps);
/* Evaluation/export gates: z_i = mu_i if log_alpha_i < theta else 0. */
void vt_masks_deterministic(const vt_masks *mk, float theta, float *z);
/* Accumulates into g_mu/g_logvar the gradient through sampled gates from dz[B, n]. */
void vt_masks_backward(vt_masks *mk, int B, const float *eps, const float *dz);

/* KL term: sum_i mult[group_i] * 0.5 * log(1 + mu_i^2 / sigma_i^2), scaled by beta; its gradient is
 * accumulated into g_mu/g_logvar. Returns the term's value (beta included). */
double vt_masks_kl(vt_masks *mk, const double mult[VT_N_GROUPS], double beta);

#endif
