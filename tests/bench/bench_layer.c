/* bench_layer.c — what packing the weights once gains in a training micro-batch: one layer of
 * LLaMA-2-7B shape (or the sizes given), a gated forward pass with its tape and the backward pass
 * to the gates, for `rows` tokens, timed alternately with BLIS packing the weights in every matmul
 * and with the weights packed once (vt_model_packs_init), so that both see the same machine speed.
 * With --threads N: the packed step timed alternately on 1 thread and on N threads in this one
 * process (parallel.threads), and the ratio; the outputs of both must be bitwise the same.
 * Usage: bench_layer [--threads N] [tokens [rounds [hidden ffn heads]]]; prints one JSON line. */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/backward.h"
#include "util/error.h"
#include "nn/forward.h"
#include "nn/masks.h"
#include "nn/matmul.h"
#include "util/rng.h"

int main(int argc, char **argv) {
    int threads = 0; /* 0: packed against plain; N: packed on 1 against N threads */
    if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
        threads = atoi(argv[2]);
        argv += 2;
        argc -= 2;
        bench_check("bench_layer", threads < 1 || vt_threads_set(threads) ? vt_fail("--threads: a thread count, got %s", argv[0]) : 0,
              "threads");
    } else
        bench_check("bench_layer", vt_threads_set(0), "threads"); /* BLIS_NUM_THREADS or 1, as before */
    int T = argc > 1 ? atoi(argv[1]) : 256, rounds = argc > 2 ? atoi(argv[2]) : 4;
    vt_config c;
    memset(&c, 0, sizeof c);
    c.dim = argc > 3 ? atoi(argv[3]) : 4096;
    c.ffn_dim = argc > 4 ? atoi(argv[4]) : 11008;
    c.n_heads = c.n_kv_heads = argc > 5 ? atoi(argv[5]) : 32;
    c.head_dim = c.dim / c.n_heads;
    c.n_layers = 1;
    c.vocab = 32;
    c.seq_len = T;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    bench_check("bench_layer", vt_config_init_dense(&c), "config");
    vt_model m;
    vt_load_parts parts = {0, 1, 0, 0};
    bench_check("bench_layer", vt_model_alloc(&m, &c, parts), "weights");
    uint64_t s = 88172645463325252ull;
    bench_fill(m.arena, m.arena_floats, &s, 0.04f);
    for (int i = 0; i < c.dim; i++) m.layers[0].attn_norm[i] = m.layers[0].ffn_norm[i] = 1.0f;
    vt_masks mk;
    bench_check("bench_layer", vt_masks_init(&mk, &c, 1), "gates");
    size_t n = mk.n, rows = (size_t)T, d = (size_t)c.dim;
    float *z = malloc(sizeof(float) * n), *dz = malloc(sizeof(float) * n);
    float *x = malloc(sizeof(float) * rows * d), *x0 = malloc(sizeof(float) * rows * d);
    for (size_t i = 0; i < n; i++) z[i] = 1.0f;
    for (size_t i = 0; i < rows * d; i++) x0[i] = (float)((int)(i * 37 % 19) - 9) * 0.05f;
    vt_gates g = {&mk, z, 0};
    vt_fwd f;
    vt_bwd bw;
    vt_tape tp;
    vt_model_packs fp = {0}, bp = {0};
    bench_check("bench_layer", vt_fwd_init(&f, &m, 1, T, T) || vt_bwd_init(&bw, &m, 1, T, T) || vt_tape_init(&tp, &m, 1, T, 0), "scratch");
    double t0 = vt_seconds();
    bench_check("bench_layer", vt_model_packs_init(&fp, &m, 0) || vt_model_packs_init(&bp, &m, 1), "packs");
    double pack_s = vt_seconds() - t0;
    double best[2] = {1e30, 1e30}, sum[2] = {0, 0}, cpu[2] = {0, 0};
    float *out[2] = {malloc(sizeof(float) * n), malloc(sizeof(float) * n)};
    for (int r = 0; r <= rounds; r++)
        for (int packed = 0; packed < 2; packed++) { /* with --threads: 0 = 1 thread, 1 = N threads */
            if (threads) bench_check("bench_layer", vt_threads_set(packed ? threads : 1), "threads");
            f.packs = packed || threads ? fp : (vt_model_packs){0};
            bw.packs = packed || threads ? bp : (vt_model_packs){0};
            memcpy(x, x0, sizeof(float) * rows * d);
            memset(dz, 0, sizeof(float) * n);
            t0 = vt_seconds();
            double c0 = bench_cpu_seconds();
            vt_layers_forward_ex(&m, &f, 0, 1, x, 1, T, 0, &g, &tp);
            vt_layers_backward(&m, &f, &bw, 0, 1, x, 1, T, &g, &tp, dz, NULL);
            double dt = vt_seconds() - t0;
            memcpy(out[packed], dz, sizeof(float) * n);
            if (r == 0) continue; /* warm-up: first touch of the tape */
            cpu[packed] += bench_cpu_seconds() - c0;
            sum[packed] += dt;
            if (dt < best[packed]) best[packed] = dt;
        }
    f.packs = bw.packs = (vt_model_packs){0};
    double flops = 2.0 * 2.0 * (double)rows * (double)vt_layer_params(&c, 0); /* matmuls, forward + input grads */
    if (threads) {
        int same = memcmp(out[0], out[1], sizeof(float) * n) == 0;
        printf("{\"tokens\": %d, \"rounds\": %d, \"threads\": %d, \"one_s\": %.4f, \"many_s\": %.4f, "
               "\"one_best_s\": %.4f, \"many_best_s\": %.4f, \"speedup\": %.3f, \"one_gflops\": %.1f, "
               "\"many_gflops\": %.1f, \"one_cpu_s\": %.4f, \"many_cpu_s\": %.4f, \"same_gates_gradient\": %s}\n",
               T, rounds, threads, sum[0] / rounds, sum[1] / rounds, best[0], best[1], sum[0] / sum[1],
               flops / (sum[0] / rounds) * 1e-9, flops / (sum[1] / rounds) * 1e-9, cpu[0] / rounds, cpu[1] / rounds,
               same ? "true" : "false");
        if (!same) return 1;
    } else
        printf("{\"tokens\": %d, \"rounds\": %d, \"plain_s\": %.4f, \"packed_s\": %.4f, \"plain_best_s\": %.4f, "
           "\"packed_best_s\": %.4f, \"gain\": %.3f, \"plain_gflops\": %.1f, \"packed_gflops\": %.1f, \"pack_s\": %.3f}\n",
           T, rounds, sum[0] / rounds, sum[1] / rounds, best[0], best[1], sum[0] / sum[1], flops / (sum[0] / rounds) * 1e-9,
           flops / (sum[1] / rounds) * 1e-9, pack_s);
    free(out[0]);
    free(out[1]);
    vt_model_packs_free(&fp);
    vt_model_packs_free(&bp);
    vt_tape_free(&tp);
    vt_bwd_free(&bw);
    vt_fwd_free(&f);
    vt_masks_free(&mk);
    free(z);
    free(dz);
    free(x);
    free(x0);
    vt_model_free(&m);
    vt_config_free(&c);
    return 0;
}
