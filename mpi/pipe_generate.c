/* pipe_generate.c — `generate` under mpirun: token by token through the pipeline stages, each
 * keeping the key/value cache of its own layers; the last stage chooses the next token. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/error.h"
#include "nn/forward.h"
#include "cli/generate_cli.h"
#include "mpi_commands.h"
#include "mpi_errors.h"
#include "pipe_forward.h"
#include "pipe_open.h"

/* The prompt: world rank 0 alone holds the tokenizer (it alone prints text); every rank holds the
 * prompt ids and the steps. */
typedef struct {
    const vt_generate_options *o;
    vt_tokenizer tok;
    int have_tok;
    int *ids;
    size_t n;
    int steps;
} prompt;

static void prompt_free(prompt *p) {
    if (p->have_tok) vt_tokenizer_free(&p->tok);
    free(p->ids);
}

/* World rank 0 loads the tokenizer, encodes the prompt and caps the steps; the prompt ids and
 * steps go to every rank. Collective; agrees on failure (prompt_free frees what was made).
 * arg: a prompt. */
static int prepare_prompt(const vt_config *c, void *arg) {
    prompt *p = arg;
    int rank, rc = 0;
    char tok_path[4096];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        rc = vt_generate_tokenizer(p->o, &p->tok, tok_path, sizeof tok_path);
        p->have_tok = rc == 0;
        if (rc == 0) rc = vt_generate_prompt(p->o, &p->tok, tok_path, c, &p->steps, &p->ids, &p->n);
    }
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) return -1;
    int counts[2] = {(int)p->n, p->steps}; /* the prompt is at most `steps` <= seq_len tokens */
    MPI_Bcast(counts, 2, MPI_INT, 0, MPI_COMM_WORLD);
    p->n = (size_t)counts[0];
    p->steps = counts[1];
    if (rank != 0) {
        p->ids = vt_malloc(sizeof(int) * p->n, "prompt ids");
        rc = p->ids ? 0 : -1;
    }
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) return -1;
    MPI_Bcast(p->ids, counts[0], MPI_INT, 0, MPI_COMM_WORLD);
    return 0;
}

/* The generation loop. Every replica computes the same tokens (same seed, same positions); only
 * world rank 0 prints. */
static int generate(vt_pipe *pp, const prompt *pr) {
    const vt_config *c = &pp->part.cfg;
    vt_comm *cm = &pp->comm;
    int last = vt_comm_last(cm), steps = pr->steps;
    vt_fwd f;
    float *x = vt_malloc((size_t)c->dim * sizeof(float), "activations");
    float *logits = last ? vt_malloc((size_t)c->vocab * sizeof(float), "logits") : NULL;
    float *scratch = last ? vt_malloc((size_t)c->vocab * sizeof(float), "sampler") : NULL;
    int rc = x && (!last || (logits && scratch)) ? vt_fwd_init(&f, &pp->part, 1, 1, steps) : -1;
    if (vt_comm_agree(cm, rc)) {
        if (rc == 0) vt_fwd_free(&f);
        free(x);
        free(logits);
        free(scratch);
        return -1;
    }
    int32_t token = pr->ids[0];
    int pos = 0;
    double t0 = MPI_Wtime();
    while (pos < steps) {
        vt_pipe_step(cm, &pp->part, &f, &token, x, 1, 1, pos, pos);
        int next = 0;
        if (last) {
            vt_head_forward(&pp->part, &f, x, 1, logits);
            next = vt_generate_next(pr->o, logits, c->vocab, pos, pr->ids, pr->n, scratch);
        }
        MPI_Bcast(&next, 1, MPI_INT, cm->stages - 1, pp->topo.pipe);
        pos++;
        if (next == VT_TOKEN_BOS) break;
        if (cm->world_rank == 0) vt_generate_print(&pr->tok, token, next);
        token = next;
    }
    if (cm->world_rank == 0) {
        double dt = MPI_Wtime() - t0;
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "generated %d positions in %.2f s (%.1f tokens/s) on %d stages x %d replicas\n", pos, dt,
                dt > 0 ? pos / dt : 0.0, cm->stages, cm->replicas);
    }
    vt_fwd_free(&f);
    free(x);
    free(logits);
    free(scratch);
    return 0;
}

int vt_mpi_cmd_generate(int argc, char **argv) {
    vt_generate_options o;
    int help, rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (vt_mpi_agree(vt_generate_options_parse(&o, argc, argv, &help), MPI_COMM_WORLD)) return 1;
    if (help) {
        if (rank == 0) vt_generate_usage();
        return 0;
    }
    prompt pr = {.o = &o};
    vt_pipe p;
    int rc = 1;
    if (vt_pipe_open(&p, o.model, o.stages, "generate", prepare_prompt, &pr) == 0) {
        if (generate(&p, &pr) == 0) rc = 0;
        vt_pipe_close(&p);
    }
    prompt_free(&pr);
    return rc;
}
