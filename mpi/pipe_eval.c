/* pipe_eval.c — `eval` under mpirun: perplexity with the model split into pipeline stages, each
 * rank loading only its own tensors, windows shared among data-parallel replicas. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"
#include "cli/eval_cli.h"
#include "mpi_commands.h"
#include "mpi_errors.h"
#include "pipe_forward.h"
#include "pipe_open.h"

typedef struct {
    const vt_eval_options *o;
    vt_tokens ids;
} eval_input;

/* World rank 0 reads and tokenizes the data once; the ids go to every rank (stage 0 embeds them,
 * the last stage scores against them). Collective; agrees on failure. arg: an eval_input. */
static int read_and_share_tokens(const vt_config *c, void *arg) {
    (void)c;
    eval_input *in = arg;
    vt_tokens *ids = &in->ids;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int rc = rank == 0 ? vt_eval_read_tokens(in->o, ids) : 0;
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
    eval_input in = {&o, {0}};
    vt_pipe p;
    int rc = 1;
    if (vt_pipe_open(&p, o.model, o.stages, "eval", read_and_share_tokens, &in) == 0) {
        vt_eval_result r;
        vt_eval_progress progress;
        vt_eval_progress_start(&progress);
        if (vt_pipe_eval(&p.comm, &p.part, in.ids.ids, in.ids.n, o.window, o.batch, &r, vt_eval_progress_report,
                         &progress) == 0) {
            if (rank == 0) vt_eval_print(&o, &r);
            rc = 0;
        }
        vt_pipe_close(&p);
    }
    vt_tokens_free(&in.ids);
    return rc;
}
