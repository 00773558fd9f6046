/* trainer.h — the state of a VTrans run, composed of parts each owned by one file: the step's
 * geometry and batch (train_geom.h), the classifier share (head_share.h), the student with its
 * gates and step buffers (student.h), the teacher cache (teacher_cache.h), the optimizer state
 * (train_optim.h) and the checkpoint clock (save_clock.h). trainer.c sets them up and frees them
 * together; above it come the step (train_step.h), then structural changes (train_prune.h) and
 * checkpoints (train_ckpt.h), then the loop (vib_train.c). Internal to the trainer. */
#ifndef VT_TRAINER_H
#define VT_TRAINER_H

#include "data/calib.h"
#include "dist/comm.h"
#include "train/head_share.h"
#include "train/save_clock.h"
#include "train/student.h"
#include "train/teacher_cache.h"
#include "train/train_geom.h"
#include "train/train_optim.h"
#include "train/vib_params.h"

typedef struct {
    const vt_vib_params *p;
    vt_comm *comm;
    const vt_model *teacher; /* this rank's part of the dense model (frozen) */
    const vt_calib *calib;
    double dense_size, ctx;
    vt_train_geom g;
    vt_train_batch batch;
    vt_head_share head;      /* this stage's share of the classifier's vocabulary */
    vt_student st;
    vt_teacher_cache cache;  /* last stage only */
    vt_train_optim opt;
    vt_save_clock clock;
    long tokens;
    int trace;               /* VT_TRACE set: every step prints each phase's wall and communication time */
} trainer;

/* Sets the run's constants and the step's geometry; allocates nothing (a resume's settings can be
 * checked before any work). */
int vt_trainer_init(trainer *t, const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p,
                    vt_comm *comm);
/* Allocates the gates and their moments, the classifier share, the student's buffers, the batch. */
int vt_trainer_alloc(trainer *t);
/* (Re)allocates what depends on the student's structure (after vt_student_adopt or a resume). */
int vt_trainer_alloc_student(trainer *t);
/* Builds the teacher cache (teacher_cache.h), using the step buffers as scratch. */
int vt_trainer_cache_teacher(trainer *t);
/* What this rank holds now: weights (model parts, weight gradients and moments) and everything
 * else the run allocated (activations, tapes, classifier scratch, teacher cache), in bytes. */
void vt_trainer_bytes(const trainer *t, size_t *weights, size_t *work);
/* What the packed weight copies hold (parallel.pack_weights): forward, backward, classifier share. */
size_t vt_trainer_pack_bytes(const trainer *t);
/* Frees the training memory (step buffers, classifier share, teacher cache); the student's weights
 * and gates stay for the export. */
void vt_trainer_free_work(trainer *t);
void vt_trainer_free(trainer *t);

#endif
