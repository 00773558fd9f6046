/* train_geom.c — a VTrans step's geometry and batch buffers (see train_geom.h). */
#include "train/train_geom.h"

#include <stdlib.h>

#include "dist/partition.h"
#include "util/error.h"

int vt_train_geom_init(vt_train_geom *g, int batch_size, int micro_batches, int seq_chunks, int stages, int replicas,
                       int T) {
    int M;
    if (batch_size % replicas)
        return vt_fail("schedule.batch_size = %d is not a multiple of the %d data-parallel replicas", batch_size,
                       replicas);
    g->T = T;
    g->B = batch_size;
    g->Bd = batch_size / replicas;
    if (vt_micro_batches_choose(stages, g->Bd, micro_batches, &M)) return -1;
    g->M = M;
    g->Bm = g->Bd / M;
    if (vt_seq_chunks_choose(stages, M, g->Bm, g->T, seq_chunks, &g->C)) return -1;
    g->Tc = g->T / g->C;
    g->K = M * g->C;
    return 0;
}

int vt_train_batch_alloc(vt_train_batch *b, const vt_train_geom *g) {
    b->tok = vt_malloc(sizeof(int32_t) * (size_t)g->Bd * g->T, "batch tokens");
    b->tgt = vt_malloc(sizeof(int32_t) * (size_t)g->Bd * g->T, "batch targets");
    b->ids = vt_malloc(sizeof(int64_t) * (size_t)g->B, "batch ids");
    return b->tok && b->tgt && b->ids ? 0 : -1;
}

void vt_train_batch_free(vt_train_batch *b) {
    free(b->tok);
    free(b->tgt);
    free(b->ids);
    b->tok = b->tgt = NULL;
    b->ids = NULL;
}
