/* train_ckpt.h — saving and restoring a VTrans run's training state in its run directory:
 * checkpoints ckpt-NNNNNNNN/ (state.bin from the coordinator: step, gates, optimizer moments,
 * multipliers, curve; rank-SSSSS.bin from replica 0 of every stage S, read by every replica of the
 * stage: the stage's student weights and their optimizer moments when they differ from the
 * checkpoint it was loaded from), each renamed into place when complete, and manifest.json,
 * rewritten last, listing the complete ones with sizes and checksums and recording the settings a
 * resume must keep (docs/FORMATS.md, "Training checkpoints").
 * Internal to the trainer. */
#ifndef VT_TRAIN_CKPT_H
#define VT_TRAIN_CKPT_H

#include "train/trainer.h"

/* Where training stands: what a checkpoint records besides the trainer. */
typedef struct {
    long step;       /* global steps done */
    int phase;       /* 0 masks, 1 fine-tuning */
    long phase_step; /* steps done in this phase */
} vt_ckpt_pos;

/* Collective: every rank calls it at the same step. */
int vt_ckpt_save(trainer *t, const vt_ckpt_pos *pos, const vt_vib_result *out);
/* Collective, before any work: refuses a run directory without a readable manifest, made with
 * another number of stages when its stage files hold state bound to them (the student's own
 * weights, fine-tuning's moments: another number of replicas, or stages over a checkpoint of masks
 * alone, resumes), or whose recorded settings (t->p->run.settings of the run that
 * saved it) differ from this run's, naming each setting with both values. */
int vt_ckpt_check(trainer *t, const char *dir);
/* Collective, after vt_ckpt_check: restores the newest complete checkpoint of dir (an older one
 * when the newest is damaged). */
int vt_ckpt_load(trainer *t, const char *dir, vt_ckpt_pos *pos, vt_vib_result *out);

#endif
