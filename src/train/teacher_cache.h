/* teacher_cache.h — the teacher cache of a VTrans run, on the last stage: the dense model's
 * expected classifier row and sum p log p per calibration token (and with an MSE term its final
 * hidden state), computed once, so distillation needs neither a second copy of the weights nor
 * teacher logits per step (head_loss.h); sharded over the replicas: sequence i is held by replica
 * i % D at index i / D. Owned by teacher_cache.c. */
#ifndef VT_TEACHER_CACHE_H
#define VT_TEACHER_CACHE_H

#include "data/calib.h"
#include "dist/comm.h"
#include "nn/model.h"
#include "train/head_share.h"
#include "train/train_geom.h"

typedef struct {
    float *e;               /* the teacher's expected classifier row per token [own seqs, T, dim] */
    double *negent;         /* the teacher's sum p log p per token [own seqs, T] */
    float *h;               /* with an MSE term only: the teacher's final hidden states [own seqs, T, dim] */
    float *step_e, *step_h; /* the cache's rows of this replica's sequences in a step [Bd, T, dim] */
    double *step_negent;    /* [Bd, T] */
    vt_transfer *xfer;      /* [3 B]: the step's transfers of cache rows between replicas */
} vt_teacher_cache;

/* What the cache pass borrows: the teacher, the data, and scratch of the trainer's other parts. */
typedef struct {
    const vt_model *teacher;
    const vt_calib *calib;
    vt_comm *comm;
    const vt_train_geom *g;
    vt_head_share *head; /* its hx, hdx, hneg serve as scratch */
    int32_t *tok;        /* [Bd*T] >= [Bm*T] tokens */
    float *x;            /* [Bm*T, dim] activations */
    double temperature;
    int mse;             /* keep the final hidden states too */
} vt_teacher_pass;

/* Builds the cache: replica r runs sequences r, r + D, r + 2D, ... through its own pipeline (every
 * stage takes its share of the classifier), so D replicas build it D times faster and each holds
 * 1/D of it. Collective over the replica's pipeline. */
int vt_teacher_cache_build(vt_teacher_cache *tc, const vt_teacher_pass *pass);
/* Last stage: the cache's rows of this replica's sequences in the step whose global batch is
 * ids[B], into step_e, step_negent (and step_h), from the replicas that hold them. */
int vt_teacher_cache_fetch(vt_teacher_cache *tc, vt_comm *cm, const vt_train_geom *g, const int64_t *ids, int dim);
void vt_teacher_cache_free(vt_teacher_cache *tc);
/* Bytes held by this rank, for n_seq calibration sequences of the dense width dim. */
size_t vt_teacher_cache_bytes(const vt_teacher_cache *tc, const vt_train_geom *g, const vt_comm *cm, size_t n_seq,
                              int dim);

#endif
