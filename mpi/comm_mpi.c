/* comm_mpi.c — vt_comm and vt_world over MPI (see comm_mpi.h). Messages larger than INT_MAX / 2
 * elements go in pieces. Open MPI's default error handler aborts every rank on a communication
 * failure, so no rank waits forever on a dead peer. */
#include "comm_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "mpi_errors.h"
#include "spd_solve_mpi.h"
#include "util/error.h"

/* A communicator: the world's own (pipe = this rank alone, dp = the world) or a layout's. */
typedef struct {
    vt_comm c;
    MPI_Comm pipe, dp;
    int faults; /* agreements are fault points (VT_INJECT_FAULT "R:agree") */
    int *begin; /* stage boundaries, owned */
} mpi_comm;

static mpi_comm *impl(vt_comm *c) { return c->impl; }

static MPI_Comm group(vt_comm *c, vt_comm_group g) {
    return g == VT_PIPE ? impl(c)->pipe : g == VT_DP ? impl(c)->dp : MPI_COMM_WORLD;
}

static MPI_Datatype datatype(vt_type t) {
    return t == VT_FLOAT ? MPI_FLOAT : t == VT_DOUBLE ? MPI_DOUBLE : t == VT_INT32 ? MPI_INT32_T : MPI_BYTE;
}

#define CHUNK ((size_t)INT_MAX / 2)

/* The element count of the piece of an n-element message that starts at o. */
static int piece(size_t n, size_t o) { return (int)(n - o < CHUNK ? n - o : CHUNK); }

/* Element o of x, elements of type t. */
static char *at(const void *x, size_t o, vt_type t) { return (char *)x + o * vt_type_size(t); }

/* MPI guarantees tags up to 32767: message numbers (micro-batches, positions) are taken modulo
 * 32768. Messages between two ranks arrive in order, so the tag is a check rather than a key. */
static int tag_of(int tag) { return tag & 0x7fff; }

static int send_raw(vt_comm *c, const void *x, size_t n, vt_type t, int stage, int tag) {
    for (size_t o = 0; o < n; o += CHUNK)
        MPI_Send(at(x, o, t), piece(n, o), datatype(t), stage, tag_of(tag), impl(c)->pipe);
    return 0;
}

static int recv_raw(vt_comm *c, void *x, size_t n, vt_type t, int stage, int tag) {
    for (size_t o = 0; o < n; o += CHUNK) {
        MPI_Status st;
        int got = 0;
        MPI_Recv(at(x, o, t), piece(n, o), datatype(t), stage, tag_of(tag), impl(c)->pipe, &st);
        MPI_Get_count(&st, datatype(t), &got);
        if (got != piece(n, o))
            return vt_fail("message %d from stage %d: received %zu values, expected %zu", tag, stage,
                           o + (size_t)got, n);
    }
    return 0;
}

static int reduce_raw(vt_comm *c, vt_comm_group g, vt_reduce_op op, vt_type t, void *x, size_t n, int root) {
    MPI_Op mop = op == VT_MAX ? MPI_MAX : MPI_SUM;
    int me;
    MPI_Comm_rank(group(c, g), &me);
    for (size_t o = 0; o < n; o += CHUNK) {
        void *p = at(x, o, t);
        if (root < 0) MPI_Allreduce(MPI_IN_PLACE, p, piece(n, o), datatype(t), mop, group(c, g));
        else if (me == root) MPI_Reduce(MPI_IN_PLACE, p, piece(n, o), datatype(t), mop, root, group(c, g));
        else MPI_Reduce(p, NULL, piece(n, o), datatype(t), mop, root, group(c, g));
    }
    return 0;
}

static int bcast_raw(vt_comm *c, vt_comm_group g, vt_type t, void *x, size_t n, int root) {
    for (size_t o = 0; o < n; o += CHUNK) MPI_Bcast(at(x, o, t), piece(n, o), datatype(t), root, group(c, g));
    return 0;
}

static int barrier_raw(vt_comm *c, vt_comm_group g) {
    MPI_Barrier(group(c, g));
    return 0;
}

static int exchange_raw(vt_comm *c, vt_transfer *x, int n) {
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
                if (pass) MPI_Isend(b, piece(x[i].bytes, o), MPI_BYTE, x[i].replica, 0x7ffd, impl(c)->dp, &req[k++]);
                else MPI_Irecv(b, piece(x[i].bytes, o), MPI_BYTE, x[i].replica, 0x7ffd, impl(c)->dp, &req[k++]);
            }
        }
    MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
    free(req);
    return 0;
}

/* The transfers and collectives, each timed into c->comm_seconds. */
#define TIMED(name, params, args)                  \
    static int name params {                       \
        double t0 = MPI_Wtime();                   \
        int rc = name##_raw args;                  \
        c->comm_seconds += MPI_Wtime() - t0;       \
        return rc;                                 \
    }
TIMED(send, (vt_comm *c, const void *x, size_t n, vt_type t, int stage, int tag), (c, x, n, t, stage, tag))
TIMED(recv, (vt_comm *c, void *x, size_t n, vt_type t, int stage, int tag), (c, x, n, t, stage, tag))
TIMED(reduce, (vt_comm *c, vt_comm_group g, vt_reduce_op op, vt_type t, void *x, size_t n, int root),
      (c, g, op, t, x, n, root))
TIMED(bcast, (vt_comm *c, vt_comm_group g, vt_type t, void *x, size_t n, int root), (c, g, t, x, n, root))
TIMED(barrier, (vt_comm *c, vt_comm_group g), (c, g))
TIMED(exchange, (vt_comm *c, vt_transfer *x, int n), (c, x, n))
#undef TIMED

static int agree(vt_comm *c, int status) {
    if (status == 0 && impl(c)->faults && vt_mpi_fault("agree")) status = -1;
    return vt_mpi_agree(status, MPI_COMM_WORLD);
}

static void abort_all(vt_comm *c, const char *where) {
    (void)c;
    vt_mpi_die(where);
}

static int fault(vt_comm *c, const char *point) {
    (void)c;
    return vt_mpi_fault(point);
}

static double seconds(vt_comm *c) {
    (void)c;
    return MPI_Wtime();
}

static int dp_solver(vt_comm *c, vt_spd_solver *s) { return vt_spd_solver_mpi(s, impl(c)->dp, 0); }

/* m's vt_comm for this rank at (stage, replica) of stages x replicas. */
static void comm_init(mpi_comm *m, int stage, int stages, int replica, int replicas) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    m->c = (vt_comm){.stage = stage, .stages = stages, .replica = replica, .replicas = replicas, .world_rank = rank,
                     .impl = m, .stage_begin = m->begin, .send = send, .recv = recv, .reduce = reduce, .bcast = bcast,
                     .barrier = barrier, .exchange = exchange, .agree = agree, .abort_all = abort_all, .fault = fault,
                     .seconds = seconds, .dp_solver = dp_solver};
}

static vt_comm *layout(vt_world *w, int stages, const int *stage_begin) {
    mpi_comm *m = vt_calloc(1, sizeof *m, "communicator");
    if (m) m->begin = vt_malloc(sizeof(int) * (size_t)(stages + 1), "stage boundaries");
    if (vt_mpi_agree(m && m->begin ? 0 : -1, MPI_COMM_WORLD)) { /* before the collective splits */
        if (m) free(m->begin);
        free(m);
        return NULL;
    }
    memcpy(m->begin, stage_begin, sizeof(int) * (size_t)(stages + 1));
    int stage = w->rank % stages, replica = w->rank / stages;
    MPI_Comm_split(MPI_COMM_WORLD, replica, stage, &m->pipe);
    MPI_Comm_split(MPI_COMM_WORLD, stage, replica, &m->dp);
    m->faults = 1;
    comm_init(m, stage, stages, replica, w->size / stages);
    return &m->c;
}

static void layout_free(vt_world *w, vt_comm *c) {
    (void)w;
    mpi_comm *m = impl(c);
    MPI_Comm_free(&m->pipe);
    MPI_Comm_free(&m->dp);
    free(m->begin);
    free(m);
}

vt_world *vt_world_mpi(void) {
    static mpi_comm whole;
    static vt_world world;
    world = (vt_world){.comm = &whole.c, .layout = layout, .layout_free = layout_free};
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    whole.pipe = MPI_COMM_SELF;
    whole.dp = MPI_COMM_WORLD;
    comm_init(&whole, 0, 1, world.rank, world.size);
    return &world;
}
