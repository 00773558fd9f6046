/* mpi_errors.h — failure handling across ranks, so that a rank that fails never leaves the others
 * waiting: agreement at synchronisation points, and abort in the middle of a pipeline. */
#ifndef VT_MPI_ERRORS_H
#define VT_MPI_ERRORS_H

#include <mpi.h>

/* A synchronisation point: every rank of comm passes its status (0 = fine). When any rank failed,
 * every rank returns -1 and rank 0 of comm prints each failing rank's message (vt_error()) on
 * stderr as "vtrans-dist: rank N: <message>" (N the world rank; ranks with the same message share
 * one line, "ranks 0-3: ..."); a rank that did not fail gets the error "another rank failed", and
 * every rank's error is marked reported (vt_error_reported), so nothing prints it again.
 * Otherwise returns 0. Collective: every rank of comm must call it. The MPI vt_comm's agree. */
int vt_mpi_agree(int local_rc, MPI_Comm comm);

/* For a failure where peers may be blocked in point-to-point calls: prints
 * "vtrans-dist: rank N: <where>: <vt_error()>" on stderr and aborts the whole world
 * (MPI_Abort with code 1), so every rank exits non-zero within seconds. Does not return. */
_Noreturn void vt_mpi_die(const char *where);

/* Fault injection for tests of the failure paths: true, with an error set, when the environment
 * variable VT_INJECT_FAULT is "<world rank>:<point>" for this rank and point. Points: "forward"
 * (each pipeline step, which then aborts the world), "eval" (vt_pipeline_eval's first agreement),
 * "agree" (every agreement through a layout's vt_comm; not the world's own, before the
 * layout). */
int vt_mpi_fault(const char *point);

#endif
