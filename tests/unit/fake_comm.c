/* fake_comm.c — vt_comm over threads of one process, for tests (see fake_comm.h). One mutex and
 * one condition variable serve the whole world: every wait re-checks its condition after any
 * change, which is simple and fast enough for the few ranks a test runs. */
#include "fake_comm.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/clock.h"
#include "util/error.h"

/* A collective's kind; what members must agree on is (kind, type, count, root). */
enum { OP_SUM, OP_MAX, OP_BCAST, OP_BARRIER };
static const char *const op_name[] = {"reduce (sum)", "reduce (max)", "bcast", "barrier"};
static const char *const type_name[] = {"bytes", "int32", "floats", "doubles"};

/* The members of a collective and what each posted for the current one. */
typedef struct {
    char name[64];
    int size;
    int *ranks; /* world rank of each member, in member order */
    int arrived;
    unsigned long gen; /* barriers passed */
    void **buf;
    size_t *n;
    int *op, *type, *root;
} group;

typedef struct msg {
    struct msg *next;
    int tag, sync, taken;
    size_t n, size; /* n elements of `size` bytes */
    char *data;
} msg;

typedef struct {
    vt_comm c;
    fake_world *w;
    int status;
    char message[2048];
} rank_state;

struct fake_world {
    int stages, replicas, P, sync;
    double timeout;
    int *begin;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int aborted;
    char why[1024];
    int *done; /* per rank: its fn returned */
    group world;
    group *pipe, *dp; /* per replica, per stage */
    msg **box;        /* [src * P + dst]: messages in arrival order */
    rank_state *rk;
    int (*fn)(vt_comm *, void *);
    void *arg;
};

static rank_state *state(vt_comm *c) { return (rank_state *)c->impl; }

/* Under the lock: ends every pending and later call of this run (the first reason is kept). */
static void abort_world(fake_world *w, const char *fmt, ...) {
    if (!w->aborted) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->why, sizeof w->why, fmt, ap);
        va_end(ap);
        w->aborted = 1;
    }
    pthread_cond_broadcast(&w->cv);
}

static int aborted_fail(fake_world *w, int rank) {
    return vt_fail("rank %d: the fake world was aborted: %s", rank, w->why);
}

static struct timespec deadline(const fake_world *w) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    double s = (double)t.tv_nsec * 1e-9 + w->timeout;
    t.tv_sec += (time_t)s;
    t.tv_nsec = (long)((s - (double)(time_t)s) * 1e9);
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* Under the lock: member `rank` of g waits for the others. */
static int barrier(fake_world *w, group *g, int rank) {
    unsigned long gen = g->gen;
    if (++g->arrived == g->size) {
        g->arrived = 0;
        g->gen++;
        pthread_cond_broadcast(&w->cv);
        return 0;
    }
    struct timespec until = deadline(w);
    int timed_out = 0;
    while (g->gen == gen) {
        if (w->aborted) return aborted_fail(w, rank);
        for (int m = 0; m < g->size; m++)
            if (w->done[g->ranks[m]]) {
                abort_world(w, "rank %d returned while rank %d waits for it in a collective of %s", g->ranks[m], rank,
                            g->name);
                return aborted_fail(w, rank);
            }
        if (timed_out) {
            abort_world(w, "rank %d waited more than %g s in a collective of %s (deadlock?)", rank, w->timeout,
                        g->name);
            return aborted_fail(w, rank);
        }
        timed_out = pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT;
    }
    return 0;
}

/* The group gid of c's rank, and the rank's member index in it. */
static group *group_of(vt_comm *c, vt_comm_group gid, int *member) {
    fake_world *w = state(c)->w;
    if (gid == VT_PIPE) {
        *member = c->stage;
        return &w->pipe[c->replica];
    }
    if (gid == VT_DP) {
        *member = c->replica;
        return &w->dp[c->stage];
    }
    *member = c->world_rank;
    return &w->world;
}

/* out[i] = the sum or maximum over the members' buffers of element i, added in member order in
 * the element's own type (so every member gets the bitwise same result). */
#define REDUCE_AS(T)                                                                                                   \
    for (size_t i = 0; i < n; i++) {                                                                                   \
        T s = ((const T *)g->buf[0])[i];                                                                               \
        for (int m = 1; m < g->size; m++) {                                                                            \
            T v = ((const T *)g->buf[m])[i];                                                                           \
            s = op == OP_MAX ? (v > s ? v : s) : s + v;                                                                \
        }                                                                                                              \
        ((T *)out)[i] = s;                                                                                             \
    }

/* Under the lock, between the two meetings: this member's result, or NULL when its x stays. */
static int compute(group *g, int member, int op, vt_type type, size_t n, int root, void **result) {
    size_t es = vt_type_size(type);
    *result = NULL;
    int keeps = n == 0 || op == OP_BARRIER || (op == OP_BCAST ? member == root : root >= 0 && member != root);
    if (keeps) return 0;
    void *out = vt_malloc(es * n, "fake collective");
    if (!out) return -1;
    if (op == OP_BCAST) memcpy(out, g->buf[root], es * n);
    else if (type == VT_FLOAT) REDUCE_AS(float)
    else if (type == VT_DOUBLE) REDUCE_AS(double)
    else if (type == VT_INT32) REDUCE_AS(int32_t)
    else REDUCE_AS(unsigned char)
    *result = out;
    return 0;
}
#undef REDUCE_AS

/* One collective: post, meet, check that every member called the same thing, compute this
 * member's result from everyone's buffers, meet again (nobody reads a buffer any more), write. */
static int collective(vt_comm *c, int op, vt_type type, vt_comm_group gid, void *x, size_t n, int root) {
    fake_world *w = state(c)->w;
    int rank = c->world_rank, rc = -1, member;
    group *g = group_of(c, gid, &member);
    void *out = NULL;
    pthread_mutex_lock(&w->mu);
    if (w->aborted) {
        aborted_fail(w, rank);
        goto done;
    }
    g->buf[member] = x;
    g->n[member] = n;
    g->op[member] = op;
    g->type[member] = (int)type;
    g->root[member] = root;
    if (barrier(w, g, rank)) goto done;
    for (int m = 1; m < g->size; m++)
        if (g->op[m] != g->op[0] || g->type[m] != g->type[0] || g->n[m] != g->n[0] || g->root[m] != g->root[0]) {
            abort_world(w,
                        "mismatched collective of %s: rank %d called %s of %s (n %zu, root %d), rank %d called %s of "
                        "%s (n %zu, root %d)",
                        g->name, g->ranks[0], op_name[g->op[0]], type_name[g->type[0]], g->n[0], g->root[0],
                        g->ranks[m], op_name[g->op[m]], type_name[g->type[m]], g->n[m], g->root[m]);
            aborted_fail(w, rank);
            goto done;
        }
    if (root < (op == OP_BCAST ? 0 : -1) || root >= g->size) {
        abort_world(w, "%s of %s: root %d is not one of its %d members", op_name[op], g->name, root, g->size);
        aborted_fail(w, rank);
        goto done;
    }
    if (compute(g, member, op, type, n, root, &out)) goto done;
    if (barrier(w, g, rank)) goto done;
    if (out) memcpy(x, out, vt_type_size(type) * n);
    rc = 0;
done:
    pthread_mutex_unlock(&w->mu);
    free(out);
    return rc;
}

static int reduce(vt_comm *c, vt_comm_group g, vt_reduce_op op, vt_type t, void *x, size_t n, int root) {
    return collective(c, op == VT_MAX ? OP_MAX : OP_SUM, t, g, x, n, root);
}

static int bcast(vt_comm *c, vt_comm_group g, vt_type t, void *x, size_t n, int root) {
    return collective(c, OP_BCAST, t, g, x, n, root);
}

static int barrier_op(vt_comm *c, vt_comm_group g) { return collective(c, OP_BARRIER, VT_BYTE, g, NULL, 0, 0); }

static int check_peer(vt_comm *c, int stage, int tag, const char *what) {
    if (stage < 0 || stage >= c->stages || stage == c->stage)
        return vt_fail("rank %d: %s with stage %d: not another stage of the %d", c->world_rank, what, stage, c->stages);
    if (tag < 0 || tag > 32767)
        return vt_fail("rank %d: %s with tag %d, outside MPI's guaranteed range [0, 32767]", c->world_rank, what, tag);
    return 0;
}

/* n elements of `size` bytes to world rank `to`; sync: wait until received (else buffered). */
static int send_to(vt_comm *c, const void *x, size_t n, size_t size, int to, int tag, int sync) {
    fake_world *w = state(c)->w;
    int me = c->world_rank;
    msg *m = vt_calloc(1, sizeof *m, "fake message");
    char *data = vt_malloc(size * n + 1, "fake message");
    if (!m || !data) {
        free(m);
        free(data);
        return -1;
    }
    if (n) memcpy(data, x, size * n);
    *m = (msg){.tag = tag, .sync = sync, .n = n, .size = size, .data = data};
    pthread_mutex_lock(&w->mu);
    if (w->aborted) {
        pthread_mutex_unlock(&w->mu);
        free(data);
        free(m);
        return aborted_fail(w, me);
    }
    msg **at = &w->box[(size_t)me * w->P + to];
    while (*at) at = &(*at)->next;
    *at = m;
    pthread_cond_broadcast(&w->cv);
    int rc = 0;
    if (m->sync) { /* wait until it is taken; a message left behind is freed with the world */
        struct timespec until = deadline(w);
        int timed_out = 0;
        while (!m->taken) {
            if (w->aborted) {
                rc = aborted_fail(w, me);
                break;
            }
            if (w->done[to]) {
                abort_world(w, "rank %d returned without receiving rank %d's message with tag %d", to, me, tag);
                rc = aborted_fail(w, me);
                break;
            }
            if (timed_out) {
                abort_world(w,
                            "rank %d waited more than %g s for rank %d to receive its message with tag %d (deadlock?)",
                            me, w->timeout, to, tag);
                rc = aborted_fail(w, me);
                break;
            }
            timed_out = pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT;
        }
        if (m->taken) {
            free(m->data);
            free(m);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int send(vt_comm *c, const void *x, size_t n, vt_type t, int stage, int tag) {
    if (check_peer(c, stage, tag, "send")) return -1;
    fake_world *w = state(c)->w;
    return send_to(c, x, n, vt_type_size(t), c->replica * w->stages + stage, tag, w->sync);
}

/* n elements of `size` bytes from world rank `from`, the first message with this tag. */
static int recv_from(vt_comm *c, void *x, size_t n, size_t size, int from, int tag) {
    fake_world *w = state(c)->w;
    int me = c->world_rank, rc = -1;
    pthread_mutex_lock(&w->mu);
    struct timespec until = deadline(w);
    int timed_out = 0;
    for (;;) {
        if (w->aborted) {
            aborted_fail(w, me);
            break;
        }
        msg **at = &w->box[(size_t)from * w->P + me];
        while (*at && (*at)->tag != tag) at = &(*at)->next;
        msg *m = *at;
        if (m) {
            if (m->n != n || m->size != size) {
                abort_world(w, "rank %d receives %zu values of %zu bytes with tag %d from rank %d, which sent %zu of %zu", me,
                            n, size, tag, from, m->n, m->size);
                aborted_fail(w, me);
                break;
            }
            if (n) memcpy(x, m->data, size * n);
            *at = m->next;
            if (m->sync) { /* the sender frees it */
                m->taken = 1;
                pthread_cond_broadcast(&w->cv);
            } else {
                free(m->data);
                free(m);
            }
            rc = 0;
            break;
        }
        if (w->done[from]) {
            abort_world(w, "rank %d waits for a message with tag %d from rank %d, which returned without sending it",
                        me, tag, from);
            aborted_fail(w, me);
            break;
        }
        if (timed_out) {
            abort_world(w, "rank %d waited more than %g s for a message with tag %d from rank %d (deadlock?)", me,
                        w->timeout, tag, from);
            aborted_fail(w, me);
            break;
        }
        timed_out = pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int recv(vt_comm *c, void *x, size_t n, vt_type t, int stage, int tag) {
    if (check_peer(c, stage, tag, "recv")) return -1;
    return recv_from(c, x, n, vt_type_size(t), c->replica * state(c)->w->stages + stage, tag);
}

/* Every rank's status summed over the world: -1 on all when any failed. */
static int agree(vt_comm *c, int status) {
    double bad = status != 0;
    if (reduce(c, VT_WORLD, VT_SUM, VT_DOUBLE, &bad, 1, -1)) return -1;
    if (bad > 0 && status == 0) vt_fail("another rank failed (its message is above)");
    return bad > 0 ? -1 : 0;
}

/* Every send buffered first, then the receives in list order: any mix of both is safe. */
static int dp_exchange(vt_comm *c, vt_transfer *x, int n) {
    fake_world *w = state(c)->w;
    enum { TAG = 32765 };
    for (int pass = 1; pass >= 0; pass--)
        for (int i = 0; i < n; i++) {
            if (x[i].send != pass) continue;
            if (x[i].replica < 0 || x[i].replica >= c->replicas || x[i].replica == c->replica)
                return vt_fail("rank %d: dp_exchange of %zu bytes with replica %d of %d", c->world_rank, x[i].bytes,
                               x[i].replica, c->replicas);
            int peer = x[i].replica * w->stages + c->stage;
            size_t k = x[i].bytes;
            if (pass ? send_to(c, x[i].buf, k, 1, peer, TAG, 0) : recv_from(c, x[i].buf, k, 1, peer, TAG)) return -1;
        }
    return 0;
}

static int no_fault(vt_comm *c, const char *point) {
    (void)c, (void)point;
    return 0;
}

static double seconds(vt_comm *c) {
    (void)c;
    return vt_seconds();
}

static void abort_all(vt_comm *c, const char *where) {
    fake_world *w = state(c)->w;
    pthread_mutex_lock(&w->mu);
    abort_world(w, "rank %d called abort_all (%s): %s", c->world_rank, where, vt_error());
    pthread_mutex_unlock(&w->mu);
}

static int group_init(group *g, int size, const char *name) {
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->size = size;
    g->ranks = vt_calloc((size_t)size, sizeof *g->ranks, "fake group");
    g->buf = vt_calloc((size_t)size, sizeof *g->buf, "fake group");
    g->n = vt_calloc((size_t)size, sizeof *g->n, "fake group");
    g->op = vt_calloc((size_t)size, sizeof *g->op, "fake group");
    g->type = vt_calloc((size_t)size, sizeof *g->type, "fake group");
    g->root = vt_calloc((size_t)size, sizeof *g->root, "fake group");
    return g->ranks && g->buf && g->n && g->op && g->type && g->root ? 0 : -1;
}

static void group_free(group *g) {
    free(g->ranks);
    free(g->buf);
    free(g->n);
    free(g->op);
    free(g->type);
    free(g->root);
}

static void drop_messages(fake_world *w) {
    for (size_t i = 0; i < (size_t)w->P * (size_t)w->P; i++)
        while (w->box[i]) {
            msg *m = w->box[i];
            w->box[i] = m->next;
            free(m->data);
            free(m);
        }
}

void fake_world_free(fake_world *w) {
    if (!w) return;
    if (w->box) drop_messages(w);
    free(w->box);
    group_free(&w->world);
    if (w->pipe)
        for (int r = 0; r < w->replicas; r++) group_free(&w->pipe[r]);
    if (w->dp)
        for (int s = 0; s < w->stages; s++) group_free(&w->dp[s]);
    free(w->pipe);
    free(w->dp);
    free(w->done);
    free(w->rk);
    free(w->begin);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

fake_world *fake_world_create(int stages, int replicas, const int *stage_begin) {
    if (stages < 1 || replicas < 1) {
        vt_fail("fake world of %d stages x %d replicas", stages, replicas);
        return NULL;
    }
    fake_world *w = vt_calloc(1, sizeof *w, "fake world");
    if (!w) return NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->stages = stages;
    w->replicas = replicas;
    w->P = stages * replicas;
    w->timeout = 60.0;
    size_t P = (size_t)w->P;
    w->begin = vt_malloc(sizeof(int) * (size_t)(stages + 1), "fake world");
    w->done = vt_calloc(P, sizeof *w->done, "fake world");
    w->rk = vt_calloc(P, sizeof *w->rk, "fake world");
    w->box = vt_calloc(P * P, sizeof *w->box, "fake world");
    w->pipe = vt_calloc((size_t)replicas, sizeof *w->pipe, "fake world");
    w->dp = vt_calloc((size_t)stages, sizeof *w->dp, "fake world");
    if (!w->begin || !w->done || !w->rk || !w->box || !w->pipe || !w->dp || group_init(&w->world, w->P, "the world")) {
        fake_world_free(w);
        return NULL;
    }
    memcpy(w->begin, stage_begin, sizeof(int) * (size_t)(stages + 1));
    char name[64];
    for (int r = 0; r < replicas; r++) {
        snprintf(name, sizeof name, "the pipeline of replica %d", r);
        if (group_init(&w->pipe[r], stages, name)) {
            fake_world_free(w);
            return NULL;
        }
        for (int s = 0; s < stages; s++) w->pipe[r].ranks[s] = r * stages + s;
    }
    for (int s = 0; s < stages; s++) {
        snprintf(name, sizeof name, "the replicas of stage %d", s);
        if (group_init(&w->dp[s], replicas, name)) {
            fake_world_free(w);
            return NULL;
        }
        for (int r = 0; r < replicas; r++) w->dp[s].ranks[r] = r * stages + s;
    }
    for (int i = 0; i < w->P; i++) {
        w->world.ranks[i] = i;
        w->rk[i].w = w;
        w->rk[i].c = (vt_comm){.stage = i % stages, .stages = stages, .replica = i / stages, .replicas = replicas,
                               .world_rank = i, .impl = &w->rk[i], .stage_begin = w->begin, .send = send,
                               .recv = recv, .reduce = reduce, .bcast = bcast, .barrier = barrier_op,
                               .exchange = dp_exchange, .agree = agree, .abort_all = abort_all,
                               .fault = no_fault, .seconds = seconds};
    }
    return w;
}

void fake_world_set_sync(fake_world *w, int sync) { w->sync = sync; }
void fake_world_set_timeout(fake_world *w, double seconds) { w->timeout = seconds; }
int fake_world_size(const fake_world *w) { return w->P; }
vt_comm *fake_world_comm(fake_world *w, int r) { return &w->rk[r].c; }
int fake_world_status(const fake_world *w, int r) { return w->rk[r].status; }
const char *fake_world_message(const fake_world *w, int r) { return w->rk[r].message; }

static void *rank_main(void *arg) {
    rank_state *r = arg;
    fake_world *w = r->w;
    vt_error_clear();
    r->status = w->fn(&r->c, w->arg);
    snprintf(r->message, sizeof r->message, "%s", r->status ? vt_error() : "");
    pthread_mutex_lock(&w->mu);
    w->done[r->c.world_rank] = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int fake_world_run(fake_world *w, int (*fn)(vt_comm *c, void *arg), void *arg) {
    size_t P = (size_t)w->P;
    pthread_t *th = vt_calloc(P, sizeof *th, "fake world threads");
    int *started = vt_calloc(P, sizeof *started, "fake world threads");
    if (!th || !started) {
        free(th);
        free(started);
        return -1;
    }
    w->fn = fn;
    w->arg = arg;
    w->aborted = 0;
    w->why[0] = '\0';
    w->world.arrived = 0;
    for (int r = 0; r < w->replicas; r++) w->pipe[r].arrived = 0;
    for (int s = 0; s < w->stages; s++) w->dp[s].arrived = 0;
    memset(w->done, 0, sizeof(int) * P);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)16 << 20);
    for (size_t i = 0; i < P; i++) {
        started[i] = pthread_create(&th[i], &attr, rank_main, &w->rk[i]) == 0;
        if (!started[i]) {
            w->rk[i].status = -1;
            snprintf(w->rk[i].message, sizeof w->rk[i].message, "could not start its thread");
            pthread_mutex_lock(&w->mu);
            w->done[i] = 1;
            pthread_cond_broadcast(&w->cv);
            pthread_mutex_unlock(&w->mu);
        }
    }
    pthread_attr_destroy(&attr);
    for (size_t i = 0; i < P; i++)
        if (started[i]) pthread_join(th[i], NULL);
    free(th);
    free(started);
    /* What went wrong, for vt_error(): the world's reason, the failed ranks, unreceived messages. */
    char report[4096] = "";
    size_t len = 0;
#define SAY(...)                                                                                                       \
    do {                                                                                                               \
        if (len < sizeof report) len += (size_t)snprintf(report + len, sizeof report - len, __VA_ARGS__);              \
    } while (0)
    if (w->aborted) SAY("aborted: %s", w->why);
    for (size_t i = 0; i < P; i++)
        if (w->rk[i].status) SAY("%srank %zu failed: %s", len ? "; " : "", i, w->rk[i].message);
    for (size_t i = 0; i < P * P; i++)
        for (const msg *m = w->box[i]; m && !w->aborted; m = m->next)
            SAY("%srank %zu's message of %zu values with tag %d to rank %zu was never received", len ? "; " : "", i / P,
                m->n, m->tag, i % P);
#undef SAY
    drop_messages(w);
    if (len == 0) return 0;
    return vt_fail("fake world of %d stages x %d replicas: %s", w->stages, w->replicas, report);
}
