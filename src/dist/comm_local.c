/* comm_local.c — the single-process transport and world: one stage and one replica. */
#include "dist/comm.h"

#include <stdlib.h>

#include "util/clock.h"
#include "util/error.h"

static int no_send(vt_comm *c, const void *x, size_t n, vt_type t, int stage, int tag) {
    (void)c, (void)x, (void)n, (void)t, (void)stage, (void)tag;
    return vt_fail("internal: a single process has no other stage");
}

static int no_recv(vt_comm *c, void *x, size_t n, vt_type t, int stage, int tag) {
    (void)c, (void)x, (void)n, (void)t, (void)stage, (void)tag;
    return vt_fail("internal: a single process has no other stage");
}

/* Over one member a reduction and a broadcast leave x as it is. */
static int identity_reduce(vt_comm *c, vt_comm_group g, vt_reduce_op op, vt_type t, void *x, size_t n, int root) {
    (void)c, (void)g, (void)op, (void)t, (void)x, (void)n, (void)root;
    return 0;
}

static int identity_bcast(vt_comm *c, vt_comm_group g, vt_type t, void *x, size_t n, int root) {
    (void)c, (void)g, (void)t, (void)x, (void)n, (void)root;
    return 0;
}

static int no_wait(vt_comm *c, vt_comm_group g) {
    (void)c, (void)g;
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

static int no_fault(vt_comm *c, const char *point) {
    (void)c, (void)point;
    return 0;
}

static double seconds_local(vt_comm *c) {
    (void)c;
    return vt_seconds();
}

static int (*local_make_solver)(vt_spd_solver *s);

void vt_local_solver(int (*make)(vt_spd_solver *s)) { local_make_solver = make; }

static int solver_local(vt_comm *c, vt_spd_solver *s) {
    (void)c;
    if (!local_make_solver) return vt_fail("no SPD solver in this process (the re-fit needs one: vt_local_solver)");
    return local_make_solver(s);
}

/* c as the one-process communicator of layers [begin[0], begin[1]). */
static void local_init(vt_comm *c, const int *begin) {
    *c = (vt_comm){.stages = 1, .replicas = 1, .stage_begin = begin, .send = no_send, .recv = no_recv,
                   .reduce = identity_reduce, .bcast = identity_bcast, .barrier = no_wait,
                   .exchange = no_replica_exchange, .agree = agree_local, .fault = no_fault,
                   .seconds = seconds_local, .dp_solver = solver_local};
}

vt_comm *vt_comm_local(int n_layers) {
    static _Thread_local int begin[2];
    static _Thread_local vt_comm local;
    begin[0] = 0;
    begin[1] = n_layers;
    local_init(&local, begin);
    return &local;
}

/* The layout of one process: one stage owning every layer. */
typedef struct {
    vt_comm c;
    int begin[2];
} local_layout;

static vt_comm *layout_local(vt_world *w, int stages, const int *stage_begin) {
    (void)w;
    if (stages != 1) {
        vt_fail("internal: one process laid out as %d stages", stages);
        return NULL;
    }
    local_layout *l = vt_malloc(sizeof *l, "communicator");
    if (!l) return NULL;
    l->begin[0] = stage_begin[0];
    l->begin[1] = stage_begin[1];
    local_init(&l->c, l->begin);
    return &l->c;
}

static void layout_free_local(vt_world *w, vt_comm *c) {
    (void)w;
    free(c); /* the first member of its local_layout */
}

vt_world *vt_world_local(void) {
    static vt_comm comm;
    static vt_world world;
    local_init(&comm, NULL);
    world = (vt_world){.rank = 0, .size = 1, .comm = &comm, .layout = layout_local, .layout_free = layout_free_local};
    return &world;
}
