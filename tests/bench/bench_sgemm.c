/* bench_sgemm.c — the limit: BLIS sgemm GFLOP/s at the shapes of a LLaMA layer (rows x out x in). */
#include <blis.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* C[m,n] = A[m,k] B[n,k]^T as the forward pass calls it; best of `reps` after a warm-up. */
static double gflops(int m, int n, int k, int reps) {
    float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)n * k);
    float *c = malloc(sizeof(float) * (size_t)m * n), one = 1.0f, zero = 0.0f;
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)n * k; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t0 = now();
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_TRANSPOSE, m, n, k, &one, a, k, 1, b, k, 1, &zero, c, n, 1);
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * m * n * k / best * 1e-9;
}

int main(int argc, char **argv) {
    int rows = argc > 1 ? atoi(argv[1]) : 256, hidden = argc > 2 ? atoi(argv[2]) : 4096;
    int ffn = argc > 3 ? atoi(argv[3]) : 11008, vocab = argc > 4 ? atoi(argv[4]) : 32000;
    int layers = argc > 5 ? atoi(argv[5]) : 2, reps = 3;
    double qkv = gflops(rows, 3 * hidden, hidden, reps), o = gflops(rows, hidden, hidden, reps);
    double up = gflops(rows, 2 * ffn, hidden, reps), down = gflops(rows, hidden, ffn, reps);
    double head = gflops(rows, vocab, hidden, reps);
    /* The model's rate if every matmul ran at its shape's sgemm rate: FLOPs over summed times. */
    double f_qkv = 3.0 * hidden * hidden * layers, f_o = 1.0 * hidden * hidden * layers;
    double f_up = 2.0 * ffn * hidden * layers, f_down = 1.0 * ffn * hidden * layers, f_head = 1.0 * vocab * hidden;
    double mix = (f_qkv + f_o + f_up + f_down + f_head) /
                 (f_qkv / qkv + f_o / o + f_up / up + f_down / down + f_head / head);
    printf("{\"rows\": %d, \"qkv\": %.2f, \"o\": %.2f, \"gate_up\": %.2f, \"down\": %.2f, \"head\": %.2f, "
           "\"model_mix\": %.2f}\n", rows, qkv, o, up, down, head, mix);
    return 0;
}
