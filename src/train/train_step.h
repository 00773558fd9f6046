/* train_step.h — one VTrans training step over micro-batches and pipeline stages (train_step.c).
 * Internal to the trainer. */
#ifndef VT_TRAIN_STEP_H
#define VT_TRAIN_STEP_H

#include "train/trainer.h"

/* Global step `step` of phase (0 masks, 1 fine-tuning): gate (and weight) gradients summed over
 * the world, the budget and KL multipliers updated, the losses and sizes into rec; the checkpoint
 * votes ride on the gradient sum into t->clock.votes. The optimizer step is the caller's. */
int vt_trainer_step(trainer *t, long step, int phase, vt_train_record *rec);

#endif
