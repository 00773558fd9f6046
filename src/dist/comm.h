/* comm.h — the transport between ranks, so src/ stays free of MPI: messages between the stages of
 * a replica's pipeline, collectives over named groups, agreement on failure, abort and a wall
 * clock; and the world of ranks that is laid out into stages x replicas. mpi/ implements it with
 * MPI; vt_world_local() and vt_comm_local() serve one process (one stage, one replica: nothing to
 * send, reductions are the identity). */
#ifndef VT_COMM_H
#define VT_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "dist/spd_solve.h"

/* The groups a collective runs over: every rank; the stages of this rank's replica (member index
 * = stage); the replicas of this rank's stage (member index = replica). */
typedef enum { VT_WORLD, VT_PIPE, VT_DP } vt_comm_group;

/* Element types of messages and collectives (reductions take VT_FLOAT and VT_DOUBLE). */
typedef enum { VT_BYTE, VT_INT32, VT_FLOAT, VT_DOUBLE } vt_type;
typedef enum { VT_SUM, VT_MAX } vt_reduce_op;

static inline size_t vt_type_size(vt_type t) {
    return t == VT_BYTE ? 1 : t == VT_DOUBLE ? sizeof(double) : t == VT_FLOAT ? sizeof(float) : sizeof(int32_t);
}

/* One point-to-point transfer with another replica of this stage (see exchange). */
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
    /* Layers of stage s: [stage_begin[s], stage_begin[s+1]) (NULL for a world's own comm). */
    const int *stage_begin;
    /* Wall seconds spent inside the transfers and collectives, waiting included (kept by the
     * implementation; the trace of a step reads it: VT_TRACE, src/train/train_step.c). */
    double comm_seconds;
    /* n elements to or from stage `stage` of this replica's pipeline; tag (0..32767): the
     * micro-batch or sequence chunk. A receive names the count that was sent. */
    int (*send)(vt_comm *c, const void *x, size_t n, vt_type t, int stage, int tag);
    int (*recv)(vt_comm *c, void *x, size_t n, vt_type t, int stage, int tag);
    /* In place over group g: root < 0, every member gets the sum (or maximum) of all members' x;
     * root >= 0, only that member does (the others' x is left as is). */
    int (*reduce)(vt_comm *c, vt_comm_group g, vt_reduce_op op, vt_type t, void *x, size_t n, int root);
    /* Member root's x to every member of g. */
    int (*bcast)(vt_comm *c, vt_comm_group g, vt_type t, void *x, size_t n, int root);
    int (*barrier)(vt_comm *c, vt_comm_group g);
    /* Among this stage's replicas: every transfer of the list, all posted at once and then all
     * completed, so any mix of sends and receives is safe; messages between two replicas arrive
     * in the order they are listed. */
    int (*exchange)(vt_comm *c, vt_transfer *x, int n);
    /* A synchronisation point over the world; use it through vt_comm_agree. */
    int (*agree)(vt_comm *c, int status);
    /* For a failure while peers may be blocked waiting on this rank: print the message and end
     * every rank (NULL in one process: the caller just returns its error). */
    void (*abort_all)(vt_comm *c, const char *where);
    /* True, with an error set, when a test injected a failure at `point` on this rank
     * (VT_INJECT_FAULT under MPI; never in one process). */
    int (*fault)(vt_comm *c, const char *point);
    /* Wall-clock seconds (the same clock on every rank where the transport has one). */
    double (*seconds)(vt_comm *c);
    /* A solver of SPD systems shared by this stage's replicas (dist/spd_solve.h; ScaLAPACK on a
     * grid of the VT_DP group under MPI, the process's solver in one process: vt_local_solver).
     * Collective over VT_DP, as are the solver's calls. 0, or -1 (vt_fail) when there is none. */
    int (*dp_solver)(vt_comm *c, vt_spd_solver *s);
};

/* A world of `size` ranks before and after it is laid out as stages x replicas. */
typedef struct vt_world vt_world;
struct vt_world {
    int rank, size;
    /* The whole world as one stage of `size` replicas and no layers: its world collectives and
     * agreement serve a command before the layout (its agreements are no fault points). */
    vt_comm *comm;
    /* Collective: the world as `stages` stages x size / stages replicas (world rank = replica *
     * stages + stage), stage s owning layers [stage_begin[s], stage_begin[s+1]) (copied). NULL,
     * after every rank agreed on the failure, when it cannot be made. Free with layout_free. */
    vt_comm *(*layout)(vt_world *w, int stages, const int *stage_begin);
    void (*layout_free)(vt_world *w, vt_comm *c);
    void *impl;
};

/* The world of one process (static; nothing to free). */
vt_world *vt_world_local(void);

/* The solver the one-process transport hands out (dp_solver): make fills s, 0 or -1 (vt_fail).
 * The program installs ScaLAPACK on a 1 x 1 grid (mpi/main.c), unit tests LAPACK; NULL: none. */
void vt_local_solver(int (*make)(vt_spd_solver *s));

/* The single-process communicator for a model of n_layers layers (per thread; reused by the next
 * call on the thread). */
vt_comm *vt_comm_local(int n_layers);

/* Every rank passes its status; all get -1 when any rank failed. A synchronisation point that
 * keeps ranks from waiting on a failed one. Over several ranks, each failing rank's message is
 * printed once (by one rank for all), every rank's error is then marked reported
 * (vt_error_reported) and a rank that did not fail gets "another rank failed"; in one process
 * nothing is printed and the caller reports its own error. */
static inline int vt_comm_agree(vt_comm *c, int status) { return c->agree(c, status); }

static inline int vt_comm_first(const vt_comm *c) { return c->stage == 0; }
static inline int vt_comm_last(const vt_comm *c) { return c->stage == c->stages - 1; }

/* The transport's operations as the training and the drivers use them. */
/* In-place sums over the world (doubles) and over this stage's replicas (floats). */
static inline int vt_comm_sum_world(vt_comm *c, double *x, size_t n) {
    return c->reduce(c, VT_WORLD, VT_SUM, VT_DOUBLE, x, n, -1);
}
static inline int vt_comm_sum_dp(vt_comm *c, float *x, size_t n) {
    return c->reduce(c, VT_DP, VT_SUM, VT_FLOAT, x, n, -1);
}
static inline int vt_comm_sum_dp_doubles(vt_comm *c, double *x, size_t n) {
    return c->reduce(c, VT_DP, VT_SUM, VT_DOUBLE, x, n, -1);
}
/* Bytes from world rank 0 (the coordinator) to every rank. */
static inline int vt_comm_bcast(vt_comm *c, void *buf, size_t bytes) {
    return c->bcast(c, VT_WORLD, VT_BYTE, buf, bytes, 0);
}
/* Floats to or from stage `stage` of this replica. */
static inline int vt_comm_send(vt_comm *c, const float *x, size_t n, int stage, int tag) {
    return c->send(c, x, n, VT_FLOAT, stage, tag);
}
static inline int vt_comm_recv(vt_comm *c, float *x, size_t n, int stage, int tag) {
    return c->recv(c, x, n, VT_FLOAT, stage, tag);
}
/* Within this replica's pipeline: a broadcast from stage root; a sum onto stage root (its x
 * receives the sum, other stages' x is left as is); an in-place sum (max = 0) or maximum
 * (max = 1) on all. */
static inline int vt_comm_pipe_bcast(vt_comm *c, float *x, size_t n, int root) {
    return c->bcast(c, VT_PIPE, VT_FLOAT, x, n, root);
}
static inline int vt_comm_pipe_reduce(vt_comm *c, float *x, size_t n, int root) {
    return c->reduce(c, VT_PIPE, VT_SUM, VT_FLOAT, x, n, root);
}
static inline int vt_comm_pipe_allreduce(vt_comm *c, double *x, size_t n, int max) {
    return c->reduce(c, VT_PIPE, max ? VT_MAX : VT_SUM, VT_DOUBLE, x, n, -1);
}
static inline int vt_comm_dp_exchange(vt_comm *c, vt_transfer *x, int n) { return c->exchange(c, x, n); }
/* Ends every rank after a failure that leaves peers waiting; nothing in one process. */
static inline void vt_comm_abort_all(vt_comm *c, const char *where) {
    if (c->abort_all) c->abort_all(c, where);
}
static inline int vt_comm_fault(vt_comm *c, const char *point) { return c->fault(c, point); }
static inline double vt_comm_seconds(vt_comm *c) { return c->seconds(c); }

/* Activations forward and their gradients backward between neighbouring stages. */
static inline int vt_send_next(vt_comm *c, const float *x, size_t n, int tag) {
    return vt_comm_send(c, x, n, c->stage + 1, tag);
}
static inline int vt_recv_prev(vt_comm *c, float *x, size_t n, int tag) {
    return vt_comm_recv(c, x, n, c->stage - 1, tag);
}
static inline int vt_send_prev(vt_comm *c, const float *x, size_t n, int tag) {
    return vt_comm_send(c, x, n, c->stage - 1, tag);
}
static inline int vt_recv_next(vt_comm *c, float *x, size_t n, int tag) {
    return vt_comm_recv(c, x, n, c->stage + 1, tag);
}

#endif
