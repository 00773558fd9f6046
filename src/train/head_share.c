/* head_share.c — a stage's share of the classifier during a VTrans run (see head_share.h). */
#include "train/head_share.h"

#include <stdlib.h>

#include "util/error.h"

int vt_head_share_init(vt_head_share *h, vt_comm *cm, const vt_model *teacher, const vt_train_geom *g) {
    const vt_config *c = &teacher->cfg;
    int V = c->vocab, d = c->dim, S = cm->stages, v0, vs;
    size_t rows = (size_t)g->Bm * g->T;
    vt_vocab_share(V, S, cm->stage, &v0, &vs);
    if (vt_head_part_init(&h->part, v0, vs, d, (int)rows)) return -1;
    h->part.hold = teacher->hold;
    h->hx = vt_malloc(sizeof(float) * rows * d, "classifier inputs");
    h->hdx = vt_malloc(sizeof(float) * rows * d, "classifier input gradients");
    h->hneg = vt_malloc(sizeof(double) * rows, "teacher entropies");
    if (!h->hx || !h->hdx || !h->hneg) return -1;
    if (vt_comm_last(cm)) {
        for (int s = 0; s < S - 1; s++) {
            int w0, ws;
            vt_vocab_share(V, S, s, &w0, &ws);
            if (vt_comm_send(cm, teacher->lm_head + (size_t)w0 * d, (size_t)ws * d, s, 0x7ffe)) return -1;
        }
        return 0;
    }
    h->rows = vt_malloc(sizeof(float) * ((size_t)vs * d + 1), "classifier rows");
    if (!h->rows) return -1;
    h->part.w = h->rows;
    return vt_comm_recv(cm, h->rows, (size_t)vs * d, S - 1, 0x7ffe);
}

void vt_head_share_bind(vt_head_share *h, const vt_model *student) {
    size_t d = (size_t)student->cfg.dim;
    h->part.w = student->lm_head + (size_t)h->part.v0 * d;
    h->part.d = (int)d;
    h->part.hold = student->hold;
}

void vt_head_share_columns(vt_head_share *h, const int64_t *cols, int n) {
    int d = h->part.d;
    vt_head_part_unpack(&h->part); /* its rows change: the student's allocation packs them again */
    if (h->rows) {
        size_t o = 0;
        for (int j = 0; j < h->part.vs; j++) {
            const float *src = h->rows + (size_t)j * d;
            for (int i = 0; i < n; i++) h->rows[o++] = src[cols[i]];
        }
    }
    h->part.d = n;
}

void vt_head_share_free(vt_head_share *h) {
    vt_head_part_free(&h->part);
    free(h->rows);
    free(h->hx);
    free(h->hdx);
    free(h->hneg);
    h->rows = h->hx = h->hdx = NULL;
    h->hneg = NULL;
}

void vt_head_share_bytes(const vt_head_share *h, const vt_train_geom *g, int dim, size_t *weights, size_t *work) {
    size_t F = sizeof(float), rows = (size_t)g->Bm * g->T, d = (size_t)dim;
    *weights = h->rows ? F * (size_t)h->part.vs * d : 0;
    *work = h->part.bytes + sizeof(double) * rows + F * 2 * rows * d; /* scratch, hneg, hx, hdx */
}
