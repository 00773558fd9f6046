/* prune_run.h — one pruning run, in one process or on every rank of a pipeline: load, evaluate,
 * prune by the configured method, evaluate again, write the pruned checkpoint with its report
 * atomically (the command line is cli/prune_cli.h). */
#ifndef VT_PRUNE_RUN_H
#define VT_PRUNE_RUN_H

#include "dist/comm.h"
#include "run/run_config.h"

/* rc must have passed vt_run_config_validate. Progress goes to stderr, the summary to stdout. */
int vt_prune_run(const vt_run_config *rc);

/* vt_prune_run's return when a stop was requested (SIGTERM, SIGUSR1): every rank saved the
 * training state into the run directory; resubmit with --resume. Also the process exit code. */
#define VT_EXIT_CHECKPOINTED 75
/* Installs the SIGTERM/SIGUSR1 handlers that ask a run to save and stop. */
void vt_prune_catch_signals(void);
/* The same as one rank of a pipeline (comm from mpi/); every rank calls it. */
int vt_prune_run_comm(const vt_run_config *rc, vt_comm *comm);

#endif
