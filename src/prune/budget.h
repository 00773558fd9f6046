/* budget.h — model size (parameters or FLOPs): exact, expected from soft gates (with gradients),
 * the budget Lagrangian, the target ramp, and the final keep decision. */
#ifndef VT_BUDGET_H
#define VT_BUDGET_H

#include <stdint.h>

#include "nn/masks.h"
#include "nn/model.h"

typedef enum { VT_BUDGET_PARAMS, VT_BUDGET_FLOPS } vt_budget_kind;

/* The requested budget (section [budget] of the run configuration): exactly one of params and flops
 * is a fraction in (0, 1) of the dense size, the other negative (unset). */
typedef struct {
    double params;  /* fraction of total parameters kept */
    double flops;   /* fraction of forward FLOPs per token kept */
    int round_to;   /* kept units per group rounded to a multiple of this: 1, 8, 64 or 128 */
    double warmup;  /* fraction of mask-phase steps over which the target ramps down */
} vt_budget_spec;

static inline vt_budget_kind vt_budget_spec_kind(const vt_budget_spec *b) {
    return b->params > 0 ? VT_BUDGET_PARAMS : VT_BUDGET_FLOPS;
}
static inline double vt_budget_spec_target(const vt_budget_spec *b) { return b->params > 0 ? b->params : b->flops; }

/* Exact size of a (possibly pruned) structure: vt_params_total(c), or vt_flops_per_token(c, ctx)
 * with ctx the mean attended positions (vt_mean_ctx(seq_len) = (seq_len + 1) / 2). */
double vt_structure_size(const vt_config *c, vt_budget_kind kind, double ctx);

/* Expected size from soft keep probabilities p_j = sigmoid(-k * log_alpha_j) (k: sharpness, 10 by
 * default), combined through the structure: with E_D = sum of the hidden p, per layer block
 * probabilities pa, pm, the query-head p_h, a KV head kept with probability 1 - prod(1 - p_h) over
 * its query heads, and each norm counted with the probability that its block keeps any head or
 * neuron. Equals vt_structure_size of the structure vt_keep_structure gives when every p is 0 or 1.
 * c holds the current per-layer sizes (the same layout as mk). When g_mu and g_logvar are not NULL,
 * adds scale * d(size)/d(mu_j) and scale * d(size)/d(logvar_j) into them. NaN with an error when
 * mk and c disagree on the layout. */
double vt_expected_size(const vt_masks *mk, const vt_config *c, vt_budget_kind kind, double ctx, double k,
                        double scale, float *g_mu, float *g_logvar);

/* The CoFi-style Lagrangian on the size, s and t as fractions of the dense size. */
typedef struct {
    double lambda1, lambda2;
} vt_lagrangian;

/* Returns lambda1 * (s - t) + lambda2 * (s - t)^2, the term added to the loss. Any output pointer
 * may be NULL. *ds = d/ds = lambda1 + 2 lambda2 (s - t): the gates MINIMISE the loss, so chain
 * *ds (divided by the dense size) into vt_expected_size's scale and descend. *dl1 = s - t and
 * *dl2 = (s - t)^2: the multipliers MAXIMISE it, so the caller ASCENDS: lambda += lr * dl
 * (lambda2 only grows; lambda1 grows while the model is over the target and shrinks under it). */
double vt_budget_term(double s, double t, const vt_lagrangian *lg, double *ds, double *dl1, double *dl2);

/* Target fraction at a step: 1.0 at step 0, linear to target_fraction at warmup_steps, then flat
 * (target_fraction from the start when warmup_steps <= 0). */
double vt_budget_target(double target_fraction, long step, long warmup_steps);

/* Smallest size the decision can produce: round_to hidden dims (at least 1), every layer removed.
 * Callers check a budget against it before any work. */
double vt_budget_min_size(const vt_config *c, vt_budget_kind kind, double ctx, int round_to);

/* The pruned structure a keep vector ([mk->n], 1 = kept) describes: dim = kept hidden dims; per
 * layer the kept query heads, the KV heads with at least one kept query head, the kept neurons.
 * A block whose block gate is not kept, or that keeps no head (neuron), is removed (sizes 0).
 * out_cfg is allocated (free with vt_config_free). Fails when no hidden dim is kept or a layer's
 * kept KV heads serve different numbers of kept query heads. */
int vt_keep_structure(const vt_masks *mk, const vt_config *c, const uint8_t *keep, vt_config *out_cfg);

/* For the slicer: the kept KV heads of layer l (indices in c's numbering, ascending) are written
 * to kv[] (room for c->layers[l].n_kv_heads); returns their count. A KV head is kept when the
 * attention block gate and one of its query heads are kept. The kept query heads taken in
 * ascending order are in KV-group order: new query head i uses new KV head i / (heads / kv_heads). */
int vt_keep_kv_heads(const vt_masks *mk, const vt_config *c, const uint8_t *keep, int l, int *kv);

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

#endif
