/* keep_decide.h — the final keep decision: every gate ranked globally by score (log alpha by
 * default) against its cost, to meet the size budget exactly with a valid structure. */
#ifndef VT_KEEP_DECIDE_H
#define VT_KEEP_DECIDE_H

#include <stdint.h>

#include "nn/masks.h"
#include "nn/model.h"
#include "prune/size.h"

/* The final decision. Ranks all gates by score (lower = more important; NULL: log_alpha from mk)
 * and keeps a valid structure whose exact size is at or just under budget_size (absolute, the
 * unit of vt_structure_size): the largest global score threshold that fits, made structurally
 * valid (GQA groups with a common head count, removed blocks take their units, at least round_to
 * hidden dims, hidden and per-layer FFN counts multiples of round_to, the best-scored units of each
 * kind kept), then filled greedily with further units in score order while the size fits.
 * keep[mk->n] receives 1 for kept gates (a kept block's gate is 1); out_cfg (allocated) equals
 * vt_keep_structure(keep); *out_size its exact size. Fails, naming the minimum as a fraction of
 * c's size, when budget_size is below vt_budget_min_size. */
int vt_budget_decide(const vt_masks *mk, const vt_config *c, vt_budget_kind kind, double ctx, double budget_size,
                     int round_to, const float *score, uint8_t *keep, vt_config *out_cfg, double *out_size);

/* budget.uniform: the same decision with the same kept sizes in every layer (hidden dims are global;
 * heads per KV group, KV groups and FFN neurons common to all layers, each layer keeping its own
 * best-scored units of those counts), no block removed. A rank slot (the k-th best unit of a kind in
 * every layer) is scored by the mean of the layers' scores at that rank, and the slots are ranked
 * and filled as vt_budget_decide ranks gates (keep_uniform.c says why). Fails when c's layers
 * differ in size or the budget is below the smallest uniform structure (round_to hidden dims, one
 * head, round_to neurons per layer). */
int vt_budget_decide_uniform(const vt_masks *mk, const vt_config *c, vt_budget_kind kind, double ctx,
                             double budget_size, int round_to, const float *score, uint8_t *keep, vt_config *out_cfg,
                             double *out_size);

/* What vt_budget_decide_uniform refuses before any work: c's layers differing in size (or one with
 * a removed block), round_to beyond the hidden or FFN size, budget_size below the smallest uniform
 * structure. 0, or -1 with an error naming the layer or the minimum. */
int vt_budget_uniform_check(const vt_config *c, vt_budget_kind kind, double ctx, int round_to, double budget_size);

#endif
