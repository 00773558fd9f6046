/* head_share.h — this stage's share of the classifier's vocabulary during a VTrans run: the rows
 * (the last stage's own, or a copy sent once by the last stage), and the classifier's input,
 * gradient and teacher-entropy scratch for one micro-batch group. Owned by head_share.c. */
#ifndef VT_HEAD_SHARE_H
#define VT_HEAD_SHARE_H

#include "dist/comm.h"
#include "nn/model.h"
#include "train/head_loss.h"
#include "train/train_geom.h"

typedef struct {
    vt_head_part part; /* this stage's rows [v0, v0 + vs) and their scratch (head_loss.h) */
    float *rows;       /* stages other than the last: their copy of those classifier rows */
    float *hx;         /* [Bm*T, dim]: the classifier's input (other stages: received) */
    float *hdx;        /* [Bm*T, dim]: the gradient at the classifier's input */
    double *hneg;      /* [Bm*T]: the micro-batch's rows of the teacher's sum p log p */
} vt_head_share;

/* The last stage, which holds the classifier, sends every other stage its rows of the teacher's
 * classifier once; they keep a copy (sliced along with the student: vt_head_share_columns). */
int vt_head_share_init(vt_head_share *h, vt_comm *cm, const vt_model *teacher, const vt_train_geom *g);
/* Last stage: computes with the student's own classifier rows (after every new student). */
void vt_head_share_bind(vt_head_share *h, const vt_model *student);
/* Follows a change of the student's hidden dims: the rows keep columns cols[0, n) of their
 * current columns (packs dropped: the student's allocation packs them again). */
void vt_head_share_columns(vt_head_share *h, const int64_t *cols, int n);
void vt_head_share_free(vt_head_share *h);
/* Bytes held, counted at the dense width dim: *weights the copied rows, *work the scratch (packs
 * not included). */
void vt_head_share_bytes(const vt_head_share *h, const vt_train_geom *g, int dim, size_t *weights, size_t *work);

#endif
