/* comm_mpi.h — the communicator of src/comm.h over MPI for one rank of a topology: messages and
 * collectives within a replica's pipe communicator (activations, gradients, the split classifier),
 * sums over the world and over the dp communicator, broadcasts from the coordinator, agreement on
 * failure (vt_mpi_agree) and evaluation through the pipeline (vt_pipe_eval). */
#ifndef VT_COMM_MPI_H
#define VT_COMM_MPI_H

#include "dist/comm.h"
#include "topology.h"

/* The communicator of this rank in t, which must outlive it and stay where it is (the
 * communicator uses t's MPI communicators and layer split). Nothing to free. */
vt_comm vt_comm_mpi(vt_topology *t);

#endif
