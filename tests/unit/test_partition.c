/* test_partition.c — layer partition by FLOPs (against brute force), stages x replicas topology,
 * micro-batch counts, and their refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "dist/partition.h"
#include "testutil.h"
#include "util/rng.h"

/* A dense config: dim 64, head_dim 8, 8 heads (4 KV), ffn 172, seq_len 128. */
static void make_config(vt_config *c, int layers, int vocab) {
    memset(c, 0, sizeof *c);
    c->dim = 64;
    c->n_layers = layers;
    c->n_heads = 8;
    c->n_kv_heads = 4;
    c->head_dim = 8;
    c->ffn_dim = 172;
    c->vocab = vocab;
    c->seq_len = 128;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    assert_int_equal(vt_config_init_dense(c), 0);
}

static double max_stage_cost(const vt_config *c, int S, vt_partition_use use, const int *begin, double *sumsq) {
    double m = 0.0, q = 0.0;
    for (int s = 0; s < S; s++) {
        double cost = vt_partition_stage_cost(c, S, use, s, begin[s], begin[s + 1]);
        m = cost > m ? cost : m;
        q += cost * cost;
    }
    if (sumsq) *sumsq = q;
    return m;
}

static void assert_valid_partition(const vt_config *c, int S, const int *begin) {
    assert_int_equal(begin[0], 0);
    assert_int_equal(begin[S], c->n_layers);
    for (int s = 0; s < S; s++)
        if (begin[s + 1] <= begin[s]) fail_msg("stage %d of %d is empty: [%d, %d)", s, S, begin[s], begin[s + 1]);
}

static void test_layer_flops_sum_to_model_flops(void **state) {
    (void)state;
    vt_config c;
    make_config(&c, 5, 512);
    c.layers[1].n_heads = c.layers[1].n_kv_heads = 0; /* attention removed */
    c.layers[2].ffn = 0;                              /* MLP removed */
    c.layers[3].n_heads = 4;
    c.layers[3].n_kv_heads = 2;
    c.layers[3].ffn = 40;
    c.layers[4].n_heads = c.layers[4].n_kv_heads = c.layers[4].ffn = 0; /* layer removed */
    for (double ctx = 1.0; ctx < 300.0; ctx *= 7.0) {
        double sum = 2.0 * c.dim * c.vocab;
        for (int l = 0; l < c.n_layers; l++) sum += vt_layer_flops(&c, l, ctx);
        assert_true(fabs(sum - vt_flops_per_token(&c, ctx)) <= 1e-9 * sum);
    }
    assert_true(vt_layer_flops(&c, 4, 100.0) == 0.0);
    assert_true(vt_layer_flops(&c, 1, 100.0) > 0.0 && vt_layer_flops(&c, 1, 100.0) < vt_layer_flops(&c, 0, 100.0));
    vt_config_free(&c);
}

/* Uniform layers with a cheap head split into equal runs for every divisor. */
static void test_uniform_layers_split_evenly(void **state) {
    (void)state;
    vt_config c;
    make_config(&c, 12, 16);
    int begin[13];
    int divisors[] = {1, 2, 3, 4, 6, 12};
    for (int i = 0; i < 6; i++) {
        int S = divisors[i];
        assert_int_equal(vt_partition_layers(&c, S, VT_PARTITION_INFER, begin), 0);
        assert_valid_partition(&c, S, begin);
        for (int s = 0; s <= S; s++) assert_int_equal(begin[s], s * 12 / S);
    }
    vt_config_free(&c);
}

/* A classifier as costly as ~1.5 layers pushes layers off the last stage. */
static void test_expensive_head_shifts_layers(void **state) {
    (void)state;
    vt_config c;
    make_config(&c, 8, 1);
    double layer = vt_partition_layer_cost(&c, 0);
    c.vocab = (int)(1.5 * layer / (2.0 * c.dim));
    assert_true(vt_partition_head_cost(&c) > 1.4 * layer && vt_partition_head_cost(&c) < 1.6 * layer);
    int begin[5];
    assert_int_equal(vt_partition_layers(&c, 4, VT_PARTITION_INFER, begin), 0);
    assert_valid_partition(&c, 4, begin);
    /* 8 layers + 1.5 layers of head over 4 stages: the last stage takes 1 layer, the others 2-3 */
    assert_int_equal(begin[4] - begin[3], 1);
    assert_true(max_stage_cost(&c, 4, VT_PARTITION_INFER, begin, NULL) <= 3.0 * layer * (1 + 1e-12));
    for (int s = 0; s < 3; s++) assert_true(begin[s + 1] - begin[s] >= 2);

    /* With the head far costlier than every layer together, the last stage owns one layer only and
     * the bottleneck is that stage. */
    c.vocab = (int)(20.0 * layer / (2.0 * c.dim));
    assert_int_equal(vt_partition_layers(&c, 2, VT_PARTITION_INFER, begin), 0);
    assert_int_equal(begin[1], 7);
    vt_config_free(&c);
}

/* Training splits the classifier by vocabulary over every stage, so however costly it is, equal
 * layers split evenly and each stage carries an equal share of the classifier. */
static void test_classifier_shared_by_all_stages(void **state) {
    (void)state;
    vt_config c;
    make_config(&c, 8, 1);
    double layer = vt_partition_layer_cost(&c, 0);
    int begin[5];
    for (double heads = 1.5; heads <= 20.0; heads *= 4) {
        c.vocab = (int)(heads * layer / (2.0 * c.dim));
        assert_int_equal(vt_partition_layers(&c, 4, VT_PARTITION_TRAIN, begin), 0);
        assert_valid_partition(&c, 4, begin);
        for (int s = 0; s < 4; s++) assert_int_equal(begin[s + 1] - begin[s], 2);
        double share = vt_partition_head_cost(&c) / 4;
        double last = vt_partition_stage_cost(&c, 4, VT_PARTITION_TRAIN, 3, begin[3], begin[4]);
        double first = vt_partition_stage_cost(&c, 4, VT_PARTITION_TRAIN, 0, begin[0], begin[1]);
        assert_true(fabs(last - (2 * layer + share)) <= 1e-9 * last);
        assert_true(fabs(first - (2 * layer + share + vt_partition_embed_cost(&c))) <= 1e-9 * first);
    }
    vt_config_free(&c);
}

/* Removed layers cost nothing, so a stage of them takes real layers too. */
static void test_pruned_layers(void **state) {
    (void)state;
    vt_config c;
    make_config(&c, 8, 16);
    for (int l = 0; l < 4; l++) c.layers[l].n_heads = c.layers[l].n_kv_heads = c.layers[l].ffn = 0;
    int begin[3];
    assert_int_equal(vt_partition_layers(&c, 2, VT_PARTITION_INFER, begin), 0);
    /* four free layers and two real ones on stage 0, two real ones and the head on stage 1 */
    assert_int_equal(begin[1], 6);
    assert_true(vt_partition_layer_cost(&c, 0) == 0.0);

    /* every stage non-empty even when all but one layer is removed */
    for (int l = 0; l < 7; l++) c.layers[l].n_heads = c.layers[l].n_kv_heads = c.layers[l].ffn = 0;
    int b8[9];
    assert_int_equal(vt_partition_layers(&c, 8, VT_PARTITION_INFER, b8), 0);
    assert_valid_partition(&c, 8, b8);
    vt_config_free(&c);
}

/* Brute force over all compositions of L layers into S non-empty runs. */
static void brute_force(const vt_config *c, int S, vt_partition_use use, int s, int *begin, double *best_max, double *best_sq) {
    int L = c->n_layers;
    if (s == S) {
        double sq, m = max_stage_cost(c, S, use, begin, &sq);
        if (m < *best_max * (1 - 1e-12)) {
            *best_max = m;
            *best_sq = sq;
        } else if (m <= *best_max * (1 + 1e-12) && sq < *best_sq) {
            *best_sq = sq;
        }
        return;
    }
    if (s == S - 1) {
        begin[S] = L;
        brute_force(c, S, use, S, begin, best_max, best_sq);
        return;
    }
    for (int e = begin[s] + 1; e <= L - (S - s - 1); e++) {
        begin[s + 1] = e;
        brute_force(c, S, use, s + 1, begin, best_max, best_sq);
    }
}

static void test_optimal_against_brute_force(void **state) {
    (void)state;
    unsigned seed = 12345;
    for (int trial = 0; trial < 60; trial++) {
        int L = 1 + trial % 9;
        vt_config c;
        vt_lcg32(&seed);
        make_config(&c, L, 1 + (int)((seed >> 8) % 3000));
        for (int l = 0; l < L; l++) {
            vt_lcg32(&seed);
            int kv = (int)((seed >> 8) % 5), ffn = (int)((seed >> 12) % 400);
            c.layers[l].n_kv_heads = kv;
            c.layers[l].n_heads = 2 * kv;
            c.layers[l].ffn = (seed >> 20) % 4 == 0 ? 0 : ffn;
        }
        for (int S = 1; S <= L; S++)
            for (int u = 0; u < 2; u++) {
                vt_partition_use use = u ? VT_PARTITION_TRAIN : VT_PARTITION_INFER;
                int begin[16], scratch[16];
                assert_int_equal(vt_partition_layers(&c, S, use, begin), 0);
                assert_valid_partition(&c, S, begin);
                double sq, got = max_stage_cost(&c, S, use, begin, &sq);
                double best = INFINITY, best_sq = INFINITY;
                scratch[0] = 0;
                brute_force(&c, S, use, 0, scratch, &best, &best_sq);
                if (fabs(got - best) > 1e-9 * best)
                    fail_msg("L=%d S=%d: bottleneck %.6g, brute force %.6g", L, S, got, best);
                if (sq > best_sq * (1 + 1e-9))
                    fail_msg("L=%d S=%d: sum of squares %.6g, brute force %.6g", L, S, sq, best_sq);
            }
        vt_config_free(&c);
    }
}

static void test_partition_errors(void **state) {
    (void)state;
    vt_config c;
    make_config(&c, 4, 16);
    int begin[9];
    assert_int_equal(vt_partition_layers(&c, 8, VT_PARTITION_INFER, begin), -1);
    assert_non_null(strstr(vt_error(), "cannot split 4 layers into 8 stages"));
    assert_int_equal(vt_partition_layers(&c, 0, VT_PARTITION_INFER, begin), -1);
    assert_non_null(strstr(vt_error(), "at least one stage"));
    assert_int_equal(vt_partition_layers(&c, 4, VT_PARTITION_INFER, begin), 0);
    for (int s = 0; s <= 4; s++) assert_int_equal(begin[s], s);
    vt_config_free(&c);
}

static void test_topology(void **state) {
    (void)state;
    int S, D;
    assert_int_equal(vt_topology_choose(64, 32, 0, &S, &D), 0); /* automatic: largest divisor <= 8 */
    assert_int_equal(S, 8);
    assert_int_equal(D, 8);
    assert_int_equal(vt_topology_choose(6, 32, 0, &S, &D), 0);
    assert_int_equal(S, 6);
    assert_int_equal(D, 1);
    assert_int_equal(vt_topology_choose(7, 4, 0, &S, &D), 0); /* 7 is prime and > 4 layers */
    assert_int_equal(S, 1);
    assert_int_equal(D, 7);
    assert_int_equal(vt_topology_choose(2, 5, 0, &S, &D), 0);
    assert_int_equal(S, 2);
    assert_int_equal(vt_topology_choose(1, 5, 0, &S, &D), 0);
    assert_int_equal(S * D, 1);
    assert_int_equal(vt_topology_choose(16, 5, 0, &S, &D), 0); /* at most 5 layers: 4 stages */
    assert_int_equal(S, 4);
    assert_int_equal(D, 4);
    assert_int_equal(vt_topology_choose(8, 32, 2, &S, &D), 0);
    assert_int_equal(S, 2);
    assert_int_equal(D, 4);
    assert_int_equal(vt_topology_choose(64, 32, 32, &S, &D), 0);
    assert_int_equal(S, 32);
    assert_int_equal(D, 2);

    assert_int_equal(vt_topology_choose(6, 32, 4, &S, &D), -1);
    assert_non_null(strstr(vt_error(), "6 ranks cannot form 4 pipeline stages"));
    assert_non_null(strstr(vt_error(), "use 1, 2, 3 or 6 stages"));
    assert_int_equal(vt_topology_choose(8, 4, 8, &S, &D), -1);
    assert_non_null(strstr(vt_error(), "cannot split 4 layers into 8 stages"));
    assert_int_equal(vt_topology_choose(0, 4, 0, &S, &D), -1);
    assert_non_null(strstr(vt_error(), "0 ranks"));
    assert_int_equal(vt_topology_choose(4, 4, -1, &S, &D), -1);
}

static void test_micro_batches(void **state) {
    (void)state;
    int M;
    assert_int_equal(vt_micro_batches_choose(1, 16, 0, &M), 0);
    assert_int_equal(M, 1);
    assert_int_equal(vt_micro_batches_choose(4, 16, 0, &M), 0);
    assert_int_equal(M, 16);
    assert_int_equal(vt_micro_batches_choose(4, 16, 8, &M), 0);
    assert_int_equal(M, 8);
    assert_int_equal(vt_micro_batches_choose(4, 16, 3, &M), -1);
    assert_non_null(strstr(vt_error(), "3 micro-batches do not divide the 16 sequences"));
    assert_int_equal(vt_micro_batches_choose(4, 2, 4, &M), -1);
}

/* Sequence chunks: automatic only with stages and one-sequence micro-batches, none when the
 * micro-batches alone bring (S - 1) / (M + S - 1) to 10%, else the fewest chunks bringing
 * (S - 1) / (M C + S - 1) to 10% (the most of at least VT_CHUNK_MIN_TOKENS = 256 tokens when that
 * is out of reach); requested counts checked. */
static void test_seq_chunks(void **state) {
    (void)state;
    int C = -1;
    /* automatic */
    assert_int_equal(vt_seq_chunks_choose(1, 1, 1, 512, 0, &C), 0); /* one stage: nothing to overlap */
    assert_int_equal(C, 1);
    assert_int_equal(VT_CHUNK_MIN_TOKENS, 256);
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 512, 0, &C), 0); /* 3/11 at 2 chunks of 256: no more */
    assert_int_equal(C, 2);
    assert_int_equal(vt_seq_chunks_choose(2, 8, 1, 512, 0, &C), 0); /* 1/17 at 2 chunks */
    assert_int_equal(C, 2);
    assert_int_equal(vt_seq_chunks_choose(4, 16, 1, 512, 0, &C), 0); /* 3/19 at 1, 3/35 at 2 */
    assert_int_equal(C, 2);
    assert_int_equal(vt_seq_chunks_choose(8, 8, 1, 2048, 0, &C), 0); /* 7/23, 7/39 at 2, 4; 7/71 at 8 */
    assert_int_equal(C, 8);
    assert_int_equal(vt_seq_chunks_choose(4, 12, 1, 768, 0, &C), 0); /* 3/27 at 2; 3 of 256, 3/39: not a power of 2 */
    assert_int_equal(C, 3);
    assert_int_equal(vt_seq_chunks_choose(8, 8, 1, 2000, 0, &C), 0); /* divisors only: 5 of 400, 7/47 (250 < 256) */
    assert_int_equal(C, 5);
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 511, 0, &C), 0); /* no chunk of 256 tokens or more */
    assert_int_equal(C, 1);
    assert_int_equal(vt_seq_chunks_choose(4, 8, 1, 384, 0, &C), 0); /* 2 chunks of 192 would be under 256 */
    assert_int_equal(C, 1);
    /* the micro-batches alone bring the bubble to 10%: no chunks */
    assert_int_equal(vt_seq_chunks_choose(2, 64, 1, 512, 0, &C), 0); /* 1/65 */
    assert_int_equal(C, 1);
    assert_int_equal(vt_seq_chunks_choose(2, 9, 1, 512, 0, &C), 0); /* 1/10 exactly */
    assert_int_equal(C, 1);
    assert_int_equal(vt_seq_chunks_choose(4, 27, 1, 512, 0, &C), 0); /* 3/30 exactly */
    assert_int_equal(C, 1);
    assert_int_equal(vt_seq_chunks_choose(4, 26, 1, 512, 0, &C), 0); /* 3/29 above 10%: 3/55 at 2 */
    assert_int_equal(C, 2);
    assert_int_equal(vt_seq_chunks_choose(8, 64, 1, 2048, 0, &C), 0); /* 7/71 with 64 micro-batches */
    assert_int_equal(C, 1);
    assert_int_equal(vt_seq_chunks_choose(4, 4, 2, 512, 0, &C), 0); /* micro-batches of 2 sequences */
    assert_int_equal(C, 1);
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 512, 1, &C), 0); /* off */
    assert_int_equal(C, 1);
    /* requested: any divisor, whatever the chunk size or the stages */
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 512, 2, &C), 0);
    assert_int_equal(C, 2);
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 512, 16, &C), 0);
    assert_int_equal(C, 16);
    assert_int_equal(vt_seq_chunks_choose(1, 1, 1, 512, 2, &C), 0);
    assert_int_equal(C, 2);
    /* refused */
    assert_int_equal(vt_seq_chunks_choose(4, 2, 2, 512, 2, &C), -1);
    assert_non_null(strstr(vt_error(), "parallel.seq_chunks = 2 needs micro-batches of one sequence, not 2"));
    assert_non_null(strstr(vt_error(), "set parallel.micro_batches to the 4 sequences"));
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 512, 3, &C), -1);
    assert_non_null(strstr(vt_error(), "parallel.seq_chunks = 3 does not divide data.seq_len = 512"));
    assert_int_equal(vt_seq_chunks_choose(4, 4, 1, 512, -2, &C), -1);
    assert_non_null(strstr(vt_error(), "parallel.seq_chunks = -2: the count must be positive"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_flops_sum_to_model_flops),
        cmocka_unit_test(test_uniform_layers_split_evenly),
        cmocka_unit_test(test_expensive_head_shifts_layers),
        cmocka_unit_test(test_classifier_shared_by_all_stages),
        cmocka_unit_test(test_pruned_layers),
        cmocka_unit_test(test_optimal_against_brute_force),
        cmocka_unit_test(test_partition_errors),
        cmocka_unit_test(test_topology),
        cmocka_unit_test(test_micro_batches),
        cmocka_unit_test(test_seq_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
