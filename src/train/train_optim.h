/* train_optim.h — the optimizer state of a VTrans run: the gates' Adam moments, in fine-tuning the
 * weight gradients and their moments, the budget multipliers and the KL weight's multiplier.
 * Owned by train_optim.c. */
#ifndef VT_TRAIN_OPTIM_H
#define VT_TRAIN_OPTIM_H

#include "nn/masks.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "prune/lagrangian.h"

typedef struct {
    vt_adam adam_mu, adam_lv; /* the gates' moments, in the gate layout */
    vt_adam adam_w;           /* fine-tuning: the moments of the student's layer weights */
    vt_model dw;              /* fine-tuning: weight gradients of this part */
    int train_weights;
    vt_lagrangian lg;
    double kl_log_scale;      /* the KL weight's multiplier: beta * exp(kl_log_scale) */
} vt_train_optim;

/* Moments for n gates, nothing else. */
int vt_train_optim_init(vt_train_optim *o, size_t n);
/* Fine-tuning the weights of student (train_weights must be set already): its gradients and the
 * moments of its layer weights. */
int vt_train_optim_weights(vt_train_optim *o, const vt_model *student, double weight_decay);
/* Carries the gates' moments over to a sliced gate layout, matching gates by unit id. */
int vt_train_optim_remap(vt_train_optim *o, const vt_masks *old, const vt_masks *nw);
/* Fine-tuning weights go (gradients, moments, flag); the gates' moments stay. */
void vt_train_optim_drop_weights(vt_train_optim *o);
/* Replaces the whole state by from's (a checkpoint's, taken over). */
void vt_train_optim_restore(vt_train_optim *o, const vt_train_optim *from);
void vt_train_optim_free(vt_train_optim *o);

#endif
