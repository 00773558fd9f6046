/* baselines.h — baseline pruning methods (magnitude, random, first-order Taylor) scored per VIB gate, so they go
 * through the same budget decision and slicer as VTrans. */
#ifndef VT_BASELINES_H
#define VT_BASELINES_H

#include <stdint.h>

#include "data/calib.h"
#include "nn/masks.h"
#include "nn/model.h"
#include "prune/slice.h"

typedef enum { VT_SCORE_MAGNITUDE, VT_SCORE_RANDOM, VT_SCORE_TAYLOR } vt_score_kind;

/* "magnitude", "random", "taylor". */
const char *vt_score_kind_name(vt_score_kind kind);
/* The kind named `name`; fails naming it when it is none of the above. */
int vt_score_kind_parse(const char *name, vt_score_kind *kind);

/* Parameters of the weight group each gate controls (LLM-Pruner-style structured groups), for the
 * layout of config c (vt_masks_init on c):
 * - hidden dim i: the embedding column i (and the classifier column when untied), every norm
 *   weight i, the input column i of q/k/v/gate/up and the output row i of o/down in every layer;
 * - query head h: its q rows and o_proj columns, plus 1/group of its KV head's k and v rows;
 * - neuron j: the gate and up rows j and the down_proj column j;
 * - block: all its weights (norm included); 0 for a removed block.
 * cost has layout->n entries. */
void vt_baseline_costs(const vt_config *c, const vt_masks *layout, double *cost);

/* Per-gate scores (lower = more important) for vt_budget_decide. layout was made with
 * vt_masks_init on m->cfg; m holds the whole model. Units of different kinds share one global
 * ranking, so importance is normalised by the group's parameter cost (vt_baseline_costs):
 * - magnitude: importance = (sum of squared weights of the group) / cost, the mean squared weight;
 * - random: score = vt_uniform(seed, unit id), independent of the weights;
 * - taylor: importance = |dL/dz_j| / cost at z = 1, where L is the mean over `batches` calibration
 *   batches (batch_size sequences each, vt_calib_batch order with `seed`) of the LM cross-entropy
 *   of next-token prediction. At z = 1, z_j dL/dz_j equals the sum of w dL/dw over the weights the
 *   gate scales, LLM-Pruner's first-order group estimate of the loss change when the unit goes.
 * score[j] = -importance (random: the uniform draw). calib, batches and batch_size are read only
 * for taylor. score has layout->n entries. */
int vt_baseline_scores(const vt_model *m, const vt_masks *layout, vt_score_kind kind, const vt_calib *calib,
                       int batches, int batch_size, uint64_t seed, float *score);

/* A whole baseline run: gate layout for m->cfg, scores, vt_budget_decide against budget_size (absolute,
 * the unit of vt_structure_size for budget_kind, a vt_budget_kind; ctx its mean attended context), (vt_budget_decide_uniform when
 * uniform), then vt_slice_model with every kept gate at z = 1 folded in (weights keep their values). out is a freshly
 * allocated pruned model; map, when not NULL, receives where its units sit in m (vt_slice_map_build,
 * for the re-fit; free with vt_slice_map_free). */
int vt_baseline_prune(const vt_model *m, vt_score_kind kind, const vt_calib *calib, int batches, int batch_size,
                      uint64_t seed, int budget_kind, double budget_size, double ctx, int round_to, int uniform, vt_model *out,
                      vt_slice_map *map);

#endif
