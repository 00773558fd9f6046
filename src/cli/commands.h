/* commands.h — the subcommands of vtrans-dist as library functions: argv[0] is the command name,
 * options follow; each returns the process exit code. mpi/main.c dispatches to them. eval,
 * generate and prune run on a world of ranks (one process: vt_world_local()); every rank calls
 * them. */
#ifndef VT_COMMANDS_H
#define VT_COMMANDS_H

#include "dist/comm.h"
#include "util/args.h"
#include "util/error.h"

int vt_cmd_inspect(int argc, char **argv);
int vt_cmd_generate(vt_world *w, int argc, char **argv);
int vt_cmd_eval(vt_world *w, int argc, char **argv);
int vt_cmd_convert(int argc, char **argv);
int vt_cmd_tokenize(int argc, char **argv);
int vt_cmd_prune(vt_world *w, int argc, char **argv);
int vt_cmd_plan(int argc, char **argv);
int vt_cmd_plug(vt_world *w, int argc, char **argv);

/* A command on a world failed: vt_cmd_fail, unless the ranks agreed on the failure and its
 * message was printed then (vt_error_reported). Returns the exit code 1. */
static inline int vt_cmd_fail_world(const char *cmd) { return vt_error_reported() ? 1 : vt_cmd_fail(cmd); }

#endif
