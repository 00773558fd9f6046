/* plug_step.h — one training step of Variator plugins (DESIGN.md 1.2), in one process or on one
 * pipeline stage: the frozen model without plugins is the teacher of the same model with them, by
 * KL on the logits that predict the continuation; the plugins' gradients then an Adam step. */
#ifndef VT_PLUG_STEP_H
#define VT_PLUG_STEP_H

#include <stdint.h>

#include "dist/comm.h"
#include "nn/backward.h"
#include "nn/continuation.h"
#include "nn/forward.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "nn/plugin.h"

/* Everything a step of B windows of T tokens with prompt P needs; the model stays frozen. */
typedef struct {
    int B, T, P;
    int l0, l1;           /* the layers the model part holds (a pipeline stage's) */
    size_t off, n;        /* their plugins' run of the arena (vt_plugin_region): what this stage trains */
    vt_cont_work teacher; /* the dense logits of the scored rows */
    vt_fwd f;
    vt_bwd bw;
    vt_plugin_work pw;
    vt_tape tape[2];      /* the prompt (B x P at 0) and the continuation (B x (T - P - 1) at P) */
    vt_plugin_tape pt;
    vt_plugin grad;       /* dLoss/dplugin of the last step */
    vt_adam adam;         /* over the whole arena (a checkpoint's layout); steps touch [off, off + n) */
    int32_t *tok;         /* [B T] prompt tokens, then continuation inputs */
    float *x, *dx;        /* [B T, dim] */
    float *lg, *dlg;      /* [B T, vocab] logits of the prompt rows, then of the continuation rows */
    float *s, *ds;        /* [B C, vocab] the student's scored logits and their gradient */
} vt_plug_step;

/* m: the whole model, or the part one pipeline stage holds. */
int vt_plug_step_init(vt_plug_step *s, const vt_model *m, const vt_plugin *p, int B, int T, int P);
void vt_plug_step_free(vt_plug_step *s);

/* The loss of B windows ids[b T + t]: the mean over scored tokens (prompt position P - 1 to T - 2
 * predicting P to T - 1) of KL(teacher || plugged) at temperature 1; its gradient goes to s->grad
 * (overwritten). m holds the whole model. */
double vt_plug_loss_grad(const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids);
/* The same on this rank's stage of c (m its part; the teacher's, then the student's hidden states
 * go through the stages, prompts and continuations in one message each way; the KL on the last
 * stage, the activation gradients back). The gradient of this stage's plugins goes to s->grad
 * [off, off + n); *loss is set on the last stage (0 elsewhere). A failed transfer ends every rank
 * (vt_comm_abort_all) and returns -1. */
int vt_plug_stage_loss_grad(vt_comm *c, const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids,
                            double *loss);
/* A stage's input rows: the first stage embeds tok, the others receive the previous stage's hidden
 * states [rows, dim] (message tag). The recovery's stage passes use it too. */
int vt_stage_input(vt_comm *c, const vt_model *m, const int32_t *tok, int rows, float *x, int tag);
/* vt_cont_logits on this rank's stage of c: the first stage embeds, hidden states go to the next
 * stage as message `tag`, the last stage computes w->logits. Returns -1 when a transfer failed. */
int vt_plug_stage_logits(vt_comm *c, const vt_model *m, const vt_plugin *p, vt_cont_work *w, const int32_t *ids,
                         int B, int T, int tag);
/* Adam at rate lr on this stage's run of p's arena with the gradient s->grad. */
void vt_plug_step_adam(vt_plug_step *s, vt_plugin *p, double lr);
/* vt_plug_loss_grad, then Adam on p at learning rate lr. Returns the loss before the update. */
double vt_plug_step_run(const vt_model *m, vt_plugin *p, vt_plug_step *s, const int32_t *ids, double lr);

#endif
