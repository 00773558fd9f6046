/* matmul.h — row-major sgemm for weight matmuls, choosing BLIS's code path by shape. */
#ifndef VT_MATMUL_H
#define VT_MATMUL_H

#include <stddef.h>

#include "util/dtype.h"

/* C[m,n] = alpha op(A) op(B) + beta C, all row-major (lda, ldb, ldc: row strides); ta, tb: 1 to
 * transpose. BLIS 0.9 sends matmuls with a dimension under about 512 to its unpacked small-matrix
 * path ("sup"), which at weight shapes (4096 x 12288) runs at half the packed path's rate on the
 * machines here (256 rows: 40-80 against 91-94 GFLOP/s, one thread); the packed path only loses
 * when a dimension is a few rows (token-by-token generation). So sup is off unless a dimension is
 * under VT_MATMUL_SUP_BELOW. */
#define VT_MATMUL_SUP_BELOW 32

void vt_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
              float beta, float *c, int ldc);

/* 1 when vt_sgemm runs m x n x k on BLIS's small-matrix path. */
int vt_sgemm_uses_sup(int m, int n, int k);

/* C[m, n] = A[m, k] op(W) + beta C for a weight W held as w (vt_wmat): vt_sgemm when w is fp32,
 * else W widened a block of C's columns at a time into wide (vt_wide_floats(n, k) floats) and each
 * block multiplied by vt_sgemm. BLIS splits C's columns among its own blocks without changing any
 * element's sums, and every block takes the code path the whole product would (at least
 * VT_MATMUL_SUP_BELOW columns), so the results are those of the fp32 W bit for bit. tb 1: W is
 * [n, k] row-major (x W^T, rows widened); 0: W is [k, n] (dY W, column blocks gathered). */
void vt_sgemm_w(int tb, int m, int n, int k, const float *a, int lda, vt_wmat w, float beta, float *c, int ldc,
                float *wide);
/* Floats of the widening scratch vt_sgemm_w needs for an n x k W held in 16 bits: blocks of about
 * VT_WIDE_FLOATS (16 MiB), a few per matrix, so a 4096-row micro-batch repacks its rows a few times. */
#define VT_WIDE_FLOATS (1u << 22)
size_t vt_wide_floats(int n, int k);
/* Changes the block (default VT_WIDE_FLOATS; tests make it small: several blocks per matrix);
 * call it before sizing scratch with vt_wide_floats. */
void vt_wide_block_set(size_t floats);

/* A frozen weight matrix packed once in the layout of BLIS's micro-kernel, as the B operand of
 * C[m,n] = A[m,k] B[k,n]: KC-deep blocks of NR-column slivers, zero-padded to whole slivers. BLIS
 * packs B again on every call, which at a pipeline micro-batch's 256 rows costs about a tenth of
 * the matmul; a packed weight skips that. The slivers are held in dtype: fp32, or the 16-bit type
 * a checkpoint stored the weights in (half the bytes), each KC x NR sliver widened to fp32 just
 * before the micro-kernel reads it; widening is exact, so the products are those of fp32 slivers.
 * data NULL: not packed. */
typedef struct {
    int k, n, kc, nr;
    vt_dtype dtype;
    int transposed; /* 1: a view of a pack of B^T (vt_pack_transposed), its data not owned */
    void *data;     /* float, or uint16_t holding dtype */
    size_t bytes;   /* owned: 0 for a view */
} vt_packed;

/* 1 when vt_pack can pack here: the micro-kernel prefers rows (row-major C). */
int vt_pack_available(void);

/* Threads of a rank (parallel.threads): BLIS's matmuls, the packed matmul and the OpenMP loops of
 * the forward and backward passes all run on this many. Every loop splits independent rows or
 * columns, so results do not depend on the count (tests/unit/test_threads.c). */
#define VT_MAX_THREADS 1024
/* BLIS_NUM_THREADS when it is a positive number, else 1. */
int vt_threads_default(void);
/* Sets BLIS's and OpenMP's thread counts to n (n <= 0: vt_threads_default()); call it before any
 * vt_fwd_init / vt_bwd_init / vt_pack, which size per-thread buffers by it. */
int vt_threads_set(int n);
/* The rank's threads now (OpenMP's count). */
int vt_threads(void);
/* 1 when a loop over `work` floats should run on the rank's threads: more than one thread, and at
 * least the grain of work (default VT_THREAD_GRAIN; a parallel region costs microseconds, and on a
 * machine with more threads than free cores each one waits for the scheduler). For the OpenMP
 * if() clause of the loops. vt_threads_grain_set changes the grain (tests set 0: every loop splits). */
#define VT_THREAD_GRAIN 32768
int vt_par(size_t work);
void vt_threads_grain_set(size_t floats);
/* bli_sgemm (row-major, row strides) on one thread with BLIS's own choice of code path: for
 * small products inside a parallel loop, which must not start threads of their own. */
void vt_sgemm_one_thread(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                         int ldb, float beta, float *c, int ldc);
/* Packs B = W^T for W[n, k] (trans 1: the forward x W^T) or B = W for W[k, n] (trans 0: the
 * backward dY W); row stride of W = its row length. hold: the type to hold the slivers in; a 16-bit
 * hold applies only when every weight is exactly representable in it (weights loaded from a
 * checkpoint of that type are; re-fitted or gate-folded ones are not), else the pack is fp32.
 * Reports and returns -1 when out of memory. */
int vt_pack(vt_packed *p, const float *w, int k, int n, int trans, vt_dtype hold);
/* The same from a weight held as w (a 16-bit w is exact in its own type). */
int vt_pack_w(vt_packed *p, vt_wmat w, int k, int n, int trans, vt_dtype hold);
/* p as B[k, n] = A^T for the pack `of` of A[n, k], sharing its data: each KC x NR sliver of B is
 * gathered (and widened) from of's slivers as the packed loop reaches it. For a 16-bit pack, whose
 * slivers are widened into a buffer anyway, this costs about what widening does and saves the
 * second copy (the backward dY W reads the forward pack of W^T). p must not outlive `of`. */
void vt_pack_transposed(vt_packed *p, const vt_packed *of);
/* Bytes vt_pack holds for B[k, n] in dtype (the slivers padded to whole ones). */
size_t vt_packed_bytes(int k, int n, vt_dtype dtype);
void vt_packed_free(vt_packed *p);
/* C[m,n] = A[m,k] B + beta C with B packed (b->k == k, b->n == n); A row-major with row stride lda,
 * C with ldc. Callers use it where vt_packed_use says so. */
void vt_sgemm_packed(int m, const float *a, int lda, const vt_packed *b, float beta, float *c, int ldc);
/* W[n_out, n_in] of a linear layer packed for its forward x W^T (backward 0) or its backward
 * dY W (backward 1), held as vt_pack holds it. */
int vt_pack_linear(vt_packed *p, const float *w, int n_in, int n_out, int backward, vt_dtype hold);
int vt_pack_linear_w(vt_packed *p, vt_wmat w, int n_in, int n_out, int backward, vt_dtype hold);
/* 1 when a product of m rows should use the packed weight b (packed, and m not small enough for
 * BLIS's small-matrix path to be the faster one). */
int vt_packed_use(const vt_packed *b, int m);

#endif
