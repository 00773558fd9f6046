/* plug_step.c — a plugin training step, in one process or on one pipeline stage: teacher logits,
 * the plugged forward with tapes, the KL loss on the scored rows, the backward pass into the
 * plugins and Adam; hidden states and their gradients pass between stages through vt_comm. */
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
    s->l0 = m->layer_begin, s->l1 = m->layer_end;
    s->n = vt_plugin_region(p, s->l0, s->l1, &s->off);
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
    if (!rc) s->grad.tail = p->tail;
    if (!rc) rc = vt_adam_init(&s->adam, p->arena_floats, 0.0);
    if (!rc) {
        s->tok = vt_malloc(rows * sizeof(int32_t), "plugin step tokens");
        s->x = vt_malloc(2 * rows * d * sizeof(float), "plugin step hidden states");
        if (m->has_head) { /* the logits live on the last stage */
            s->lg = vt_malloc(2 * rows * V * sizeof(float), "plugin step logits");
            s->s = vt_malloc(2 * (size_t)B * C * V * sizeof(float), "plugin step scored logits");
        }
        if (!s->tok || !s->x || (m->has_head && (!s->lg || !s->s))) rc = -1;
        else if (s->dx = s->x + rows * d, m->has_head)
            s->dlg = s->lg + rows * V, s->ds = s->s + (size_t)B * C * V;
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

enum { TAG_TEACHER = 0, TAG_STUDENT = 1, TAG_BACKWARD = 2 };

int vt_stage_input(vt_comm *c, const vt_model *m, const int32_t *tok, int rows, float *x, int tag) {
    if (!vt_comm_first(c)) return vt_recv_prev(c, x, (size_t)rows * m->cfg.dim, tag);
    vt_embed(m, tok, rows, x);
    return 0;
}

int vt_plug_stage_logits(vt_comm *c, const vt_model *m, const vt_plugin *p, vt_cont_work *w, const int32_t *ids,
                         int B, int T, int tag) {
    int rows = B * (T - 1);
    vt_cont_split_tokens(w->tok, ids, B, T, w->P);
    if (vt_stage_input(c, m, w->tok, rows, w->x, tag)) return -1;
    vt_cont_layers(m, p, w, m->layer_begin, m->layer_end, B, T);
    if (!vt_comm_last(c)) return vt_send_next(c, w->x, (size_t)rows * m->cfg.dim, tag);
    vt_cont_head(m, w, B, T);
    return 0;
}

/* The teacher: the dense model's logits of the scored rows, on the last stage. */
static int teacher_forward(vt_comm *c, const vt_model *m, vt_plug_step *s, const int32_t *ids) {
    return vt_plug_stage_logits(c, m, NULL, &s->teacher, ids, s->B, s->T, TAG_TEACHER);
}

/* The plugged forward with tapes: the prompt plugged, the continuation exactly on its cache, and
 * on the last stage the logits of every row into s->lg (prompt rows, then continuation rows). */
static int student_forward(vt_comm *c, const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids) {
    int B = s->B, T = s->T, P = s->P, C = T - P, V = m->cfg.vocab, rows = B * (T - 1);
    size_t d = (size_t)m->cfg.dim;
    vt_cont_split_tokens(s->tok, ids, B, T, P);
    float *xp = s->x, *xc = s->x + (size_t)B * P * d;
    if (vt_stage_input(c, m, s->tok, rows, s->x, TAG_STUDENT)) return -1;
    vt_plugged_forward(m, &s->f, p, &s->pw, s->l0, s->l1, xp, B, P, &s->tape[0], &s->pt);
    vt_layers_forward_ex(m, &s->f, s->l0, s->l1, xc, B, C - 1, P, NULL, &s->tape[1]);
    if (!vt_comm_last(c)) return vt_send_next(c, s->x, (size_t)rows * d, TAG_STUDENT);
    vt_head_forward_ex(m, &s->f, xp, B * P, s->lg, &s->tape[0]);
    vt_head_forward_ex(m, &s->f, xc, B * (C - 1), s->lg + (size_t)B * P * V, &s->tape[1]);
    return 0;
}

/* From the scored rows' gradient s->ds (last stage) or the next stage's activation gradients back
 * through the continuation, then the plugged prompt, into s->grad; the gradients at this stage's
 * input go to the previous stage. Rows no token is scored by get no gradient. */
static int student_backward(vt_comm *c, const vt_model *m, const vt_plugin *p, vt_plug_step *s) {
    int B = s->B, P = s->P, C = s->T - P, V = m->cfg.vocab, rows = B * (s->T - 1), last = vt_comm_last(c);
    size_t d = (size_t)m->cfg.dim;
    float *dxp = s->dx, *dxc = s->dx + (size_t)B * P * d;
    memset(s->grad.arena, 0, s->grad.arena_floats * sizeof(float));
    if (last) {
        memset(s->dlg, 0, sizeof(float) * (size_t)B * (s->T - 1) * V);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < C; j++)
                memcpy(scored_row(s, s->dlg, b, j, V), s->ds + ((size_t)b * C + j) * V, sizeof(float) * V);
        vt_head_backward(m, &s->bw, &s->tape[1], s->dlg + (size_t)B * P * V, B * (C - 1), dxc, NULL);
    } else if (vt_recv_next(c, s->dx, (size_t)rows * d, TAG_BACKWARD)) {
        return -1;
    }
    vt_layers_backward(m, &s->f, &s->bw, s->l0, s->l1, dxc, B, C - 1, NULL, &s->tape[1], NULL, NULL);
    if (last) vt_head_backward(m, &s->bw, &s->tape[0], s->dlg, B * P, dxp, NULL);
    vt_plugged_backward(m, &s->f, &s->bw, p, &s->pw, s->l0, s->l1, dxp, B, P, &s->tape[0], &s->pt, &s->grad);
    return vt_comm_first(c) ? 0 : vt_send_prev(c, s->dx, (size_t)rows * d, TAG_BACKWARD);
}

int vt_plug_stage_loss_grad(vt_comm *c, const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids,
                            double *loss) {
    int B = s->B, C = s->T - s->P, V = m->cfg.vocab;
    *loss = 0.0;
    if (teacher_forward(c, m, s, ids) || student_forward(c, m, p, s, ids)) goto fail;
    if (vt_comm_last(c)) {
        for (int b = 0; b < B; b++)
            for (int j = 0; j < C; j++)
                memcpy(s->s + ((size_t)b * C + j) * V, scored_row(s, s->lg, b, j, V), sizeof(float) * V);
        memset(s->ds, 0, sizeof(float) * (size_t)B * C * V);
        *loss = vt_loss_distill(s->s, s->teacher.logits, B * C, V, 1.0f, 1.0f, s->ds);
    }
    if (student_backward(c, m, p, s)) goto fail;
    return 0;
fail:
    vt_comm_abort_all(c, "plug step"); /* the other stages wait on this one */
    return -1;
}

double vt_plug_loss_grad(const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids) {
    double loss;
    vt_plug_stage_loss_grad(vt_comm_local(m->cfg.n_layers), m, p, s, ids, &loss); /* one stage: nothing to fail */
    return loss;
}

void vt_plug_step_adam(vt_plug_step *s, vt_plugin *p, double lr) {
    vt_adam a = s->adam; /* a view of this stage's run of the moments */
    a.m += s->off, a.v += s->off, a.n = s->n;
    vt_adam_step(&a, p->arena + s->off, s->grad.arena + s->off, lr);
    s->adam.t = a.t;
}

double vt_plug_step_run(const vt_model *m, vt_plugin *p, vt_plug_step *s, const int32_t *ids, double lr) {
    double loss = vt_plug_loss_grad(m, p, s, ids);
    vt_plug_step_adam(s, p, lr);
    return loss;
}
