/* continuation.c — continuation perplexity: the window plan, the logits of a plugged or dense
 * prompt's continuation, and the dense-against-plugged evaluation of a token stream. */
#include "nn/continuation.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"

int vt_cont_plan_make(vt_cont_plan *pl, size_t n, int window, int prompt) {
    memset(pl, 0, sizeof *pl);
    if (prompt <= 0) prompt = 3 * window / 4;
    if (window < 3 || prompt < 1 || prompt + 2 > window)
        return vt_fail("continuation: prompt of %d tokens in windows of %d; needs 1 <= prompt <= window - 2", prompt,
                       window);
    pl->window = window;
    pl->prompt = prompt;
    pl->full_windows = n / (size_t)window;
    size_t rest = n % (size_t)window;
    pl->windows = pl->full_windows + (rest >= 2);
    pl->scored_windows = pl->full_windows + (rest >= (size_t)prompt + 2);
    pl->tokens = pl->full_windows * (size_t)(window - prompt) + (rest >= (size_t)prompt + 2 ? rest - prompt : 0);
    if (!pl->tokens)
        return vt_fail("continuation: %zu tokens make no window of at least %d tokens (prompt %d + 2)", n, prompt + 2,
                       prompt);
    return 0;
}

size_t vt_cont_window_len(const vt_cont_plan *pl, size_t n, size_t w) {
    size_t s = vt_cont_window_start(pl, w);
    return n - s < (size_t)pl->window ? n - s : (size_t)pl->window;
}

int vt_cont_work_init(vt_cont_work *w, const vt_model *m, const vt_plugin *p, int B, int T, int P) {
    memset(w, 0, sizeof *w);
    size_t d = (size_t)m->cfg.dim, rows = (size_t)B * T, C = (size_t)(T - P);
    w->B = B, w->T = T, w->P = P;
    int rc = vt_fwd_init(&w->f, m, B, T, T);
    if (!rc) rc = vt_model_packs_init(&w->f.packs, m, 0); /* the weights stay frozen: pack them once */
    if (!rc && p) rc = vt_plugin_work_init(&w->pw, m, p, B, P), w->has_pw = !rc;
    if (!rc) {
        w->tok = vt_malloc(rows * sizeof(int32_t), "continuation tokens");
        w->x = vt_malloc(rows * d * sizeof(float), "continuation hidden states");
        w->h = vt_malloc((size_t)B * C * d * sizeof(float), "continuation scored states");
        w->logits = vt_malloc((size_t)B * C * m->cfg.vocab * sizeof(float), "continuation logits");
        if (!w->tok || !w->x || !w->h || !w->logits) rc = -1;
    }
    if (rc) vt_cont_work_free(w);
    return rc;
}

void vt_cont_work_free(vt_cont_work *w) {
    vt_fwd_free(&w->f);
    if (w->has_pw) vt_plugin_work_free(&w->pw);
    free(w->tok), free(w->x), free(w->h), free(w->logits);
    memset(w, 0, sizeof *w);
}

void vt_cont_split_tokens(int32_t *tok, const int32_t *ids, int B, int T, int P) {
    int C = T - P;
    for (int b = 0; b < B; b++) {
        memcpy(tok + (size_t)b * P, ids + (size_t)b * T, sizeof(int32_t) * P);
        memcpy(tok + (size_t)B * P + (size_t)b * (C - 1), ids + (size_t)b * T + P, sizeof(int32_t) * (C - 1));
    }
}

void vt_cont_layers(const vt_model *m, const vt_plugin *p, vt_cont_work *w, int l0, int l1, int B, int T) {
    int P = w->P, C = T - P;
    float *xp = w->x, *xc = w->x + (size_t)B * P * m->cfg.dim;
    if (p)
        vt_plugged_forward(m, &w->f, p, &w->pw, l0, l1, xp, B, P, NULL, NULL);
    else
        vt_layers_forward(m, &w->f, l0, l1, xp, B, P, 0);
    /* the last continuation token predicts nothing inside the window: it need not run */
    vt_layers_forward(m, &w->f, l0, l1, xc, B, C - 1, P);
}

void vt_cont_head(const vt_model *m, vt_cont_work *w, int B, int T) {
    int P = w->P, C = T - P;
    size_t d = (size_t)m->cfg.dim;
    const float *xp = w->x, *xc = w->x + (size_t)B * P * d;
    for (int b = 0; b < B; b++) {
        float *h = w->h + (size_t)b * C * d;
        memcpy(h, xp + ((size_t)b * P + P - 1) * d, sizeof(float) * d);
        memcpy(h + d, xc + (size_t)b * (C - 1) * d, sizeof(float) * d * (C - 1));
    }
    vt_head_forward(m, &w->f, w->h, B * C, w->logits);
}

void vt_cont_logits(const vt_model *m, const vt_plugin *p, vt_cont_work *w, const int32_t *ids, int B, int T) {
    vt_cont_split_tokens(w->tok, ids, B, T, w->P);
    vt_embed(m, w->tok, B * (T - 1), w->x);
    vt_cont_layers(m, p, w, 0, m->cfg.n_layers, B, T);
    vt_cont_head(m, w, B, T);
}

double vt_cont_nll(const float *logits, int vocab, int target) {
    float mx = logits[0];
    for (int i = 1; i < vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double s = 0.0;
    for (int i = 0; i < vocab; i++) s += exp((double)logits[i] - mx);
    return log(s) + mx - logits[target];
}

double vt_cont_nll_sum(const vt_cont_work *w, int vocab, const int32_t *ids, int B, int T) {
    int P = w->P, C = T - P;
    double nll = 0.0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < C; j++)
            nll += vt_cont_nll(w->logits + ((size_t)b * C + j) * vocab, vocab, ids[(size_t)b * T + P + j]);
    return nll;
}

/* The NLL sum of the continuations of B windows of T tokens, prompt run by p (NULL: dense). */
static double score(const vt_model *m, const vt_plugin *p, vt_cont_work *w, const int32_t *ids, int B, int T) {
    vt_cont_logits(m, p, w, ids, B, T);
    return vt_cont_nll_sum(w, m->cfg.vocab, ids, B, T);
}

/* Checks the model is whole, the ids in range and the windows within its positions. */
static int eval_check(const vt_model *m, const vt_plugin *p, const int32_t *ids, size_t n, const vt_cont_plan *pl) {
    const vt_config *c = &m->cfg;
    if (!m->has_embed || !m->has_head || m->layer_begin != 0 || m->layer_end != c->n_layers)
        return vt_fail("continuation eval: needs the whole model in one process");
    if (pl->window > c->seq_len)
        return vt_fail("continuation eval: windows of %d tokens exceed the model's %d positions", pl->window,
                       c->seq_len);
    if (p && (p->dim != c->dim || p->n_layers != c->n_layers))
        return vt_fail("continuation eval: plugin of dim %d, %d layers for a model of dim %d, %d layers", p->dim,
                       p->n_layers, c->dim, c->n_layers);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return vt_fail("continuation eval: token %zu is id %d, outside the vocabulary of %d", i, ids[i], c->vocab);
    return 0;
}

int vt_cont_eval_batch(const vt_config *c, const vt_cont_plan *pl, int batch) {
    int L = pl->window, C = L - pl->prompt;
    if (batch <= 0) { /* about 2048 rows a pass, at most 64 Mi logits */
        batch = 2048 / L > 1 ? 2048 / L : 1;
        size_t cap = ((size_t)64 << 20) / ((size_t)C * c->vocab);
        if ((size_t)batch > cap) batch = cap > 1 ? (int)cap : 1;
    }
    if ((size_t)batch > pl->full_windows) batch = pl->full_windows ? (int)pl->full_windows : 1;
    return batch;
}

void vt_cont_result_set(vt_cont_result *out, const vt_config *c, const vt_plugin *p, const vt_cont_plan *pl) {
    int P = pl->prompt;
    if (!p) out->nll = out->nll_dense;
    out->tokens = pl->tokens;
    out->windows = pl->scored_windows;
    out->prompt = P;
    out->ppl_dense = exp(out->nll_dense / (double)pl->tokens);
    out->ppl = exp(out->nll / (double)pl->tokens);
    out->prefill_flops_dense = vt_prefill_flops(c, P, 0, 0, 1);
    out->prefill_flops = p ? vt_prefill_flops(c, P, p->k, p->r, p->tail) : out->prefill_flops_dense;
    out->prefill_flops_saved = 1.0 - out->prefill_flops / out->prefill_flops_dense;
}

int vt_cont_eval(const vt_model *m, const vt_plugin *p, const int32_t *ids, size_t n, const vt_cont_plan *pl,
                 int batch, vt_cont_result *out) {
    memset(out, 0, sizeof *out);
    if (eval_check(m, p, ids, n, pl)) return -1;
    double t0 = vt_seconds();
    int L = pl->window, P = pl->prompt;
    batch = vt_cont_eval_batch(&m->cfg, pl, batch);
    vt_cont_work w;
    if (vt_cont_work_init(&w, m, p, batch, L, P)) return -1;
    for (size_t w0 = 0; w0 < pl->full_windows; w0 += (size_t)batch) {
        int B = pl->full_windows - w0 < (size_t)batch ? (int)(pl->full_windows - w0) : batch;
        out->nll_dense += score(m, NULL, &w, ids + w0 * L, B, L);
        if (p) out->nll += score(m, p, &w, ids + w0 * L, B, L);
    }
    if (pl->scored_windows > pl->full_windows) { /* the last, shorter window */
        size_t s = vt_cont_window_start(pl, pl->full_windows);
        int T = (int)vt_cont_window_len(pl, n, pl->full_windows);
        out->nll_dense += score(m, NULL, &w, ids + s, 1, T);
        if (p) out->nll += score(m, p, &w, ids + s, 1, T);
    }
    vt_cont_work_free(&w);
    vt_cont_result_set(out, &m->cfg, p, pl);
    out->seconds = vt_seconds() - t0;
    return 0;
}
