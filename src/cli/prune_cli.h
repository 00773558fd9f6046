/* prune_cli.h — the command line of `prune`, shared by the single-process command (cmd_prune.c)
 * and the pipeline under mpirun (mpi/pipe_prune.c). */
#ifndef VT_PRUNE_CLI_H
#define VT_PRUNE_CLI_H

#include "run/run_config.h"

/* --config FILE, --set section.key=value (repeated, applied after the file in their order),
 * --resume RUNDIR, --accept-changed KEY[,KEY...] (repeatable: the lists add up), --print-config,
 * --help; the result is validated. *help set: nothing else was checked. */
int vt_prune_args(int argc, char **argv, vt_run_config *rc, int *print_only, int *help);
void vt_prune_usage(void);

#endif
