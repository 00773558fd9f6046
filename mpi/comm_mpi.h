/* comm_mpi.h — the world and the vt_comm transport of src/dist/comm.h over MPI: messages within a
 * replica's pipe communicator, collectives over MPI_COMM_WORLD and the pipe and dp communicators
 * (split by vt_world's layout), agreement on failure (vt_mpi_agree) and abort (vt_mpi_die). */
#ifndef VT_COMM_MPI_H
#define VT_COMM_MPI_H

#include "dist/comm.h"

/* The world of MPI_COMM_WORLD (after MPI_Init; static). Its layouts' agreements are fault
 * points (VT_INJECT_FAULT "R:agree"), its own are not. */
vt_world *vt_world_mpi(void);

#endif
