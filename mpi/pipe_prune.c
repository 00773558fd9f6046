/* pipe_prune.c — `prune` on a world of ranks: topology (stages x replicas), the training
 * communicator, then the same driver as one process (src/prune_run.c) on this rank's part. */
#include <stdio.h>

#include "util/error.h"
#include "mpi_commands.h"
#include "mpi_errors.h"
#include "pipe_open.h"
#include "cli/prune_cli.h"
#include "run/prune_run.h"
#include "run/run_config.h"

int vt_mpi_cmd_prune(int argc, char **argv) {
    vt_run_config rc;
    int print_only, help, rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    /* Every rank reads the same files; the configuration is refused everywhere or nowhere. */
    int status = vt_prune_args(argc, argv, &rc, &print_only, &help);
    if (vt_mpi_agree(status, MPI_COMM_WORLD)) return 1;
    if (help || print_only) {
        if (rank == 0) {
            if (help) vt_prune_usage();
            else vt_run_config_print(&rc, stdout);
        }
        return 0;
    }
    vt_pipe p; /* the architecture and the split only: each rank opens just its own shards later */
    if (vt_pipe_layout(&p, rc.model.path, rc.pipeline.stages, VT_PARTITION_TRAIN, "prune"))
        return 1; /* refused and reported by every rank together */
    vt_prune_catch_signals();
    status = vt_prune_run_comm(&rc, &p.comm);
    /* A failure the ranks agreed on was printed then, once; one a rank found alone it prints. */
    if (status && status != VT_EXIT_CHECKPOINTED && !vt_error_reported())
        fprintf(stderr, "vtrans-dist prune: rank %d: error: %s\n", rank, vt_error());
    vt_pipe_close(&p);
    return status == VT_EXIT_CHECKPOINTED ? status : status ? 1 : 0;
}
