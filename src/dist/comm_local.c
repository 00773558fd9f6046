/* comm_local.c — the single-process vt_comm: one stage and one replica. */
#include "dist/comm.h"

#include "util/error.h"

static int identity_double(vt_comm *c, double *x, size_t n) {
    (void)c, (void)x, (void)n;
    return 0;
}

static int identity_float(vt_comm *c, float *x, size_t n) {
    (void)c, (void)x, (void)n;
    return 0;
}

static int identity_bcast(vt_comm *c, void *buf, size_t bytes) {
    (void)c, (void)buf, (void)bytes;
    return 0;
}

static int no_stage_send(vt_comm *c, const float *x, size_t n, int stage, int tag) {
    (void)c, (void)x, (void)n, (void)stage, (void)tag;
    return vt_fail("internal: a single process has no other stage");
}

static int no_stage_recv(vt_comm *c, float *x, size_t n, int stage, int tag) {
    (void)c, (void)x, (void)n, (void)stage, (void)tag;
    return vt_fail("internal: a single process has no other stage");
}

static int identity_root(vt_comm *c, float *x, size_t n, int root) {
    (void)c, (void)x, (void)n, (void)root;
    return 0;
}

static int identity_allreduce(vt_comm *c, double *x, size_t n, int max) {
    (void)c, (void)x, (void)n, (void)max;
    return 0;
}

static int no_replica_exchange(vt_comm *c, vt_transfer *x, int n) {
    (void)c, (void)x;
    return n ? vt_fail("internal: a single process has no other replica") : 0;
}

static int agree_local(vt_comm *c, int status) {
    (void)c;
    return status ? -1 : 0;
}

static int eval_local(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, vt_eval_result *out) {
    (void)c;
    return vt_eval_stream(part, ids, n, window, 0, out, NULL, NULL);
}

vt_comm *vt_comm_local(int n_layers) {
    static _Thread_local int begin[2];
    static _Thread_local vt_comm local;
    begin[0] = 0;
    begin[1] = n_layers;
    local = (vt_comm){.stages = 1, .replicas = 1, .sum_world = identity_double, .sum_dp = identity_float,
                      .bcast = identity_bcast, .agree = agree_local, .eval = eval_local, .stage_begin = begin,
                      .pipe_send = no_stage_send, .pipe_recv = no_stage_recv, .pipe_bcast = identity_root,
                      .pipe_reduce = identity_root, .pipe_allreduce = identity_allreduce,
                      .dp_exchange = no_replica_exchange};
    return &local;
}

