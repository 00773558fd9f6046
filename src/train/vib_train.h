/* vib_train.h — VTrans pruning, in one process or on one rank of a pipeline (with training
 * checkpoints and resume): the mask phase (VIB gates trained by distillation,
 * KL and the budget Lagrangian, with iterative hard pruning), the global keep decision, and for
 * the full/fast variants joint fine-tuning of the kept weights and gates; the result is sliced
 * into a smaller model. */
#ifndef VT_VIB_TRAIN_H
#define VT_VIB_TRAIN_H

#include "data/calib.h"
#include "dist/comm.h"
#include "nn/model.h"
#include "train/vib_params.h"

int vt_vib_prune(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_vib_result *out);
/* The same on one rank of a pipeline: teacher is this rank's part of the dense model, comm its
 * place in the world; out->pruned receives the pruned part (gates and decisions are global). */
int vt_vib_prune_part(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_comm *comm,
                      vt_vib_result *out);
void vt_vib_result_free(vt_vib_result *r);

#endif
