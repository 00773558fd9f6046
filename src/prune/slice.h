/* slice.h — cuts pruned units out of a gated model (and out of its gates), giving a genuinely
 * smaller model that computes what the gated model computes. */
#ifndef VT_SLICE_H
#define VT_SLICE_H

#include <stdint.h>

#include "nn/masks.h"
#include "nn/model.h"

/* Slices m, gated by the layout mk, down to the units with keep[i] = 1 (keep has mk->n entries).
 * out is a freshly allocated model with the pruned config, holding the same layer range and parts
 * as m (a pipeline stage slices only its own layers; the config and gate decisions are global, so
 * every stage computes the same pruned config). m is untouched.
 *
 * The pruned config is vt_keep_structure's (budget.h), with norm_eps rescaled as below. The result
 * computes exactly the gated model with gates z'_i = keep_i ? z_i : 0:
 * - Hidden dims with keep 0 leave every tensor (embedding and classifier columns, norm weights,
 *   q/k/v/gate/up input columns, o/down output rows). They are zero in the gated residual stream,
 *   so RMSNorm over d dims becomes RMSNorm over the d' kept ones exactly by scaling every norm
 *   weight by sqrt(d/d') and the config's norm_eps by d/d'. This fold is always applied.
 * - A query head goes with its q rows and o_proj columns; a key/value head (its k and v rows) goes
 *   when all its query heads go. Kept heads stay in their original order, which keeps each kept KV
 *   head's query heads contiguous. Every kept KV head must serve the same number of kept query
 *   heads (an error names the layer otherwise).
 * - A neuron goes with its gate/up rows and down_proj column.
 * - A block whose gate is not kept, or that keeps no head / neuron, is removed (0 heads, 0 ffn).
 *
 * fold_gates = 1 (export): the kept gates' values z are folded into the weights, so the sliced
 * model needs no gates: head gate z_h scales o_proj's columns of head h, neuron gate z_j scales
 * down_proj's column j, output row i of o_proj / down_proj is scaled by z_block * z_hidden_i, the
 * embedding column i by z_hidden_i; for a tied classifier the final norm weight i is divided by
 * z_hidden_i to compensate (left as is when z_hidden_i is 0: that dim is then zero everywhere).
 * fold_gates = 0 (iterative pruning): weights keep their values, only units are removed; run the
 * result with the gates from vt_slice_masks. z is not read and may be NULL. */
int vt_slice_model(const vt_model *m, const vt_masks *mk, const float *z, const uint8_t *keep, int fold_gates,
                   vt_model *out);

/* The gates (mu, logvar, unit_id, group, layer) of the kept units in the order and layout of the
 * model vt_slice_model makes from the same keep: hidden[d'], then per layer the kept heads and
 * neurons of the layer's remaining blocks and its two block gates (kept even when the block is
 * removed, as masks.h lays out). Unit ids, groups and layers are carried over, so sampling noise
 * stays the same per unit. Gradients start at zero. For continued training use the sliced model
 * made with fold_gates = 0. The GQA check is vt_slice_model's (this function has no KV sizes). */
int vt_slice_masks(const vt_masks *mk, const uint8_t *keep, vt_masks *out);

/* Where the units of the model vt_slice_model makes from keep sit in m's (the re-fit maps dense
 * targets with it, refit.h): hidden dim i of the slice is m's dims[i] with folded gate z[i] (1
 * when no z was given); per layer, row r of the slice's fused QKV weight ([n_heads + 2 n_kv_heads]
 * x head_dim rows) is m's row qkv_rows[l][r], likewise gate_up_rows[l] for the fused gate/up
 * weight. Layers whose block is removed get NULL. */
typedef struct {
    int n;
    int *dims;
    float *z;
    int **qkv_rows, **gate_up_rows; /* n_layers entries */
    int n_layers;
} vt_slice_map;

int vt_slice_map_build(vt_slice_map *map, const vt_masks *mk, const vt_config *c, const float *z,
                       const uint8_t *keep);
void vt_slice_map_free(vt_slice_map *map);

/* Rewrites map, built over a model of config from gated by mk (sliced: the config of the model it
 * describes, vt_slice_model's), into the indices of the dense model of config dense through mk's unit ids (masks.h numbers them in the dense model's units): for a
 * model that iterative pruning already sliced (vt_slice_masks carries the ids over). The identity
 * when from is dense. A KV head is found through its first kept query head. */
void vt_slice_map_to_dense(vt_slice_map *map, const vt_masks *mk, const vt_config *from, const vt_config *sliced,
                           const vt_config *dense);

#endif
