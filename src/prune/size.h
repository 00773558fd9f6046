/* size.h — model size accounting (parameters or FLOPs): the exact size of a (possibly pruned)
 * structure, the expected size from soft gates (with gradients), the structure a keep vector
 * describes, and the smallest structure a decision can produce. */
#ifndef VT_SIZE_H
#define VT_SIZE_H

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
    int uniform;    /* the same kept sizes in every layer (vt_budget_decide_uniform) */
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

/* 0 when the gate layout mk matches c's per-layer sizes (and c's heads fill their KV groups), else
 * -1 with an error naming the first difference. */
int vt_gates_check_layout(const vt_masks *mk, const vt_config *c);

#endif
