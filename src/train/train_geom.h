/* train_geom.h — the geometry of a VTrans step (global batch, per replica, micro-batches, chunks)
 * and the batch's token buffers it sizes. The bottom of the trainer's parts: it needs none of them. */
#ifndef VT_TRAIN_GEOM_H
#define VT_TRAIN_GEOM_H

#include <stdint.h>

typedef struct {
    int B, Bd, Bm, M, T; /* global batch, per replica, per micro-batch; micro-batches; tokens */
    int C, Tc, K;        /* chunks per sequence, tokens per chunk; K = M C micro-batches of Bm x Tc
                          * tokens in a step: micro-batch k is chunk k % C of sequence group k / C */
} vt_train_geom;

/* Batch geometry: batch_size sequences of T tokens per step over `replicas` replicas and M
 * micro-batches each (micro_batches, 0: automatic), each sequence cut into C chunks (seq_chunks,
 * 0: automatic), by the rules `plan` uses too (vt_micro_batches_choose, vt_seq_chunks_choose). */
int vt_train_geom_init(vt_train_geom *g, int batch_size, int micro_batches, int seq_chunks, int stages, int replicas,
                       int T);

/* A step's batch: this replica's tokens and next-token targets [Bd*T] and the global ids [B]. */
typedef struct {
    int32_t *tok, *tgt;
    int64_t *ids;
} vt_train_batch;

int vt_train_batch_alloc(vt_train_batch *b, const vt_train_geom *g);
void vt_train_batch_free(vt_train_batch *b);

#endif
