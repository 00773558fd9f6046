/* bench_sgemm.c — the limit: BLIS sgemm GFLOP/s at the shapes of a LLaMA layer (rows x out x in), as
 * the weight matmuls call it (vt_linear, matmul.h), with BLIS's default choice of code path, and with
 * the weights packed once beforehand (vt_pack, as parallel.pack_weights runs). */
#include "bench_util.h"
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util/error.h"
#include "nn/forward.h"

enum { PATH_OURS, PATH_BLIS_DEFAULT, PATH_PACKED };

/* C[m,n] = A[m,k] B[n,k]^T as the forward pass calls it (vt_linear), as plain bli_sgemm runs it, or
 * through B packed once before the timing; best of `reps` after a warm-up. */
static double gflops(int m, int n, int k, int reps, int path) {
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)n * k);
    float *c = malloc(sizeof(float) * (size_t)m * n), one = 1.0f, zero = 0.0f;
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    vt_packed pk = {0};
    if (path == PATH_PACKED && vt_pack_linear(&pk, b, k, n, 0, VT_F32)) {
        fprintf(stderr, "bench_sgemm: %s\n", vt_error());
        exit(1);
    }
    for (int r = 0; r <= reps; r++) {
        double t0 = vt_seconds();
        if (path == PATH_BLIS_DEFAULT)
            bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, m, n, k, &one, a, k, 1, b, k, 1, &zero, c, n, 1);
        else vt_linear(c, a, b, path == PATH_PACKED ? &pk : NULL, m, k, n, 0.0f);
        double dt = vt_seconds() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    vt_packed_free(&pk);
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / best * 1e-9;
}

/* The model's rate if every matmul ran at its shape's sgemm rate: FLOPs over summed times; the
 * shapes' rates go to r[5] (qkv, o, gate_up, down, head). */
static double model_mix(int rows, int hidden, int ffn, int vocab, int layers, int reps, int path, double r[5]) {
    int n[5] = {3 * hidden, hidden, 2 * ffn, hidden, vocab}, k[5] = {hidden, hidden, hidden, ffn, hidden};
    double flops = 0.0, seconds = 0.0;
    for (int i = 0; i < 5; i++) {
        double f = 2.0 * rows * n[i] * k[i] * (i < 4 ? layers : 1);
        r[i] = gflops(rows, n[i], k[i], reps, path);
        flops += f;
        seconds += f / r[i];
    }
    return flops / seconds;
}

int main(int argc, char **argv) {
    int rows = argc > 1 ? atoi(argv[1]) : 256, hidden = argc > 2 ? atoi(argv[2]) : 4096;
    int ffn = argc > 3 ? atoi(argv[3]) : 11008, vocab = argc > 4 ? atoi(argv[4]) : 32000;
    int layers = argc > 5 ? atoi(argv[5]) : 2, reps = 3;
    double r[5], d[5];
    double mix = model_mix(rows, hidden, ffn, vocab, layers, reps, PATH_OURS, r);
    printf("{\"rows\": %d, \"qkv\": %.2f, \"o\": %.2f, \"gate_up\": %.2f, \"down\": %.2f, \"head\": %.2f, "
           "\"model_mix\": %.2f",
           rows, r[0], r[1], r[2], r[3], r[4], mix);
    /* BLIS's own choice differs from ours only where it picks its small-matrix path: under 512 rows */
    if (rows < 512)
        printf(", \"blis_default_mix\": %.2f", model_mix(rows, hidden, ffn, vocab, layers, reps, PATH_BLIS_DEFAULT, d));
    if (vt_pack_available())
        printf(", \"packed_mix\": %.2f", model_mix(rows, hidden, ffn, vocab, layers, reps, PATH_PACKED, d));
    printf("}\n");
    return 0;
}
