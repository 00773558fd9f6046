/* commands.h — the subcommands of vtrans-dist as library functions: argv[0] is the command name,
 * options follow; each returns the process exit code. mpi/main.c dispatches to them. */
#ifndef VT_COMMANDS_H
#define VT_COMMANDS_H

int vt_cmd_inspect(int argc, char **argv);
int vt_cmd_generate(int argc, char **argv);
int vt_cmd_eval(int argc, char **argv);
int vt_cmd_convert(int argc, char **argv);
int vt_cmd_tokenize(int argc, char **argv);
int vt_cmd_prune(int argc, char **argv);
int vt_cmd_plan(int argc, char **argv);

#endif
