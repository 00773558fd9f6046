/* teacher_cache.c — the sharded teacher cache of a VTrans run (see teacher_cache.h). */
#include "train/teacher_cache.h"

#include <stdlib.h>
#include <string.h>

#include "nn/forward.h"
#include "util/error.h"

/* How many calibration sequences replica r of D holds in the teacher cache: i = r, r + D, ... */
static size_t shard_size(size_t n_seq, int r, int D) { return n_seq > (size_t)r ? (n_seq - (size_t)r + D - 1) / D : 0; }

static int cache_alloc(vt_teacher_cache *tc, const vt_train_geom *g, size_t tokens, size_t d, int mse) {
    size_t step_rows = (size_t)g->Bd * g->T;
    tc->e = vt_malloc(sizeof(float) * (tokens * d + 1), "teacher cache");
    tc->negent = vt_malloc(sizeof(double) * (tokens + 1), "teacher cache");
    tc->step_e = vt_malloc(sizeof(float) * step_rows * d, "teacher rows of a step");
    tc->step_negent = vt_malloc(sizeof(double) * step_rows, "teacher rows of a step");
    tc->xfer = vt_malloc(sizeof(vt_transfer) * 3 * (size_t)g->B, "teacher row transfers");
    if (!tc->e || !tc->negent || !tc->step_e || !tc->step_negent || !tc->xfer) return -1;
    if (mse && (!(tc->h = vt_malloc(sizeof(float) * (tokens * d + 1), "teacher cache")) ||
                !(tc->step_h = vt_malloc(sizeof(float) * step_rows * d, "teacher rows of a step"))))
        return -1;
    return 0;
}

int vt_teacher_cache_build(vt_teacher_cache *tc, const vt_teacher_pass *pass) {
    const vt_model *m = pass->teacher;
    const vt_calib *cal = pass->calib;
    const vt_train_geom *g = pass->g;
    vt_comm *cm = pass->comm;
    vt_head_share *hs = pass->head;
    int D = cm->replicas, r = cm->replica, last = cm->stages - 1;
    size_t d = (size_t)m->cfg.dim, T = (size_t)g->T, own = shard_size(cal->n_seq, r, D), tokens = own * T;
    vt_fwd f;
    if (vt_fwd_init(&f, m, g->Bm, g->T, g->T)) return -1;
    if (vt_comm_last(cm) && cache_alloc(tc, g, tokens, d, pass->mse)) goto fail;
    for (size_t j0 = 0; j0 < own; j0 += (size_t)g->Bm) {
        int B = (int)(own - j0 < (size_t)g->Bm ? own - j0 : (size_t)g->Bm), rows = B * g->T;
        size_t n = (size_t)rows * d;
        int tag = (int)(j0 / (size_t)g->Bm) & 0x7fff;
        if (vt_comm_first(cm)) {
            for (int b = 0; b < B; b++)
                memcpy(pass->tok + (size_t)b * T, vt_calib_seq(cal, (int64_t)((j0 + (size_t)b) * D + (size_t)r)),
                       sizeof(int32_t) * T);
            vt_embed(m, pass->tok, rows, pass->x);
        } else if (vt_recv_prev(cm, pass->x, n, tag))
            goto fail;
        vt_layers_forward(m, &f, m->layer_begin, m->layer_end, pass->x, B, g->T, 0);
        if (!vt_comm_last(cm)) {
            if (vt_send_next(cm, pass->x, n, tag)) goto fail;
        } else {
            if (tc->h) memcpy(tc->h + j0 * T * d, pass->x, n * sizeof(float));
            vt_rmsnorm(hs->hx, pass->x, m->final_norm, rows, (int)d, m->cfg.norm_eps, NULL);
        }
        if (vt_comm_pipe_bcast(cm, hs->hx, n, last)) goto fail;
        float *e = vt_comm_last(cm) ? tc->e + j0 * T * d : hs->hdx;
        double *neg = vt_comm_last(cm) ? tc->negent + j0 * T : hs->hneg;
        if (vt_head_teacher(cm, &hs->part, hs->hx, rows, (float)pass->temperature, last, e, neg)) goto fail;
    }
    vt_fwd_free(&f);
    return 0;
fail:
    vt_fwd_free(&f);
    return -1;
}

/* Every replica sends the rows it holds of the others' sequences. All replicas know the whole
 * batch, so each lists the same transfers in the same order. */
int vt_teacher_cache_fetch(vt_teacher_cache *tc, vt_comm *cm, const vt_train_geom *g, const int64_t *ids, int dim) {
    int D = cm->replicas, me = cm->replica, n = 0;
    size_t T = (size_t)g->T, d = (size_t)dim;
    for (int k = 0; k < g->B; k++) {
        int owner = (int)(ids[k] % D), user = k / g->Bd;
        if (owner != me && user != me) continue;
        size_t j = (size_t)(ids[k] / D), b = (size_t)(k % g->Bd);
        void *held[3] = {tc->e + j * T * d, tc->negent + j * T, tc->h ? tc->h + j * T * d : NULL};
        void *need[3] = {tc->step_e + b * T * d, tc->step_negent + b * T, tc->step_h ? tc->step_h + b * T * d : NULL};
        size_t bytes[3] = {sizeof(float) * T * d, sizeof(double) * T, sizeof(float) * T * d};
        for (int q = 0; q < (tc->h ? 3 : 2); q++) {
            if (owner == me && user == me) memcpy(need[q], held[q], bytes[q]);
            else if (owner == me) tc->xfer[n++] = (vt_transfer){held[q], bytes[q], user, 1};
            else tc->xfer[n++] = (vt_transfer){need[q], bytes[q], owner, 0};
        }
    }
    return n ? vt_comm_dp_exchange(cm, tc->xfer, n) : 0;
}

void vt_teacher_cache_free(vt_teacher_cache *tc) {
    free(tc->e);
    free(tc->negent);
    free(tc->h);
    free(tc->step_e);
    free(tc->step_h);
    free(tc->step_negent);
    free(tc->xfer);
    memset(tc, 0, sizeof *tc);
}

size_t vt_teacher_cache_bytes(const vt_teacher_cache *tc, const vt_train_geom *g, const vt_comm *cm, size_t n_seq,
                              int dim) {
    size_t F = sizeof(float), d = (size_t)dim, step_rows = (size_t)g->Bd * g->T;
    size_t cached = shard_size(n_seq, cm->replica, cm->replicas) * (size_t)g->T;
    return (tc->e ? F * cached * d + sizeof(double) * cached : 0) + (tc->h ? F * cached * d : 0) +
           (tc->step_e ? F * step_rows * d + sizeof(double) * step_rows + sizeof(vt_transfer) * 3 * (size_t)g->B : 0) +
           (tc->step_h ? F * step_rows * d : 0);
}
