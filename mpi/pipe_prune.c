/* pipe_prune.c — `prune` on a world of ranks: topology (stages x replicas), the training
 * communicator, then the same driver as one process (src/prune_run.c) on this rank's part. */
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint_config.h"
#include "comm_mpi.h"
#include "error.h"
#include "mpi_commands.h"
#include "mpi_errors.h"
#include "pipe_forward.h"
#include "prune_run.h"
#include "run_config.h"
#include "topology.h"

static const vt_topology *the_topology; /* for the evaluation callback */

static int eval_pipe(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, vt_eval_result *out) {
    (void)c;
    return vt_pipe_eval(the_topology, part, ids, n, window, 0, out, NULL, NULL);
}

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
    vt_config cfg; /* the architecture only: each rank opens just its own shards later */
    status = vt_checkpoint_config(rc.model_path, &cfg);
    if (vt_mpi_agree(status, MPI_COMM_WORLD)) return 1;
    vt_topology topo;
    status = vt_topology_init(&topo, &cfg, rc.parallel_stages, VT_PARTITION_TRAIN);
    vt_config_free(&cfg);
    if (status) return 1; /* refused and reported by every rank together */
    vt_topology_print(&topo, "prune");
    the_topology = &topo;
    vt_comm *comm = vt_comm_mpi_create(MPI_COMM_WORLD, topo.pipe, topo.dp, topo.stage, topo.stages, topo.replica,
                                       topo.replicas, topo.stage_begin, eval_pipe);
    vt_prune_catch_signals();
    status = vt_mpi_agree(comm ? 0 : -1, MPI_COMM_WORLD); /* no rank runs on while another has no communicator */
    if (status == 0) status = vt_prune_run_comm(&rc, comm);
    /* A failure the ranks agreed on was printed then, once; one a rank found alone it prints. */
    if (status && status != VT_EXIT_CHECKPOINTED && !vt_error_reported())
        fprintf(stderr, "vtrans-dist prune: rank %d: error: %s\n", rank, vt_error());
    vt_comm_mpi_free(comm);
    vt_topology_free(&topo);
    return status == VT_EXIT_CHECKPOINTED ? status : status ? 1 : 0;
}
