/* prune_refit.c — the re-fit over the world (see prune_refit.h). */
#include "run/prune_refit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/forward.h"
#include "util/error.h"

/* The re-fit's sums and solver over this stage's replicas. */
typedef struct {
    vt_refit_ops ops;
    vt_comm *comm;
} dp_ops;

static int sum_dp(vt_refit_ops *o, double *x, size_t n) { return vt_comm_sum_dp_doubles(((dp_ops *)o)->comm, x, n); }

/* Replicas other than the first say nothing about ridge retries (the first says it for all). */
static void quiet(void *ctx, const char *message) { (void)ctx, (void)message; }

/* This replica's share of the n sequences: [*first, *first + *count). */
static void share(const vt_comm *c, int n, int *first, int *count) {
    *first = (int)((long)n * c->replica / c->replicas);
    *count = (int)((long)n * (c->replica + 1) / c->replicas) - *first;
}

/* Both streams at this stage's first layer: embedded on the first stage, else from the stage
 * before (tag 0 the dense stream, tag 1 the pruned one). */
static int streams_in(vt_comm *c, const vt_model *dense, const vt_model *pruned, const int32_t *tokens, size_t rows,
                      float *xd, float *xp) {
    if (vt_comm_first(c)) {
        vt_embed(dense, tokens, (int)rows, xd);
        vt_embed(pruned, tokens, (int)rows, xp);
        return 0;
    }
    if (vt_recv_prev(c, xd, rows * (size_t)dense->cfg.dim, 0)) return -1;
    return vt_recv_prev(c, xp, rows * (size_t)pruned->cfg.dim, 1);
}

static int streams_out(vt_comm *c, const vt_model *dense, const vt_model *pruned, size_t rows, const float *xd,
                       const float *xp) {
    if (vt_comm_last(c)) return 0;
    if (vt_send_next(c, xd, rows * (size_t)dense->cfg.dim, 0)) return -1;
    return vt_send_next(c, xp, rows * (size_t)pruned->cfg.dim, 1);
}

/* The stats of every layer on every rank: each stage's first replica contributes its own layers. */
static int gather_stats(vt_comm *c, int n_layers, vt_refit_stat *stats) {
    size_t n = (size_t)n_layers * VT_REFIT_SLOTS;
    double *v = vt_calloc(5 * n, sizeof(double), "re-fit statistics");
    if (!v) return -1;
    int l0 = c->stage_begin[c->stage], l1 = c->stage_begin[c->stage + 1];
    for (size_t i = (size_t)l0 * VT_REFIT_SLOTS; c->replica == 0 && i < (size_t)l1 * VT_REFIT_SLOTS; i++) {
        double *e = v + 5 * i;
        e[0] = stats[i].err_before, e[1] = stats[i].err_after, e[2] = stats[i].retries, e[3] = stats[i].done;
        e[4] = stats[i].solve_seconds;
    }
    int rc = vt_comm_sum_world(c, v, 5 * n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const double *e = v + 5 * i;
        stats[i] = (vt_refit_stat){e[0], e[1], (int)e[2], (int)e[3], e[4]};
    }
    free(v);
    return rc;
}

/* This rank's streams through its layers, with the solver of its replicas. */
static int refit_stage(vt_comm *c, const vt_model *dense, vt_model *pruned, const vt_slice_map *map,
                       const int32_t *tokens, int n_seq, int T, const vt_reconstruct_spec *spec,
                       vt_refit_stat *stats) {
    size_t rows = (size_t)n_seq * T;
    float *xd = vt_malloc(rows * (size_t)dense->cfg.dim * sizeof(float), "re-fit streams");
    float *xp = vt_malloc(rows * (size_t)pruned->cfg.dim * sizeof(float), "re-fit streams");
    vt_spd_solver solver = {0};
    int rc = xd && xp ? 0 : -1;
    if (vt_comm_agree(c, rc)) goto done;
    if (!c->dp_solver) rc = vt_fail("re-fit: this transport provides no SPD solver");
    else rc = c->dp_solver(c, &solver); /* collective over the replicas */
    if (vt_comm_agree(c, rc)) goto done;
    vt_refit_stat head = {0};
    dp_ops ops = {{.sum = sum_dp, .solver = &solver, .warn = c->replica == 0 ? NULL : quiet, .head = &head}, c};
    rc = streams_in(c, dense, pruned, tokens, rows, xd, xp);
    if (rc == 0)
        rc = vt_refit_layers(dense, pruned, map, xd, xp, n_seq, T, c->stage_begin[c->stage],
                             c->stage_begin[c->stage + 1], &spec->fit, &ops.ops, stats);
    if (rc == 0) rc = streams_out(c, dense, pruned, rows, xd, xp);
    if (rc == 0 && head.done && c->replica == 0) /* the last stage's: it holds the head */
        fprintf(stderr, "re-fit final_norm: relative error of the centred logits %.4f -> %.4f\n", head.err_before,
                head.err_after);
    if (rc) vt_comm_abort_all(c, "re-fitting"); /* peers may wait on this rank's streams or sums */
    solver.free(&solver);
done:
    free(xd);
    free(xp);
    return rc;
}

int vt_prune_refit_sequences(const vt_calib *calib, const vt_reconstruct_spec *spec, vt_calib *view) {
    *view = *calib;
    if (spec->seq_len <= 0 || spec->seq_len == calib->seq_len) return 0;
    if (spec->seq_len < 2) return vt_fail("reconstruct.seq_len must be 0 or at least 2, got %d", spec->seq_len);
    size_t n = calib->n_seq * (size_t)calib->seq_len; /* the calibration tokens data.* selected */
    if (n < (size_t)spec->seq_len)
        return vt_fail("reconstruct.seq_len = %d: the calibration data has %zu tokens, not one sequence", spec->seq_len,
                       n);
    return vt_calib_init(view, calib->tokens, n, 1.0, spec->seq_len, 0);
}

int vt_prune_refit(vt_comm *c, const vt_model *dense, vt_model *pruned, const vt_slice_map *map, const vt_calib *calib,
                   const vt_reconstruct_spec *spec, vt_refit_stat *stats) {
    int n = spec->sequences < (long)calib->n_seq ? spec->sequences : (int)calib->n_seq, first, count;
    share(c, n, &first, &count);
    if (vt_comm_agree(c, count > 0 ? 0 : vt_fail("reconstruct.sequences: %d calibration sequences for %d replicas; "
                                                 "each replica needs one at least", n, c->replicas)))
        return -1;
    if (vt_comm_agree(c, refit_stage(c, dense, pruned, map, vt_calib_seq(calib, first), count, calib->seq_len, spec,
                                     stats)))
        return -1;
    return gather_stats(c, dense->cfg.n_layers, stats);
}
