/* loss.h — training losses with their gradients: distillation (temperature-scaled KL from the
 * teacher) and LM cross-entropy (the hidden-state MSE lives in the trainer, which maps pruned
 * hidden dims). Each returns its mean over rows times `weight` and adds its gradient. */
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

#endif
