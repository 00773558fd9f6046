/* train_prune.h — structural changes during a VTrans run (train_prune.c): slicing the student,
 * iterative hard pruning, the final keep decision. Internal to the trainer. */
#ifndef VT_TRAIN_PRUNE_H
#define VT_TRAIN_PRUNE_H

#include "train/trainer.h"

/* Replaces the student by its slice to the units in keep (gates not folded: training goes on). */
int vt_trainer_slice(trainer *t, const uint8_t *keep);
/* Iterative pruning: removes for good the gate groups whose log alpha passed theta, as many as
 * keep the size at or above the final budget; *removed = gates removed. Collective. */
int vt_trainer_prune_crossed(trainer *t, int *removed);
/* The coordinator's final keep decision, broadcast: *keep_out (allocated, [n gates]). Collective. */
int vt_trainer_decide(trainer *t, uint8_t **keep_out);

#endif
