/* comm.h — what a distributed training step needs from the communication layer, as callbacks,
 * so src/ stays free of MPI: mpi/ implements them with MPI; vt_comm_local() serves one process
 * (one stage, one replica: nothing to send, reductions are the identity). */
#ifndef VT_COMM_H
#define VT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "nn/eval.h"
#include "nn/model.h"

/* One point-to-point transfer with another replica of this stage (see dp_exchange). */
typedef struct {
    void *buf;
    size_t bytes;
    int replica; /* the peer */
    int send;    /* 1: send buf to the peer; 0: receive into buf */
} vt_transfer;

typedef struct vt_comm vt_comm;
struct vt_comm {
    int stage, stages, replica, replicas;
    int world_rank;
    void *impl;
    /* Wall seconds spent inside the transfer and collective callbacks, waiting included (kept by
     * the implementation; the trace of a step reads it: VT_TRACE, src/train_step.c). */
    double comm_seconds;
    /* In-place sums: over every rank of the world, and over the replicas of this stage. */
    int (*sum_world)(vt_comm *c, double *x, size_t n);
    int (*sum_dp)(vt_comm *c, float *x, size_t n);
    /* Broadcast from world rank 0 (the coordinator). */
    int (*bcast)(vt_comm *c, void *buf, size_t bytes);
    /* Perplexity of a token stream with the model whose part this rank holds (every rank calls
     * it; every rank gets the result). */
    int (*eval)(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, vt_eval_result *out);
    /* A synchronisation point: every rank passes its status (0 = fine); all get -1 when any rank
     * failed, else 0. Use it through vt_comm_agree. */
    int (*agree)(vt_comm *c, int status);
    /* For a failure while peers may be blocked waiting on this rank: print the message and end
     * every rank (NULL in one process: the caller just returns its error). */
    void (*abort_all)(vt_comm *c, const char *where);
    /* Layers of stage s: [stage_begin[s], stage_begin[s+1]). */
    const int *stage_begin;
    /* Within this replica's pipeline (every stage calls the collectives): a message to or from
     * stage `stage` (tag: the micro-batch or sequence chunk); a broadcast from stage root; a sum
     * onto stage root (its x receives the sum, other stages' x is left as is); an in-place sum
     * (max = 0) or maximum (max = 1) on all. */
    int (*pipe_send)(vt_comm *c, const float *x, size_t n, int stage, int tag);
    int (*pipe_recv)(vt_comm *c, float *x, size_t n, int stage, int tag);
    int (*pipe_bcast)(vt_comm *c, float *x, size_t n, int root);
    int (*pipe_reduce)(vt_comm *c, float *x, size_t n, int root);
    int (*pipe_allreduce)(vt_comm *c, double *x, size_t n, int max);
    /* Among this stage's replicas: every transfer of the list, all posted at once and then all
     * completed, so any mix of sends and receives is safe; messages between two replicas arrive
     * in the order they are listed. */
    int (*dp_exchange)(vt_comm *c, vt_transfer *x, int n);
};

/* Every rank passes its status; all get -1 when any rank failed. A synchronisation point that
 * keeps ranks from waiting on a failed one. Over several ranks, each failing rank's message is
 * printed once (by one rank for all), every rank's error is then marked reported
 * (vt_error_reported) and a rank that did not fail gets "another rank failed"; in one process
 * nothing is printed and the caller reports its own error. */
static inline int vt_comm_agree(vt_comm *c, int status) { return c->agree(c, status); }

/* The single-process communicator for a model of n_layers layers. */
vt_comm *vt_comm_local(int n_layers);

static inline int vt_comm_first(const vt_comm *c) { return c->stage == 0; }
static inline int vt_comm_last(const vt_comm *c) { return c->stage == c->stages - 1; }

/* Activations forward and their gradients backward between neighbouring stages. */
static inline int vt_send_next(vt_comm *c, const float *x, size_t n, int tag) {
    return c->pipe_send(c, x, n, c->stage + 1, tag);
}
static inline int vt_recv_prev(vt_comm *c, float *x, size_t n, int tag) { return c->pipe_recv(c, x, n, c->stage - 1, tag); }
static inline int vt_send_prev(vt_comm *c, const float *x, size_t n, int tag) {
    return c->pipe_send(c, x, n, c->stage - 1, tag);
}
static inline int vt_recv_next(vt_comm *c, float *x, size_t n, int tag) { return c->pipe_recv(c, x, n, c->stage + 1, tag); }

#endif
