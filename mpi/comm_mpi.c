/* comm_mpi.c — vt_comm over MPI (see comm_mpi.h). Messages larger than INT_MAX elements go in
 * pieces. Open MPI's default error handler aborts every rank on a communication failure, so no
 * rank waits forever on a dead peer. */
#include "comm_mpi.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "mpi_errors.h"

typedef struct {
    vt_comm c;
    MPI_Comm world, pipe, dp;
    int *begin;
} mpi_comm;

static mpi_comm *impl(vt_comm *c) { return (mpi_comm *)c->impl; }

#define CHUNK ((size_t)INT_MAX / 2)

static int pipe_send(vt_comm *c, const float *x, size_t n, int peer, int tag) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Send(x + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, peer, tag, impl(c)->pipe);
    return 0;
}

static int pipe_recv(vt_comm *c, float *x, size_t n, int peer, int tag) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Recv(x + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, peer, tag, impl(c)->pipe, MPI_STATUS_IGNORE);
    return 0;
}


static int sum_world(vt_comm *c, double *x, size_t n) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, x + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_DOUBLE, MPI_SUM, impl(c)->world);
    return 0;
}

static int sum_dp(vt_comm *c, float *x, size_t n) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, x + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, MPI_SUM, impl(c)->dp);
    return 0;
}

static int bcast(vt_comm *c, void *buf, size_t bytes) {
    for (size_t o = 0; o < bytes; o += CHUNK)
        MPI_Bcast((char *)buf + o, (int)(bytes - o < CHUNK ? bytes - o : CHUNK), MPI_BYTE, 0, impl(c)->world);
    return 0;
}


static int pipe_bcast(vt_comm *c, float *x, size_t n, int root) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Bcast(x + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_FLOAT, root, impl(c)->pipe);
    return 0;
}

static int pipe_reduce(vt_comm *c, float *x, size_t n, int root) {
    for (size_t o = 0; o < n; o += CHUNK) {
        int k = (int)(n - o < CHUNK ? n - o : CHUNK);
        if (c->stage == root) MPI_Reduce(MPI_IN_PLACE, x + o, k, MPI_FLOAT, MPI_SUM, root, impl(c)->pipe);
        else MPI_Reduce(x + o, NULL, k, MPI_FLOAT, MPI_SUM, root, impl(c)->pipe);
    }
    return 0;
}

static int pipe_allreduce(vt_comm *c, double *x, size_t n, int max) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, x + o, (int)(n - o < CHUNK ? n - o : CHUNK), MPI_DOUBLE, max ? MPI_MAX : MPI_SUM,
                      impl(c)->pipe);
    return 0;
}

static int agree(vt_comm *c, int status) {
    if (status == 0 && vt_mpi_fault("agree")) status = -1;
    return vt_mpi_agree(status, impl(c)->world);
}

static void abort_all(vt_comm *c, const char *where) {
    (void)c;
    vt_mpi_die(where);
}

vt_comm *vt_comm_mpi_create(MPI_Comm world, MPI_Comm pipe, MPI_Comm dp, int stage, int stages, int replica,
                            int replicas, const int *stage_begin, vt_eval_fn eval) {
    mpi_comm *m = vt_calloc(1, sizeof *m, "communicator");
    int *begin = vt_malloc(sizeof(int) * (size_t)(stages + 1), "communicator");
    if (!m || !begin) {
        free(m);
        free(begin);
        return NULL;
    }
    memcpy(begin, stage_begin, sizeof(int) * (size_t)(stages + 1));
    int rank;
    MPI_Comm_rank(world, &rank);
    m->world = world;
    m->pipe = pipe;
    m->dp = dp;
    m->begin = begin;
    m->c = (vt_comm){.stage = stage, .stages = stages, .replica = replica, .replicas = replicas, .world_rank = rank,
                     .impl = m, .sum_world = sum_world, .sum_dp = sum_dp, .bcast = bcast, .agree = agree, .eval = eval,
                     .abort_all = abort_all, .stage_begin = begin, .pipe_send = pipe_send, .pipe_recv = pipe_recv,
                     .pipe_bcast = pipe_bcast, .pipe_reduce = pipe_reduce, .pipe_allreduce = pipe_allreduce};
    return &m->c;
}

void vt_comm_mpi_free(vt_comm *c) {
    if (!c) return;
    free(impl(c)->begin);
    free(impl(c));
}

