/* lagrangian.c — the budget term of the loss and its multipliers, the target ramp (see lagrangian.h). */
#include "prune/lagrangian.h"

double vt_budget_term(double s, double t, const vt_lagrangian *lg, double *ds, double *dl1, double *dl2) {
    double d = s - t;
    if (ds) *ds = lg->lambda1 + 2.0 * lg->lambda2 * d;
    if (dl1) *dl1 = d;
    if (dl2) *dl2 = d * d;
    return lg->lambda1 * d + lg->lambda2 * d * d;
}

double vt_budget_target(double target_fraction, long step, long warmup_steps) {
    if (warmup_steps <= 0 || step >= warmup_steps) return target_fraction;
    if (step <= 0) return 1.0;
    return 1.0 + (target_fraction - 1.0) * (double)step / (double)warmup_steps;
}

