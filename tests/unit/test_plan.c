/* test_plan.c — the cluster plan: weights, activation tapes and scratch counted exactly as the
 * loader and the training step allocate them (sequence chunks too), memory terms per stage, FLOPs,
 * the bubble and chunk choice, and refused layouts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "util/error.h"
#include "nn/forward.h"
#include "nn/lora.h"
#include "train/head_loss.h"
#include "dist/partition.h"
#include "run/plan.h"
#include "testutil.h"

/* LLaMA-2-7B's shape (hidden 4096, FFN 11008, 32 heads, 32 KV heads, 32 layers, vocab 32000). */
static void llama7b_config(vt_config *c) {
    memset(c, 0, sizeof *c);
    c->dim = 4096;
    c->n_layers = 32;
    c->n_heads = 32;
    c->n_kv_heads = 32;
    c->head_dim = 128;
    c->ffn_dim = 11008;
    c->vocab = 32000;
    c->seq_len = 4096;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    assert_int_equal(vt_config_init_dense(c), 0);
}

/* A small config with pruned layers: attention removed, MLP removed, narrower layers. */
static void pruned_small_config(vt_config *c, int tied) {
    tu_small_config(c);
    vt_config_free(c);
    c->n_layers = 5;
    c->tied = tied;
    assert_int_equal(vt_config_init_dense(c), 0);
    c->layers[1].n_heads = c->layers[1].n_kv_heads = 0;
    c->layers[2].ffn = 0;
    c->layers[3].n_heads = 2;
    c->layers[3].n_kv_heads = 1;
    c->layers[3].ffn = 7;
}

static void test_weight_floats_match_allocation(void **state) {
    (void)state;
    for (int tied = 0; tied <= 1; tied++) {
        vt_config c;
        pruned_small_config(&c, tied);
        for (int S = 1; S <= 3; S++) {
            int begin[4];
            assert_int_equal(vt_partition_layers(&c, S, VT_PARTITION_TRAIN, begin), 0);
            size_t sum = 0;
            for (int s = 0; s < S; s++) {
                vt_load_parts parts = {begin[s], begin[s + 1], s == 0, s == S - 1};
                vt_model m;
                assert_int_equal(vt_model_alloc(&m, &c, parts), 0);
                assert_int_equal(vt_plan_weight_floats(&c, S, s, begin[s], begin[s + 1]), m.arena_floats);
                sum += m.arena_floats;
                vt_model_free(&m);
            }
            /* a tied classifier is a second copy once the embedding and head sit on different stages */
            size_t extra = (tied && S > 1) ? (size_t)c.vocab * c.dim : 0;
            assert_int_equal(sum, vt_params_total(&c) + extra);
        }
        vt_config_free(&c);
    }
}

/* End of the furthest buffer of a tape, in floats from its arena (B x T tokens at pos0..). */
static size_t tape_extent(const vt_tape *tp, const vt_config *c, int B, int T, int pos0) {
    size_t rows = (size_t)B * T, d = (size_t)c->dim, end = 0;
#define SEEN(p, n) \
    if (p) end = (size_t)((p) - tp->arena) + (n) > end ? (size_t)((p) - tp->arena) + (n) : end
    SEEN(tp->x_final, rows * d);
    SEEN(tp->xn_final, rows * d);
    SEEN(tp->inv_rms_final, rows);
    for (int l = tp->layer_begin; l < tp->layer_end; l++) {
        const vt_tape_layer *t = &tp->layers[l];
        const vt_layer_shape *s = &c->layers[l];
        size_t q = (size_t)s->n_heads * c->head_dim, kv = (size_t)s->n_kv_heads * c->head_dim, f = (size_t)s->ffn;
        SEEN(t->x_attn, rows * d);
        SEEN(t->xn_attn, rows * d);
        SEEN(t->y_attn, rows * d);
        SEEN(t->inv_rms_attn, rows);
        SEEN(t->qkv, rows * (q + 2 * kv));
        SEEN(t->att, rows * q);
        SEEN(t->probs, (size_t)B * s->n_heads * T * (size_t)(pos0 + T));
        SEEN(t->x_mlp, rows * d);
        SEEN(t->xn_mlp, rows * d);
        SEEN(t->y_mlp, rows * d);
        SEEN(t->inv_rms_mlp, rows);
        SEEN(t->gate_up, rows * 2 * f);
        SEEN(t->act, rows * f);
    }
#undef SEEN
    return end;
}

static void test_tape_floats_match_vt_tape_init(void **state) {
    (void)state;
    vt_config c;
    pruned_small_config(&c, 1);
    int ranges[][2] = {{0, 5}, {0, 1}, {1, 3}, {3, 5}, {2, 3}};
    for (int r = 0; r < 5; r++) {
        vt_load_parts parts = {ranges[r][0], ranges[r][1], 0, 0};
        vt_model m;
        assert_int_equal(vt_model_alloc(&m, &c, parts), 0);
        for (int B = 1; B <= 3; B += 2)
            for (int pos0 = 0; pos0 <= 14; pos0 += 7) { /* whole sequences, and chunks 2 and 3 of 7 tokens */
                int T = 7;
                vt_tape tp;
                assert_int_equal(vt_tape_init(&tp, &m, B, T, pos0), 0);
                size_t n = vt_plan_tape_floats(&c, ranges[r][0], ranges[r][1], B, T, pos0);
                assert_int_equal(n, tape_extent(&tp, &c, B, T, pos0));
                assert_int_equal(n * sizeof(float), tp.bytes);
                vt_tape_free(&tp);
            }
        vt_model_free(&m);
    }
    vt_config_free(&c);
}

static vt_plan_input input_7b(const vt_config *c, int ranks) {
    vt_plan_input in = {
        .cfg = c,
        .ranks = ranks,
        .stages = 0,
        .micro_batches = 0,
        .batch_size = 64,
        .seq_len = 512,
        .steps = 100,
        .finetune_steps = 0,
        .prune_interval = 0,
        .keep_fraction = 0.5,
        .calib_sequences = 0,
    };
    return in;
}

/* Floats of the tapes of one group of micro-batches: C chunks of T / C tokens of B sequences. */
static double group_tape_floats(const vt_config *c, int l0, int l1, int B, int T, int C) {
    double n = 0.0;
    for (int k = 0; k < C; k++) n += (double)vt_plan_tape_floats(c, l0, l1, B, T / C, k * (T / C));
    return n;
}

static void test_plan_7b_terms(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 64);
    vt_plan p;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_int_equal(p.stages, 8); /* automatic */
    assert_int_equal(p.replicas, 8);
    assert_int_equal(p.seqs_per_replica, 8);
    assert_int_equal(p.micro_batches, 8); /* one sequence per micro-batch */
    assert_int_equal(p.micro_batch, 1);
    /* automatic chunks: 7 / (8 C + 7) stays above 10% down to chunks of 256 tokens */
    assert_int_equal(p.seq_chunks, 2);
    assert_int_equal(p.chunk_tokens, 256);
    assert_true(fabs(p.bubble - 7.0 / 23.0) < 1e-12);
    size_t gates = 4096 + 32 * (32 + 11008 + 2);
    assert_int_equal(p.gates, gates);

    size_t params = 0;
    double flops = 0.0;
    for (int s = 0; s < p.stages; s++) {
        const vt_stage_plan *st = &p.stage[s];
        assert_int_equal(st->layer_end - st->layer_begin, 4);
        params += st->params;
        flops += st->flops_token;
        /* masks only, no iterative pruning: weights are the stage's fp32 tensors, no student copy,
         * and on every stage but the last its 4000 rows of the classifier */
        double rows = s < 7 ? 4.0 * 4000 * 4096 : 0.0;
        assert_true(st->weights == 4.0 * (double)vt_plan_weight_floats(&c, 8, s, st->layer_begin, st->layer_end) + rows);
        assert_true(st->teacher_cache == 0.0);
        /* every micro-batch's tape is held (GPipe): activations exceed M x C chunk tapes, by scratch only */
        double tapes = 4.0 * 8 * group_tape_floats(&c, st->layer_begin, st->layer_end, 1, 512, 2);
        assert_true(st->activations > tapes && st->activations < 1.5 * tapes);
        assert_true(fabs(st->total - (st->weights + st->activations + st->optimizer + st->teacher_cache)) < 1.0);
    }
    assert_int_equal(params, vt_params_total(&c));
    assert_true(fabs(flops - p.flops_token) <= 1e-9 * flops);
    assert_true(fabs(p.flops_token - vt_flops_per_token(&c, 256.5)) <= 1e-9 * flops);
    /* a mask step: 2 forward passes of 64 x 512 tokens; the teacher costs nothing per step */
    double tokens = 64.0 * 512;
    double step = tokens * 2 * p.flops_token;
    assert_true(fabs(p.flops_step_masks - step) < 1e-9 * step);
    assert_true(p.flops_step_finetune == 0.0);
    /* the last stage holds the gradients of every micro-batch's final states: more than a middle stage */
    assert_true(p.stage[7].activations > p.stage[3].activations);
    vt_plan_free(&p);
    vt_config_free(&c);
}

static void test_plan_training_state_and_teacher(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 16);
    in.stages = 4;
    vt_plan base, ft, iter, cached;
    assert_int_equal(vt_plan_make(&in, &base), 0);
    in.finetune_steps = 50;
    assert_int_equal(vt_plan_make(&in, &ft), 0);
    in.prune_interval = 10;
    assert_int_equal(vt_plan_make(&in, &iter), 0);
    in.calib_sequences = 1000;
    assert_int_equal(vt_plan_make(&in, &cached), 0);
    for (int s = 0; s < 4; s++) {
        const vt_stage_plan *b = &base.stage[s], *f = &ft.stage[s], *it = &iter.stage[s], *ca = &cached.stage[s];
        double w = 4.0 * (double)vt_plan_weight_floats(&c, 4, s, b->layer_begin, b->layer_end), layers = 0.0;
        for (int l = b->layer_begin; l < b->layer_end; l++) layers += 4.0 * (double)vt_layer_params(&c, l);
        double rows = s < 3 ? 4.0 * 8000 * 4096 : 0.0; /* classifier rows of the other stages */
        /* fine-tuning: a student of half the size, its gradients and two Adam moments of its layers */
        assert_true(fabs(f->weights - 1.5 * w - rows) < 1.0);
        assert_true(fabs(f->optimizer - b->optimizer - 0.5 * (w + 2.0 * layers)) < 1.0);
        /* iterative pruning: the first slice may copy the student at nearly full size */
        assert_true(fabs(it->weights - 2.0 * w - rows) < 1.0);
        /* expectations and sum p log p, sharded over the 4 replicas */
        double cache = s == 3 ? 250.0 * 512 * (4096 * 4 + 8) : 0.0;
        assert_true(ca->teacher_cache == cache);
        assert_true(fabs(ca->total - it->total - cache) < 1.0);
    }
    /* fine-tuning adds the layers' weight gradients, not the classifier's */
    assert_true(fabs(ft.flops_step_finetune - 64.0 * 512 * (3 * ft.flops_token - 2.0 * 4096 * 32000)) <
                1e-9 * ft.flops_step_finetune);
    /* the 1000 calibration sequences go once through the model (each in the replica holding it),
     * plus the expectations (a classifier-sized matmul) */
    assert_true(fabs(cached.flops_teacher - 1000.0 * 512 * (cached.flops_token + 2.0 * 4096 * 32000)) <
                1e-9 * cached.flops_teacher);
    vt_plan_free(&base);
    vt_plan_free(&ft);
    vt_plan_free(&iter);
    vt_plan_free(&cached);
    vt_config_free(&c);
}

/* More micro-batches of the same size hold proportionally more tape (GPipe keeps them all): 4 more
 * sequences, each 2 chunk tapes. */
static void test_plan_activations_scale_with_micro_batches(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 8);
    in.stages = 8;
    in.batch_size = 4;
    vt_plan a, b;
    assert_int_equal(vt_plan_make(&in, &a), 0);
    in.batch_size = 8;
    assert_int_equal(vt_plan_make(&in, &b), 0);
    assert_int_equal(a.micro_batches, 4);
    assert_int_equal(b.micro_batches, 8);
    /* automatic: 7 / (4 C + 7) and 7 / (8 C + 7) above 10% down to chunks of 256 tokens */
    assert_int_equal(a.seq_chunks, 2);
    assert_int_equal(b.seq_chunks, 2);
    const vt_stage_plan *sa = &a.stage[2], *sb = &b.stage[2];
    double tape = 4.0 * group_tape_floats(&c, sa->layer_begin, sa->layer_end, 1, 512, 2);
    double gate_rows = 4.0 * 3.0 * (double)a.gates * 4; /* gate values, noise, gradients of 4 more sequences */
    assert_true(fabs(sb->activations - sa->activations - 4.0 * tape - gate_rows) < 1.0);
    vt_plan_free(&a);
    vt_plan_free(&b);
    vt_config_free(&c);
}

/* The activations of a stage are, term by term, what a training rank of that stage allocates
 * (vt_student_alloc, vt_head_share_init, the teacher cache pass): K = M C chunk tapes at
 * positions (k % C) Tc, forward scratch for Bm x Tc rows attending to T positions, the teacher's
 * forward scratch for Bm x T, backward scratch with the chunks' key/value gradients, the classifier
 * scratch of Bm x T rows, and on the last stage K gradients of Bm x Tc rows and the step's teacher rows. */
static void activations_match_allocations(vt_dtype raw) {
    vt_config c;
    pruned_small_config(&c, 0);
    int chunks[] = {1, 2, 4, 0}, T = 16;
    for (int ci = 0; ci < 4; ci++) {
        vt_plan_input in = {
            .cfg = &c, .ranks = 2, .stages = 2, .micro_batches = 0, .seq_chunks = chunks[ci],
            .batch_size = 2, .seq_len = T, .steps = 1, .keep_fraction = 0.5, .hold = raw,
            .checkpoint_16bit = raw != VT_F32,
        };
        vt_plan p;
        assert_int_equal(vt_plan_make(&in, &p), 0);
        assert_int_equal(p.micro_batches, 2);
        assert_int_equal(p.micro_batch, 1);
        /* automatic: no chunk of 256 tokens fits in 16 */
        int C = chunks[ci] ? chunks[ci] : 1, Tc = T / C, K = p.micro_batches * C, Bm = 1;
        assert_int_equal(p.seq_chunks, C);
        assert_int_equal(p.chunk_tokens, Tc);
        assert_true(fabs(p.bubble - 1.0 / (2.0 * C + 1.0)) < 1e-12);
        for (int s = 0; s < p.stages; s++) {
            const vt_stage_plan *st = &p.stage[s];
            int last = s == p.stages - 1, v0, vs;
            vt_load_parts parts = {st->layer_begin, st->layer_end, s == 0, last};
            vt_model m;
            assert_int_equal(vt_model_alloc_raw(&m, &c, parts, raw), 0); /* 16-bit: scratch to widen blocks */
            double bytes = 0.0;
            for (int k = 0; k < K; k++) {
                vt_tape tp;
                assert_int_equal(vt_tape_init(&tp, &m, Bm, Tc, k % C * Tc), 0);
                bytes += (double)tp.bytes;
                vt_tape_free(&tp);
            }
            vt_fwd fs, ft;
            vt_bwd bw;
            assert_int_equal(vt_fwd_init(&fs, &m, Bm, Tc, T), 0);
            assert_int_equal(vt_fwd_init(&ft, &m, Bm, T, T), 0);
            assert_int_equal(vt_bwd_init(&bw, &m, Bm, Tc, T), 0);
            assert_true(C == 1 ? bw.dkv == NULL : bw.dkv != NULL);
            bytes += (double)fs.bytes + (double)ft.bytes + (double)bw.bytes;
            vt_fwd_free(&fs);
            vt_fwd_free(&ft);
            vt_bwd_free(&bw);
            size_t rows = (size_t)Bm * T, d = (size_t)c.dim;
            vt_vocab_share(c.vocab, p.stages, s, &v0, &vs);
            vt_head_part h;
            assert_int_equal(vt_head_part_init(&h, v0, vs, (int)d, (int)rows), 0);
            bytes += (double)h.bytes + sizeof(double) * rows + sizeof(float) * 2 * rows * d; /* hneg, hx, hdx */
            vt_head_part_free(&h);
            bytes += sizeof(float) * rows * d;                                 /* x */
            bytes += sizeof(float) * 3.0 * (double)p.gates * p.seqs_per_replica; /* z, eps, dz */
            if (last)
                bytes += sizeof(float) * (double)K * Bm * Tc * d + p.cache_per_sequence * p.seqs_per_replica;
            if (fabs(st->activations - bytes) > 1e-9 * bytes)
                fail_msg("C=%d stage %d: plan %.0f bytes of activations, allocated %.0f", C, s, st->activations, bytes);
            vt_model_free(&m);
        }
        vt_plan_free(&p);
    }
    vt_config_free(&c);
}

static void test_plan_activations_match_allocations(void **state) {
    (void)state;
    activations_match_allocations(VT_F32);
    activations_match_allocations(VT_BF16);
}

/* The plan's chunks and bubble are vt_seq_chunks_choose's and (S - 1) / (M C + S - 1), in every
 * layout of 64 ranks; chunks hold less tape than whole sequences (a chunk's queries attend to the
 * positions up to it only), and more chunks less still. */
static void test_plan_chunks_follow_choice(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 64);
    in.stages = 4; /* 64 ranks: 4 stages x 16 replicas, 4 sequences each */
    vt_plan p, whole, four;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_int_equal(p.replicas, 16);
    assert_int_equal(p.micro_batches, 4);
    assert_int_equal(p.micro_batch, 1);
    assert_int_equal(p.seq_chunks, 2); /* 10% is out of reach: the most chunks of 256 tokens */
    assert_int_equal(p.chunk_tokens, 256);
    assert_true(fabs(p.bubble - 3.0 / 11.0) < 1e-12);
    in.micro_batches = 4; /* as the config sets it: the same */
    vt_plan_free(&p);
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_int_equal(p.seq_chunks, 2);
    in.seq_chunks = 1;
    assert_int_equal(vt_plan_make(&in, &whole), 0);
    assert_int_equal(whole.seq_chunks, 1);
    assert_int_equal(whole.chunk_tokens, 512);
    assert_true(fabs(whole.bubble - 3.0 / 7.0) < 1e-12);
    in.seq_chunks = 4; /* requested: chunks of 128 tokens, under the automatic choice's 256 */
    assert_int_equal(vt_plan_make(&in, &four), 0);
    assert_int_equal(four.seq_chunks, 4);
    assert_int_equal(four.chunk_tokens, 128);
    assert_true(fabs(four.bubble - 3.0 / 19.0) < 1e-12);
    for (int s = 0; s < 4; s++) {
        const vt_stage_plan *st = &p.stage[s];
        int l0 = st->layer_begin, l1 = st->layer_end;
        /* probabilities: T^2 (C + 1) / (2 C) per head and sequence instead of T^2 */
        double saved = 4.0 * 4 * (group_tape_floats(&c, l0, l1, 1, 512, 1) - group_tape_floats(&c, l0, l1, 1, 512, 2));
        assert_true(fabs(saved - 4.0 * 4 * (l1 - l0) * 32 * 512.0 * 512 * (1.0 - 3.0 / 4)) < 1.0);
        assert_true(four.stage[s].activations < st->activations);
        assert_true(st->activations < whole.stage[s].activations);
        /* the FLOPs do not depend on the cut */
        assert_true(st->flops_rank_step == whole.stage[s].flops_rank_step);
    }
    vt_plan_free(&p);
    vt_plan_free(&whole);
    vt_plan_free(&four);

    in.micro_batches = 0;
    in.seq_chunks = 0;
    for (int S = 1; S <= 32; S *= 2) {
        in.stages = S;
        assert_int_equal(vt_plan_make(&in, &p), 0);
        int C = -1;
        assert_int_equal(vt_seq_chunks_choose(S, p.micro_batches, p.micro_batch, 512, 0, &C), 0);
        assert_int_equal(p.seq_chunks, C);
        assert_int_equal(p.chunk_tokens * C, 512);
        double M = p.micro_batches;
        assert_true(fabs(p.bubble - (S - 1.0) / (M * C + S - 1.0)) < 1e-12);
        if (S == 1) assert_int_equal(C, 1); /* nothing to overlap */
        vt_plan_free(&p);
    }
    /* 8 stages x 8 replicas of 2048-token sequences: 8 chunks of 256 bring the bubble to 7/71 */
    in.stages = 8;
    in.seq_len = 2048;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_int_equal(p.seq_chunks, 8);
    assert_int_equal(p.chunk_tokens, 256);
    assert_true(p.bubble <= 0.1 && fabs(p.bubble - 7.0 / 71.0) < 1e-12);
    vt_plan_free(&p);
    /* 2 stages x 1 replica: 64 micro-batches of one sequence bring the bubble to 1/65, no chunks */
    in.ranks = 2;
    in.stages = 2;
    in.seq_len = 512;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_int_equal(p.micro_batches, 64);
    assert_int_equal(p.micro_batch, 1);
    assert_int_equal(p.seq_chunks, 1);
    assert_int_equal(p.chunk_tokens, 512);
    assert_true(fabs(p.bubble - 1.0 / 65.0) < 1e-12);
    vt_plan_free(&p);
    vt_config_free(&c);
}

static void test_plan_refusals(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 6);
    vt_plan p;
    in.stages = 4;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "6 ranks cannot form 4 pipeline stages"));
    in.ranks = 64;
    in.stages = 64;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "cannot split 32 layers into 64 stages"));
    in.ranks = 12;
    in.stages = 4; /* 3 replicas: 64 sequences do not split */
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "schedule.batch_size 64 does not split evenly over 3"));
    in.ranks = 8;
    in.micro_batches = 3;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "3 micro-batches"));
    in.micro_batches = 0;
    in.seq_len = 8192;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "data.seq_len 8192 exceeds the model's 4096 positions"));
    /* sequence chunks that cannot apply */
    in.seq_len = 512;
    in.micro_batches = 4; /* 8 ranks, 4 stages: 2 replicas of 32 sequences, micro-batches of 8 */
    in.seq_chunks = 2;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "parallel.seq_chunks = 2 needs micro-batches of one sequence, not 8"));
    assert_non_null(strstr(vt_error(), "set parallel.micro_batches to the 32 sequences"));
    in.micro_batches = 0;
    in.seq_chunks = 3;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "parallel.seq_chunks = 3 does not divide data.seq_len = 512"));
    in.seq_chunks = -1;
    assert_int_equal(vt_plan_make(&in, &p), -1);
    assert_non_null(strstr(vt_error(), "parallel.seq_chunks = -1"));
    in.seq_chunks = 8; /* a requested count may make chunks under 256 tokens */
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_int_equal(p.chunk_tokens, 64);
    vt_plan_free(&p);
    vt_config_free(&c);
}

/* With parallel.pack_weights, a stage's weights grow by its packs, which are what the forward and
 * backward scratch and the classifier share allocate when packed (vt_model_packs_init,
 * vt_model_packs_backward, vt_head_part_pack) in the type they are held in (16-bit backward packs
 * are views); without, the plan still knows their size (to say what they would cost). Without
 * them, a stage's weights are what its model part holds (its matrices in the 16-bit type when the
 * checkpoint has one) and the fp32 rows of the classifier share. */
static void packs_match_allocations(vt_dtype hold) {
    vt_config c;
    pruned_small_config(&c, 0);
    vt_plan_input in = {
        .cfg = &c, .ranks = 2, .stages = 2, .batch_size = 2, .seq_len = 16, .steps = 1, .keep_fraction = 0.5,
        .hold = hold, .checkpoint_16bit = hold != VT_F32,
    };
    vt_plan off, on;
    assert_int_equal(vt_plan_make(&in, &off), 0);
    in.pack_weights = 1;
    assert_int_equal(vt_plan_make(&in, &on), 0);
    for (int s = 0; s < on.stages; s++) {
        const vt_stage_plan *st = &on.stage[s];
        int last = s == on.stages - 1, v0, vs;
        vt_load_parts parts = {st->layer_begin, st->layer_end, s == 0, last};
        vt_model m;
        assert_int_equal(vt_model_alloc_raw(&m, &c, parts, hold), 0);
        m.hold = hold; /* zero weights: exact in every type */
        vt_fwd f;
        vt_bwd bw;
        assert_int_equal(vt_fwd_init(&f, &m, 1, 16, 16), 0);
        assert_int_equal(vt_bwd_init(&bw, &m, 1, 16, 16), 0);
        assert_int_equal(vt_model_packs_init(&f.packs, &m, 0), 0);
        assert_int_equal(vt_model_packs_backward(&bw.packs, &m, &f.packs), 0);
        vt_vocab_share(c.vocab, on.stages, s, &v0, &vs);
        double share = last ? 0.0 : 4.0 * vs * c.dim;
        if (fabs(off.stage[s].weights - (double)vt_model_bytes(&m) - share) > 0.5)
            fail_msg("stage %d: plan %.0f bytes of weights, the model part holds %zu", s, off.stage[s].weights,
                     vt_model_bytes(&m));
        vt_head_part h;
        assert_int_equal(vt_head_part_init(&h, v0, vs, c.dim, 16), 0);
        h.hold = hold;
        float *rows = calloc((size_t)vs * c.dim + 1, sizeof(float));
        h.w = rows;
        assert_int_equal(vt_head_part_pack(&h), 0);
        double bytes = (double)(f.packs.bytes + bw.packs.bytes + h.pk[0].bytes + h.pk[1].bytes);
        assert_true(f.packs.bytes > 0 && h.pk[0].bytes > 0);
        assert_true((bw.packs.bytes > 0) == (hold == VT_F32) && (h.pk[1].bytes > 0) == (hold == VT_F32));
        assert_int_equal(f.packs.layers[st->layer_begin].qkv.dtype, hold);
        if (fabs(st->packs - bytes) > 0.5)
            fail_msg("stage %d: plan %.0f bytes of packs, allocated %.0f", s, st->packs, bytes);
        assert_true(fabs(off.stage[s].packs - st->packs) < 0.5);
        assert_true(fabs(st->weights - off.stage[s].weights - st->packs) < 0.5);
        assert_true(fabs(st->total - off.stage[s].total - st->packs) < 0.5);
        vt_head_part_free(&h);
        free(rows);
        vt_fwd_free(&f);
        vt_bwd_free(&bw);
        vt_model_free(&m);
    }
    vt_plan_free(&off);
    vt_plan_free(&on);
    vt_config_free(&c);
}

static void test_plan_packs_match_allocations(void **state) {
    (void)state;
    packs_match_allocations(VT_F32);
    packs_match_allocations(VT_BF16);
    packs_match_allocations(VT_F16);
}

/* The recovery's lora adapters are counted as vt_lora_init lays them out (pruned shapes: removed
 * blocks have none), its optimizer state is two moments of them; at LLaMA-2-7B shapes rank 8 on
 * the seven projections is under 1% of full fine-tuning's moments. */
static void test_plan_recover_terms(void **state) {
    (void)state;
    vt_config c;
    pruned_small_config(&c, 0);
    vt_model m;
    assert_int_equal(vt_model_alloc(&m, &c, vt_load_all()), 0);
    for (unsigned targets = 1; targets <= VT_LORA_ALL; targets = targets * 3 + 1) {
        vt_lora lo;
        assert_int_equal(vt_lora_init(&lo, &m, 3, 3.0f, targets & VT_LORA_ALL, 1, 4), 0);
        vt_plan_input in = {.cfg = &c, .ranks = 1, .batch_size = 2, .seq_len = 8, .steps = 1, .keep_fraction = 1.0,
                            .threads = 1, .recover_method = 1, .recover_steps = 5, .recover_batch = 2,
                            .recover_rank = 3, .recover_targets = targets & VT_LORA_ALL};
        vt_plan p;
        assert_int_equal(vt_plan_make(&in, &p), 0);
        assert_int_equal(p.recover.lora_params, lo.n_params);
        assert_true(p.recover.adam_lora == 8.0 * (double)lo.n_params);
        assert_true(p.peak >= p.recover.total && p.recover.total > p.recover.weights);
        vt_plan_free(&p);
        vt_lora_free(&lo);
    }
    vt_model_free(&m);
    vt_config_free(&c);

    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 4);
    in.stages = 1, in.threads = 1, in.recover_method = 1, in.recover_steps = 10, in.recover_batch = 8;
    in.recover_rank = 8, in.recover_targets = VT_LORA_ALL;
    vt_plan p;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    /* rank 8 x (in + out) over q, k, v, o (4096 + 4096 each), gate, up, down (4096 + 11008) */
    assert_int_equal(p.recover.lora_params, (size_t)32 * 8 * (4 * 8192 + 3 * 15104));
    assert_true(p.recover.adam_lora < 0.01 * p.recover.adam_full);
    /* a step's passes of recover.micro_batch sequences (all 2 of a replica's when unset, 1 here) */
    for (int micro = 0; micro <= 1; micro++) {
        vt_plan q;
        in.recover_micro = micro;
        assert_int_equal(vt_plan_make(&in, &q), 0);
        assert_int_equal(q.recover.micro, micro ? 1 : 2);
        vt_speed sp = {10.0, 0.9, 0.5};
        vt_plan_time t;
        vt_plan_times(&in, &q, &sp, &t);
        double rows = (micro ? 1 : 2) * 512.0;
        assert_true(fabs(t.recover_step_s - q.recover.flops_step * (rows + VT_PLAN_REPACK_ROWS) / rows / 40e9) <
                    1e-9 * t.recover_step_s);
        vt_plan_free(&q);
    }
    vt_plan_free(&p);
    /* over 2 stages a rank holds half the layers of both models: less memory, the same totals,
     * a step at the replicas' rate (the stages pass a micro-batch on one after another) */
    vt_plan one;
    in.stages = 1;
    assert_int_equal(vt_plan_make(&in, &one), 0);
    in.stages = 2;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    assert_true(p.recover.total < 0.75 * one.recover.total && p.recover.weights < 0.6 * one.recover.weights);
    assert_int_equal(p.recover.lora_params, one.recover.lora_params);
    vt_speed sp = {.gflops_core = 10.0, .thread_eff = 0.9, .double_ratio = 0.5};
    vt_plan_time t1, t2;
    vt_plan_times(&in, &p, &sp, &t2);
    in.stages = 1;
    vt_plan_times(&in, &one, &sp, &t1);
    assert_true(fabs(t2.recover_step_s - 2.0 * t1.recover_step_s) < 1e-9 * t1.recover_step_s);
    vt_plan_free(&p);
    vt_plan_free(&one);
    vt_config_free(&c);
}

/* Times: a rank of t threads computes (1 + e (t - 1)) cores' worth; the mask step is its three
 * phases; the hours add up. */
static void test_plan_times(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 8);
    in.stages = 2, in.threads = 4, in.calib_sequences = 100;
    vt_plan p;
    assert_int_equal(vt_plan_make(&in, &p), 0);
    vt_speed sp = {50.0, 0.5, 0.5};
    vt_plan_time t;
    vt_plan_times(&in, &p, &sp, &t);
    assert_true(fabs(t.rank_gflops - 50.0 * 2.5) < 1e-9);
    assert_true(fabs(t.mask_step_s - t.mask_phase_s[0] - t.mask_phase_s[1] - t.mask_phase_s[2]) < 1e-9);
    assert_true(fabs(t.masks_h - 100.0 * t.mask_step_s / 3600.0) < 1e-9);
    assert_true(t.teacher_h > 0);
    assert_true(fabs(t.hours - t.masks_h - t.teacher_h) < 1e-12); /* no re-fit, no recovery */
    vt_plan_free(&p);
    vt_config_free(&c);
}

/* A plan of the 7B shape over `layers` layers, `stages` stages x 1 replica, M micro-batches of one
 * sequence of 512 tokens in C chunks; its times at 100 GFLOP/s per rank, weights packed or not. */
static void staged_times(vt_config *c, int layers, int stages, int M, int C, int packed, vt_plan *p, vt_plan_time *t) {
    llama7b_config(c);
    vt_config_free(c);
    c->n_layers = layers;
    assert_int_equal(vt_config_init_dense(c), 0);
    vt_plan_input in = input_7b(c, stages);
    in.stages = stages, in.batch_size = M, in.micro_batches = M, in.seq_chunks = C, in.pack_weights = packed;
    in.calib_sequences = 6, in.threads = 1;
    assert_int_equal(vt_plan_make(&in, p), 0);
    vt_speed sp = {100.0, 0.9, 0.5};
    vt_plan_times(&in, p, &sp, t);
}

/* The step follows train_step.c's schedule: one stage computes without waiting (the step is its
 * FLOPs at the rate for its matmuls' rows); balanced stages idle S - 1 micro-batches' forward and
 * backward, not the classifier's, so more micro-batches shrink the idle fraction toward 0; chunks
 * of a sequence do the same; unequal stages make the others wait for the largest; and weights
 * BLIS copies on every call slow short micro-batches by VT_PLAN_REPACK_ROWS. */
static void test_plan_step_schedule(void **state) {
    (void)state;
    vt_config c;
    vt_plan p;
    vt_plan_time t, tp;
    double rate = 100e9;
    /* one stage, 4 sequences in 4 micro-batches of 512 rows: no idle time */
    staged_times(&c, 4, 1, 4, 1, 0, &p, &t);
    assert_true(fabs(t.mask_step_s - p.stage[0].flops_rank_step / vt_plan_rows_rate(0, rate, 512)) < 1e-9 * t.mask_step_s);
    assert_true(fabs(t.mask_idle) < 1e-9);
    assert_true(fabs(vt_plan_rows_rate(0, rate, 512) - rate * 512 / (512 + VT_PLAN_REPACK_ROWS)) < 1e-3);
    vt_plan_free(&p), vt_config_free(&c);
    /* two balanced stages of 2 layers: (M + 1) micro-batch slots of layers, M of the classifier */
    double idle_prev = 1.0;
    for (int M = 2; M <= 32; M *= 4) {
        staged_times(&c, 4, 2, M, 1, 0, &p, &t);
        double r = vt_plan_rows_rate(0, rate, 512), f = p.stage[0].flops_layers * 512 / r;
        double h = 2.0 * p.stage[0].flops_head * 512 / r;
        assert_true(fabs(p.stage[0].flops_layers - p.stage[1].flops_layers) < 1e-6);
        assert_true(fabs(t.mask_step_s - ((M + 1) * 2.0 * f + M * h)) < 1e-9 * t.mask_step_s);
        assert_true(fabs(t.mask_idle - 2.0 * f / t.mask_step_s) < 1e-9);
        assert_true(t.mask_idle < idle_prev); /* more micro-batches, less idle */
        idle_prev = t.mask_idle;
        /* packed once: the same schedule at the full rate, (512 + 18) / 512 faster */
        vt_plan q;
        vt_config c2;
        staged_times(&c2, 4, 2, M, 1, 1, &q, &tp);
        assert_true(fabs(t.mask_step_s / tp.mask_step_s - (512 + VT_PLAN_REPACK_ROWS) / 512) < 1e-9);
        vt_plan_free(&q), vt_config_free(&c2);
        vt_plan_free(&p), vt_config_free(&c);
    }
    /* 2 sequences in 2 chunks each: 4 micro-batches of 256 rows, idle less than without chunks */
    staged_times(&c, 4, 2, 2, 1, 0, &p, &t);
    double unchunked = t.mask_idle;
    vt_plan_free(&p), vt_config_free(&c);
    staged_times(&c, 4, 2, 2, 2, 0, &p, &t);
    assert_int_equal(p.micro_batches * p.seq_chunks, 4);
    assert_true(t.mask_idle < unchunked);
    vt_plan_free(&p), vt_config_free(&c);
    /* 3 layers over 2 stages: 2 and 1 (the classifier share is the same); the forward is a flow
     * shop, f0 + f1 + (K - 1) max(f0, f1), and so the backward */
    staged_times(&c, 3, 2, 4, 1, 1, &p, &t);
    double f0 = p.stage[0].flops_layers * 512 / rate, f1 = p.stage[1].flops_layers * 512 / rate;
    assert_true(fabs(fmax(f0, f1) - 2.0 * fmin(f0, f1)) < 0.01 * fmax(f0, f1));
    double fwd = f0 + f1 + 3 * fmax(f0, f1);
    assert_true(fabs(t.mask_phase_s[0] - fwd) < 1e-9 * fwd);
    assert_true(fabs(t.mask_phase_s[2] - fwd) < 1e-9 * fwd);
    assert_true(fabs(t.mask_phase_s[1] - 4 * 2.0 * fmax(p.stage[0].flops_head, p.stage[1].flops_head) * 512 / rate) < 1e-9);
    /* the 2-layer stage waits for the other's first forward and last backward only */
    assert_true(fabs(t.mask_idle - 2.0 * fmin(f0, f1) / t.mask_step_s) < 1e-9);
    vt_plan_free(&p), vt_config_free(&c);
}

/* The teacher pass runs the stages one after another (teacher_cache.c): 2 stages x 1 replica take
 * one rank's time for the layers, less half the classifier; 2 replicas split the sequences. */
static void test_plan_teacher_pass_stages(void **state) {
    (void)state;
    vt_config c;
    vt_plan p;
    vt_plan_time one, two;
    staged_times(&c, 4, 1, 2, 1, 0, &p, &one);
    double r = vt_plan_rows_rate(0, 100e9, 512), layers = p.stage[0].flops_layers, head = p.stage[0].flops_head;
    assert_true(fabs(one.teacher_h * 3600.0 - 6 * (layers + 2.0 * head) * 512 / r) < 1e-9 * one.teacher_h * 3600);
    vt_plan_free(&p), vt_config_free(&c);
    staged_times(&c, 4, 2, 2, 1, 0, &p, &two);
    assert_true(fabs(two.teacher_h * 3600.0 - 6 * (layers + head) * 512 / r) < 1e-9 * two.teacher_h * 3600);
    assert_true(two.teacher_h > 0.75 * one.teacher_h); /* far from the half an even split would give */
    vt_plan_free(&p), vt_config_free(&c);
}

/* The search: on 1 node x 64 cores it takes the fastest layout whose ranks fit the node's memory
 * (checked against every layout made by hand), uses every core, and says when nothing fits. */
static void test_plan_search(void **state) {
    (void)state;
    vt_config c;
    llama7b_config(&c);
    vt_plan_input in = input_7b(&c, 0);
    in.batch_size = 16, in.calib_sequences = 64;
    vt_speed sp = {80.0, 0.9, 0.5};
    vt_machine m = {1, 64, 256.0 * (1 << 30)};
    vt_plan_input got;
    vt_plan best;
    int fits = -1;
    assert_int_equal(vt_plan_search(&in, &m, &sp, &got, &best, &fits), 0);
    assert_int_equal(fits, 1);
    assert_int_equal(got.ranks * got.threads, 64);
    assert_true(best.peak * got.ranks <= m.memory_per_node);
    vt_plan_time bt;
    vt_plan_times(&got, &best, &sp, &bt);
    int fitting = 0;
    for (int t = 1; t <= 64; t *= 2)
        for (int S = 1; S <= 64 / t && S <= 32; S *= 2) {
            vt_plan_input x = in;
            x.ranks = 64 / t, x.threads = t, x.stages = S;
            vt_plan p;
            if (vt_plan_make(&x, &p)) {
                vt_error_clear();
                continue;
            }
            vt_plan_time pt;
            vt_plan_times(&x, &p, &sp, &pt);
            if (p.peak * x.ranks <= m.memory_per_node) {
                fitting++;
                assert_true(pt.hours >= bt.hours - 1e-12);
            }
            vt_plan_free(&p);
        }
    assert_true(fitting > 1); /* a real choice was made */
    /* the fastest layout of all does not fit in 256 GiB: the choice is not simply the most ranks */
    assert_true(got.ranks < 64);
    vt_plan_free(&best);
    m.memory_per_node = 16.0 * (1 << 30);
    assert_int_equal(vt_plan_search(&in, &m, &sp, &got, &best, &fits), 0);
    assert_int_equal(fits, 0);
    vt_plan_free(&best);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weight_floats_match_allocation),
        cmocka_unit_test(test_tape_floats_match_vt_tape_init),
        cmocka_unit_test(test_plan_7b_terms),
        cmocka_unit_test(test_plan_training_state_and_teacher),
        cmocka_unit_test(test_plan_activations_scale_with_micro_batches),
        cmocka_unit_test(test_plan_activations_match_allocations),
        cmocka_unit_test(test_plan_packs_match_allocations),
        cmocka_unit_test(test_plan_chunks_follow_choice),
        cmocka_unit_test(test_plan_refusals),
        cmocka_unit_test(test_plan_recover_terms),
        cmocka_unit_test(test_plan_times),
        cmocka_unit_test(test_plan_step_schedule),
        cmocka_unit_test(test_plan_teacher_pass_stages),
        cmocka_unit_test(test_plan_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
