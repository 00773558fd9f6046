/* topology.h — where this rank sits in a world of P = S stages x D replicas (DESIGN.md section 2):
 * world rank = replica * S + stage, the pipe and dp communicators, and the layers it owns. */
#ifndef VT_TOPOLOGY_H
#define VT_TOPOLOGY_H

#include <mpi.h>

#include "nn/model.h"
#include "dist/partition.h"

typedef struct {
    int world_rank, world_size;
    int stages, replicas;
    int stage, replica;
    MPI_Comm pipe; /* this replica's S stages; rank in it = stage */
    MPI_Comm dp;   /* this stage's D replicas; rank in it = replica */
    int layer_begin, layer_end; /* this stage's layers [begin, end) */
    int first, last;            /* stage 0 (embedding) / stage S-1 (final norm, classifier, loss) */
    int *stage_begin;           /* stages + 1 entries: stage s owns [stage_begin[s], stage_begin[s+1]) */
} vt_topology;

/* Chooses S (stages_requested, or automatically when 0: vt_topology_choose) and D = P / S, splits
 * the layers by cost (vt_partition_layers) and creates the communicators. Collective over
 * MPI_COMM_WORLD and a synchronisation point (vt_mpi_agree): impossible topologies (more stages
 * than layers, P not a multiple of S) make every rank return -1 after the message was printed
 * once, before anything is loaded. */
int vt_topology_init(vt_topology *t, const vt_config *c, int stages_requested, vt_partition_use use);
void vt_topology_free(vt_topology *t);

/* The tensors this rank loads: its layers, the embedding on the first stage, the final norm and
 * classifier on the last. */
vt_load_parts vt_topology_parts(const vt_topology *t);

/* World rank 0 prints how the model was split, e.g. "eval: 4 ranks = 2 stages x 2 replicas;
 * layers 0-2, 3-4". */
void vt_topology_print(const vt_topology *t, const char *command);

#endif
