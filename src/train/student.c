/* student.c — the student of a VTrans run and the step buffers its structure sizes (see student.h). */
#include "train/student.h"

#include <stdlib.h>

#include "util/error.h"

size_t vt_layer_region(const vt_model *m, size_t *start) {
    size_t n = 0;
    for (int l = m->layer_begin; l < m->layer_end; l++) n += vt_layer_params(&m->cfg, l);
    *start = m->arena_floats - n; /* vt_model_alloc puts the layers last */
    return n;
}

int vt_student_init(vt_student *s, const vt_model *teacher, uint64_t seed) {
    s->model = teacher;
    return vt_masks_init(&s->mk, &teacher->cfg, seed);
}

void vt_student_free_bufs(vt_student *s, const vt_train_geom *g) {
    vt_fwd_free(&s->fs);
    if (s->tapes)
        for (int k = 0; k < g->K; k++) vt_tape_free(&s->tapes[k]);
    free(s->tapes);
    s->tapes = NULL;
    vt_bwd_free(&s->bw);
    free(s->x);
    free(s->z);
    free(s->eps);
    free(s->dz);
    free(s->red);
    s->x = s->z = s->eps = s->dz = NULL;
    s->red = NULL;
    if (s->dx_last)
        for (int k = 0; k < g->K; k++) free(s->dx_last[k]);
    free(s->dx_last);
    s->dx_last = NULL;
}

int vt_student_alloc(vt_student *s, const vt_train_geom *g, int last, vt_head_share *head, int pack) {
    const vt_model *m = s->model;
    size_t n = s->mk.n, rows = (size_t)g->Bm * g->T, rows_mb = (size_t)g->Bm * g->Tc, d = (size_t)m->cfg.dim;
    if (vt_fwd_init(&s->fs, m, g->Bm, g->Tc, g->T) || vt_bwd_init(&s->bw, m, g->Bm, g->Tc, g->T)) return -1;
    if (last) vt_head_share_bind(head, m); /* the last stage computes with the student's own classifier rows */
    s->tapes = vt_calloc((size_t)g->K, sizeof *s->tapes, "activation tapes");
    if (!s->tapes) return -1;
    for (int k = 0; k < g->K; k++)
        if (vt_tape_init(&s->tapes[k], m, g->Bm, g->Tc, k % g->C * g->Tc)) return -1;
    for (int k = 0; k < g->K; k += g->C) vt_tape_link(s->tapes + k, g->C);
    s->x = vt_malloc(sizeof(float) * rows * d, "activations");
    s->z = vt_malloc(sizeof(float) * n * (size_t)g->Bd, "gate values");
    s->eps = vt_malloc(sizeof(float) * n * (size_t)g->Bd, "gate noise");
    s->dz = vt_malloc(sizeof(float) * n * (size_t)g->Bd, "gate gradients");
    s->red = vt_malloc(sizeof(double) * (2 * n + 8), "reduction buffer");
    if (!s->x || !s->z || !s->eps || !s->dz || !s->red) return -1;
    if (last) {
        s->dx_last = vt_calloc((size_t)g->K, sizeof(float *), "gradient buffers");
        if (!s->dx_last) return -1;
        for (int k = 0; k < g->K; k++)
            if (!(s->dx_last[k] = vt_malloc(sizeof(float) * rows_mb * d, "gradient buffers"))) return -1;
    }
    /* frozen weights multiply through copies packed once (matmul.h); rebuilt with every new student */
    s->packed = pack && vt_pack_available();
    if (s->packed && (vt_model_packs_init(&s->fs.packs, m, 0) ||
                      vt_model_packs_backward(&s->bw.packs, m, &s->fs.packs) || vt_head_part_pack(&head->part)))
        return -1;
    return 0;
}

void vt_student_adopt(vt_student *s, const vt_train_geom *g, vt_model next, vt_masks next_mk) {
    vt_student_free_bufs(s, g);
    if (vt_student_owned(s)) vt_model_free(&s->own);
    s->own = next;
    s->model = &s->own;
    vt_masks_free(&s->mk);
    s->mk = next_mk;
}

void vt_student_restore(vt_student *s, const vt_train_geom *g, const vt_model *teacher, vt_masks mk, vt_model *own) {
    vt_student_free_bufs(s, g);
    if (vt_student_owned(s)) vt_model_free(&s->own);
    vt_masks_free(&s->mk);
    s->mk = mk;
    s->model = teacher;
    if (own) {
        s->own = *own;
        s->model = &s->own;
    }
}

void vt_student_free(vt_student *s, const vt_train_geom *g) {
    vt_student_free_bufs(s, g);
    if (vt_student_owned(s)) vt_model_free(&s->own);
    vt_masks_free(&s->mk);
}

size_t vt_student_bytes(const vt_student *s, const vt_train_geom *g, int dense_dim, size_t *work) {
    size_t F = sizeof(float), rows = (size_t)g->Bm * g->T, rows_mb = (size_t)g->Bm * g->Tc;
    size_t d = (size_t)dense_dim, n = s->mk.n;
    size_t w = s->fs.bytes + s->bw.bytes + F * rows * d + (s->dx_last ? F * (size_t)g->K * rows_mb * d : 0);
    for (int k = 0; k < g->K; k++) w += s->tapes[k].bytes;
    w += F * 3 * n * (size_t)g->Bd + sizeof(double) * (2 * n + 8) + 4 * F * n; /* gates, masks, moments */
    *work = w;
    return s->fs.packs.bytes + s->bw.packs.bytes;
}
