/* save_clock.h — when a training loop (the mask phase, recovery, plugins) saves a checkpoint: every N steps, at least every M minutes, or
 * when asked to stop. Each rank votes; the step sums the votes over the world with its gradients,
 * so that every rank decides alike. Owned by save_clock.c. */
#ifndef VT_SAVE_CLOCK_H
#define VT_SAVE_CLOCK_H

#include "train/vib_params.h"

typedef struct {
    double last_save; /* when the last checkpoint was saved (or the run started) */
    double votes[2];  /* summed over the world by the last step (vt_save_clock_votes) */
} vt_save_clock;

/* This rank's votes, after `done` global steps: votes[0] = 1 when asked to stop (a signal),
 * votes[1] = 1 on the coordinator (world rank 0) when a checkpoint is due (steps or time). */
void vt_save_clock_votes(const vt_save_clock *k, const vt_vib_params *p, int world_rank, long done, double votes[2]);
/* The same for any loop: stop is the stop request (NULL: none), policy the cadence. */
void vt_save_clock_due(const vt_save_clock *k, const vt_ckpt_policy *policy, volatile sig_atomic_t *stop,
                       int world_rank, long done, double votes[2]);

#endif
