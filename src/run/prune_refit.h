/* prune_refit.h — prune's `reconstruct` step: the pruned model re-fitted by least squares against
 * the dense one (prune/refit.h) on the first calibration sequences, over the world: replicas share
 * the sequences and sum their systems, stages pass both residual streams on. */
#ifndef VT_PRUNE_REFIT_H
#define VT_PRUNE_REFIT_H

#include "data/calib.h"
#include "dist/comm.h"
#include "nn/model.h"
#include "prune/refit.h"
#include "prune/slice.h"

/* Re-fits this rank's layers of pruned (its part of the model vt_slice_model made, map from the
 * same keep decision in the dense model's indices) against its part of dense on the first
 * spec->sequences sequences of calib (as vt_prune_refit_sequences cut them; all of them when
 * there are fewer): replica r of R streams
 * sequences [r n / R, (r + 1) n / R), stage s takes both streams from stage s - 1 and hands them to
 * s + 1. Collective over the world. stats ([n_layers][VT_REFIT_SLOTS], zeroed by the caller) gets
 * every layer's fits on every rank. Returns 0, or -1 with every rank failing together. */
int vt_prune_refit(vt_comm *c, const vt_model *dense, vt_model *pruned, const vt_slice_map *map, const vt_calib *calib,
                   const vt_reconstruct_spec *spec, vt_refit_stat *stats);

/* The re-fit's sequences: calib's tokens cut into spec->seq_len-token sequences (calib itself when
 * seq_len is 0 or data.seq_len), into view (which borrows calib's tokens). */
int vt_prune_refit_sequences(const vt_calib *calib, const vt_reconstruct_spec *spec, vt_calib *view);

#endif
