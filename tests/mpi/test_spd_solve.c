/* test_spd_solve.c — the ScaLAPACK SPD solver (mpi/spd_solve_mpi.c) and the ridge policy
 * (src/dist/spd_solve.c) against LAPACK's dposv in one process, on whatever ranks it is started
 * with (tests/e2e/spd_solve.sh runs 1, 2 and 4, and once without mpirun). Every rank checks its
 * own copy of the solution; exit 0 only when every rank passed every case. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/spd_solve.h"
#include "spd_solve_mpi.h"
#include "util/error.h"

void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb,
            int *info);

static int rank, failures;

static void check(int ok, const char *what) {
    if (!ok) {
        printf("FAIL (rank %d): %s\n", rank, what);
        failures++;
    }
}

/* A reproducible uniform number in [-1, 1) (the same on every rank). */
static double uniform(unsigned long long *state) {
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(*state >> 11) / 9007199254740992.0 * 2 - 1;
}

/* G = A A^T / k + 0.1 I with A n x k random (SPD, condition modest); B n x m random. With
 * lower_only the upper triangle holds NaN: the solver must not read it. */
static void make_system(double *g, double *b, int n, int m, int lower_only, unsigned long long seed) {
    int k = n + 3;
    double *a = malloc(sizeof(double) * n * k);
    for (int i = 0; i < n * k; i++)
        a[i] = uniform(&seed);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int t = 0; t < k; t++)
                s += a[i + t * n] * a[j + t * n];
            g[i + j * n] = lower_only && i < j ? NAN : s / k + (i == j ? 0.1 : 0);
        }
    for (int i = 0; i < n * m; i++)
        b[i] = uniform(&seed);
    free(a);
}

/* LAPACK on (G + lambda I) X = B in place of b; returns dposv's info. */
static int reference(const double *g, int n, double lambda, double *b, int m) {
    double *a = malloc(sizeof(double) * n * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < n; i++)
            a[i + j * n] = i >= j ? g[i + j * n] + (i == j ? lambda : 0) : 0;
    int info = 0;
    dposv_("L", &n, &m, a, &n, b, &n, &info);
    free(a);
    return info;
}

/* max |x - y| / max |y| */
static double rel_error(const double *x, const double *y, size_t count) {
    double err = 0, scale = 0;
    for (size_t i = 0; i < count; i++) {
        err = fmax(err, fabs(x[i] - y[i]));
        scale = fmax(scale, fabs(y[i]));
    }
    return isnan(err) ? INFINITY : err / scale;
}

/* One SPD system through vt_spd_solve_ridge on nb x nb blocks against the reference. */
static void solve_case(MPI_Comm comm, int n, int m, int nb, int lower_only) {
    vt_spd_solver s;
    if (vt_spd_solver_mpi(&s, comm, nb)) {
        check(0, vt_error());
        return;
    }
    double *g = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * m);
    double *want = malloc(sizeof(double) * n * m);
    make_system(g, b, n, m, lower_only, 1000u * n + m);
    memcpy(want, b, sizeof(double) * n * m);
    vt_spd_request req = {.name = "test system", .damp = 1e-3};
    vt_spd_outcome out = {0};
    int rc = vt_spd_solve_ridge(&s, &req, g, n, b, m, &out);
    char what[160];
    snprintf(what, sizeof what, "n %d, m %d, nb %d%s%s%s", n, m, nb, lower_only ? ", lower only" : "",
             rc ? ": " : "", rc ? vt_error() : "");
    check(rc == 0 && out.retries == 0, what);
    double err = INFINITY;
    if (rc == 0 && reference(g, n, out.lambda, want, m) == 0)
        err = rel_error(b, want, (size_t)n * m);
    check(err <= 1e-8, what);
    if (rank == 0)
        printf("%s [%s]: relative error %.2e against dposv\n", err <= 1e-8 ? "ok" : "FAIL", what, err);
    s.free(&s);
    free(g);
    free(b);
    free(want);
}

/* Rank 0 says what the retries say; the others keep quiet (the caller's choice, as in a run). */
static void warn_rank0(void *ctx, const char *message) {
    (*(int *)ctx)++;
    if (rank == 0)
        printf("retry message: %s\n", message);
}

/* I + small symmetric coupling with one negative diagonal entry: fails at damp 1e-2 of the mean
 * diagonal (about 0.0098), passes at 10x that. With hopeless set that entry is -1e6: no ridge in
 * the tries rescues it. */
static void make_indefinite(double *g, double *b, int n, int m, int hopeless) {
    unsigned long long seed = 7;
    for (int j = 0; j < n; j++)
        for (int i = j; i < n; i++)
            g[i + j * n] = g[j + i * n] = i == j ? 1 : 0.01 * uniform(&seed);
    g[30 + 30 * n] = hopeless ? -1e6 : -0.05;
    for (int i = 0; i < n * m; i++)
        b[i] = uniform(&seed);
}

/* The ridge retry: the first factorisation fails where LAPACK's does, the second passes and
 * matches the reference at the new ridge; a hopeless system fails after max_tries, b untouched. */
static void retry_case(MPI_Comm comm, int nb) {
    enum { N = 50, M = 3 };
    static double g[N * N], b[N * M], b0[N * M], want[N * M];
    vt_spd_solver s;
    if (vt_spd_solver_mpi(&s, comm, nb)) {
        check(0, vt_error());
        return;
    }
    make_indefinite(g, b, N, M, 0);
    memcpy(want, b, sizeof b);
    double lambda0 = vt_spd_ridge(g, N, 1e-2);
    int info = s.solve(&s, g, N, lambda0, b, M), ref_info = reference(g, N, lambda0, want, M);
    check(info > 0 && info == ref_info && memcmp(b, want, sizeof b) == 0, "indefinite: info as dposv's, b kept");
    int warnings = 0;
    vt_spd_request req = {.name = "layer 0 down_proj", .damp = 1e-2, .warn = warn_rank0, .warn_ctx = &warnings};
    vt_spd_outcome out = {0};
    int rc = vt_spd_solve_ridge(&s, &req, g, N, b, M, &out);
    check(rc == 0 && out.retries == 1 && warnings == 1 && fabs(out.lambda - 10 * lambda0) <= 1e-15,
          "indefinite: one retry at 10x the ridge");
    double err = reference(g, N, out.lambda, want, M) == 0 ? rel_error(b, want, N * M) : INFINITY;
    check(err <= 1e-8, "indefinite: solution after the retry");
    if (rank == 0)
        printf("%s [retry, nb %d]: leading minor %d failed at ridge %.3g; %d retry, error %.2e\n",
               err <= 1e-8 ? "ok" : "FAIL", nb, info, lambda0, out.retries, err);

    make_indefinite(g, b, N, M, 1);
    memcpy(b0, b, sizeof b);
    req.max_tries = 3;
    warnings = 0;
    rc = vt_spd_solve_ridge(&s, &req, g, N, b, M, &out);
    int ok = rc == -1 && warnings == 2 && strstr(vt_error(), "layer 0 down_proj") &&
             strstr(vt_error(), "not positive definite") && memcmp(b, b0, sizeof b) == 0;
    check(ok, "hopeless: fails after 3 tries, b kept");
    if (rank == 0)
        printf("%s [hopeless]: error: %s\n", ok ? "ok" : "FAIL", vt_error());
    vt_error_clear();
    s.free(&s);
}

int main(int argc, char **argv) {
    int ranks;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    /* sizes below the grid, not multiples of the block, a single block, many blocks */
    static const int cases[][4] = {{1, 1, 4, 0},   {3, 2, 4, 1},    {5, 3, 2, 0},    {37, 9, 4, 1},
                                   {64, 20, 8, 0}, {100, 30, 8, 1}, {130, 3, 64, 0}, {203, 41, 16, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        solve_case(MPI_COMM_WORLD, cases[c][0], cases[c][1], cases[c][2], cases[c][3]);
    retry_case(MPI_COMM_WORLD, 8);
    retry_case(MPI_COMM_WORLD, 64);
    /* grids over part of the world, as over the replicas of one pipeline stage: even and odd
     * ranks solve at the same time, each group on its own grid */
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half);
    solve_case(half, 64, 20, 8, 0);
    solve_case(half, 37, 9, 4, 1);
    MPI_Comm_free(&half);
    vt_spd_mpi_finish();
    int total = failures;
    MPI_Allreduce(MPI_IN_PLACE, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_spd_solve on %d rank(s): %s (%d failure(s))\n", ranks, total ? "FAILED" : "passed", total);
    MPI_Finalize();
    return total ? 1 : 0;
}
