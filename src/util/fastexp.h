/* fastexp.h — exp over arrays in a form the compiler vectorises (Cephes polynomial, relative error
 * below 1e-7 on [-87, 0]): the softmax of attention is the hot loop of small models. */
#ifndef VT_FASTEXP_H
#define VT_FASTEXP_H

/* x[i] = exp(x[i]) for x[i] in [-87, 0] (callers clamp: softmax inputs minus their maximum). */
void vt_exp_nonpositive(float *x, int n);

#endif
