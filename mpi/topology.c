/* topology.c — stages x replicas, the pipe and dp communicators, and each stage's layer range. */
#include "topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "mpi_errors.h"
#include "dist/partition.h"

int vt_topology_init(vt_topology *t, const vt_config *c, int stages_requested, vt_partition_use use) {
    memset(t, 0, sizeof *t);
    t->pipe = t->dp = MPI_COMM_NULL;
    MPI_Comm_rank(MPI_COMM_WORLD, &t->world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &t->world_size);
    /* The verdict depends only on (P, config, request), so every rank reaches the same one; the
     * agreement also covers a rank that ran out of memory, before the collective splits. */
    int rc = vt_topology_choose(t->world_size, c->n_layers, stages_requested, &t->stages, &t->replicas);
    if (rc == 0) {
        t->stage_begin = vt_malloc(sizeof(int) * (size_t)(t->stages + 1), "stage boundaries");
        rc = t->stage_begin ? vt_partition_layers(c, t->stages, use, t->stage_begin) : -1;
    }
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) {
        free(t->stage_begin);
        t->stage_begin = NULL;
        return -1;
    }
    t->stage = t->world_rank % t->stages;
    t->replica = t->world_rank / t->stages;
    t->layer_begin = t->stage_begin[t->stage];
    t->layer_end = t->stage_begin[t->stage + 1];
    t->first = t->stage == 0;
    t->last = t->stage == t->stages - 1;
    MPI_Comm_split(MPI_COMM_WORLD, t->replica, t->stage, &t->pipe);
    MPI_Comm_split(MPI_COMM_WORLD, t->stage, t->replica, &t->dp);
    return 0;
}

void vt_topology_free(vt_topology *t) {
    if (t->pipe != MPI_COMM_NULL) MPI_Comm_free(&t->pipe);
    if (t->dp != MPI_COMM_NULL) MPI_Comm_free(&t->dp);
    free(t->stage_begin);
    t->stage_begin = NULL;
}

vt_load_parts vt_topology_parts(const vt_topology *t) {
    vt_load_parts p = {t->layer_begin, t->layer_end, t->first, t->last};
    return p;
}

void vt_topology_print(const vt_topology *t, const char *command) {
    if (t->world_rank != 0) return;
    fprintf(stderr, "%s: %d ranks = %d stages x %d replicas; layers", command, t->world_size, t->stages, t->replicas);
    for (int s = 0; s < t->stages; s++)
        fprintf(stderr, "%s %d-%d", s ? "," : "", t->stage_begin[s], t->stage_begin[s + 1] - 1);
    fprintf(stderr, "\n");
}
