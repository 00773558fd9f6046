/* refit.c — least-squares re-fit of o_proj and down_proj (see refit.h): per block, one pass over
 * the calibration rows accumulates G = sum x x^T and C = sum y x^T in double, the system is
 * solved, and a second pass moves the pruned stream through the re-fitted block. */
#include "prune/refit.h"

#include <blis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/forward.h"
#include "util/clock.h"
#include "util/error.h"

enum { ATTN = 0, MLP = 1 };

/* One least-squares system W' = C (G + lambda I)^-1 being gathered: m inputs, n outputs; with
 * bias, a constant input 1 appended (m counts it), whose weights are the output bias. */
typedef struct {
    int m, n, bias;
    double *G, *C; /* [m, m] (its lower triangle, column-major), [n, m] */
    double sq[2];  /* sum of squared targets, of squared errors of the current weights */
} lsq;

typedef struct {
    const vt_model *dense;
    vt_model *pruned;
    const vt_slice_map *map;
    const vt_refit_params *p;
    vt_refit_ops *ops;
    int n_seq, T, B, solve;
    vt_fwd fd, fp;
    int keep_d, keep_p; /* the layer whose key/value cache every layer shares (share_kv_cache) */
    float *before_d, *run_p; /* [B*T, dense dim] the dense stream before a block; [B*T, dim] a pruned copy */
    float *wide, *cur;       /* [B*T, widest dense input projection]; [B*T, N] current predictions */
    double *a, *y;           /* one batch's system inputs [B*T, M] and targets [B*T, N] */
    double *sys, *x;         /* G and C of the widest system, M x M + N x M; the solution, N x M */
    lsq s;
} refit;

static int block_present(const vt_config *c, int kind, int l) {
    return kind == ATTN ? c->layers[l].n_heads > 0 : c->layers[l].ffn > 0;
}

/* The output projection's input width (kept heads' outputs or neurons) and its weight [dim, m]. */
static int proj_width(const vt_config *c, int kind, int l) {
    return kind == ATTN ? c->layers[l].n_heads * c->head_dim : c->layers[l].ffn;
}
static float *proj_weight(const vt_model *m, int kind, int l) {
    return kind == ATTN ? m->layers[l].wo : m->layers[l].w_down;
}
static float *proj_bias(const vt_model *m, int kind, int l) {
    return kind == ATTN ? m->layers[l].bo : m->layers[l].b_down;
}

/* The input projection: the fused QKV or gate/up weight [width, dim] and the norm before it. */
static int in_width(const vt_config *c, int kind, int l) {
    const vt_layer_shape *s = &c->layers[l];
    return kind == ATTN ? (s->n_heads + 2 * s->n_kv_heads) * c->head_dim : 2 * s->ffn;
}
static float *in_weight(const vt_model *m, int kind, int l) {
    return kind == ATTN ? m->layers[l].wq : m->layers[l].w_gate;
}
/* The same as held (the dense model's may be 16-bit; the pruned one's is fp32). */
static vt_wmat in_wmat(const vt_model *m, int kind, int l) {
    const vt_layer_weights *w = &m->layers[l];
    return kind == ATTN ? VT_WMAT(m, w, wq) : VT_WMAT(m, w, w_gate);
}
static const float *norm_weight(const vt_model *m, int kind, int l) {
    return kind == ATTN ? m->layers[l].attn_norm : m->layers[l].ffn_norm;
}
/* Layer l's dense rows of the pruned input projection's rows, or NULL when inputs are not re-fitted. */
static const int *in_rows(const refit *r, int kind, int l) {
    int *const *rows = kind == ATTN ? r->map->qkv_rows : r->map->gate_up_rows;
    return r->p->inputs && rows ? rows[l] : NULL;
}

/* x += block output; afterwards f holds the projection's inputs (forward.h). */
static void run_block(const vt_model *m, vt_fwd *f, int kind, int l, float *x, int B, int T) {
    if (kind == ATTN) vt_attention_forward(m, f, l, x, B, T, 0, NULL, NULL);
    else vt_mlp_forward(m, f, l, x, B, T, NULL, NULL);
}
static const float *proj_inputs(const vt_fwd *f, int kind) { return kind == ATTN ? f->att_out : f->ffn_act; }


/* One block runs over every batch before the next block starts, so one key/value cache serves all
 * layers, where vt_fwd_init gives each layer its own (2 B T kv floats: 256 MiB per LLaMA-2-7B layer
 * at 16 sequences of 512 tokens, 16 GiB for both whole models). Keeps the widest layer's cache and
 * frees the others before anything touches them; returns the layer kept (-1: none). */
static int share_kv_cache(vt_fwd *f, const vt_config *c) {
    int keep = -1;
    for (int l = f->layer_begin; l < f->layer_end; l++)
        if (f->k_cache[l] && (keep < 0 || c->layers[l].n_kv_heads > c->layers[keep].n_kv_heads)) keep = l;
    for (int l = f->layer_begin; l < f->layer_end; l++) {
        if (!f->k_cache[l] || l == keep) continue;
        f->bytes -= 2 * (size_t)f->max_batch * f->max_ctx * c->layers[l].n_kv_heads * c->head_dim * sizeof(float);
        free(f->k_cache[l]);
        free(f->v_cache[l]);
        f->k_cache[l] = f->k_cache[keep];
        f->v_cache[l] = f->v_cache[keep];
    }
    return keep;
}

/* Undoes the sharing so that vt_fwd_free frees the kept cache once. */
static void unshare_kv_cache(vt_fwd *f, int keep) {
    if (!f->k_cache) return;
    for (int l = f->layer_begin; l < f->layer_end; l++)
        if (l != keep) f->k_cache[l] = f->v_cache[l] = NULL;
}

static void refit_free(refit *r) {
    unshare_kv_cache(&r->fd, r->keep_d);
    unshare_kv_cache(&r->fp, r->keep_p);
    vt_fwd_free(&r->fd);
    vt_fwd_free(&r->fp);
    free(r->before_d);
    free(r->run_p);
    free(r->wide);
    free(r->cur);
    free(r->a);
    free(r->y);
    free(r->sys);
    free(r->x);
}

/* The buffers' widths: M system inputs and N outputs, S doubles for the largest G and C together
 * and X for the largest solution, over the systems this re-fit solves (output projections: the
 * kept inputs, the hidden size out; with p->inputs the input projections: the hidden size in, QKV
 * or gate/up out), and W the dense input projections' width (their targets). */
typedef struct {
    size_t M, N, W, S, X;
} refit_widths;

static void system_fits(refit_widths *w, size_t m, size_t n) {
    w->M = m > w->M ? m : w->M;
    w->N = n > w->N ? n : w->N;
    w->S = m * m + n * m > w->S ? m * m + n * m : w->S;
    w->X = n * m > w->X ? n * m : w->X;
}

static refit_widths widths(const refit *r, const vt_config *dense) {
    const vt_config *c = &r->pruned->cfg;
    size_t d = (size_t)c->dim;
    refit_widths w = {d, d, 1, 0, 0};
    for (int l = 0; l < c->n_layers; l++)
        for (int k = ATTN; k <= MLP; k++) {
            if (!block_present(c, k, l)) continue;
            system_fits(&w, (size_t)proj_width(c, k, l) + 1, d); /* + 1: the bias's constant input */
            if (!r->p->inputs) continue;
            system_fits(&w, d, (size_t)in_width(c, k, l));
            w.W = (size_t)in_width(dense, k, l) > w.W ? (size_t)in_width(dense, k, l) : w.W;
        }
    return w;
}

/* Buffers for the widest system of any layer (refit_widths). */
static int refit_init(refit *r, const vt_model *dense, vt_model *pruned, int n_seq, int T) {
    const vt_config *c = &pruned->cfg;
    int B = r->p->batch > 0 && r->p->batch < n_seq ? r->p->batch : n_seq;
    refit_widths w = widths(r, &dense->cfg);
    size_t rows = (size_t)B * T, D = (size_t)dense->cfg.dim, d = (size_t)c->dim;
    r->n_seq = n_seq;
    r->T = T;
    r->B = B;
    r->keep_d = r->keep_p = -1;
    int rc = vt_fwd_init(&r->fd, dense, B, T, T);
    if (rc == 0) r->keep_d = share_kv_cache(&r->fd, &dense->cfg);
    if (rc == 0) rc = vt_fwd_init(&r->fp, pruned, B, T, T);
    if (rc == 0) r->keep_p = share_kv_cache(&r->fp, c);
    r->before_d = vt_malloc(rows * D * sizeof(float), "re-fit streams");
    r->run_p = vt_malloc(rows * d * sizeof(float), "re-fit streams");
    r->wide = vt_malloc(rows * w.W * sizeof(float), "re-fit targets");
    r->cur = vt_malloc(rows * w.N * sizeof(float), "re-fit predictions");
    r->a = vt_malloc(rows * w.M * sizeof(double), "re-fit inputs");
    r->y = vt_malloc(rows * w.N * sizeof(double), "re-fit targets");
    r->sys = vt_malloc((w.S ? w.S : 1) * sizeof(double), "re-fit system");
    r->x = vt_malloc((w.X ? w.X : 1) * sizeof(double), "re-fit solution");
    return rc == 0 && r->before_d && r->run_p && r->wide && r->cur && r->a && r->y && r->sys && r->x ? 0 : -1;
}

/* Starts an m-input, n-output system, with an output bias when bias (then m + 1 inputs). */
static void lsq_start(refit *r, int m, int n, int bias) {
    m += bias;
    r->s = (lsq){m, n, bias, r->sys, r->sys + (size_t)m * m, {0.0, 0.0}};
    memset(r->sys, 0, ((size_t)m * m + (size_t)n * m) * sizeof(double));
}

/* One batch: inputs in[rows, m] (m without the constant), targets r->y [rows, n], the current
 * weights' predictions pred[rows, n]: G += a^T a, C += y^T a, and the squared targets and errors.
 * Only G's lower triangle (column-major) is made, all the solver reads: half dgemm's work. With a
 * bias, a's last column is 1: G's last row sums the inputs and counts the rows, in double. */
static void lsq_add(refit *r, const float *in, const float *pred, int rows) {
    lsq *s = &r->s;
    size_t m = (size_t)(s->m - s->bias);
    for (size_t t = 0; t < (size_t)rows; t++) {
        for (size_t i = 0; i < m; i++) r->a[t * s->m + i] = in[t * m + i];
        if (s->bias) r->a[t * s->m + m] = 1.0;
    }
    double one = 1.0;
    bli_dsyrk(BLIS_LOWER, BLIS_TRANSPOSE, s->m, rows, &one, r->a, s->m, 1, &one, s->G, 1, s->m);
    bli_dgemm(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, s->n, s->m, rows, &one, r->y, s->n, 1, r->a, s->m, 1, &one, s->C,
              s->m, 1);
    for (size_t i = 0; i < (size_t)rows * s->n; i++) {
        double e = r->y[i] - pred[i];
        s->sq[0] += r->y[i] * r->y[i];
        s->sq[1] += e * e;
    }
}

/* Packs G's lower triangle column by column to the front of the system, in place (no entry moves
 * up), and C right after it: the ranks then sum m (m + 1) / 2 + n m doubles, not m^2 + n m, about
 * 485 MB less per down_proj at 7B. Returns the packed length. */
static size_t lsq_pack(lsq *s) {
    size_t m = (size_t)s->m, at = 0;
    for (size_t j = 0; j < m; j++)
        for (size_t i = j; i < m; i++) s->G[at++] = s->G[j * m + i];
    memmove(s->G + at, s->C, (size_t)s->n * m * sizeof(double));
    return at + (size_t)s->n * m;
}

/* Undoes lsq_pack: C back first, then G's columns from the last (no entry moves down before it is
 * read), and G's upper triangle zero again, as lsq_start left it. */
static void lsq_unpack(lsq *s) {
    size_t m = (size_t)s->m, at = m * (m + 1) / 2;
    memmove(s->C, s->G + at, (size_t)s->n * m * sizeof(double));
    for (size_t j = m; j-- > 0;)
        for (size_t i = m; i-- > j;) s->G[j * m + i] = s->G[--at];
    for (size_t j = 1; j < m; j++) memset(s->G + j * m, 0, j * sizeof(double));
}

/* Sums the system over the ranks that share it, solves it and writes W' [n, m] row-major (m
 * without the constant input) and, with a bias, the bias b [n] (may be NULL otherwise). The
 * error after follows from the normal equations, W'(G + lambda I) = C: ||Y - A W'^T||^2 =
 * sum y^2 - tr(W' C^T) - lambda ||W'||^2, with no second pass over the rows. */
static int lsq_solve(refit *r, float *W, float *b, const char *what, vt_refit_stat *st) {
    lsq *s = &r->s;
    int rc = r->ops->sum(r->ops, s->G, lsq_pack(s));
    lsq_unpack(s);
    if (rc || r->ops->sum(r->ops, s->sq, 2)) return -1;
    double trace = 0.0, syy = s->sq[0] > 0 ? s->sq[0] : 1.0;
    for (int i = 0; i < s->m; i++) trace += s->G[(size_t)i * s->m + i];
    st->done = 1;
    st->err_before = st->err_after = s->sq[1] / syy;
    if (!r->solve || trace <= 0.0) return 0; /* measuring only, or no input ever fired: W stays */
    vt_spd_request rq = {what, r->p->damp, 0, r->ops->warn, r->ops->ctx};
    vt_spd_outcome out;
    memcpy(r->x, s->C, (size_t)s->n * s->m * sizeof(double));
    double t0 = vt_seconds();
    if (vt_spd_solve_ridge(r->ops->solver, &rq, s->G, (size_t)s->m, r->x, (size_t)s->n, &out))
        return vt_fail_context("re-fitting %s", what);
    st->solve_seconds = vt_seconds() - t0;
    st->retries = out.retries;
    double fit = 0.0, norm = 0.0;
    size_t m = (size_t)(s->m - s->bias);
    for (size_t i = 0; i < (size_t)s->n * s->m; i++) {
        fit += r->x[i] * s->C[i];
        norm += r->x[i] * r->x[i];
        size_t row = i / s->m, col = i % s->m;
        if (col < m) W[row * m + col] = (float)r->x[i];
        else b[row] = (float)r->x[i];
    }
    st->err_after = (s->sq[0] - fit - out.lambda * norm) / syy;
    return 0;
}

/* The per-token factor that gives the dense stream xd [D] on the kept dims (times z) the energy it
 * has on all dims: the pruned model's RMSNorm runs over the kept dims with its weights scaled by
 * sqrt(d/d') (prune/slice.h), so its normalised inputs equal the dense ones exactly when the pruned
 * stream is this multiple of z o xd[dims]. Without it every later block would see inputs about
 * sqrt(energy ratio) too large. */
static double norm_match(const refit *r, const float *xd) {
    double all = 0.0, kept = 0.0;
    for (int j = 0; j < r->dense->cfg.dim; j++) all += (double)xd[j] * xd[j];
    for (int i = 0; i < r->map->n; i++) {
        double v = (r->map->z ? r->map->z[i] : 1.0) * xd[r->map->dims[i]];
        kept += v * v;
    }
    return kept > 0.0 ? sqrt(all / kept) : 1.0;
}

/* The targets of one batch's rows (refit.h: LAYER or RESIDUAL, in the pruned basis) from the dense
 * stream before (bd) and after (ad) the block and the pruned stream before it (bp). */
static void targets(const refit *r, const float *bd, const float *ad, const float *bp, int rows) {
    int D = r->dense->cfg.dim, d = r->map->n, residual = r->p->target == VT_REFIT_RESIDUAL;
    for (int t = 0; t < rows; t++) {
        const float *a = ad + (size_t)t * D, *b = bd + (size_t)t * D;
        double c = residual && r->p->norm_match ? norm_match(r, a) : 1.0;
        for (int i = 0; i < d; i++) {
            int j = r->map->dims[i];
            double z = c * (r->map->z ? r->map->z[i] : 1.0);
            r->y[(size_t)t * d + i] = residual ? z * a[j] - bp[(size_t)t * d + i] : z * ((double)a[j] - b[j]);
        }
    }
}

/* The input projection's system for one batch: the pruned block's normalised input against the
 * dense pre-activations (before RoPE) of the rows the pruned projection kept. */
static void gather_inputs_batch(refit *r, int kind, int l, const float *xd, const float *xp, int rows) {
    const vt_model *D = r->dense, *P = r->pruned;
    int wd = in_width(&D->cfg, kind, l), wp = in_width(&P->cfg, kind, l), d = P->cfg.dim;
    const int *map = in_rows(r, kind, l);
    vt_rmsnorm(r->before_d, xd, norm_weight(D, kind, l), rows, D->cfg.dim, D->cfg.norm_eps, NULL);
    vt_linear_w(r->wide, r->before_d, in_wmat(D, kind, l), NULL, r->fd.wide, rows, D->cfg.dim, wd, 0.0f);
    vt_rmsnorm(r->run_p, xp, norm_weight(P, kind, l), rows, d, P->cfg.norm_eps, NULL);
    vt_linear(r->cur, r->run_p, in_weight(P, kind, l), NULL, rows, d, wp, 0.0f);
    for (int t = 0; t < rows; t++)
        for (int i = 0; i < wp; i++) r->y[(size_t)t * wp + i] = r->wide[(size_t)t * wd + map[i]];
    lsq_add(r, r->run_p, r->cur, rows);
}

/* Re-fits block (kind, l)'s input projection (QKV or gate/up) so that it gives the dense model's
 * pre-activations of the kept rows from the pruned stream: it recovers what the pruned hidden dims
 * carried into them. Neither stream moves. */
static int refit_inputs(refit *r, int kind, int l, const float *xd, const float *xp, vt_refit_stat *st) {
    int D = r->dense->cfg.dim, d = r->pruned->cfg.dim;
    lsq_start(r, d, in_width(&r->pruned->cfg, kind, l), 0);
    for (int b0 = 0; b0 < r->n_seq; b0 += r->B) {
        int nb = r->n_seq - b0 < r->B ? r->n_seq - b0 : r->B;
        gather_inputs_batch(r, kind, l, xd + (size_t)b0 * r->T * D, xp + (size_t)b0 * r->T * d, nb * r->T);
    }
    char what[96];
    snprintf(what, sizeof what, "layer %d %s", l, kind == ATTN ? "qkv_proj" : "gate_up_proj");
    return lsq_solve(r, in_weight(r->pruned, kind, l), NULL, what, st);
}

/* The output projection's pass over every batch for block (kind, l): the dense stream advances
 * through the block in place; the pruned block runs on a copy, leaving its projection's inputs in
 * fp and its output (run_p after minus xp before) as the current prediction. */
static void gather_outputs(refit *r, int kind, int l, float *xd, const float *xp) {
    int D = r->dense->cfg.dim, d = r->pruned->cfg.dim, present = block_present(&r->pruned->cfg, kind, l);
    lsq_start(r, proj_width(&r->pruned->cfg, kind, l), d, r->p->bias);
    for (int b0 = 0; b0 < r->n_seq; b0 += r->B) {
        int nb = r->n_seq - b0 < r->B ? r->n_seq - b0 : r->B, rows = nb * r->T;
        float *xdr = xd + (size_t)b0 * r->T * D;
        const float *xpr = xp + (size_t)b0 * r->T * d;
        memcpy(r->before_d, xdr, (size_t)rows * D * sizeof(float));
        run_block(r->dense, &r->fd, kind, l, xdr, nb, r->T);
        if (!present) continue;
        memcpy(r->run_p, xpr, (size_t)rows * d * sizeof(float));
        run_block(r->pruned, &r->fp, kind, l, r->run_p, nb, r->T);
        targets(r, r->before_d, xdr, xpr, rows);
        for (size_t i = 0; i < (size_t)rows * d; i++) r->cur[i] = r->run_p[i] - xpr[i];
        lsq_add(r, proj_inputs(&r->fp, kind), r->cur, rows);
    }
}

/* The pruned stream through the (re-fitted) block, batch by batch. */
static void advance_pruned(refit *r, int kind, int l, float *xp) {
    int d = r->pruned->cfg.dim;
    if (!block_present(&r->pruned->cfg, kind, l)) return;
    for (int b0 = 0; b0 < r->n_seq; b0 += r->B) {
        int nb = r->n_seq - b0 < r->B ? r->n_seq - b0 : r->B;
        run_block(r->pruned, &r->fp, kind, l, xp + (size_t)b0 * r->T * d, nb, r->T);
    }
}

/* Block (kind, l): its input projection (when asked), then its output projection, then the
 * pruned stream moves on through the re-fitted block. stats: the block's two slots. */
static int refit_block(refit *r, int kind, int l, float *xd, float *xp, vt_refit_stat *st) {
    int present = block_present(&r->pruned->cfg, kind, l);
    if (present && in_rows(r, kind, l) && refit_inputs(r, kind, l, xd, xp, &st[0])) return -1;
    gather_outputs(r, kind, l, xd, xp);
    char what[96];
    snprintf(what, sizeof what, "layer %d %s", l, kind == ATTN ? "o_proj" : "down_proj");
    if (present && lsq_solve(r, proj_weight(r->pruned, kind, l), proj_bias(r->pruned, kind, l), what, &st[1]))
        return -1;
    advance_pruned(r, kind, l, xp);
    return 0;
}

static int refit_run(refit *r, float *xd, float *xp, int l0, int l1, vt_refit_stat *stats) {
    for (int l = l0; l < l1; l++)
        for (int kind = ATTN; kind <= MLP; kind++) {
            vt_refit_stat st[2] = {{0}};
            if (refit_block(r, kind, l, xd, xp, st)) return -1;
            if (stats) memcpy(&stats[VT_REFIT_SLOTS * l + 2 * kind], st, sizeof st);
        }
    return 0;
}

/* The final norm's system for the scale s of the pruned gains (refit.h, p->head). With u_t the
 * pruned final hidden state normalised with its gains, E the pruned classifier [V, d] and l_t the
 * dense logits, both centred over the vocabulary (softmax ignores a shift), the logits E diag(u_t) s
 * fit l_t when G s = c with G = (E_c^T E_c) o sum u u^T, c = sum u o (E^T l_c). sys: G [d, d], c [d],
 * then sum ||l_c||^2. Gathered over this rank's rows. */
static int head_gather(refit *r, const float *xd, const float *xp, double *sys) {
    const vt_model *D = r->dense, *P = r->pruned;
    int d = P->cfg.dim, V = P->cfg.vocab, DD = D->cfg.dim;
    float *lg = vt_malloc((size_t)r->B * r->T * V * sizeof(float), "re-fit logits");
    double *c = sys + (size_t)d * d, one = 1.0;
    if (!lg) return -1;
    for (int b0 = 0; b0 < r->n_seq; b0 += r->B) {
        int nb = r->n_seq - b0 < r->B ? r->n_seq - b0 : r->B, rows = nb * r->T;
        vt_rmsnorm(r->before_d, xd + (size_t)b0 * r->T * DD, D->final_norm, rows, DD, D->cfg.norm_eps, NULL);
        vt_linear(lg, r->before_d, D->lm_head, NULL, rows, DD, V, 0.0f);
        vt_rmsnorm(r->run_p, xp + (size_t)b0 * r->T * d, P->final_norm, rows, d, P->cfg.norm_eps, NULL);
        for (int t = 0; t < rows; t++) {
            float *l = lg + (size_t)t * V;
            double mean = 0.0;
            for (int v = 0; v < V; v++) mean += l[v];
            mean /= V;
            for (int v = 0; v < V; v++) l[v] = (float)(l[v] - mean), c[d] += (double)l[v] * l[v];
        }
        /* cur [rows, d] = l_c E: the classifier's rows weighted by the dense logits */
        float fone = 1.0f, zero = 0.0f;
        bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, rows, d, V, &fone, lg, V, 1, P->lm_head, d, 1, &zero, r->cur, d,
                  1);
        for (size_t i = 0; i < (size_t)rows * d; i++) c[i % d] += (double)r->run_p[i] * r->cur[i], r->a[i] = r->run_p[i];
        bli_dgemm(BLIS_TRANSPOSE, BLIS_NO_TRANSPOSE, d, d, rows, &one, r->a, d, 1, r->a, d, 1, &one, sys, d, 1);
    }
    free(lg);
    return 0;
}

/* The centred classifier's Gram matrix E_c^T E_c = E^T E - V mu mu^T (mu: E's mean row), into
 * k [d, d]: E's rows widened to double a block at a time (a whole double copy of a 32000 x 4096
 * classifier would be 1 GiB) for BLIS's rank-k update, then mirrored. */
static int head_gram(const vt_model *P, double *k) {
    enum { BLOCK = 256 };
    int d = P->cfg.dim, V = P->cfg.vocab;
    double *blk = vt_malloc((size_t)BLOCK * d * sizeof(double), "re-fit head Gram block");
    double *sum = vt_calloc((size_t)d, sizeof(double), "re-fit head Gram sums"), one = 1.0;
    if (!blk || !sum) return free(blk), free(sum), -1;
    memset(k, 0, (size_t)d * d * sizeof(double));
    for (int v0 = 0; v0 < V; v0 += BLOCK) {
        int n = V - v0 < BLOCK ? V - v0 : BLOCK;
        const float *e = P->lm_head + (size_t)v0 * d;
        for (size_t i = 0; i < (size_t)n * d; i++) blk[i] = e[i], sum[i % d] += e[i];
        bli_dsyrk(BLIS_LOWER, BLIS_TRANSPOSE, d, n, &one, blk, d, 1, &one, k, d, 1);
    }
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) {
            double centred = k[(size_t)i * d + j] - sum[i] * sum[j] / V;
            k[(size_t)i * d + j] = k[(size_t)j * d + i] = centred;
        }
    free(blk), free(sum);
    return 0;
}

/* sum ||E diag(u) s - l_c||^2 / sum ||l_c||^2 for the system of head_gather. */
static double head_error(const double *sys, const double *s, int d) {
    const double *G = sys, *c = sys + (size_t)d * d;
    double e = c[d];
    for (int i = 0; i < d; i++) {
        double gs = 0.0;
        for (int j = 0; j < d; j++) gs += G[(size_t)i * d + j] * s[j];
        e += s[i] * gs - 2.0 * c[i] * s[i];
    }
    return e / (c[d] > 0 ? c[d] : 1.0);
}

/* The final norm's re-fit: the system summed over the replicas, solved as s = 1 + delta with the
 * ridge pulling towards the gains as they are, (G + lambda I) delta = c - G 1. */
static int refit_head(refit *r, const float *xd, const float *xp) {
    vt_model *P = r->pruned;
    int d = P->cfg.dim;
    double *sys = vt_calloc((size_t)d * d + d + 1, sizeof(double), "re-fit head system");
    double *k = vt_malloc((size_t)d * d * sizeof(double), "re-fit head system");
    double *s = vt_malloc((size_t)2 * d * sizeof(double), "re-fit head system"), *delta = s + d;
    int rc = sys && k && s ? head_gather(r, xd, xp, sys) : -1;
    if (rc == 0) rc = r->ops->sum(r->ops, sys, (size_t)d * d + d + 1);
    vt_refit_stat st = {0};
    if (rc == 0) rc = head_gram(P, k);
    if (rc == 0) {
        for (size_t i = 0; i < (size_t)d * d; i++) sys[i] *= k[i];
        for (int i = 0; i < d; i++) s[i] = 1.0;
        st.done = 1;
        st.err_before = st.err_after = head_error(sys, s, d);
        for (int i = 0; i < d && r->solve; i++) {
            delta[i] = sys[(size_t)d * d + i];
            for (int j = 0; j < d; j++) delta[i] -= sys[(size_t)i * d + j];
        }
    }
    vt_spd_request rq = {"final_norm", r->p->damp, 0, r->ops->warn, r->ops->ctx};
    vt_spd_outcome out;
    if (rc == 0 && r->solve && vt_spd_solve_ridge(r->ops->solver, &rq, sys, (size_t)d, delta, 1, &out))
        rc = vt_fail_context("re-fitting final_norm");
    if (rc == 0 && r->solve) {
        for (int i = 0; i < d; i++) s[i] = 1.0 + delta[i], P->final_norm[i] = (float)(P->final_norm[i] * s[i]);
        st.retries = out.retries;
        st.err_after = head_error(sys, s, d);
    }
    if (rc == 0 && r->ops->head) *r->ops->head = st;
    free(sys), free(k), free(s);
    return rc;
}

static int check_map(const vt_model *dense, const vt_model *pruned, const vt_slice_map *map) {
    if (map->n != pruned->cfg.dim) return vt_fail("re-fit: hidden map has %d dims, the pruned model %d", map->n,
                                                  pruned->cfg.dim);
    for (int i = 0; i < map->n; i++)
        if (map->dims[i] < 0 || map->dims[i] >= dense->cfg.dim)
            return vt_fail("re-fit: hidden dim %d maps to %d, outside the dense model's %d", i, map->dims[i],
                           dense->cfg.dim);
    if (dense->cfg.n_layers != pruned->cfg.n_layers)
        return vt_fail("re-fit: the dense model has %d layers, the pruned one %d", dense->cfg.n_layers,
                       pruned->cfg.n_layers);
    return 0;
}

static int refit_open(refit *r, const vt_model *dense, vt_model *pruned, const vt_slice_map *map, int n_seq, int T) {
    if (check_map(dense, pruned, map)) return -1;
    if (r->p->bias && r->solve && vt_model_add_biases(pruned, 1, 1)) return -1;
    r->dense = dense;
    r->pruned = pruned;
    r->map = map;
    return refit_init(r, dense, pruned, n_seq, T);
}

/* The head's re-fit runs after the last layer, where both models hold the final norm and classifier. */
static int wants_head(const refit *r, int l1) {
    return r->p->head && l1 == r->pruned->cfg.n_layers && r->pruned->final_norm && r->dense->final_norm &&
           r->pruned->lm_head && r->dense->lm_head;
}

int vt_refit_layers(const vt_model *dense, vt_model *pruned, const vt_slice_map *map, float *xd, float *xp,
                    int n_seq, int T, int l0, int l1, const vt_refit_params *p, vt_refit_ops *ops,
                    vt_refit_stat *stats) {
    refit r = {.p = p, .ops = ops, .solve = 1};
    int rc = refit_open(&r, dense, pruned, map, n_seq, T);
    if (rc == 0) rc = refit_run(&r, xd, xp, l0, l1, stats);
    if (rc == 0 && wants_head(&r, l1)) rc = refit_head(&r, xd, xp);
    refit_free(&r);
    return rc;
}

/* Both streams embedded from the tokens: xd [rows, D], xp [rows, d]. */
static int embed_both(const vt_model *dense, const vt_model *pruned, const int32_t *tokens, size_t rows, float **xd,
                      float **xp) {
    *xd = vt_malloc(rows * dense->cfg.dim * sizeof(float), "re-fit streams");
    *xp = vt_malloc(rows * pruned->cfg.dim * sizeof(float), "re-fit streams");
    if (!*xd || !*xp) return -1;
    vt_embed(dense, tokens, (int)rows, *xd);
    vt_embed(pruned, tokens, (int)rows, *xp);
    return 0;
}

static int whole_model(const vt_model *dense, vt_model *pruned, const vt_slice_map *map, const int32_t *tokens,
                       int n_seq, int T, const vt_refit_params *p, vt_refit_ops *ops, int solve,
                       vt_refit_stat *stats) {
    float *xd = NULL, *xp = NULL;
    refit r = {.p = p, .ops = ops, .solve = solve};
    int rc = embed_both(dense, pruned, tokens, (size_t)n_seq * T, &xd, &xp);
    if (rc == 0) rc = refit_open(&r, dense, pruned, map, n_seq, T);
    if (rc == 0) rc = refit_run(&r, xd, xp, 0, dense->cfg.n_layers, stats);
    if (rc == 0 && wants_head(&r, dense->cfg.n_layers)) rc = refit_head(&r, xd, xp);
    refit_free(&r);
    free(xd);
    free(xp);
    return rc;
}

int vt_refit_model(const vt_model *dense, vt_model *pruned, const vt_slice_map *map, const int32_t *tokens,
                   int n_seq, int T, const vt_refit_params *p, vt_refit_ops *ops, vt_refit_stat *stats) {
    return whole_model(dense, pruned, map, tokens, n_seq, T, p, ops, 1, stats);
}

int vt_refit_measure(const vt_model *dense, const vt_model *pruned, const vt_slice_map *map, const int32_t *tokens,
                     int n_seq, int T, const vt_refit_params *p, vt_refit_stat *stats) {
    vt_refit_ops ops = vt_refit_ops_local(NULL);
    /* measuring writes nothing into the model and solves nothing (solve = 0) */
    return whole_model(dense, (vt_model *)pruned, map, tokens, n_seq, T, p, &ops, 0, stats);
}

static int sum_none(vt_refit_ops *o, double *x, size_t n) {
    (void)o, (void)x, (void)n;
    return 0;
}

vt_refit_ops vt_refit_ops_local(vt_spd_solver *solver) { return (vt_refit_ops){.sum = sum_none, .solver = solver}; }
