/* lapack_solver.c — see lapack_solver.h. */
#include "lapack_solver.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb,
            int *info);

/* (G + ridge I) X = B on copies, X into b only on success (the vt_spd_solver contract). */
static int solve(vt_spd_solver *s, const double *g, size_t n, double ridge, double *b, size_t m) {
    (void)s;
    double *a = vt_malloc(n * n * sizeof(double), "dposv"), *x = vt_malloc(n * m * sizeof(double), "dposv");
    int info = -1, nn = (int)n, mm = (int)m;
    if (a && x) {
        memcpy(a, g, n * n * sizeof(double));
        memcpy(x, b, n * m * sizeof(double));
        for (size_t i = 0; i < n; i++) a[i * n + i] += ridge;
        dposv_("L", &nn, &mm, a, &nn, x, &nn, &info);
        if (info == 0) memcpy(b, x, n * m * sizeof(double));
        if (info < 0) vt_fail("dposv: argument %d is invalid", -info);
    }
    free(a);
    free(x);
    return info;
}

static void release(vt_spd_solver *s) { (void)s; }

vt_spd_solver tu_lapack_solver(void) { return (vt_spd_solver){NULL, solve, release}; }
