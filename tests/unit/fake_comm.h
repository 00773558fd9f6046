/* fake_comm.h — the vt_comm transport (src/dist/comm.h) in one process, for tests: a world of
 * stages x replicas ranks, one thread per rank (world rank = replica * stages + stage, as under
 * MPI). Point-to-point messages go through a mailbox per ordered pair of ranks (matched by tag
 * in arrival order, like MPI); collectives meet at a barrier of their group (the world, a
 * replica's pipeline, a stage's replicas), where every member reads the others' buffers.
 *
 * Stricter than MPI where a mistake would otherwise hang or corrupt silently: a collective whose
 * members disagree on the operation, the count or the root fails on every member; a receive
 * must name the exact count that was sent; a tag must lie in [0, 32767] (MPI's guaranteed
 * range); a rank that returns while a peer waits for it, an abort_all, or a wait longer than the
 * timeout ends every pending call with -1 (no test hangs); messages left unreceived when the
 * ranks return make the run fail. Sums add the members' values in member order, so every member
 * gets the bitwise same result. */
#ifndef VT_FAKE_COMM_H
#define VT_FAKE_COMM_H

#include "dist/comm.h"

typedef struct fake_world fake_world;

/* A world of stages x replicas ranks; stage s holds layers [stage_begin[s], stage_begin[s+1])
 * (copied; stages + 1 entries). NULL on failure (vt_error says why). */
fake_world *fake_world_create(int stages, int replicas, const int *stage_begin);
void fake_world_free(fake_world *w);

/* sync = 1: send returns only once the message was received (MPI_Send's rendezvous for
 * large messages: a pattern that needs buffering deadlocks, and the timeout reports it).
 * sync = 0 (default): sends are buffered. */
void fake_world_set_sync(fake_world *w, int sync);
/* Seconds a single wait may last before the world is aborted (default 60). */
void fake_world_set_timeout(fake_world *w, double seconds);

int fake_world_size(const fake_world *w);
/* The communicator of world rank r. */
vt_comm *fake_world_comm(fake_world *w, int r);

/* Runs fn(comm of rank r, arg) on one thread per rank and waits for all of them. Returns 0 when
 * every call returned 0 and nothing went wrong in the world; else -1 with vt_error() naming the
 * ranks that failed and their messages. */
int fake_world_run(fake_world *w, int (*fn)(vt_comm *c, void *arg), void *arg);
/* After a run: what rank r's fn returned, and its error message ("" when it returned 0). */
int fake_world_status(const fake_world *w, int r);
const char *fake_world_message(const fake_world *w, int r);

#endif
