/* matmul.c — row-major sgemm for weight matmuls, choosing BLIS's code path by shape (matmul.h). */
#include "nn/matmul.h"

#include <blis.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

int vt_sgemm_uses_sup(int m, int n, int k) {
    return m < VT_MATMUL_SUP_BELOW || n < VT_MATMUL_SUP_BELOW || k < VT_MATMUL_SUP_BELOW;
}

void vt_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
              float beta, float *c, int ldc) {
    rntm_t rntm;
    bli_rntm_init_from_global(&rntm); /* the rank's threads (vt_threads_set) */
    if (!vt_par((size_t)m * n * k / 64)) bli_rntm_set_num_threads(1, &rntm); /* too small to share */
    bli_rntm_set_l3_sup(vt_sgemm_uses_sup(m, n, k), &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha,
                 (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, &rntm);
}

/* The micro-kernel and its block sizes, from BLIS's context for this CPU. */
typedef struct {
    cntx_t *cntx;
    sgemm_ukr_ft ukr;
    int mr, nr, kc, mc;
    int row_pref;
} micro_kernel;

static const micro_kernel *kernel(void) {
    static micro_kernel k;
    if (!k.cntx) {
        bli_init();
        cntx_t *c = bli_gks_query_cntx();
        k.ukr = (sgemm_ukr_ft)bli_cntx_get_l3_nat_ukr_dt(BLIS_FLOAT, BLIS_GEMM_UKR, c);
        k.mr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MR, c);
        k.nr = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_NR, c);
        k.kc = (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_KC, c);
        /* rows of A packed at once: up to 2 x BLIS's MC, so a 256-row micro-batch is one block and
         * every sliver of B is read once per KC block (measured: 3-5% faster than MC here) */
        k.mc = 2 * (int)bli_cntx_get_blksz_def_dt(BLIS_FLOAT, BLIS_MC, c);
        k.mc -= k.mc % k.mr;
        k.row_pref = bli_cntx_get_l3_nat_ukr_prefs_dt(BLIS_FLOAT, BLIS_GEMM_UKR, c);
        k.cntx = c;
    }
    return &k;
}

/* One MC x KC block of A packed for the kernel per thread of the rank, shared by every packed
 * matmul of this process (called outside parallel regions); allocated by vt_pack for the threads
 * there are then, so a matmul itself never fails (with more threads later it uses a_count). */
static float **a_blocks;
static int a_count;

static float *alloc64(size_t bytes, const char *what) {
    float *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) vt_fail("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

/* Grows a_blocks to n buffers of (MC + MR) x KC floats. */
static int a_blocks_reserve(int n) {
    const micro_kernel *mk = kernel();
    if (n <= a_count) return 0;
    float **grown = realloc(a_blocks, sizeof *grown * (size_t)n);
    if (!grown) return vt_fail("out of memory allocating the packed matmul's row blocks for %d threads", n);
    a_blocks = grown;
    for (; a_count < n; a_count++)
        if (!(a_blocks[a_count] = alloc64(sizeof(float) * (size_t)(mk->mc + mk->mr) * mk->kc, "packed matmul rows")))
            return -1;
    return 0;
}

int vt_threads_default(void) {
    const char *e = getenv("BLIS_NUM_THREADS");
    char *end;
    long n = e ? strtol(e, &end, 10) : 0;
    return e && *e && !*end && n > 0 && n <= VT_MAX_THREADS ? (int)n : 1;
}

int vt_threads_set(int n) {
    if (n <= 0) n = vt_threads_default();
    if (n > VT_MAX_THREADS) return vt_fail("parallel.threads = %d: at most %d threads per rank", n, VT_MAX_THREADS);
    kernel(); /* bli_init before BLIS's global thread count is set */
    bli_thread_set_num_threads(n);
    omp_set_num_threads(n);
    return 0;
}

int vt_threads(void) { return omp_get_max_threads(); }

static size_t grain = VT_THREAD_GRAIN;

void vt_threads_grain_set(size_t floats) { grain = floats; }

int vt_par(size_t work) { return work >= grain && omp_get_max_threads() > 1; }

int vt_pack_available(void) {
    const micro_kernel *k = kernel();
    return k->row_pref && k->ukr && k->mr > 0 && k->nr > 0 && k->kc > 0;
}

size_t vt_packed_bytes(int k, int n) {
    int nr = kernel()->nr;
    return sizeof(float) * (size_t)((n + nr - 1) / nr) * nr * (size_t)k;
}

int vt_pack(vt_packed *p, const float *w, int k, int n, int trans) {
    const micro_kernel *mk = kernel();
    int nr = mk->nr, kcb = mk->kc, slivers = (n + nr - 1) / nr;
    memset(p, 0, sizeof *p);
    if (a_blocks_reserve(vt_threads())) return -1;
    p->bytes = vt_packed_bytes(k, n);
    p->data = alloc64(p->bytes, "packed weights");
    if (!p->data) return -1;
    p->k = k;
    p->n = n;
    p->kc = kcb;
    p->nr = nr;
    for (int pc = 0; pc < k; pc += kcb) {
        int kc = k - pc < kcb ? k - pc : kcb;
        for (int j = 0; j < slivers; j++) {
            float *d = p->data + (size_t)pc * slivers * nr + (size_t)j * nr * kc;
            int cols = n - j * nr < nr ? n - j * nr : nr;
            if (trans) /* B[q][j] = W[j][q]: read W's rows, write the sliver's columns */
                for (int r = 0; r < nr; r++) {
                    const float *src = w + (size_t)(j * nr + r) * k + pc;
                    for (int q = 0; q < kc; q++) d[(size_t)q * nr + r] = r < cols ? src[q] : 0.0f;
                }
            else
                for (int q = 0; q < kc; q++) {
                    const float *src = w + (size_t)(pc + q) * n + (size_t)j * nr;
                    for (int r = 0; r < nr; r++) d[(size_t)q * nr + r] = r < cols ? src[r] : 0.0f;
                }
        }
    }
    return 0;
}

int vt_pack_linear(vt_packed *p, const float *w, int n_in, int n_out, int backward) {
    return backward ? vt_pack(p, w, n_out, n_in, 0) : vt_pack(p, w, n_in, n_out, 1);
}

void vt_packed_free(vt_packed *p) {
    free(p->data);
    memset(p, 0, sizeof *p);
}

int vt_packed_use(const vt_packed *b, int m) {
    return b && b->data && !vt_sgemm_uses_sup(m, b->n, b->k);
}

/* A[rows, kc] (row stride lda) into MR-row micro-panels [kc][MR], zero-padded to whole panels. */
static void pack_a(float *dst, const float *a, int lda, int rows, int kc, int mr) {
    for (int i = 0; i < rows; i += mr) {
        float *d = dst + (size_t)i * kc;
        for (int r = 0; r < mr; r++) {
            if (i + r < rows) {
                const float *src = a + (size_t)(i + r) * lda;
                for (int q = 0; q < kc; q++) d[(size_t)q * mr + r] = src[q];
            } else
                for (int q = 0; q < kc; q++) d[(size_t)q * mr + r] = 0.0f;
        }
    }
}

/* Slivers j0..j1 of C[m, n] = A B + beta C (every KC block, every MC block of rows), with abuf
 * for A's packed rows: one thread's share of vt_sgemm_packed. Each element of C gets the same
 * micro-kernel calls in the same order whatever the share, so any split gives the same bits. */
static void packed_slivers(const micro_kernel *mk, int m, const float *a, int lda, const vt_packed *b, float beta,
                           float *c, int ldc, int j0, int j1, float *abuf) {
    int mr = mk->mr, nr = b->nr, k = b->k, n = b->n, slivers = (n + nr - 1) / nr;
    float one = 1.0f;
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    for (int pc = 0; pc < k; pc += b->kc) {
        int kc = k - pc < b->kc ? k - pc : b->kc;
        float bt = pc ? 1.0f : beta;
        const float *bp = b->data + (size_t)pc * slivers * nr;
        for (int ic = 0; ic < m; ic += mk->mc) {
            int mc = m - ic < mk->mc ? m - ic : mk->mc, panels = (mc + mr - 1) / mr;
            pack_a(abuf, a + (size_t)ic * lda + pc, lda, mc, kc, mr);
            for (int j = j0; j < j1; j++) {
                float *bj = (float *)bp + (size_t)j * nr * kc;
                int cols = n - j * nr < nr ? n - j * nr : nr;
                for (int i = 0; i < panels; i++) {
                    int rows = mc - i * mr < mr ? mc - i * mr : mr;
                    int last = i + 1 == panels; /* the kernel prefetches the next panels */
                    bli_auxinfo_set_next_a(abuf + (size_t)(last ? 0 : i + 1) * mr * kc, &aux);
                    bli_auxinfo_set_next_b(last && j + 1 < slivers ? bj + (size_t)nr * kc : bj, &aux);
                    mk->ukr(rows, cols, kc, &one, abuf + (size_t)i * mr * kc, bj, &bt,
                            c + (size_t)(ic + i * mr) * ldc + (size_t)j * nr, ldc, 1, &aux, mk->cntx);
                }
            }
        }
    }
}

/* The rank's threads split the NR slivers of B (columns of C) evenly; each packs the rows of A
 * itself into its own buffer (A is m x k, a 1/n share of the work), so the threads never wait for
 * each other and each reads only its own part of B. */
void vt_sgemm_packed(int m, const float *a, int lda, const vt_packed *b, float beta, float *c, int ldc) {
    const micro_kernel *mk = kernel();
    int slivers = (b->n + b->nr - 1) / b->nr, nt = vt_par((size_t)m * b->n * b->k / 64) ? vt_threads() : 1;
    if (nt > a_count) nt = a_count;
    if (nt > slivers) nt = slivers;
    if (nt <= 1) {
        packed_slivers(mk, m, a, lda, b, beta, c, ldc, 0, slivers, a_blocks[0]);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), team = omp_get_num_threads();
        packed_slivers(mk, m, a, lda, b, beta, c, ldc, (int)((long)slivers * t / team),
                       (int)((long)slivers * (t + 1) / team), a_blocks[t]);
    }
}

void vt_sgemm_one_thread(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                         int ldb, float beta, float *c, int ldc) {
    rntm_t rntm;
    bli_rntm_init_from_global(&rntm); /* BLIS's own choice of code path, as bli_sgemm makes it */
    bli_rntm_set_num_threads(1, &rntm);
    bli_sgemm_ex(ta ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, tb ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha,
                 (float *)a, lda, 1, (float *)b, ldb, 1, &beta, c, ldc, 1, NULL, &rntm);
}
