/* refit.h — re-fitting a pruned model's output projections by least squares: for each kept block,
 * o_proj (over the kept heads' outputs) and down_proj (over the kept neurons) are solved in closed
 * form, W' = C (G + lambda I)^-1, so that the block's output on calibration data matches the dense
 * model's (docs/TRAINING.md, "Re-fit"). Layers go in order, so a layer's inputs come from the
 * already re-fitted layers before it. */
#ifndef VT_REFIT_H
#define VT_REFIT_H

#include <stddef.h>
#include <stdint.h>

#include "dist/spd_solve.h"
#include "nn/model.h"
#include "prune/slice.h"

/* What a block's output is fitted to. LAYER: the dense block's output on the dense model's own
 * inputs. RESIDUAL: the dense residual stream after the block minus the pruned one before it, so
 * that the block also corrects the drift of the layers before it. */
typedef enum { VT_REFIT_LAYER = 0, VT_REFIT_RESIDUAL = 1 } vt_refit_target;

typedef struct {
    vt_refit_target target;
    int norm_match; /* RESIDUAL only: 1 scales each token's target to the dense stream's full energy (refit.c) */
    double damp; /* the ridge lambda as a fraction of the mean of G's diagonal */
    int batch;   /* sequences per forward batch */
    int inputs;  /* 1: also re-fit QKV and gate/up to the dense pre-activations */
    int head;    /* 1: after the last layer, re-fit a per-dim scale of final_norm's gains to the dense logits */
    int bias;    /* 1: o_proj and down_proj also get an output bias (a constant input appended to the
                  * system); the pruned model then carries cfg.attn_bias and cfg.mlp_bias */
} vt_refit_params;

/* prune's [reconstruct] section (docs/CONFIG.md): whether the pruned model is re-fitted after the
 * keep decision, how, and on how many of the calibration sequences (the first `sequences`, of
 * `seq_len` tokens). */
typedef enum { VT_RECONSTRUCT_NONE = 0, VT_RECONSTRUCT_LSQ = 1 } vt_reconstruct_method;
typedef struct {
    vt_reconstruct_method method;
    vt_refit_params fit;
    int sequences;
    int seq_len; /* tokens per re-fit sequence, cut anew from the calibration tokens; 0 = data.seq_len */
} vt_reconstruct_spec;

/* One projection's fit: relative output error ||Y - X W^T||^2 / ||Y||^2 on the calibration rows
 * before and after the re-fit, and how often the ridge was raised. done = 0: not re-fitted (the
 * block is removed, or its input projection was not asked for). */
typedef struct {
    double err_before, err_after;
    int retries, done;
    double solve_seconds; /* wall time of the solve (ScaLAPACK and its retries) */
} vt_refit_stat;

/* How systems are summed and solved: sum adds x[n] in place over the ranks that hold the same
 * layer's calibration shards (identity in one process); solver solves the summed system on those
 * ranks (dist/spd_solve.h: ScaLAPACK on their grid, a 1 x 1 grid in one process), with retries at
 * a larger ridge reported through warn (NULL: stderr). */
typedef struct vt_refit_ops vt_refit_ops;
struct vt_refit_ops {
    int (*sum)(vt_refit_ops *o, double *x, size_t n);
    vt_spd_solver *solver;
    void (*warn)(void *ctx, const char *message);
    void *ctx;
    vt_refit_stat *head; /* optional: where the final norm's fit (params.head) reports its relative
                          * error of the centred logits, before and after */
};

/* Per layer, the four projections' fits in this order: QKV, o_proj, gate/up, down_proj. */
enum { VT_REFIT_QKV = 0, VT_REFIT_O, VT_REFIT_GATE_UP, VT_REFIT_DOWN, VT_REFIT_SLOTS };

/* With p->bias, pruned gets (zeroed) biases first (vt_model_add_biases) for the layers it holds.
 * The pruned model's residual stream is z o the gated dense stream on the kept dims (map, from
 * vt_slice_map_build on the keep decision), so dense targets are mapped into that basis.
 * Streams through layers [l0, l1): xd [n_seq * T, dense dim] and xp [n_seq * T, pruned dim] hold
 * both models' residual streams at layer l0's input for the same sequences (rows b * T + t) and
 * leave at layer l1's input, the pruned one computed with the re-fitted weights. pruned's o_proj
 * and down_proj (and with p->inputs, QKV and gate/up) of those layers are replaced; with p->head,
 * when l1 is the last layer and both models hold the head, pruned's final_norm gains are then
 * scaled per dim so that its centred logits fit the dense model's (least squares; the classifier,
 * tied to the embedding or not, stays). stats, when not NULL, gets [n_layers][VT_REFIT_SLOTS]
 * entries filled for the layers run. */
int vt_refit_layers(const vt_model *dense, vt_model *pruned, const vt_slice_map *map, float *xd, float *xp,
                    int n_seq, int T, int l0, int l1, const vt_refit_params *p, vt_refit_ops *ops,
                    vt_refit_stat *stats);

/* The same from the tokens in one process holding both whole models: embeds n_seq sequences of T
 * tokens, then re-fits every layer. */
int vt_refit_model(const vt_model *dense, vt_model *pruned, const vt_slice_map *map, const int32_t *tokens,
                   int n_seq, int T, const vt_refit_params *p, vt_refit_ops *ops, vt_refit_stat *stats);

/* Relative output errors of both models' blocks on other sequences without changing anything (no
 * solve): stats gets err_before = err_after = the current error (to check a re-fit on held-back
 * data). */
int vt_refit_measure(const vt_model *dense, const vt_model *pruned, const vt_slice_map *map, const int32_t *tokens,
                     int n_seq, int T, const vt_refit_params *p, vt_refit_stat *stats);

/* The one-process ops around solver: no sums. */
vt_refit_ops vt_refit_ops_local(vt_spd_solver *solver);

#endif
