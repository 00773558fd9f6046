/* trainer.h — the state of a VTrans run shared by the training files (vib_train.c: the loop;
 * train_step.c: one micro-batched, pipelined step and the teacher cache; train_prune.c: hard
 * pruning and the keep decision). Internal to those files. */
#ifndef VT_TRAINER_H
#define VT_TRAINER_H

#include "nn/backward.h"
#include "dist/comm.h"
#include "nn/forward.h"
#include "train/head_loss.h"
#include "nn/masks.h"
#include "train/vib_train.h"

typedef struct {
    const vt_vib_params *p;
    vt_comm *comm;
    const vt_model *teacher; /* this rank's part of the dense model (frozen) */
    const vt_calib *calib;
    vt_model own;            /* the student once it differs from the teacher */
    const vt_model *student; /* teacher until the first slice */
    vt_masks mk;             /* every gate of the model, identical on every rank */
    vt_adam adam_mu, adam_lv, adam_w;
    vt_model dw;             /* weight gradients of this part (fine-tuning only) */
    int train_weights;
    int packed;              /* the student's weights are packed (fs, bw, head): vt_trainer_alloc_student */
    vt_lagrangian lg;
    double kl_log_scale;     /* the KL weight's multiplier: beta * exp(kl_log_scale) */
    double dense_size, ctx;
    int B, Bd, Bm, M, T;     /* global batch, per replica, per micro-batch; micro-batches; tokens */
    int C, Tc, K;            /* chunks per sequence, tokens per chunk; K = M C micro-batches of Bm x Tc
                              * tokens in a step: micro-batch k is chunk k % C of sequence group k / C */
    vt_fwd fs;
    vt_tape *tapes;          /* one per micro-batch (K), each group's C chunks linked */
    vt_bwd bw;
    float *x;                /* [Bm*T, dim] activations passing through this stage */
    float **dx_last;         /* last stage: dL/d(final hidden) per micro-batch [Bm*Tc, dim] */
    vt_head_part head;       /* this stage's share of the classifier's vocabulary (head_loss.h) */
    float *head_rows;        /* stages other than the last: their copy of those classifier rows */
    float *hx;               /* [Bm*T, dim]: the classifier's input (other stages: received) */
    float *hdx;              /* [Bm*T, dim]: the gradient at the classifier's input */
    double *hneg;            /* [Bm*T]: the micro-batch's rows of cache_negent */
    /* The teacher cache, on the last stage, sharded over the replicas: sequence i is held by
     * replica i % D at index i / D (vt_trainer_cache_teacher). */
    float *cache_e;          /* the teacher's expected classifier row per token [own seqs, T, dim] */
    double *cache_negent;    /* the teacher's sum p log p per token [own seqs, T] */
    float *cache;            /* with an MSE term only: the teacher's final hidden states [own seqs, T, dim] */
    float *step_e, *step_h;  /* the cache's rows of this replica's sequences in a step [Bd, T, dim] */
    double *step_negent;     /* [Bd, T] */
    vt_transfer *xfer;       /* [3 B]: the step's transfers of cache rows between replicas */
    float *z, *eps, *dz;     /* gates of this replica's sequences [Bd, n] */
    int32_t *tok, *tgt;      /* [Bd*T] */
    int64_t *ids;            /* [B] global batch */
    double *red;             /* reduction buffer */
    long tokens;
    int trace;               /* VT_TRACE set: every step prints each phase's wall and communication time */
    double last_save;        /* when the last checkpoint was saved (or the run started) */
    double save_votes[2];    /* summed over the world by the last step (vt_trainer_save_votes) */
} trainer;

/* train_step.c */
int vt_trainer_alloc_student(trainer *t);
void vt_trainer_free_student(trainer *t);
int vt_trainer_head_init(trainer *t);
void vt_trainer_head_columns(trainer *t, const int64_t *cols, int n);
void vt_trainer_head_free(trainer *t);
int vt_trainer_cache_teacher(trainer *t);
int vt_trainer_step(trainer *t, long step, int phase, vt_train_record *rec);
/* What this rank holds now: weights (model parts, weight gradients and moments) and everything
 * else the run allocated (activations, tapes, classifier scratch, teacher cache), in bytes. */
void vt_trainer_bytes(const trainer *t, size_t *weights, size_t *work);
/* What the packed weight copies hold (parallel.pack_weights): forward, backward, classifier share. */
size_t vt_trainer_pack_bytes(const trainer *t);
size_t vt_trainer_layer_region(const vt_model *m, size_t *start);

/* vib_train.c */
/* Sets B, Bd, Bm, M and C, Tc, K from the parameters, the layout and T (the sequence length). */
int vt_trainer_geometry(trainer *t);
/* This rank's votes, after `done` global steps, on saving a checkpoint: votes[0] = 1 when asked
 * to stop (a signal), votes[1] = 1 on the coordinator when a checkpoint is due (steps or time).
 * The step sums them over the world with its gradients, so that every rank decides alike. */
void vt_trainer_save_votes(const trainer *t, long done, double votes[2]);

/* train_prune.c */
int vt_trainer_slice(trainer *t, const uint8_t *keep);
int vt_trainer_prune_crossed(trainer *t, int *removed);
int vt_trainer_decide(trainer *t, uint8_t **keep_out);

#endif
