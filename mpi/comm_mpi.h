/* comm_mpi.h — the training communicator (src/comm.h) over MPI: messages and collectives within
 * a replica's pipe communicator (activations, gradients, the split classifier), sums over the world
 * and over the dp communicator, broadcasts from the coordinator. */
#ifndef VT_COMM_MPI_H
#define VT_COMM_MPI_H

#include <mpi.h>

#include "comm.h"

typedef int (*vt_eval_fn)(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window,
                          vt_eval_result *out);

/* stage_begin has stages + 1 entries (copied). eval is the pipeline evaluation to use. */
vt_comm *vt_comm_mpi_create(MPI_Comm world, MPI_Comm pipe, MPI_Comm dp, int stage, int stages, int replica,
                            int replicas, const int *stage_begin, vt_eval_fn eval);
void vt_comm_mpi_free(vt_comm *c);

#endif
