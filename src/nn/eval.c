/* eval.c — windowed perplexity evaluation (README.md, "Evaluation protocol") over the batched forward pass. */
#include "nn/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "nn/forward.h"

double vt_nll(const float *logits, int vocab, int target) {
    float mx = logits[0];
    for (int i = 1; i < vocab; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    return log(sum) + mx - logits[target];
}


int vt_eval_check(const vt_config *c, const int32_t *ids, size_t n, int window) {
    if (window < 2) return vt_fail("window of %d tokens is too short (at least 2)", window);
    if (window > c->seq_len) return vt_fail("window of %d tokens exceeds the model's %d positions", window, c->seq_len);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab)
            return vt_fail("token %zu has id %d, outside the model's vocabulary of %d", i, ids[i], c->vocab);
    if (vt_eval_windows(n, window) == 0) return vt_fail("%zu tokens: nothing to score (need at least 2)", n);
    return 0;
}

size_t vt_eval_windows(size_t n, int window) { return n / (size_t)window + (n % (size_t)window >= 2); }

int vt_eval_default_batch(const vt_config *c, int window) {
    int batch = 2048 / window;
    size_t cap = ((size_t)64 << 20) / ((size_t)window * c->vocab);
    if ((size_t)batch > cap) batch = (int)cap;
    return batch < 1 ? 1 : batch;
}

void vt_eval_score(const vt_config *c, const float *logits, const int32_t *ids, int B, int T, vt_eval_result *out) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) {
            int r = b * T + t;
            out->nll_sum += vt_nll(logits + (size_t)r * c->vocab, c->vocab, ids[r + 1]);
            out->tokens++;
        }
    out->windows += (size_t)B;
    out->flops += (double)B * T * vt_flops_per_token(c, (T + 1) / 2.0);
}

/* Runs B windows of T tokens each starting at ids, adding their NLL to out. */
static void eval_batch(const vt_model *m, vt_fwd *f, const int32_t *ids, int B, int T, float *x, float *logits,
                       vt_eval_result *out) {
    vt_embed(m, ids, B * T, x);
    vt_layers_forward(m, f, m->layer_begin, m->layer_end, x, B, T, 0);
    vt_head_forward(m, f, x, B * T, logits);
    vt_eval_score(&m->cfg, logits, ids, B, T, out);
}

int vt_eval_stream(const vt_model *m, const int32_t *ids, size_t n, int window, int batch, vt_eval_result *out,
                   void (*progress)(size_t, size_t, void *), void *arg) {
    memset(out, 0, sizeof *out);
    const vt_config *c = &m->cfg;
    if (!m->has_embed || !m->has_head || m->layer_begin != 0 || m->layer_end != c->n_layers)
        return vt_fail("evaluation in one process needs the whole model");
    if (vt_eval_check(c, ids, n, window)) return -1;
    size_t full = n / (size_t)window, rest = n % (size_t)window;
    if (batch <= 0) batch = vt_eval_default_batch(c, window);
    if ((size_t)batch > full && full > 0) batch = (int)full;
    size_t rows = (size_t)batch * window;
    vt_fwd f;
    if (vt_fwd_init(&f, m, batch, window, window)) return -1;
    float *x = vt_malloc(rows * c->dim * sizeof(float), "activations");
    float *logits = vt_malloc(rows * c->vocab * sizeof(float), "logits");
    if (!x || !logits) {
        free(x);
        free(logits);
        vt_fwd_free(&f);
        return -1;
    }
    double t0 = vt_seconds();
    size_t total = full + (rest >= 2), done = 0;
    for (size_t w = 0; w < full; w += (size_t)batch) {
        int B = (int)((full - w) < (size_t)batch ? (full - w) : (size_t)batch);
        eval_batch(m, &f, ids + w * window, B, window, x, logits, out);
        done += (size_t)B;
        if (progress) progress(done, total, arg);
    }
    if (rest >= 2) {
        eval_batch(m, &f, ids + full * window, 1, (int)rest, x, logits, out);
        if (progress) progress(total, total, arg);
    }
    out->seconds = vt_seconds() - t0;
    out->ppl = exp(out->nll_sum / (double)out->tokens);
    free(x);
    free(logits);
    vt_fwd_free(&f);
    return 0;
}
