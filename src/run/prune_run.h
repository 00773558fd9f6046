/* prune_run.h — one pruning run, in one process or on every rank of a pipeline: load, evaluate,
 * prune by the configured method, evaluate again, write the pruned checkpoint with its report
 * atomically (the command line is cli/prune_cli.h). */
#ifndef VT_PRUNE_RUN_H
#define VT_PRUNE_RUN_H

#include <signal.h>
#include <stddef.h>

#include "dist/comm.h"
#include "run/run_config.h"

/* vt_prune_run_comm's return when a stop was requested (SIGTERM, SIGUSR1): every rank saved the
 * training state into the run directory; resubmit with --resume. Also the process exit code. */
#define VT_EXIT_CHECKPOINTED 75
/* Installs the SIGTERM/SIGUSR1 handlers that ask a run (prune or plug) to save and stop. */
void vt_prune_catch_signals(void);
/* The flag those handlers set. */
volatile sig_atomic_t *vt_prune_stop_flag(void);
/* The run directory of rc's checkpoints: run.dir, else "<output.dir>.run"; a resume reads the one
 * --resume names. sub (NULL: none) is a folder inside it: "recover", "plug-k4". */
int vt_run_ckpt_dir(const vt_run_config *rc, int resuming, const char *sub, char *out, size_t cap);
/* One pruning run on this rank's place in comm (vt_comm_local or a world's layout); every rank
 * calls it. rc must have passed vt_run_config_validate. Progress goes to stderr, the summary to
 * stdout. */
int vt_prune_run_comm(const vt_run_config *rc, vt_comm *comm);

#endif
