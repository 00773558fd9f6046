/* eval.c — the pieces of windowed perplexity (README.md, "Evaluation protocol"): checks, windows, batch size,
 * scoring; the loop over the pipeline is dist/pipeline.c's vt_pipeline_eval. */
#include "nn/eval.h"

#include <math.h>

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
