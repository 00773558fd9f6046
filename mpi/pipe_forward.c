/* pipe_forward.c — the forward pipeline for inference: activations between stages through the
 * vt_comm transport, perplexity over micro-batches and replicas. */
#include "pipe_forward.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "mpi_errors.h"

void vt_pipe_step(vt_comm *c, const vt_model *part, vt_fwd *f, const int32_t *tokens, float *x, int B, int T, int pos0,
                  int tag) {
    size_t count = (size_t)B * (size_t)T * (size_t)part->cfg.dim;
    if (vt_mpi_fault("forward")) vt_mpi_die("pipeline forward");
    if (vt_comm_first(c)) vt_embed(part, tokens, B * T, x);
    else if (vt_recv_prev(c, x, count, tag)) vt_mpi_die("pipeline forward");
    vt_layers_forward(part, f, c->stage_begin[c->stage], c->stage_begin[c->stage + 1], x, B, T, pos0);
    if (!vt_comm_last(c) && vt_send_next(c, x, count, tag)) vt_mpi_die("pipeline forward");
}

/* The micro-batches of one replica: its windows [w0, w1) of the stream's `total`, the full ones
 * `batch` at a time, then the last shorter window alone if it falls in this block. */
typedef struct {
    size_t w0, w1, full; /* full: windows of `window` tokens in the whole stream */
    int window, batch, rest;
} eval_plan;

static int plan_count(const eval_plan *p) {
    size_t end_full = p->w1 < p->full ? p->w1 : p->full;
    size_t nfull = end_full > p->w0 ? end_full - p->w0 : 0;
    return (int)((nfull + (size_t)p->batch - 1) / (size_t)p->batch) + (p->w1 > p->full);
}

/* Micro-batch m: its first window, B windows of T tokens. */
static void plan_get(const eval_plan *p, int m, size_t *w, int *B, int *T) {
    size_t end_full = p->w1 < p->full ? p->w1 : p->full;
    *w = p->w0 + (size_t)m * p->batch;
    if (*w < end_full) {
        *B = (int)(end_full - *w < (size_t)p->batch ? end_full - *w : (size_t)p->batch);
        *T = p->window;
    } else { /* the short last window of the stream */
        *w = p->full;
        *B = 1;
        *T = p->rest;
    }
}

/* Chooses the micro-batch size: the requested one, or the single-process default made small
 * enough that a replica's block gives every stage about two micro-batches to overlap. */
static int choose_batch(const vt_config *c, int requested, size_t windows_here, int stages, int window) {
    int b = requested > 0 ? requested : vt_eval_default_batch(c, window);
    if (requested <= 0 && stages > 1) {
        size_t want = (windows_here + 2 * (size_t)stages - 1) / (2 * (size_t)stages);
        if (want >= 1 && want < (size_t)b) b = (int)want;
    }
    return b;
}

int vt_pipe_eval(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, int batch,
                 vt_eval_result *out, void (*progress)(size_t, size_t, void *), void *arg) {
    memset(out, 0, sizeof *out);
    const vt_config *cfg = &part->cfg;
    int rc = vt_eval_check(cfg, ids, n, window), last = vt_comm_last(c);
    if (rc == 0 && vt_mpi_fault("eval")) rc = -1;
    if (vt_comm_agree(c, rc)) return -1;

    size_t total = vt_eval_windows(n, window), D = (size_t)c->replicas, d = (size_t)c->replica;
    eval_plan p = {total * d / D, total * (d + 1) / D, n / (size_t)window, window, 1, (int)(n % (size_t)window)};
    p.batch = choose_batch(cfg, batch, p.w1 - p.w0, c->stages, window);
    size_t rows = (size_t)p.batch * window;
    vt_fwd f;
    float *x = NULL, *logits = NULL;
    rc = vt_fwd_init(&f, part, p.batch, window, window);
    if (rc == 0) {
        x = vt_malloc(rows * cfg->dim * sizeof(float), "activations");
        if (last) logits = vt_malloc(rows * cfg->vocab * sizeof(float), "logits");
        if (!x || (last && !logits)) rc = -1;
    }
    if (vt_comm_agree(c, rc)) {
        vt_fwd_free(&f); /* safe after a failed vt_fwd_init too */
        free(x);
        free(logits);
        return -1;
    }

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    vt_eval_result local = {0};
    int M = plan_count(&p);
    size_t mine = p.w1 - p.w0;
    for (int m = 0; m < M; m++) {
        size_t w;
        int B, T;
        plan_get(&p, m, &w, &B, &T);
        const int32_t *tokens = ids + w * (size_t)window;
        vt_pipe_step(c, part, &f, tokens, x, B, T, 0, m);
        if (last) {
            vt_head_forward(part, &f, x, B * T, logits);
            vt_eval_score(cfg, logits, tokens, B, T, &local);
        }
        if (progress && c->world_rank == 0 && mine)
            progress((w + (size_t)B - p.w0) * total / mine, total, arg);
    }

    /* The last stage of each replica holds its block's sums (the other stages zeros): adding them
     * over the world gives every rank the same result. */
    double sums[4] = {local.nll_sum, (double)local.tokens, (double)local.windows, local.flops};
    rc = c->sum_world(c, sums, 4);
    out->nll_sum = sums[0];
    out->tokens = (size_t)sums[1];
    out->windows = (size_t)sums[2];
    out->flops = sums[3];
    out->ppl = exp(out->nll_sum / (double)out->tokens);
    out->seconds = MPI_Wtime() - t0;

    vt_fwd_free(&f);
    free(x);
    free(logits);
    return rc;
}
