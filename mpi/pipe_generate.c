/* pipe_generate.c — `generate` under mpirun: token by token through the pipeline stages, each
 * keeping the key/value cache of its own layers; the last stage chooses the next token. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "checkpoint_config.h"
#include "error.h"
#include "forward.h"
#include "generate_cli.h"
#include "mpi_commands.h"
#include "mpi_errors.h"
#include "pipe_forward.h"
#include "topology.h"

/* World rank 0 loads the tokenizer (it alone prints text), encodes the prompt and caps the
 * steps; the prompt ids and steps go to every rank. Collective; agrees on failure. */
static int prepare_prompt(const vt_generate_options *o, const vt_config *c, vt_tokenizer *tok, int **ids, size_t *n,
                          int *steps) {
    int rank, rc = 0, have_tok = 0;
    char tok_path[4096];
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        rc = vt_generate_tokenizer(o, tok, tok_path, sizeof tok_path);
        have_tok = rc == 0;
        if (rc == 0) rc = vt_generate_prompt(o, tok, tok_path, c, steps, ids, n);
    }
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) {
        if (have_tok) vt_tokenizer_free(tok);
        return -1;
    }
    int counts[2] = {(int)*n, *steps}; /* the prompt is at most `steps` <= seq_len tokens */
    MPI_Bcast(counts, 2, MPI_INT, 0, MPI_COMM_WORLD);
    *n = (size_t)counts[0];
    *steps = counts[1];
    if (rank != 0) {
        *ids = vt_malloc(sizeof(int) * *n, "prompt ids");
        rc = *ids ? 0 : -1;
    }
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) {
        if (have_tok) vt_tokenizer_free(tok);
        free(*ids);
        *ids = NULL;
        return -1;
    }
    MPI_Bcast(*ids, counts[0], MPI_INT, 0, MPI_COMM_WORLD);
    return 0;
}

/* The generation loop. Every replica computes the same tokens (same seed, same positions); only
 * world rank 0 prints. */
static int generate(const vt_topology *t, const vt_model *part, const vt_generate_options *o, const vt_tokenizer *tok,
                    const int *prompt, size_t n_prompt, int steps) {
    const vt_config *c = &part->cfg;
    vt_fwd f;
    float *x = vt_malloc((size_t)c->dim * sizeof(float), "activations");
    float *logits = t->last ? vt_malloc((size_t)c->vocab * sizeof(float), "logits") : NULL;
    float *scratch = t->last ? vt_malloc((size_t)c->vocab * sizeof(float), "sampler") : NULL;
    int rc = x && (!t->last || (logits && scratch)) ? vt_fwd_init(&f, part, 1, 1, steps) : -1;
    if (vt_mpi_agree(rc, MPI_COMM_WORLD)) {
        if (rc == 0) vt_fwd_free(&f);
        free(x);
        free(logits);
        free(scratch);
        return -1;
    }
    int32_t token = prompt[0];
    int pos = 0;
    double t0 = MPI_Wtime();
    while (pos < steps) {
        vt_pipe_step(t, part, &f, &token, x, 1, 1, pos, pos);
        int next = 0;
        if (t->last) {
            vt_head_forward(part, &f, x, 1, logits);
            next = vt_generate_next(o, logits, c->vocab, pos, prompt, n_prompt, scratch);
        }
        MPI_Bcast(&next, 1, MPI_INT, t->stages - 1, t->pipe);
        pos++;
        if (next == VT_TOKEN_BOS) break;
        if (t->world_rank == 0) vt_generate_print(tok, token, next);
        token = next;
    }
    if (t->world_rank == 0) {
        double dt = MPI_Wtime() - t0;
        printf("\n");
        fflush(stdout);
        fprintf(stderr, "generated %d positions in %.2f s (%.1f tokens/s) on %d stages x %d replicas\n", pos, dt,
                dt > 0 ? pos / dt : 0.0, t->stages, t->replicas);
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
    vt_config cfg;
    if (vt_mpi_agree(vt_checkpoint_config(o.model, &cfg), MPI_COMM_WORLD)) return 1;
    vt_topology t;
    vt_tokenizer tok;
    int *prompt = NULL, steps = 0, rc = 1;
    size_t n_prompt = 0;
    if (vt_topology_init(&t, &cfg, o.stages, VT_PARTITION_INFER)) {
        vt_config_free(&cfg);
        return 1;
    }
    if (prepare_prompt(&o, &cfg, &tok, &prompt, &n_prompt, &steps) == 0) {
        vt_model part;
        int loaded = vt_model_load(&part, o.model, vt_topology_parts(&t)) == 0;
        if (!loaded) vt_fail_context("stage %d loading layers %d-%d", t.stage, t.layer_begin, t.layer_end - 1);
        if (vt_mpi_agree(!loaded, MPI_COMM_WORLD) == 0 && generate(&t, &part, &o, &tok, prompt, n_prompt, steps) == 0)
            rc = 0;
        if (loaded) vt_model_free(&part);
        if (rank == 0) vt_tokenizer_free(&tok);
        free(prompt);
    }
    vt_config_free(&cfg);
    vt_topology_free(&t);
    return rc;
}
