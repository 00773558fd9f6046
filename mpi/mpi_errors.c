/* mpi_errors.c — agreeing on failure across ranks, printing each failing rank's message once
 * (and marking it reported), and aborting the world when a pipeline cannot continue. */
#include "mpi_errors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

enum { MSG_CAP = 2048 };

static int world_rank(void) {
    int r = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

/* Prints the messages gathered on rank 0 of the communicator: one line per distinct message,
 * naming its ranks ("rank 2", "ranks 0-3" or "ranks 1,3"). done[] is scratch of n entries. */
static void print_failures(int n, const int *failed, const int *world, const char *msgs, int *done) {
    memset(done, 0, sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        if (!failed[i] || done[i]) continue;
        const char *msg = msgs + (size_t)i * MSG_CAP;
        char list[256] = "";
        int count = 0, len = 0, contiguous = 1, last = world[i];
        for (int j = i; j < n; j++) {
            if (!failed[j] || done[j] || strcmp(msgs + (size_t)j * MSG_CAP, msg) != 0) continue;
            done[j] = 1;
            if (count && world[j] != last + 1) contiguous = 0;
            if (len < (int)sizeof list - 16) len += snprintf(list + len, sizeof list - (size_t)len, "%s%d", count ? "," : "", world[j]);
            last = world[j];
            count++;
        }
        const char *text = msg[0] ? msg : "failed (no message)";
        if (count == 1) fprintf(stderr, "vtrans-dist: rank %d: %s\n", world[i], text);
        else if (contiguous) fprintf(stderr, "vtrans-dist: ranks %d-%d: %s\n", world[i], last, text);
        else fprintf(stderr, "vtrans-dist: ranks %s: %s\n", list, text);
    }
}

int vt_mpi_agree(int local_rc, MPI_Comm comm) {
    int failed = local_rc != 0, any = 0, rank, size, me = world_rank();
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, comm);
    if (!any) return 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    char msg[MSG_CAP] = "";
    if (failed) snprintf(msg, sizeof msg, "%s", vt_error());
    int *all_failed = NULL, *all_world = NULL, *done = NULL;
    char *all_msgs = NULL;
    if (rank == 0) {
        all_failed = malloc(sizeof(int) * (size_t)size);
        all_world = malloc(sizeof(int) * (size_t)size);
        done = malloc(sizeof(int) * (size_t)size);
        all_msgs = malloc((size_t)MSG_CAP * (size_t)size);
        if (!all_failed || !all_world || !done || !all_msgs) {
            vt_fail("out of memory gathering the errors of %d ranks", size);
            vt_mpi_die("agreeing on a failure");
        }
    }
    /* Fixed-size messages keep this to three gathers; failures are rare and ranks few enough. */
    MPI_Gather(&failed, 1, MPI_INT, all_failed, 1, MPI_INT, 0, comm);
    MPI_Gather(&me, 1, MPI_INT, all_world, 1, MPI_INT, 0, comm);
    MPI_Gather(msg, MSG_CAP, MPI_CHAR, all_msgs, MSG_CAP, MPI_CHAR, 0, comm);
    if (rank == 0) {
        print_failures(size, all_failed, all_world, all_msgs, done);
        fflush(stderr);
    }
    free(all_failed);
    free(all_world);
    free(all_msgs);
    free(done);
    if (!failed) vt_fail("another rank failed");
    vt_error_set_reported(); /* every failing rank's message is printed above */
    return -1;
}

void vt_mpi_die(const char *where) {
    fprintf(stderr, "vtrans-dist: rank %d: %s: %s\n", world_rank(), where, vt_error()[0] ? vt_error() : "failed");
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1); /* MPI_Abort does not return; this keeps the compiler sure of it */
}

int vt_mpi_fault(const char *point) {
    static int looked;
    static const char *spec;
    if (!looked) { /* read once: this sits on every micro-batch and generated token */
        spec = getenv("VT_INJECT_FAULT");
        looked = 1;
    }
    if (!spec) return 0;
    char want[256];
    snprintf(want, sizeof want, "%d:%s", world_rank(), point);
    if (strcmp(spec, want) != 0) return 0;
    vt_fail("fault injected at %s (VT_INJECT_FAULT=%s)", point, spec);
    return 1;
}
