/* spd_solve.h — the re-fit's ridge systems (G + lambda I) X = B (DESIGN.md 1.3): a solver as a
 * small vtable, so src/ stays free of MPI (mpi/spd_solve_mpi.c solves with ScaLAPACK on a BLACS
 * grid), and the ridge policy around it: lambda relative to G's mean diagonal, 10x after a failed
 * factorisation, a bounded number of tries. */
#ifndef VT_SPD_SOLVE_H
#define VT_SPD_SOLVE_H

#include <stddef.h>

/* Factorisations tried by default before vt_spd_solve_ridge gives up (ridge x10 each time). */
#define VT_SPD_MAX_TRIES 4

/* Layouts: column-major. G is n x n symmetric and only its lower triangle is read (g[i + j n],
 * i >= j), so a full or a lower-only G serves. B is n x m (b[i + j n], m right-hand sides). For the
 * re-fit W'^T = (G + lambda I)^-1 C^T, C (d_out x n, row-major) is C^T column-major as it lies,
 * and the solution X = W'^T comes back as W' row-major: pass C as b, get W' in its place.
 * G and B are the sums over every rank that shares the system: the caller sums them. */
typedef struct vt_spd_solver vt_spd_solver;
struct vt_spd_solver {
    void *impl;
    /* Solves (G + ridge I) X = B, ridge absolute. Every rank sharing the solver calls it with the
     * same arguments and gets the same status: 0 with X in b (on every rank); k > 0 when the
     * leading minor of order k is not positive definite, b left as it was; -1 on an error (set
     * with vt_fail), b left as it was. g is never changed. */
    int (*solve)(vt_spd_solver *s, const double *g, size_t n, double ridge, double *b, size_t m);
    /* Releases impl (every rank sharing the solver calls it). */
    void (*free)(vt_spd_solver *s);
};

/* What to solve and how to report a retry. */
typedef struct {
    const char *name; /* the system, in messages (e.g. "layer 3 down_proj") */
    double damp;      /* relative ridge: lambda = damp * mean(diag G), or damp when that mean is 0 */
    int max_tries;    /* factorisations tried (<= 0: VT_SPD_MAX_TRIES) */
    /* Called with a message naming the system and the new ridge before each retry (NULL: the
     * message goes to stderr). A caller on many ranks passes a quiet callback on all but one. */
    void (*warn)(void *ctx, const char *message);
    void *warn_ctx;
} vt_spd_request;

/* What the solve took. */
typedef struct {
    double lambda; /* the absolute ridge of the successful solve */
    int retries;   /* failed factorisations before it */
} vt_spd_outcome;

/* Solves (G + lambda I) X = B in place of b with s, lambda as r says; on a failed factorisation
 * retries with 10x the ridge, at most r->max_tries factorisations in all, then fails naming the
 * system, the order of the failing minor and the last ridge. A diagonal of G that is not finite
 * fails at once. Returns 0 or -1 (vt_fail); out may be NULL. */
int vt_spd_solve_ridge(vt_spd_solver *s, const vt_spd_request *r, const double *g, size_t n, double *b, size_t m,
                       vt_spd_outcome *out);

/* lambda for damp: damp * mean(diag G), or damp when the diagonal sums to 0 or less (no input
 * ever fired: any positive ridge then gives the solution X = B / lambda); NaN when the diagonal is
 * not finite. */
double vt_spd_ridge(const double *g, size_t n, double damp);

#endif
