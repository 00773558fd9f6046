/* spd_solve.c — the ridge policy of the re-fit's SPD solves: relative lambda, 10x retries. */
#include "dist/spd_solve.h"

#include <math.h>
#include <stdio.h>

#include "util/error.h"

double vt_spd_ridge(const double *g, size_t n, double damp) {
    double trace = 0;
    for (size_t i = 0; i < n; i++)
        trace += g[i + i * n];
    if (!isfinite(trace))
        return NAN; /* vt_spd_solve_ridge refuses it */
    return trace > 0 ? damp * (trace / (double)n) : damp;
}

static void warn_stderr(void *ctx, const char *message) {
    (void)ctx;
    fprintf(stderr, "%s\n", message);
}

int vt_spd_solve_ridge(vt_spd_solver *s, const vt_spd_request *r, const double *g, size_t n, double *b, size_t m,
                       vt_spd_outcome *out) {
    const char *name = r->name ? r->name : "SPD system";
    if (!(r->damp > 0) || !isfinite(r->damp))
        return vt_fail("%s: ridge damp %g must be a positive number", name, r->damp);
    double lambda = vt_spd_ridge(g, n, r->damp);
    if (!isfinite(lambda))
        return vt_fail("%s: the diagonal of G (%zu x %zu) is not finite", name, n, n);
    int tries = r->max_tries > 0 ? r->max_tries : VT_SPD_MAX_TRIES;
    for (int t = 0; t < tries; t++) {
        int info = s->solve(s, g, n, lambda, b, m);
        if (info < 0)
            return vt_fail_context("%s (n %zu, %zu right-hand sides, ridge %.3g): ", name, n, m, lambda);
        if (info == 0) {
            if (out)
                *out = (vt_spd_outcome){.lambda = lambda, .retries = t};
            return 0;
        }
        if (t + 1 == tries)
            return vt_fail("%s: G + lambda I (n %zu) is not positive definite (leading minor %d) after %d "
                           "factorisations, the ridge 10x after each, the last %.3g",
                           name, n, info, tries, lambda);
        char msg[256];
        snprintf(msg, sizeof msg,
                 "%s: factorisation failed (leading minor %d of %zu not positive definite) at ridge %.3g; "
                 "retrying with ridge %.3g (try %d of %d)",
                 name, info, n, lambda, 10 * lambda, t + 2, tries);
        (r->warn ? r->warn : warn_stderr)(r->warn_ctx, msg);
        lambda *= 10;
    }
    return -1; /* not reached: the last try returns */
}
