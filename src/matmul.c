/* matmul.c — row-major sgemm for weight matmuls, choosing BLIS's code path by shape (matmul.h). */
#include "matmul.h"

#include <blis.h>

int vt_sgemm_uses_sup(int m, int n, int k) {
    return m < VT_MATMUL_SUP_BELOW || n < VT_MATMUL_SUP_BELOW || k < VT_MATMUL_SUP_BELOW;
}

void vt_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
              float beta, float *c, int ldc) {
    rntm_t rntm;
    bli_rntm_init_from_global(&rntm); /* threads as BLIS_NUM_THREADS set them */
    bli_rntm_set_l3_sup(vt_sgemm_uses_sup(m, n, k), &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha,
                 (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, &rntm);
}
