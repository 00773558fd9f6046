/* matmul.h — row-major sgemm for weight matmuls, choosing BLIS's code path by shape. */
#ifndef VT_MATMUL_H
#define VT_MATMUL_H

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

#endif
