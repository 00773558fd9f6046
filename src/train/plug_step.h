/* plug_step.h — one training step of Variator plugins in one process (DESIGN.md 1.2): the frozen
 * model without plugins is the teacher of the same model with them, by KL on the logits that
 * predict the continuation; the plugins' gradients then an Adam step. */
#ifndef VT_PLUG_STEP_H
#define VT_PLUG_STEP_H

#include <stdint.h>

#include "nn/backward.h"
#include "nn/continuation.h"
#include "nn/forward.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/plugin.h"

/* Everything a step of B windows of T tokens with prompt P needs; the model stays frozen. */
typedef struct {
    int B, T, P;
    vt_cont_work teacher; /* the dense logits of the scored rows */
    vt_fwd f;
    vt_bwd bw;
    vt_plugin_work pw;
    vt_tape tape[2];      /* the prompt (B x P at 0) and the continuation (B x (T - P - 1) at P) */
    vt_plugin_tape pt;
    vt_plugin grad;       /* dLoss/dplugin of the last step */
    vt_adam adam;
    int32_t *tok;         /* [B T] prompt tokens, then continuation inputs */
    float *x, *dx;        /* [B T, dim] */
    float *lg, *dlg;      /* [B T, vocab] logits of the prompt rows, then of the continuation rows */
    float *s, *ds;        /* [B C, vocab] the student's scored logits and their gradient */
} vt_plug_step;

int vt_plug_step_init(vt_plug_step *s, const vt_model *m, const vt_plugin *p, int B, int T, int P);
void vt_plug_step_free(vt_plug_step *s);

/* The loss of B windows ids[b T + t]: the mean over scored tokens (prompt position P - 1 to T - 2
 * predicting P to T - 1) of KL(teacher || plugged) at temperature 1; its gradient goes to s->grad
 * (overwritten). m holds the whole model. */
double vt_plug_loss_grad(const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids);
/* vt_plug_loss_grad, then Adam on p at learning rate lr. Returns the loss before the update. */
double vt_plug_step_run(const vt_model *m, vt_plugin *p, vt_plug_step *s, const int32_t *ids, double lr);

#endif
