/* ref_model.h — an independent double-precision LLaMA forward pass with VIB gates, written out op
 * by op, for checking the fast float code and for finite-difference gradient checks. */
#ifndef VT_REF_MODEL_H
#define VT_REF_MODEL_H

#include <stdint.h>

#include "nn/masks.h"
#include "nn/model.h"

/* The model's weights in double, at the same offsets as m->arena (perturb them for FD checks). */
typedef struct {
    const vt_model *m;
    double *w; /* [m->arena_floats] */
} ref_model;

void ref_model_init(ref_model *r, const vt_model *m);
void ref_model_free(ref_model *r);
/* Index in w of float pointer p inside m->arena. */
size_t ref_offset(const ref_model *r, const float *p);

/* logits[B*T, vocab] for B sequences of T tokens from position 0; z[B, layout->n] gates or NULL.
 * When hidden is not NULL it receives the last layer's output [B*T, dim]. */
void ref_forward(const ref_model *r, const vt_masks *layout, const double *z, const int32_t *tok, int B, int T,
                 double *logits, double *hidden);

/* weight * mean over rows of T^2 KL(softmax(t/T) || softmax(s/T)) in double. */
double ref_distill(const double *s, const double *t, int rows, int vocab, double temperature, double weight);

#endif
