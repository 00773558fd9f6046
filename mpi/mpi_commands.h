/* mpi_commands.h — the subcommands that run on a world of several ranks (mpi/main.c dispatches to
 * them when MPI started more than one): argv as for the single-process commands in commands.h. */
#ifndef VT_MPI_COMMANDS_H
#define VT_MPI_COMMANDS_H

int vt_mpi_cmd_eval(int argc, char **argv);
int vt_mpi_cmd_generate(int argc, char **argv);
int vt_mpi_cmd_prune(int argc, char **argv);

#endif
