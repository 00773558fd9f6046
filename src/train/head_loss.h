/* head_loss.h — the classifier and the training losses split by vocabulary over the stages of a
 * pipeline: each stage multiplies by its own rows of the classifier, the softmax statistics are
 * combined over the stages, and the teacher enters only through two cached per-token quantities,
 * so its logits are never computed again after the teacher cache is built. */
#ifndef VT_HEAD_LOSS_H
#define VT_HEAD_LOSS_H

#include <stdint.h>

#include "dist/comm.h"
#include "nn/matmul.h"

/* The rows [v0, v0 + vs) of a classifier with d columns, and scratch for `rows` tokens. */
typedef struct {
    int v0, vs, d, rows;
    const float *w;     /* [vs, d] */
    vt_packed pk[2];    /* NULL data, or w packed for x W^T [0] and dY W [1] (vt_head_part_pack) */
    vt_dtype hold;      /* the type the packs may be held in (the model's, vt_model.hold) */
    float *logits, *p, *dl; /* [rows, vs] */
    double *stat;       /* [6 * rows]: softmax maxima and sums at tau and at 1, target logits, row dots */
    size_t bytes;       /* allocated, packs not included */
} vt_head_part;

int vt_head_part_init(vt_head_part *h, int v0, int vs, int d, int rows);
void vt_head_part_free(vt_head_part *h);
/* Packs w (its vs rows of d) for both directions; w must stay unchanged while packed: unpack
 * before changing it. */
int vt_head_part_pack(vt_head_part *h);
void vt_head_part_unpack(vt_head_part *h);
/* Rows [v0, v0 + vs) of V split over n stages: stage s gets a contiguous share. */
void vt_vocab_share(int V, int n, int s, int *v0, int *vs);

/* The teacher's side, for `rows` tokens with normalised final hidden states xn[rows, d] (the same
 * on every stage): with p = softmax(xn W^T / tau) over the whole vocabulary,
 *   e[r] = sum_j p[r, j] W[j]   (summed onto stage root; [rows, d])
 *   negent[r] = sum_j p log p   (on every stage).
 * Then for a student with logits s = W' h (W' = W's columns for h's dims):
 *   tau^2 KL(p || softmax(s / tau)) = tau^2 (negent - e . h / tau + logsumexp(s / tau)),
 * and the gradient at h of its teacher part is -tau e: the teacher's logits are not needed. */
int vt_head_teacher(vt_comm *c, vt_head_part *h, const float *xn, int rows, float tau, int root, float *e,
                    double *negent);

/* The student's side: logits of xn[rows, d] (same on every stage) by this stage's rows, then
 * kd_weight * mean over rows of tau^2 KL(teacher || student) (teacher given by e, negent, with
 * e's column for dim i at e_cols[i] of a row of e_stride floats; used on stage root only) plus
 * ce_weight * mean over scored rows (targets >= 0) of the cross-entropy. The gradient at xn goes
 * to dxn[rows, d], summed onto stage root; the losses go to loss[0] (KL) and loss[1] (CE), added
 * on stage root. */
int vt_head_student(vt_comm *c, vt_head_part *h, const float *xn, int rows, float tau, double kd_weight,
                    const int32_t *targets, double ce_weight, int root, const float *e, const int64_t *e_cols,
                    int e_stride, const double *negent, float *dxn, double loss[2]);

#endif
