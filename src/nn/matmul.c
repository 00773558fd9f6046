/* matmul.c — row-major sgemm for weight matmuls, choosing BLIS's code path by shape (matmul.h). */
#include "nn/matmul.h"

#include <blis.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util/dtype.h"
#include "util/error.h"

/* Floats of the widest KC x NR sliver a 16-bit pack widens into (on the stack of the packed loop). */
#define SLIVER_MAX (512 * 32)

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

/* Columns of C per block of vt_sgemm_w: about VT_WIDE_FLOATS of W, a multiple of
 * VT_MATMUL_SUP_BELOW; the last block takes the rest when less than that would remain. */
static size_t wide_block = VT_WIDE_FLOATS;

void vt_wide_block_set(size_t floats) { wide_block = floats; }

static int wide_cols(int n, int k) {
    size_t nb = wide_block / (size_t)(k > 0 ? k : 1);
    nb -= nb % VT_MATMUL_SUP_BELOW;
    if (nb < VT_MATMUL_SUP_BELOW) nb = VT_MATMUL_SUP_BELOW;
    return nb + VT_MATMUL_SUP_BELOW > (size_t)n ? n : (int)nb;
}

size_t vt_wide_floats(int n, int k) {
    int most = wide_cols(n, k) + VT_MATMUL_SUP_BELOW - 1; /* the widest block: the last may take the rest */
    return (size_t)(most < n ? most : n) * (size_t)k;
}

void vt_sgemm_w(int tb, int m, int n, int k, const float *a, int lda, vt_wmat w, float beta, float *c, int ldc,
                float *wide) {
    if (w.f) {
        vt_sgemm(0, tb, m, n, k, 1.0f, a, lda, w.f, tb ? k : n, beta, c, ldc);
        return;
    }
    int nb = wide_cols(n, k);
    for (int j0 = 0; j0 < n; j0 += nb) {
        int cols = n - j0 < nb + VT_MATMUL_SUP_BELOW ? n - j0 : nb; /* no block narrower than the threshold */
        if (tb) /* rows j0.. of W[n, k] */
            vt_convert_to_f32(wide, w.h + (size_t)j0 * k, w.t, (size_t)cols * k);
        else /* columns j0.. of W[k, n], row by row */
            for (int q = 0; q < k; q++) vt_convert_to_f32(wide + (size_t)q * cols, w.h + (size_t)q * n + j0, w.t, cols);
        vt_sgemm(0, tb, m, cols, k, 1.0f, a, lda, wide, tb ? k : cols, beta, c + j0, ldc);
        if (cols > nb) break;
    }
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
    return k->row_pref && k->ukr && k->mr > 0 && k->nr > 0 && k->kc > 0 && k->kc * k->nr <= SLIVER_MAX;
}

size_t vt_packed_bytes(int k, int n, vt_dtype dtype) {
    int nr = kernel()->nr;
    return vt_dtype_size(dtype) * (size_t)((n + nr - 1) / nr) * nr * (size_t)k;
}

/* Element i of a pack's data in its dtype (narrowing is exact: vt_pack checked the weights). */
static inline void put(void *data, vt_dtype t, size_t i, float v) {
    if (t == VT_F32)
        ((float *)data)[i] = v;
    else
        ((uint16_t *)data)[i] = t == VT_BF16 ? vt_f32_to_bf16(v) : vt_f32_to_f16(v);
}

int vt_pack(vt_packed *p, const float *w, int k, int n, int trans, vt_dtype hold) {
    return vt_pack_w(p, (vt_wmat){w, NULL, VT_F32}, k, n, trans, hold);
}

int vt_pack_w(vt_packed *p, vt_wmat w, int k, int n, int trans, vt_dtype hold) {
    const micro_kernel *mk = kernel();
    int nr = mk->nr, kcb = mk->kc, slivers = (n + nr - 1) / nr;
    memset(p, 0, sizeof *p);
    if (a_blocks_reserve(vt_threads())) return -1;
    int exact = w.f ? vt_dtype_exact(w.f, (size_t)k * n, hold) : w.t == hold;
    p->dtype = hold != VT_F32 && exact ? hold : VT_F32;
    p->bytes = vt_packed_bytes(k, n, p->dtype);
    p->data = alloc64(p->bytes, "packed weights");
    if (!p->data) return -1;
    p->k = k;
    p->n = n;
    p->kc = kcb;
    p->nr = nr;
    for (int pc = 0; pc < k; pc += kcb) {
        int kc = k - pc < kcb ? k - pc : kcb;
        for (int j = 0; j < slivers; j++) {
            size_t d = (size_t)pc * slivers * nr + (size_t)j * nr * kc; /* the sliver's first element */
            int cols = n - j * nr < nr ? n - j * nr : nr;
            if (trans) /* B[q][j] = W[j][q]: read W's rows, write the sliver's columns */
                for (int r = 0; r < nr; r++) {
                    size_t src = (size_t)(j * nr + r) * k + pc;
                    for (int q = 0; q < kc; q++)
                        put(p->data, p->dtype, d + (size_t)q * nr + r, r < cols ? vt_wmat_at(w, src + q) : 0.0f);
                }
            else
                for (int q = 0; q < kc; q++) {
                    size_t src = (size_t)(pc + q) * n + (size_t)j * nr;
                    for (int r = 0; r < nr; r++)
                        put(p->data, p->dtype, d + (size_t)q * nr + r, r < cols ? vt_wmat_at(w, src + r) : 0.0f);
                }
        }
    }
    return 0;
}

int vt_pack_linear(vt_packed *p, const float *w, int n_in, int n_out, int backward, vt_dtype hold) {
    return vt_pack_linear_w(p, (vt_wmat){w, NULL, VT_F32}, n_in, n_out, backward, hold);
}

int vt_pack_linear_w(vt_packed *p, vt_wmat w, int n_in, int n_out, int backward, vt_dtype hold) {
    return backward ? vt_pack_w(p, w, n_out, n_in, 0, hold) : vt_pack_w(p, w, n_in, n_out, 1, hold);
}

void vt_pack_transposed(vt_packed *p, const vt_packed *of) {
    *p = *of;
    p->k = of->n;
    p->n = of->k;
    p->transposed = 1;
    p->bytes = 0;
}

void vt_packed_free(vt_packed *p) {
    if (!p->transposed) free(p->data);
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

/* Element i of a pack's data as fp32 (widening is exact: every 16-bit value is an fp32 value). */
static inline float elem(const void *data, vt_dtype t, size_t i) {
    if (t == VT_F32) return ((const float *)data)[i];
    uint16_t h = ((const uint16_t *)data)[i];
    if (t == VT_F16) return vt_f16_to_f32(h);
    uint32_t u = (uint32_t)h << 16; /* bf16 is the top half of an fp32 */
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Sliver j of block pc (depth kc) of the view b = A^T gathered from the pack of A[b->n, b->k] into
 * buf: column c of the sliver is row j NR + c of A's pack, whose elements run along A's slivers. */
static void gather_transposed(const vt_packed *b, int pc, int kc, int j, float *buf) {
    int nr = b->nr, ka = b->n, slivers_a = (b->k + nr - 1) / nr;
    for (int c = 0; c < nr; c++) {
        int row = j * nr + c; /* the k index in A's pack */
        if (row >= ka) {
            for (int q = 0; q < kc; q++) buf[(size_t)q * nr + c] = 0.0f;
            continue;
        }
        int pa = row / b->kc * b->kc, kca = ka - pa < b->kc ? ka - pa : b->kc;
        /* B[pc + q][row] = A[row][pc + q]: in A's sliver (pc + q) / NR, position (pc + q) % NR */
        size_t at = (size_t)pa * slivers_a * nr + (size_t)(pc / nr) * nr * kca + (size_t)(row - pa) * nr;
        int r = pc % nr;
        for (int q = 0; q < kc; q++) {
            buf[(size_t)q * nr + c] = elem(b->data, b->dtype, at + (size_t)r);
            if (++r == nr) {
                r = 0;
                at += (size_t)nr * kca;
            }
        }
    }
}

/* Sliver j of block pc (depth kc) of b as fp32: in place when b is an fp32 pack, else widened or
 * gathered into buf. */
static float *sliver(const vt_packed *b, int pc, int kc, int j, float *buf) {
    int nr = b->nr, slivers = (b->n + nr - 1) / nr;
    size_t off = (size_t)pc * slivers * nr + (size_t)j * nr * kc, len = (size_t)nr * kc;
    if (b->transposed) {
        gather_transposed(b, pc, kc, j, buf);
        return buf;
    }
    if (b->dtype == VT_F32) return (float *)b->data + off;
    vt_convert_to_f32(buf, (const uint16_t *)b->data + off, b->dtype, len);
    return buf;
}

/* Slivers j0..j1 of C[m, n] = A B + beta C (every KC block, every MC block of rows), with abuf
 * for A's packed rows: one thread's share of vt_sgemm_packed. Each element of C gets the same
 * micro-kernel calls in the same order whatever the share, so any split gives the same bits. */
static void packed_slivers(const micro_kernel *mk, int m, const float *a, int lda, const vt_packed *b, float beta,
                           float *c, int ldc, int j0, int j1, float *abuf) {
    int mr = mk->mr, nr = b->nr, k = b->k, n = b->n, slivers = (n + nr - 1) / nr;
    float one = 1.0f;
    _Alignas(64) float wide[SLIVER_MAX]; /* a 16-bit pack's sliver widened (vt_pack_available: it fits) */
    auxinfo_t aux;
    memset(&aux, 0, sizeof aux);
    for (int pc = 0; pc < k; pc += b->kc) {
        int kc = k - pc < b->kc ? k - pc : b->kc;
        float bt = pc ? 1.0f : beta;
        for (int ic = 0; ic < m; ic += mk->mc) {
            int mc = m - ic < mk->mc ? m - ic : mk->mc, panels = (mc + mr - 1) / mr;
            pack_a(abuf, a + (size_t)ic * lda + pc, lda, mc, kc, mr);
            for (int j = j0; j < j1; j++) {
                float *bj = sliver(b, pc, kc, j, wide);
                int cols = n - j * nr < nr ? n - j * nr : nr;
                for (int i = 0; i < panels; i++) {
                    int rows = mc - i * mr < mr ? mc - i * mr : mr;
                    int last = i + 1 == panels; /* the kernel prefetches the next panels */
                    bli_auxinfo_set_next_a(abuf + (size_t)(last ? 0 : i + 1) * mr * kc, &aux);
                    /* a widened sliver's successor is not widened yet: the kernel prefetches this one */
                    int next = last && j + 1 < slivers && bj != wide;
                    bli_auxinfo_set_next_b(next ? bj + (size_t)nr * kc : bj, &aux);
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
