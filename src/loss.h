/* loss.h — training losses with their gradients: distillation (temperature-scaled KL from the
 * teacher), LM cross-entropy, hidden-state MSE. Each returns its mean over rows (elements for MSE)
 * times `weight`, and adds its gradient into the given buffer. */
#ifndef VT_LOSS_H
#define VT_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* weight * mean over rows of T^2 * KL(softmax(teacher/T) || softmax(student/T)); dstudent +=. */
double vt_loss_distill(const float *student, const float *teacher, int rows, int vocab, float temperature,
                       float weight, float *dstudent);
/* weight * mean over scored rows of -log softmax(logits)[target]; rows with target < 0 are not
 * scored. dlogits +=. */
double vt_loss_ce(const float *logits, const int32_t *targets, int rows, int vocab, float weight, float *dlogits);
/* weight * mean over n elements of (a - b)^2; da +=. */
double vt_loss_mse(const float *a, const float *b, size_t n, float weight, float *da);

#endif
