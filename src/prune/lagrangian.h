/* lagrangian.h — the budget term of the loss (a CoFi-style Lagrangian on the size) and the
 * target ramp. */
#ifndef VT_LAGRANGIAN_H
#define VT_LAGRANGIAN_H

/* The CoFi-style Lagrangian on the size, s and t as fractions of the dense size. */
typedef struct {
    double lambda1, lambda2;
} vt_lagrangian;

/* Returns lambda1 * (s - t) + lambda2 * (s - t)^2, the term added to the loss. Any output pointer
 * may be NULL. *ds = d/ds = lambda1 + 2 lambda2 (s - t): the gates MINIMISE the loss, so chain
 * *ds (divided by the dense size) into vt_expected_size's scale and descend. *dl1 = s - t and
 * *dl2 = (s - t)^2: the multipliers MAXIMISE it, so the caller ASCENDS: lambda += lr * dl
 * (lambda2 only grows; lambda1 grows while the model is over the target and shrinks under it). */
double vt_budget_term(double s, double t, const vt_lagrangian *lg, double *ds, double *dl1, double *dl2);

/* Target fraction at a step: 1.0 at step 0, linear to target_fraction at warmup_steps, then flat
 * (target_fraction from the start when warmup_steps <= 0). */
double vt_budget_target(double target_fraction, long step, long warmup_steps);

#endif
