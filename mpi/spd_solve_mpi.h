/* spd_solve_mpi.h — the SPD solver of dist/spd_solve.h with ScaLAPACK (PDPOSV) on a BLACS grid
 * over an MPI communicator (2-D block-cyclic, the solution on every rank), and the sum of G and B
 * over the ranks that share a system. */
#ifndef VT_SPD_SOLVE_MPI_H
#define VT_SPD_SOLVE_MPI_H

#include <mpi.h>
#include <stddef.h>

#include "dist/spd_solve.h"

/* Block size (rows and columns) of the block-cyclic layout when the caller passes 0. */
#define VT_SPD_BLOCK 64

/* A solver over every rank of comm, which must outlive it: a near-square nprow x npcol grid of the
 * ranks (1 x 1 on one rank), nb x nb blocks (nb <= 0: VT_SPD_BLOCK). Collective over comm, as are
 * its solve and free. Each rank passes its own full copy of G and B to solve and fills only the
 * blocks it owns from them; the solution is summed back onto every rank. Returns 0 or -1. */
int vt_spd_solver_mpi(vt_spd_solver *s, MPI_Comm comm, int nb);

/* In-place sum of x[0..n) over comm (in chunks, so n may exceed INT_MAX); 0 or -1 (vt_fail). */
int vt_mpi_sum_doubles(MPI_Comm comm, double *x, size_t n);

/* Releases what the BLACS keep for the whole process (after the last solver's free, before
 * MPI_Finalize; MPI stays usable); nothing when no solver was made. */
void vt_spd_mpi_finish(void);

#endif
