/* pipeline.c — a model over a world's stages x replicas (see pipeline.h): layout and loading
 * agreed on by every rank, activations between stages through the vt_comm transport, perplexity
 * over micro-batches and replicas. */
#include "dist/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint_config.h"
#include "util/error.h"

/* World rank 0 prints how the model was split (over several ranks only). */
static void print_layout(const vt_world *w, const vt_comm *c, const char *command) {
    if (w->size == 1 || w->rank != 0) return;
    fprintf(stderr, "%s: %d ranks = %d stages x %d replicas; layers", command, w->size, c->stages, c->replicas);
    for (int s = 0; s < c->stages; s++)
        fprintf(stderr, "%s %d-%d", s ? "," : "", c->stage_begin[s], c->stage_begin[s + 1] - 1);
    fprintf(stderr, "\n");
}

int vt_pipeline_layout(vt_pipeline *p, vt_world *w, const char *path, int stages, vt_partition_use use,
                       const char *command) {
    memset(p, 0, sizeof *p);
    p->world = w;
    if (w->size == 1 && stages > 1) {
        vt_fail("--stages %d needs a multiple of %d ranks (mpirun -n %d or more); this is one process", stages, stages,
                stages);
        return -1;
    }
    int rc = vt_checkpoint_config(path, &p->cfg);
    p->have_cfg = rc == 0;
    if (vt_comm_agree(w->comm, rc)) {
        vt_pipeline_close(p);
        return -1;
    }
    /* The verdict depends only on (P, config, request), so every rank reaches the same one; the
     * agreement also covers a rank that ran out of memory, before the collective layout. */
    int S = 0, D = 0, *begin = NULL;
    rc = vt_topology_choose(w->size, p->cfg.n_layers, stages, &S, &D);
    if (rc == 0) {
        begin = vt_malloc(sizeof(int) * (size_t)(S + 1), "stage boundaries");
        rc = begin ? vt_partition_layers(&p->cfg, S, use, begin) : -1;
    }
    if (vt_comm_agree(w->comm, rc) == 0) p->comm = w->layout(w, S, begin);
    free(begin);
    if (!p->comm) {
        vt_pipeline_close(p);
        return -1;
    }
    print_layout(w, p->comm, command);
    return 0;
}

int vt_pipeline_load(vt_pipeline *p, const char *path) {
    vt_comm *c = p->comm;
    int l0 = c->stage_begin[c->stage], l1 = c->stage_begin[c->stage + 1];
    vt_load_parts parts = {l0, l1, vt_comm_first(c), vt_comm_last(c)};
    int rc = vt_model_load(&p->part, path, parts);
    p->have_part = rc == 0;
    if (rc && p->world->size > 1) vt_fail_context("stage %d loading layers %d-%d", c->stage, l0, l1 - 1);
    return vt_comm_agree(c, rc);
}

void vt_pipeline_close(vt_pipeline *p) {
    if (p->have_part) vt_model_free(&p->part);
    if (p->comm) p->world->layout_free(p->world, p->comm);
    if (p->have_cfg) vt_config_free(&p->cfg);
    p->have_part = p->have_cfg = 0;
    p->comm = NULL;
}

int vt_pipeline_step(vt_comm *c, const vt_model *part, vt_fwd *f, const int32_t *tokens, float *x, int B, int T,
                     int pos0, int tag) {
    size_t count = (size_t)B * (size_t)T * (size_t)part->cfg.dim;
    if (vt_comm_fault(c, "forward")) goto fail;
    if (vt_comm_first(c)) vt_embed(part, tokens, B * T, x);
    else if (vt_recv_prev(c, x, count, tag)) goto fail;
    vt_layers_forward(part, f, c->stage_begin[c->stage], c->stage_begin[c->stage + 1], x, B, T, pos0);
    if (!vt_comm_last(c) && vt_send_next(c, x, count, tag)) goto fail;
    return 0;
fail:
    vt_comm_abort_all(c, "pipeline forward"); /* the other stages wait on this one */
    return -1;
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

/* Chooses the micro-batch size: the requested one, or the default (vt_eval_default_batch) made
 * small enough that a replica's block gives every stage about two micro-batches to overlap; never
 * more than the block's full windows (no micro-batch holds more, so larger buffers would idle). */
static int choose_batch(const vt_config *c, int requested, const eval_plan *p, int stages) {
    size_t here = p->w1 - p->w0, end_full = p->w1 < p->full ? p->w1 : p->full;
    size_t full_here = end_full > p->w0 ? end_full - p->w0 : 0;
    int b = requested > 0 ? requested : vt_eval_default_batch(c, p->window);
    if (requested <= 0 && stages > 1) {
        size_t want = (here + 2 * (size_t)stages - 1) / (2 * (size_t)stages);
        if (want >= 1 && want < (size_t)b) b = (int)want;
    }
    if (full_here > 0 && (size_t)b > full_here) b = (int)full_here;
    return b;
}

/* The buffers of one replica's evaluation: the forward state, activations, and logits on the
 * last stage. */
typedef struct {
    vt_fwd f;
    float *x, *logits;
} eval_buffers;

static void buffers_free(eval_buffers *b) {
    vt_fwd_free(&b->f); /* safe after a failed vt_fwd_init too */
    free(b->x);
    free(b->logits);
}

static int buffers_init(eval_buffers *b, const vt_model *part, int batch, int window, int last) {
    memset(b, 0, sizeof *b);
    size_t rows = (size_t)batch * window;
    if (vt_fwd_init(&b->f, part, batch, window, window)) return -1;
    b->x = vt_malloc(rows * part->cfg.dim * sizeof(float), "activations");
    if (last) b->logits = vt_malloc(rows * part->cfg.vocab * sizeof(float), "logits");
    return b->x && (!last || b->logits) ? 0 : -1;
}

int vt_pipeline_eval(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, int batch,
                     vt_eval_result *out, void (*progress)(size_t, size_t, void *), void *arg) {
    memset(out, 0, sizeof *out);
    const vt_config *cfg = &part->cfg;
    int rc = vt_eval_check(cfg, ids, n, window), last = vt_comm_last(c);
    if (rc == 0 && vt_comm_fault(c, "eval")) rc = -1;
    if (vt_comm_agree(c, rc)) return -1;

    size_t total = vt_eval_windows(n, window), D = (size_t)c->replicas, d = (size_t)c->replica;
    eval_plan p = {total * d / D, total * (d + 1) / D, n / (size_t)window, window, 1, (int)(n % (size_t)window)};
    p.batch = choose_batch(cfg, batch, &p, c->stages);
    eval_buffers b;
    if (vt_comm_agree(c, buffers_init(&b, part, p.batch, window, last))) {
        buffers_free(&b);
        return -1;
    }

    rc = c->barrier(c, VT_WORLD);
    double t0 = vt_comm_seconds(c);
    vt_eval_result local = {0};
    int M = plan_count(&p);
    size_t mine = p.w1 - p.w0;
    for (int m = 0; m < M && rc == 0; m++) {
        size_t w;
        int B, T;
        plan_get(&p, m, &w, &B, &T);
        const int32_t *tokens = ids + w * (size_t)window;
        rc = vt_pipeline_step(c, part, &b.f, tokens, b.x, B, T, 0, m);
        if (rc == 0 && last) {
            vt_head_forward(part, &b.f, b.x, B * T, b.logits);
            vt_eval_score(cfg, b.logits, tokens, B, T, &local);
        }
        if (progress && c->world_rank == 0 && mine) progress((w + (size_t)B - p.w0) * total / mine, total, arg);
    }

    /* The last stage of each replica holds its block's sums (the other stages zeros): adding them
     * over the world gives every rank the same result. */
    double sums[4] = {local.nll_sum, (double)local.tokens, (double)local.windows, local.flops};
    if (rc == 0) rc = vt_comm_sum_world(c, sums, 4);
    out->nll_sum = sums[0];
    out->tokens = (size_t)sums[1];
    out->windows = (size_t)sums[2];
    out->flops = sums[3];
    out->ppl = exp(out->nll_sum / (double)out->tokens);
    out->seconds = vt_comm_seconds(c) - t0;
    buffers_free(&b);
    return rc;
}
