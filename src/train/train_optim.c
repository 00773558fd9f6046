/* train_optim.c — the optimizer state of a VTrans run (see train_optim.h). */
#include "train/train_optim.h"

#include <stdlib.h>

#include "train/student.h"
#include "util/error.h"

int vt_train_optim_init(vt_train_optim *o, size_t n) {
    return vt_adam_init(&o->adam_mu, n, 0.0) || vt_adam_init(&o->adam_lv, n, 0.0) ? -1 : 0;
}

int vt_train_optim_weights(vt_train_optim *o, const vt_model *student, double weight_decay) {
    vt_load_parts parts = {student->layer_begin, student->layer_end, student->has_embed, student->has_head};
    if (vt_model_alloc(&o->dw, &student->cfg, parts)) return -1;
    size_t w0, wn = vt_layer_region(student, &w0);
    return vt_adam_init(&o->adam_w, wn, weight_decay);
}

static int remap_adam(vt_adam *a, const vt_masks *old, const vt_masks *nw) {
    int64_t max_id = 0;
    for (size_t i = 0; i < old->n; i++) max_id = old->unit_id[i] > max_id ? old->unit_id[i] : max_id;
    size_t *where = vt_malloc(sizeof(size_t) * (size_t)(max_id + 1), "gate map");
    vt_adam b;
    if (!where || vt_adam_init(&b, nw->n, a->weight_decay)) {
        free(where);
        return -1;
    }
    for (size_t i = 0; i < old->n; i++) where[old->unit_id[i]] = i;
    for (size_t i = 0; i < nw->n; i++) {
        size_t o = where[nw->unit_id[i]];
        b.m[i] = a->m[o];
        b.v[i] = a->v[o];
    }
    b.t = a->t;
    free(where);
    vt_adam_free(a);
    *a = b;
    return 0;
}

int vt_train_optim_remap(vt_train_optim *o, const vt_masks *old, const vt_masks *nw) {
    return remap_adam(&o->adam_mu, old, nw) || remap_adam(&o->adam_lv, old, nw) ? -1 : 0;
}

void vt_train_optim_drop_weights(vt_train_optim *o) {
    if (o->train_weights) vt_model_free(&o->dw);
    vt_adam_free(&o->adam_w);
    o->train_weights = 0;
}

void vt_train_optim_free(vt_train_optim *o) {
    vt_train_optim_drop_weights(o);
    vt_adam_free(&o->adam_mu);
    vt_adam_free(&o->adam_lv);
}

void vt_train_optim_restore(vt_train_optim *o, const vt_train_optim *from) {
    vt_train_optim_free(o);
    *o = *from;
}
