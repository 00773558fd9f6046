/* comm_mpi.c — vt_comm over MPI (see comm_mpi.h). Messages larger than INT_MAX / 2 elements go in
 * pieces. Open MPI's default error handler aborts every rank on a communication failure, so no
 * rank waits forever on a dead peer. */
#include "comm_mpi.h"

#include <limits.h>
#include <stdlib.h>

#include "util/error.h"
#include "mpi_errors.h"
#include "pipe_forward.h"

static vt_topology *topo(vt_comm *c) { return c->impl; }

#define CHUNK ((size_t)INT_MAX / 2)

/* The element count of the piece of an n-element message that starts at o. */
static int piece(size_t n, size_t o) { return (int)(n - o < CHUNK ? n - o : CHUNK); }

/* MPI guarantees tags up to 32767: message numbers (micro-batches, positions) are taken modulo
 * 32768. Messages between two ranks arrive in order, so the tag is a check rather than a key. */
static int tag_of(int tag) { return tag & 0x7fff; }

static int pipe_send_raw(vt_comm *c, const float *x, size_t n, int peer, int tag) {
    for (size_t o = 0; o < n; o += CHUNK) MPI_Send(x + o, piece(n, o), MPI_FLOAT, peer, tag_of(tag), topo(c)->pipe);
    return 0;
}

static int pipe_recv_raw(vt_comm *c, float *x, size_t n, int peer, int tag) {
    for (size_t o = 0; o < n; o += CHUNK) {
        MPI_Status st;
        int got = 0;
        MPI_Recv(x + o, piece(n, o), MPI_FLOAT, peer, tag_of(tag), topo(c)->pipe, &st);
        MPI_Get_count(&st, MPI_FLOAT, &got);
        if (got != piece(n, o))
            return vt_fail("message %d from stage %d: received %zu values, expected %zu", tag, peer, o + (size_t)got, n);
    }
    return 0;
}

static int sum_world_raw(vt_comm *c, double *x, size_t n) {
    (void)c;
    for (size_t o = 0; o < n; o += CHUNK) MPI_Allreduce(MPI_IN_PLACE, x + o, piece(n, o), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return 0;
}

static int dp_exchange_raw(vt_comm *c, vt_transfer *x, int n) {
    size_t pieces = 0;
    for (int i = 0; i < n; i++) pieces += (x[i].bytes + CHUNK - 1) / CHUNK;
    MPI_Request *req = vt_malloc(sizeof(MPI_Request) * (pieces + 1), "transfer requests");
    if (!req) return -1;
    int k = 0;
    for (int pass = 0; pass < 2; pass++) /* every receive posted before any send */
        for (int i = 0; i < n; i++) {
            if (x[i].send != pass) continue;
            for (size_t o = 0; o < x[i].bytes; o += CHUNK) {
                char *b = (char *)x[i].buf + o;
                if (pass) MPI_Isend(b, piece(x[i].bytes, o), MPI_BYTE, x[i].replica, 0x7ffd, topo(c)->dp, &req[k++]);
                else MPI_Irecv(b, piece(x[i].bytes, o), MPI_BYTE, x[i].replica, 0x7ffd, topo(c)->dp, &req[k++]);
            }
        }
    MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
    free(req);
    return 0;
}

static int sum_dp_raw(vt_comm *c, float *x, size_t n) {
    for (size_t o = 0; o < n; o += CHUNK) MPI_Allreduce(MPI_IN_PLACE, x + o, piece(n, o), MPI_FLOAT, MPI_SUM, topo(c)->dp);
    return 0;
}

static int bcast(vt_comm *c, void *buf, size_t bytes) {
    (void)c;
    for (size_t o = 0; o < bytes; o += CHUNK) MPI_Bcast((char *)buf + o, piece(bytes, o), MPI_BYTE, 0, MPI_COMM_WORLD);
    return 0;
}

static int agree(vt_comm *c, int status) {
    (void)c;
    if (status == 0 && vt_mpi_fault("agree")) status = -1;
    return vt_mpi_agree(status, MPI_COMM_WORLD);
}

static int eval(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, vt_eval_result *out) {
    return vt_pipe_eval(c, part, ids, n, window, 0, out, NULL, NULL);
}

static void abort_all(vt_comm *c, const char *where) {
    (void)c;
    vt_mpi_die(where);
}

static int pipe_bcast_raw(vt_comm *c, float *x, size_t n, int root) {
    for (size_t o = 0; o < n; o += CHUNK) MPI_Bcast(x + o, piece(n, o), MPI_FLOAT, root, topo(c)->pipe);
    return 0;
}

static int pipe_reduce_raw(vt_comm *c, float *x, size_t n, int root) {
    for (size_t o = 0; o < n; o += CHUNK) {
        if (c->stage == root) MPI_Reduce(MPI_IN_PLACE, x + o, piece(n, o), MPI_FLOAT, MPI_SUM, root, topo(c)->pipe);
        else MPI_Reduce(x + o, NULL, piece(n, o), MPI_FLOAT, MPI_SUM, root, topo(c)->pipe);
    }
    return 0;
}

static int pipe_allreduce_raw(vt_comm *c, double *x, size_t n, int max) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, x + o, piece(n, o), MPI_DOUBLE, max ? MPI_MAX : MPI_SUM, topo(c)->pipe);
    return 0;
}

/* The callbacks, each timed into c->comm_seconds. */
#define TIMED(name, params, args)                  \
    static int name params {                       \
        double t0 = MPI_Wtime();                   \
        int rc = name##_raw args;                  \
        c->comm_seconds += MPI_Wtime() - t0;       \
        return rc;                                 \
    }
TIMED(pipe_send, (vt_comm *c, const float *x, size_t n, int peer, int tag), (c, x, n, peer, tag))
TIMED(pipe_recv, (vt_comm *c, float *x, size_t n, int peer, int tag), (c, x, n, peer, tag))
TIMED(sum_world, (vt_comm *c, double *x, size_t n), (c, x, n))
TIMED(dp_exchange, (vt_comm *c, vt_transfer *x, int n), (c, x, n))
TIMED(sum_dp, (vt_comm *c, float *x, size_t n), (c, x, n))
TIMED(pipe_bcast, (vt_comm *c, float *x, size_t n, int root), (c, x, n, root))
TIMED(pipe_reduce, (vt_comm *c, float *x, size_t n, int root), (c, x, n, root))
TIMED(pipe_allreduce, (vt_comm *c, double *x, size_t n, int max), (c, x, n, max))
#undef TIMED

vt_comm vt_comm_mpi(vt_topology *t) {
    return (vt_comm){.stage = t->stage, .stages = t->stages, .replica = t->replica, .replicas = t->replicas,
                     .world_rank = t->world_rank, .impl = t, .sum_world = sum_world, .sum_dp = sum_dp,
                     .bcast = bcast, .agree = agree, .eval = eval, .abort_all = abort_all,
                     .stage_begin = t->stage_begin, .pipe_send = pipe_send, .pipe_recv = pipe_recv,
                     .pipe_bcast = pipe_bcast, .pipe_reduce = pipe_reduce, .pipe_allreduce = pipe_allreduce,
                     .dp_exchange = dp_exchange};
}
