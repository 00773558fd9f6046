/* budget.h — the three parts of pruning to a budget, for callers that use them together: size
 * accounting (size.h), the Lagrangian and target ramp (lagrangian.h), the keep decision
 * (keep_decide.h). */
#ifndef VT_BUDGET_H
#define VT_BUDGET_H

#include "prune/keep_decide.h"
#include "prune/lagrangian.h"
#include "prune/size.h"

#endif
