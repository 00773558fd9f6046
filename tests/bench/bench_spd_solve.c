/* bench_spd_solve.c — seconds and GFLOP/s of one re-fit solve (G + lambda I) X = B with the
 * ScaLAPACK solver on the ranks mpirun gives it. Usage: bench_spd_solve [n [m [nb]]], default an
 * FFN-sized system at LLaMA-2-7B shapes: n 5504 kept of 11008, m 4096 (down_proj's outputs). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "dist/spd_solve.h"
#include "spd_solve_mpi.h"
#include "util/error.h"

/* A reproducible uniform number in [-1, 1). */
static double uniform(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0 * 2 - 1;
}

void dgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *b, const int *ldb, const double *beta, double *c,
            const int *ldc);

/* GFLOP/s of a 1024^3 dgemm on every rank at once (BLIS, as the ranks share the machine now): the
 * yardstick the solve's rate is read against on this shared machine. Returns the sum over ranks. */
static double dgemm_rate(void) {
    int n = 1024;
    double one = 1, zero = 0, *a = malloc(sizeof(double) * n * n * 3);
    for (int i = 0; i < n * n * 3; i++)
        a[i] = 1e-3 * (i % 7);
    MPI_Barrier(MPI_COMM_WORLD);
    double t = MPI_Wtime();
    dgemm_("N", "N", &n, &n, &n, &one, a, &n, a + n * n, &n, &zero, a + 2 * n * n, &n);
    double rate = 2.0 * n * n * n / (MPI_Wtime() - t) * 1e-9;
    MPI_Allreduce(MPI_IN_PLACE, &rate, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    free(a);
    return rate;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 5504, m = argc > 2 ? strtoul(argv[2], NULL, 10) : 4096;
    int nb = argc > 3 ? atoi(argv[3]) : VT_SPD_BLOCK;
    /* diagonally dominant, so SPD; lower triangle only, as the solver reads it */
    double *g = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * m), *b0 = malloc(sizeof(double) * n);
    unsigned long long seed = 1;
    for (size_t j = 0; j < n; j++)
        for (size_t i = j; i < n; i++)
            g[i + j * n] = i == j ? (double)n : uniform(&seed);
    for (size_t i = 0; i < n * m; i++)
        b[i] = uniform(&seed);
    for (size_t i = 0; i < n; i++)
        b0[i] = b[i];
    vt_spd_solver s;
    vt_spd_request req = {.name = "bench system", .damp = 1e-3};
    vt_spd_outcome out;
    if (vt_spd_solver_mpi(&s, MPI_COMM_WORLD, nb)) {
        fprintf(stderr, "bench_spd_solve: %s\n", vt_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double yardstick = dgemm_rate();
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    int rc = vt_spd_solve_ridge(&s, &req, g, n, b, m, &out);
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    /* residual of the first right-hand side: the solve is the real one */
    double res = 0, scale = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        double r = -b0[i] + out.lambda * b[i];
        for (size_t k = 0; k < n; k++)
            r += (i >= k ? g[i + k * n] : g[k + i * n]) * b[k];
        res = fmax(res, fabs(r));
        scale = fmax(scale, fabs(b0[i]));
    }
    double flops = (double)n * n * n / 3 + 2.0 * n * n * m;
    if (rank == 0)
        printf("bench_spd_solve: n %zu, m %zu, nb %d, %d rank(s): %.2f s, %.1f GFLOP/s (n^3/3 + 2 n^2 m; "
               "dgemm on the same ranks just before: %.1f GFLOP/s), residual %.1e%s%s\n",
               n, m, nb, ranks, t, flops / t * 1e-9, yardstick, res / scale, rc ? ": " : "", rc ? vt_error() : "");
    s.free(&s);
    vt_spd_mpi_finish();
    free(g);
    free(b);
    free(b0);
    MPI_Finalize();
    return rc ? 1 : 0;
}
