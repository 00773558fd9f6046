/* main.c — the vtrans-dist entry point: subcommand dispatch, MPI start-up and shutdown, and the
 * world a command runs on (MPI's over several ranks, else the one process's). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "comm_mpi.h"
#include "spd_solve_mpi.h"
#include "util/error.h"

/* run: a command of one process; run_world: a command on a world of ranks (one or several). */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    int (*run_world)(vt_world *w, int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"prune", NULL, vt_cmd_prune, "prune a model to a size or FLOPs budget (VTrans or a baseline) and write it"},
    {"inspect", vt_cmd_inspect, NULL, "architecture, per-layer sizes, dtype and parameter counts of a checkpoint"},
    {"generate", NULL, vt_cmd_generate, "generate text from a prompt"},
    {"eval", NULL, vt_cmd_eval, "perplexity on a data file (windowed; README.md, Evaluation protocol)"},
    {"convert", vt_cmd_convert, NULL, "write a checkpoint as an HF-style safetensors directory"},
    {"tokenize", vt_cmd_tokenize, NULL, "write the token stream of a data file"},
    {"plug", NULL, vt_cmd_plug, "train Variator plugins that merge prompt positions (docs/PLUGINS.md)"},
    {"plan", vt_cmd_plan, NULL, "size a cluster run: stages x replicas, layers per stage, memory per rank, FLOPs"},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: vtrans-dist COMMAND [options]   (vtrans-dist COMMAND --help for its options)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
}

/* True when started by an MPI launcher (mpirun, srun): only then is MPI initialised, so the
 * single-process commands start instantly on a laptop. */
static int launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK") || getenv("SLURM_STEP_ID");
}

static int mpi_started_late; /* MPI_Init by solver_self, not at start-up */

/* The one-process world's SPD solver (the re-fit's): ScaLAPACK on a 1 x 1 grid, the code the
 * ranks of a cluster run use. MPI starts when the first solver is needed (a singleton process,
 * about 0.5 s), so the commands that need none start instantly. */
static int solver_self(vt_spd_solver *s) {
    int up = 0;
    MPI_Initialized(&up);
    if (!up) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS) return vt_fail("cannot start MPI for the re-fit's solver");
        mpi_started_late = 1;
    }
    return vt_spd_solver_mpi(s, MPI_COMM_SELF, 0);
}

int main(int argc, char **argv) {
    /* `vtrans-dist --config FILE ...` means prune. */
    static char prune_name[] = "prune";
    char **args = NULL;
    if (argc >= 2 && strncmp(argv[1], "--config", 8) == 0) {
        args = malloc(sizeof(char *) * (size_t)(argc + 2));
        if (!args) return 1;
        args[0] = argv[0];
        args[1] = prune_name;
        memcpy(args + 2, argv + 1, sizeof(char *) * (size_t)argc); /* includes the NULL terminator */
        argc++;
        argv = args;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const command *cmd = NULL;
    for (int i = 0; i < n_commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "vtrans-dist: error: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    int use_mpi = launched_by_mpi(), size = 1, rank = 0;
    if (use_mpi) {
        MPI_Init(&argc, &argv);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    }
    vt_local_solver(solver_self);
    int rc;
    if (cmd->run_world) { /* one process (also mpirun -n 1) is the local world */
        rc = cmd->run_world(size > 1 ? vt_world_mpi() : vt_world_local(), argc - 1, argv + 1);
    } else if (size == 1) {
        rc = cmd->run(argc - 1, argv + 1);
    } else {
        if (rank == 0) fprintf(stderr, "vtrans-dist %s: error: runs on one rank (got %d); use -n 1\n", cmd->name, size);
        rc = 1;
    }
    if (use_mpi || mpi_started_late) {
        vt_spd_mpi_finish();
        MPI_Finalize();
    }
    free(args);
    return rc;
}
