/* lapack_solver.h — a vt_spd_solver over LAPACK's dense dposv, for tests in one process without
 * MPI (the program solves with ScaLAPACK, mpi/spd_solve_mpi.c). */
#ifndef VT_LAPACK_SOLVER_H
#define VT_LAPACK_SOLVER_H

#include "dist/spd_solve.h"

vt_spd_solver tu_lapack_solver(void);

#endif
