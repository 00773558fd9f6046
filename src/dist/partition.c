/* partition.c — layer partition by FLOPs, the stages x replicas topology, micro-batch counts. */
#include "dist/partition.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

double vt_partition_layer_cost(const vt_config *c, int l) {
    return vt_layer_flops(c, l, (c->seq_len + 1) / 2.0);
}

double vt_partition_embed_cost(const vt_config *c) { return c->dim; }

double vt_partition_head_cost(const vt_config *c) { return 2.0 * c->dim * (double)c->vocab + 4.0 * c->dim; }

static double ends_cost(const vt_config *c, int S, vt_partition_use use, int s) {
    double cost = s == 0 ? vt_partition_embed_cost(c) : 0.0;
    if (use == VT_PARTITION_TRAIN) return cost + vt_partition_head_cost(c) / S;
    return cost + (s == S - 1 ? vt_partition_head_cost(c) : 0.0);
}

double vt_partition_stage_cost(const vt_config *c, int stages, vt_partition_use use, int s, int l0, int l1) {
    double cost = 0.0;
    for (int l = l0; l < l1; l++) cost += vt_partition_layer_cost(c, l);
    return cost + ends_cost(c, stages, use, s);
}

/* Best splits of the first j layers into k stages: value[k][j] and the start of stage k-1 in
 * from[k][j]. minimise_max: the value is the largest stage cost; otherwise the sum of squared
 * stage costs over splits whose every stage costs at most cap. */
typedef struct {
    int L, S;
    vt_partition_use use;
    double *value;
    int *from;
} dp_table;

static double stage_cost(const double *prefix, const vt_config *c, int S, vt_partition_use use, int s, int i, int j) {
    return prefix[j] - prefix[i] + ends_cost(c, S, use, s);
}

static int solve(dp_table *t, const double *prefix, const vt_config *c, int minimise_max, double cap) {
    int L = t->L, S = t->S;
    size_t w = (size_t)L + 1;
    for (size_t i = 0; i < (size_t)(S + 1) * w; i++) t->value[i] = INFINITY;
    t->value[0] = 0.0; /* no layers in no stages */
    for (int k = 1; k <= S; k++) {
        /* stage k-1 ends at layer j; the S-k later stages need one layer each */
        for (int j = k; j <= L - (S - k); j++) {
            if (k == S && j != L) continue;
            double best = INFINITY;
            int arg = -1;
            for (int i = k - 1; i < j; i++) {
                double prev = t->value[(size_t)(k - 1) * w + (size_t)i];
                if (prev == INFINITY) continue;
                double cost = stage_cost(prefix, c, S, t->use, k - 1, i, j);
                double v;
                if (minimise_max) {
                    v = prev > cost ? prev : cost;
                } else {
                    if (cost > cap) continue;
                    v = prev + cost * cost;
                }
                if (v < best) {
                    best = v;
                    arg = i;
                }
            }
            t->value[(size_t)k * w + (size_t)j] = best;
            t->from[(size_t)k * w + (size_t)j] = arg;
        }
    }
    return t->value[(size_t)S * w + (size_t)L] == INFINITY ? -1 : 0;
}

int vt_partition_layers(const vt_config *c, int stages, vt_partition_use use, int *begin) {
    int L = c->n_layers, S = stages;
    if (S < 1) return vt_fail("cannot split %d layers into %d stages: need at least one stage", L, S);
    if (S > L)
        return vt_fail("cannot split %d layers into %d stages: every stage needs at least one layer", L, S);
    size_t w = (size_t)L + 1, cells = (size_t)(S + 1) * w;
    double *prefix = vt_malloc(sizeof(double) * w, "partition costs");
    dp_table t = {L, S, use, vt_malloc(sizeof(double) * cells, "partition table"),
                  vt_malloc(sizeof(int) * cells, "partition table")};
    int rc = -1;
    if (!prefix || !t.value || !t.from) goto out;
    prefix[0] = 0.0;
    for (int l = 0; l < L; l++) prefix[l + 1] = prefix[l] + vt_partition_layer_cost(c, l);
    if (solve(&t, prefix, c, 1, 0.0)) {
        vt_fail("no partition of %d layers into %d stages (layer costs are not finite)", L, S);
        goto out;
    }
    /* Second pass: the most even split whose stages all stay within the optimal bottleneck. */
    double bottleneck = t.value[(size_t)S * w + (size_t)L];
    if (solve(&t, prefix, c, 0, bottleneck * (1.0 + 1e-12))) {
        vt_fail("no partition of %d layers into %d stages within the bottleneck %g", L, S, bottleneck);
        goto out;
    }
    begin[S] = L;
    for (int k = S, j = L; k >= 1; k--) {
        j = t.from[(size_t)k * w + (size_t)j];
        begin[k - 1] = j;
    }
    rc = 0;
out:
    free(prefix);
    free(t.value);
    free(t.from);
    return rc;
}

/* "1, 2, 4 or 8": the divisors of ranks that are at most limit. */
static void list_divisors(int ranks, int limit, char *out, size_t cap) {
    int n = 0;
    for (int s = 1; s <= ranks && s <= limit; s++) n += ranks % s == 0;
    out[0] = '\0';
    for (int s = 1, k = 0; s <= ranks && s <= limit; s++) {
        if (ranks % s) continue;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%d", k == 0 ? "" : (k == n - 1 ? " or " : ", "), s);
        k++;
    }
}

int vt_topology_choose(int ranks, int n_layers, int stages_requested, int *stages, int *replicas) {
    char options[512];
    if (ranks < 1) return vt_fail("%d ranks: need at least one", ranks);
    if (n_layers < 1) return vt_fail("a model of %d layers cannot be split into stages", n_layers);
    if (stages_requested < 0) return vt_fail("%d stages: the stage count must be positive (0 = automatic)",
                                             stages_requested);
    int S = stages_requested;
    if (S > 0) {
        if (S > n_layers)
            return vt_fail("cannot split %d layers into %d stages: every stage needs at least one layer", n_layers, S);
        if (ranks % S) {
            list_divisors(ranks, n_layers, options, sizeof options);
            return vt_fail("%d ranks cannot form %d pipeline stages: %d is not a multiple of %d (ranks = stages x "
                           "replicas); with %d ranks use %s stages",
                           ranks, S, ranks, S, ranks, options);
        }
    } else {
        int limit = n_layers < VT_AUTO_MAX_STAGES ? n_layers : VT_AUTO_MAX_STAGES;
        for (int s = 1; s <= limit && s <= ranks; s++)
            if (ranks % s == 0) S = s;
    }
    *stages = S;
    *replicas = ranks / S;
    return 0;
}

int vt_micro_batches_choose(int stages, int seqs_per_replica, int requested, int *micro_batches) {
    if (stages < 1 || seqs_per_replica < 1)
        return vt_fail("micro-batches of %d sequences per replica over %d stages: both must be positive",
                       seqs_per_replica, stages);
    if (requested < 0) return vt_fail("%d micro-batches: the count must be positive (0 = automatic)", requested);
    if (requested > 0) {
        if (seqs_per_replica % requested)
            return vt_fail("%d micro-batches do not divide the %d sequences of a replica's step evenly; use a "
                           "divisor of %d",
                           requested, seqs_per_replica, seqs_per_replica);
        *micro_batches = requested;
    } else {
        *micro_batches = stages > 1 ? seqs_per_replica : 1;
    }
    return 0;
}

double vt_pipeline_bubble(int stages, int micro_batches) {
    return (double)(stages - 1) / ((double)micro_batches + stages - 1);
}

int vt_pipeline_bubble_small(int stages, int micro_batches) { return 10 * (stages - 1) <= micro_batches + stages - 1; }

int vt_seq_chunks_choose(int stages, int micro_batches, int seqs_per_micro_batch, int seq_len, int requested,
                         int *chunks) {
    if (requested < 0) return vt_fail("parallel.seq_chunks = %d: the count must be positive (0 = automatic)", requested);
    if (requested > 1) {
        if (seqs_per_micro_batch != 1)
            return vt_fail("parallel.seq_chunks = %d needs micro-batches of one sequence, not %d; set "
                           "parallel.micro_batches to the %d sequences of a replica's step (or 0)",
                           requested, seqs_per_micro_batch, micro_batches * seqs_per_micro_batch);
        if (seq_len % requested)
            return vt_fail("parallel.seq_chunks = %d does not divide data.seq_len = %d evenly", requested, seq_len);
        *chunks = requested;
        return 0;
    }
    *chunks = 1;
    if (requested == 1 || stages < 2 || seqs_per_micro_batch != 1) return 0;
    if (vt_pipeline_bubble_small(stages, micro_batches)) return 0; /* no chunks needed */
    for (int c = 2; seq_len / c >= VT_CHUNK_MIN_TOKENS; c++) {
        if (seq_len % c) continue;
        *chunks = c;
        if (vt_pipeline_bubble_small(stages, micro_batches * c)) break;
    }
    return 0;
}
