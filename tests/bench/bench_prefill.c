/* bench_prefill.c — the prefill time of a prompt on a LLaMA-2-7B-shaped stack of 2 layers (random
 * weights), dense against plugged by Variator plugins (k, r; random plugin), timed alternately in
 * one process so that both see the same machine speed. The 2 layers are layers 0-1 of a 3-layer
 * model, so both run plugged as every layer of a deep model but its last does (the last-layer rule,
 * docs/PLUGINS.md, would flatter a 2-layer model whose second layer is its last). No classifier;
 * the weights packed once (as eval runs). BLIS_NUM_THREADS sets the threads.
 * Usage: bench_prefill [tokens [rounds [k [r [hidden ffn heads]]]]]; prints one JSON line. */
#include "bench_util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn/forward.h"
#include "nn/plugin.h"
#include "util/error.h"
#include "util/rng.h"

int main(int argc, char **argv) {
    int T = argc > 1 ? atoi(argv[1]) : 1024, rounds = argc > 2 ? atoi(argv[2]) : 3;
    int k = argc > 3 ? atoi(argv[3]) : 4, r = argc > 4 ? atoi(argv[4]) : 64;
    vt_config c;
    memset(&c, 0, sizeof c);
    c.dim = argc > 5 ? atoi(argv[5]) : 4096;
    c.ffn_dim = argc > 6 ? atoi(argv[6]) : 11008;
    c.n_heads = c.n_kv_heads = argc > 7 ? atoi(argv[7]) : 32;
    c.head_dim = c.dim / c.n_heads;
    c.n_layers = 3; /* layers 0-1 held: neither is the model's last */
    c.vocab = 32;
    c.seq_len = T;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    bench_check("bench_prefill", vt_config_init_dense(&c), "config");
    vt_model m;
    vt_load_parts parts = {0, 2, 0, 0};
    bench_check("bench_prefill", vt_model_alloc(&m, &c, parts), "weights");
    uint64_t s = 88172645463325252ull;
    bench_fill(m.arena, m.arena_floats, &s, 0.04f);
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < c.dim; i++) m.layers[l].attn_norm[i] = m.layers[l].ffn_norm[i] = 1.0f;
    vt_plugin p;
    bench_check("bench_prefill", vt_plugin_alloc(&p, &c, k, r), "plugin");
    bench_fill(p.arena, p.arena_floats, &s, 0.02f); /* every tensor random, W2 too: the adapter runs in full */
    size_t rows = (size_t)T, d = (size_t)c.dim;
    float *x = malloc(sizeof(float) * rows * d), *x0 = malloc(sizeof(float) * rows * d);
    bench_check("bench_prefill", !x || !x0, "activations");
    bench_fill(x0, rows * d, &s, 1.0f);
    vt_fwd f;
    vt_plugin_work w;
    bench_check("bench_prefill", vt_fwd_init(&f, &m, 1, T, T) || vt_plugin_work_init(&w, &m, &p, 1, T), "scratch");
    /* the weights packed once, as eval and generate run the frozen model (vt_cont_work_init): else
     * every matmul re-packs a whole weight matrix, a cost that does not shrink with the rows */
    bench_check("bench_prefill", vt_model_packs_init(&f.packs, &m, 0), "packs");
    double best[2] = {1e30, 1e30}, sum[2] = {0, 0};
    for (int rd = 0; rd <= rounds; rd++) /* round 0: warm-up (first touch of the buffers), not counted */
        for (int plugged = 0; plugged < 2; plugged++) {
            memcpy(x, x0, sizeof(float) * rows * d);
            double t0 = vt_seconds();
            if (plugged) vt_plugged_forward(&m, &f, &p, &w, 0, 2, x, 1, T, NULL, NULL);
            else vt_layers_forward(&m, &f, 0, 2, x, 1, T, 0);
            double dt = vt_seconds() - t0;
            fprintf(stderr, "bench_prefill: round %d %s %.2f s\n", rd, plugged ? "plugged" : "dense", dt);
            if (rd == 0) continue;
            sum[plugged] += dt;
            if (dt < best[plugged]) best[plugged] = dt;
        }
    double fd = 0, fp = 0; /* counted FLOPs of the two layers, as vt_prefill_flops counts */
    for (int l = 0; l < 2; l++) {
        double ffn = 6.0 * c.dim * c.layers[l].ffn, G = vt_plugin_groups(T, k, 1), E = T - G * k;
        double rest = T * (vt_layer_flops(&c, l, (T + 1) / 2.0) - ffn);
        fd += rest + T * ffn;
        fp += rest + (G + E) * ffn + G * k * (4.0 * c.dim + 4.0 * c.dim * r) + G * 2.0 * c.dim * r;
    }
    printf("{\"tokens\": %d, \"k\": %d, \"r\": %d, \"rounds\": %d, \"dense_s\": %.3f, \"plugged_s\": %.3f, "
           "\"dense_best_s\": %.3f, \"plugged_best_s\": %.3f, \"speedup\": %.3f, \"speedup_best\": %.3f, "
           "\"flops_ratio\": %.3f}\n",
           T, k, r, rounds, sum[0] / rounds, sum[1] / rounds, best[0], best[1], sum[0] / sum[1], best[0] / best[1],
           fd / fp);
    vt_plugin_work_free(&w);
    vt_fwd_free(&f);
    vt_plugin_free(&p);
    free(x);
    free(x0);
    vt_model_free(&m);
    vt_config_free(&c);
    return 0;
}
