/* plug_step.c — a plugin training step: teacher logits, the plugged forward with tapes, the KL
 * loss on the scored rows, the backward pass into the plugins and Adam. */
#include "train/plug_step.h"

#include <stdlib.h>
#include <string.h>

#include "nn/loss.h"
#include "util/error.h"

int vt_plug_step_init(vt_plug_step *s, const vt_model *m, const vt_plugin *p, int B, int T, int P) {
    memset(s, 0, sizeof *s);
    size_t d = (size_t)m->cfg.dim, V = (size_t)m->cfg.vocab, rows = (size_t)B * T, C = (size_t)(T - P);
    if (P < 1 || P + 2 > T) return vt_fail("plugin step: prompt %d in windows of %d; needs 1 <= P <= T - 2", P, T);
    s->B = B, s->T = T, s->P = P;
    int rc = vt_cont_work_init(&s->teacher, m, NULL, B, T, P);
    if (!rc) rc = vt_fwd_init(&s->f, m, B, T, T);
    if (!rc) rc = vt_model_packs_init(&s->f.packs, m, 0);
    if (!rc) rc = vt_bwd_init(&s->bw, m, B, P > (int)C - 1 ? P : (int)C - 1, T);
    if (!rc) rc = vt_model_packs_backward(&s->bw.packs, m, &s->f.packs);
    if (!rc) rc = vt_plugin_work_init(&s->pw, m, p, B, P);
    if (!rc) rc = vt_tape_init(&s->tape[0], m, B, P, 0);
    if (!rc) rc = vt_tape_init(&s->tape[1], m, B, (int)C - 1, P);
    if (!rc) vt_tape_link(s->tape, 2), rc = vt_plugin_tape_init(&s->pt, m, p, B, P);
    if (!rc) rc = vt_plugin_alloc(&s->grad, &m->cfg, p->k, p->r);
    if (!rc) rc = vt_adam_init(&s->adam, p->arena_floats, 0.0);
    if (!rc) {
        s->tok = vt_malloc(rows * sizeof(int32_t), "plugin step tokens");
        s->x = vt_malloc(2 * rows * d * sizeof(float), "plugin step hidden states");
        s->lg = vt_malloc(2 * rows * V * sizeof(float), "plugin step logits");
        s->s = vt_malloc(2 * (size_t)B * C * V * sizeof(float), "plugin step scored logits");
        if (!s->tok || !s->x || !s->lg || !s->s) rc = -1;
        else s->dx = s->x + rows * d, s->dlg = s->lg + rows * V, s->ds = s->s + (size_t)B * C * V;
    }
    if (rc) vt_plug_step_free(s);
    return rc;
}

void vt_plug_step_free(vt_plug_step *s) {
    vt_cont_work_free(&s->teacher);
    vt_fwd_free(&s->f);
    vt_bwd_free(&s->bw);
    vt_plugin_work_free(&s->pw);
    vt_tape_free(&s->tape[0]), vt_tape_free(&s->tape[1]);
    vt_plugin_tape_free(&s->pt);
    vt_plugin_free(&s->grad);
    vt_adam_free(&s->adam);
    free(s->tok), free(s->x), free(s->lg), free(s->s);
    memset(s, 0, sizeof *s);
}

/* Row j of window b's scored rows: the prompt's last row (j = 0), else continuation row j - 1. */
static float *scored_row(const vt_plug_step *s, float *lg, int b, int j, int V) {
    int B = s->B, P = s->P, C = s->T - P;
    size_t row = j == 0 ? (size_t)b * P + P - 1 : (size_t)B * P + (size_t)b * (C - 1) + j - 1;
    return lg + row * V;
}

/* The plugged forward with tapes: the prompt plugged, the continuation exactly on its cache, the
 * logits of every row into s->lg (prompt rows, then continuation rows). */
static void student_forward(const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids) {
    int B = s->B, T = s->T, P = s->P, C = T - P, L = m->cfg.n_layers, V = m->cfg.vocab;
    size_t d = (size_t)m->cfg.dim;
    for (int b = 0; b < B; b++) {
        memcpy(s->tok + (size_t)b * P, ids + (size_t)b * T, sizeof(int32_t) * P);
        memcpy(s->tok + (size_t)B * P + (size_t)b * (C - 1), ids + (size_t)b * T + P, sizeof(int32_t) * (C - 1));
    }
    float *xp = s->x, *xc = s->x + (size_t)B * P * d;
    vt_embed(m, s->tok, B * (T - 1), s->x);
    vt_plugged_forward(m, &s->f, p, &s->pw, 0, L, xp, B, P, &s->tape[0], &s->pt);
    vt_layers_forward_ex(m, &s->f, 0, L, xc, B, C - 1, P, NULL, &s->tape[1]);
    vt_head_forward_ex(m, &s->f, xp, B * P, s->lg, &s->tape[0]);
    vt_head_forward_ex(m, &s->f, xc, B * (C - 1), s->lg + (size_t)B * P * V, &s->tape[1]);
}

/* From the scored rows' gradient s->ds back through the continuation, then the plugged prompt,
 * into s->grad. Rows no token is scored by get no gradient. */
static void student_backward(const vt_model *m, const vt_plugin *p, vt_plug_step *s) {
    int B = s->B, P = s->P, C = s->T - P, L = m->cfg.n_layers, V = m->cfg.vocab;
    size_t d = (size_t)m->cfg.dim;
    memset(s->dlg, 0, sizeof(float) * (size_t)B * (s->T - 1) * V);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < C; j++)
            memcpy(scored_row(s, s->dlg, b, j, V), s->ds + ((size_t)b * C + j) * V, sizeof(float) * V);
    float *dxp = s->dx, *dxc = s->dx + (size_t)B * P * d;
    memset(s->grad.arena, 0, s->grad.arena_floats * sizeof(float));
    vt_head_backward(m, &s->bw, &s->tape[1], s->dlg + (size_t)B * P * V, B * (C - 1), dxc, NULL);
    vt_layers_backward(m, &s->f, &s->bw, 0, L, dxc, B, C - 1, NULL, &s->tape[1], NULL, NULL);
    vt_head_backward(m, &s->bw, &s->tape[0], s->dlg, B * P, dxp, NULL);
    vt_plugged_backward(m, &s->f, &s->bw, p, &s->pw, 0, L, dxp, B, P, &s->tape[0], &s->pt, &s->grad);
}

double vt_plug_loss_grad(const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids) {
    int B = s->B, C = s->T - s->P, V = m->cfg.vocab;
    vt_cont_logits(m, NULL, &s->teacher, ids, B, s->T);
    student_forward(m, p, s, ids);
    for (int b = 0; b < B; b++)
        for (int j = 0; j < C; j++)
            memcpy(s->s + ((size_t)b * C + j) * V, scored_row(s, s->lg, b, j, V), sizeof(float) * V);
    memset(s->ds, 0, sizeof(float) * (size_t)B * C * V);
    double loss = vt_loss_distill(s->s, s->teacher.logits, B * C, V, 1.0f, 1.0f, s->ds);
    student_backward(m, p, s);
    return loss;
}

double vt_plug_step_run(const vt_model *m, vt_plugin *p, vt_plug_step *s, const int32_t *ids, double lr) {
    double loss = vt_plug_loss_grad(m, p, s, ids);
    vt_adam_step(&s->adam, p->arena, s->grad.arena, lr);
    return loss;
}
