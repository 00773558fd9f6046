/* student.h — the model a VTrans run trains: its weights (the teacher's until the first slice),
 * its gates, and the step's buffers its structure sizes (forward and backward workspaces,
 * activation tapes, activations, gate samples and gradients). Owned by student.c. */
#ifndef VT_STUDENT_H
#define VT_STUDENT_H

#include "nn/backward.h"
#include "nn/forward.h"
#include "nn/masks.h"
#include "train/head_share.h"
#include "train/train_geom.h"

typedef struct {
    vt_model own;          /* the student once it differs from the teacher */
    const vt_model *model; /* the teacher until the first slice, then &own */
    vt_masks mk;           /* every gate of the model, identical on every rank */
    vt_fwd fs;
    vt_tape *tapes;        /* one per micro-batch (K), each group's C chunks linked */
    vt_bwd bw;
    float *x;              /* [Bm*T, dim] activations passing through this stage */
    float **dx_last;       /* last stage: dL/d(final hidden) per micro-batch [Bm*Tc, dim] */
    float *z, *eps, *dz;   /* gates of this replica's sequences [Bd, n] */
    double *red;           /* reduction buffer [2 n + 8] */
    int packed;            /* the weights are packed (fs, bw, classifier share) */
} vt_student;

/* The teacher as the student, with fresh gates for its structure. */
int vt_student_init(vt_student *s, const vt_model *teacher, uint64_t seed);
/* (Re)allocates the buffers the student's structure sizes; the last stage's classifier share is
 * bound to the student's rows. With pack (frozen weights), the weights and the classifier share
 * are packed once when BLIS allows (matmul.h). */
int vt_student_alloc(vt_student *s, const vt_train_geom *g, int last, vt_head_share *head, int pack);
void vt_student_free_bufs(vt_student *s, const vt_train_geom *g);
/* Replaces model and gates by next and next_mk (taken over), buffers freed: allocate again. */
void vt_student_adopt(vt_student *s, const vt_train_geom *g, vt_model next, vt_masks next_mk);
/* Restores a checkpoint's student: gates mk and, when own is not NULL, the weights *own (both taken
 * over), else the teacher's; buffers freed: allocate again. */
void vt_student_restore(vt_student *s, const vt_train_geom *g, const vt_model *teacher, vt_masks mk, vt_model *own);
void vt_student_free(vt_student *s, const vt_train_geom *g);
static inline int vt_student_owned(const vt_student *s) { return s->model == &s->own; }
/* Bytes of the step's buffers and gate state (*work) and of the packed weight copies (return). */
size_t vt_student_bytes(const vt_student *s, const vt_train_geom *g, int dense_dim, size_t *work);

/* The floats of m's layers, which vt_model_alloc puts last: their count, and *start their offset. */
size_t vt_layer_region(const vt_model *m, size_t *start);

#endif
