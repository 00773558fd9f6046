/* pipe_eval.c — `eval` under mpirun: perplexity with the model split into pipeline stages, each
 * rank loading only its own tensors, windows shared among data-parallel replicas. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint_config.h"
#include "error.h"
#include "eval_cli.h"
#include "mpi_commands.h"
#include "mpi_errors.h"
#include "pipe_forward.h"
#include "topology.h"

/* World rank 0 reads and tokenizes the data once; the ids go to every rank (stage 0 embeds them,
 * the last stage scores against them). Collective; agrees on failure. */
static int read_and_share_tokens(const vt_eval_options *o, vt_tokens *ids) {
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = rank == 0 ? vt_eval_read_tokens(o, ids) : 0;
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) return -1;
    uint64_t n = ids->n;
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (rank != 0) {
        ids->n = ids->cap = (size_t)n;
        ids->ids = vt_malloc((size_t)n * sizeof(int32_t), "token ids");
        rc = ids->ids ? 0 : -1;
    }
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) return -1;
    for (size_t at = 0; at < n; at += INT_MAX) {
        int count = n - at < INT_MAX ? (int)(n - at) : INT_MAX;
        MPI_Bcast(ids->ids + at, count, MPI_INT32_T, 0, MPI_COMM_WORLD);
    }
    return 0;
}

int vt_mpi_cmd_eval(int argc, char **argv) {
    vt_eval_options o;
    int help, rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (vt_mpi_agree(vt_eval_options_parse(&o, argc, argv, &help), MPI_COMM_WORLD)) return 1;
    if (help) {
        if (rank == 0) vt_eval_usage();
        return 0;
    }
    vt_config cfg;
    if (vt_mpi_agree(vt_checkpoint_config(o.model, &cfg), MPI_COMM_WORLD)) return 1;
    vt_topology t;
    int rc = vt_topology_init(&t, &cfg, o.stages, VT_PARTITION_INFER);
    vt_config_free(&cfg);
    if (rc) return 1;
    vt_topology_print(&t, "eval");
    vt_tokens ids = {0};
    vt_model part;
    vt_eval_result r;
    vt_eval_progress progress;
    rc = 1;
    if (read_and_share_tokens(&o, &ids) == 0) {
        int loaded = vt_model_load(&part, o.model, vt_topology_parts(&t)) == 0;
        if (!loaded) vt_fail_context("stage %d loading layers %d-%d", t.stage, t.layer_begin, t.layer_end - 1);
        if (vt_mpi_agree(!loaded, MPI_COMM_WORLD) == 0) {
            vt_eval_progress_start(&progress);
            if (vt_pipe_eval(&t, &part, ids.ids, ids.n, o.window, o.batch, &r, vt_eval_progress_report, &progress) == 0) {
                if (rank == 0) vt_eval_print(&o, &r);
                rc = 0;
            }
        }
        if (loaded) vt_model_free(&part);
    }
    vt_tokens_free(&ids);
    vt_topology_free(&t);
    return rc;
}
