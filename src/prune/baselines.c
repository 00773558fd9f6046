/* baselines.c — magnitude, random and first-order Taylor scores per gate, and a baseline prune run (see baselines.h). */
#include "prune/baselines.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/backward.h"
#include "prune/budget.h"
#include "util/error.h"
#include "nn/forward.h"
#include "nn/loss.h"
#include "util/rng.h"
#include "prune/slice.h"

const char *vt_score_kind_name(vt_score_kind kind) {
    switch (kind) {
    case VT_SCORE_MAGNITUDE: return "magnitude";
    case VT_SCORE_RANDOM: return "random";
    case VT_SCORE_TAYLOR: return "taylor";
    }
    return "unknown";
}

int vt_score_kind_parse(const char *name, vt_score_kind *kind) {
    for (int k = VT_SCORE_MAGNITUDE; k <= VT_SCORE_TAYLOR; k++)
        if (strcmp(name, vt_score_kind_name((vt_score_kind)k)) == 0) {
            *kind = (vt_score_kind)k;
            return 0;
        }
    return vt_fail("unknown baseline method '%s' (expected magnitude, random or taylor)", name);
}

/* The model must be whole and the layout must be the one vt_masks_init makes for its config. */
static int check_model_layout(const vt_model *m, const vt_masks *layout) {
    const vt_config *c = &m->cfg;
    if (!m->has_embed || !m->has_head || m->layer_begin != 0 || m->layer_end != c->n_layers)
        return vt_fail("baseline scores need the whole model (embedding, layers 0..%d, head); this part holds "
                       "layers %d..%d%s%s",
                       c->n_layers, m->layer_begin, m->layer_end, m->has_embed ? "" : " without the embedding",
                       m->has_head ? "" : " without the head");
    if (layout->dim != c->dim || layout->n_layers != c->n_layers)
        return vt_fail("gate layout (dim %d, %d layers) does not match the model (dim %d, %d layers)", layout->dim,
                       layout->n_layers, c->dim, c->n_layers);
    for (int l = 0; l < c->n_layers; l++)
        if (layout->heads[l] != c->layers[l].n_heads || layout->ffn[l] != c->layers[l].ffn)
            return vt_fail("gate layout of layer %d (%d heads, %d neurons) does not match the model (%d, %d)", l,
                           layout->heads[l], layout->ffn[l], c->layers[l].n_heads, c->layers[l].ffn);
    return 0;
}

void vt_baseline_costs(const vt_config *c, const vt_masks *layout, double *cost) {
    double D = c->dim, hd = c->head_dim;
    double hidden = (double)c->vocab * (c->tied ? 1 : 2) + 1; /* embedding (+ classifier) column, final norm */
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        double qd = s->n_heads * hd, kvd = s->n_kv_heads * hd, f = s->ffn;
        size_t h0 = vt_gate_heads(layout, l), f0 = vt_gate_ffn(layout, l), b0 = vt_gate_blocks(layout, l);
        cost[b0] = cost[b0 + 1] = 0.0;
        if (s->n_heads) {
            double group = (double)s->n_heads / s->n_kv_heads;
            for (int h = 0; h < s->n_heads; h++) cost[h0 + (size_t)h] = 2 * hd * D + 2 * hd * D / group;
            cost[b0] = D + D * (2 * qd + 2 * kvd);
            hidden += 1 + qd + 2 * kvd + qd; /* norm, q/k/v input column, o output row */
        }
        if (s->ffn) {
            for (int j = 0; j < s->ffn; j++) cost[f0 + (size_t)j] = 3 * D;
            cost[b0 + 1] = D + 3 * f * D;
            hidden += 1 + 2 * f + f; /* norm, gate/up input column, down output row */
        }
    }
    for (int i = 0; i < c->dim; i++) cost[i] = hidden;
}

static double sq(float x) { return (double)x * x; }

/* ss[j] = sum of squared weights of gate j's group (the groups of vt_baseline_costs). */
static void magnitude_sumsq(const vt_model *m, const vt_masks *layout, double *ss) {
    const vt_config *c = &m->cfg;
    size_t D = (size_t)c->dim, V = (size_t)c->vocab, hd = (size_t)c->head_dim;
    memset(ss, 0, sizeof(double) * layout->n);
    for (size_t i = 0; i < D; i++) {
        double acc = sq(m->final_norm[i]);
        for (size_t v = 0; v < V; v++) acc += sq(m->embed[v * D + i]);
        if (!c->tied)
            for (size_t v = 0; v < V; v++) acc += sq(m->lm_head[v * D + i]);
        ss[i] = acc;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        const vt_layer_weights *w = &m->layers[l];
        size_t qd = (size_t)s->n_heads * hd, kvd = (size_t)s->n_kv_heads * hd, F = (size_t)s->ffn;
        size_t width = qd + 2 * kvd; /* wq, wk, wv are one [width, D] matrix */
        size_t h0 = vt_gate_heads(layout, l), f0 = vt_gate_ffn(layout, l), b0 = vt_gate_blocks(layout, l);
        if (s->n_heads) {
            size_t group = (size_t)(s->n_heads / s->n_kv_heads);
            for (size_t r = 0; r < width; r++) {
                double row = 0.0;
                for (size_t i = 0; i < D; i++) {
                    double v = sq(w->wq[r * D + i]);
                    row += v;
                    ss[i] += v;
                }
                if (r < qd) {
                    ss[h0 + r / hd] += row;
                } else { /* a k or v row of KV head k: each of its query heads takes a 1/group share */
                    size_t k = ((r - qd) % kvd) / hd;
                    for (size_t h = k * group; h < (k + 1) * group; h++) ss[h0 + h] += row / (double)group;
                }
                ss[b0] += row;
            }
            for (size_t i = 0; i < D; i++) {
                double row = 0.0;
                for (size_t k = 0; k < qd; k++) {
                    double v = sq(w->wo[i * qd + k]);
                    row += v;
                    ss[h0 + k / hd] += v;
                }
                ss[i] += row + sq(w->attn_norm[i]);
                ss[b0] += row + sq(w->attn_norm[i]);
            }
        }
        if (s->ffn) {
            for (size_t r = 0; r < 2 * F; r++) { /* w_gate, w_up are one [2F, D] matrix */
                double row = 0.0;
                for (size_t i = 0; i < D; i++) {
                    double v = sq(w->w_gate[r * D + i]);
                    row += v;
                    ss[i] += v;
                }
                ss[f0 + r % F] += row;
                ss[b0 + 1] += row;
            }
            for (size_t i = 0; i < D; i++) {
                double row = 0.0;
                for (size_t j = 0; j < F; j++) {
                    double v = sq(w->w_down[i * F + j]);
                    row += v;
                    ss[f0 + j] += v;
                }
                ss[i] += row + sq(w->ffn_norm[i]);
                ss[b0 + 1] += row + sq(w->ffn_norm[i]);
            }
        }
    }
}

/* Buffers of a Taylor pass over B x T tokens. */
typedef struct {
    vt_fwd f;
    vt_tape tape;
    vt_bwd bw;
    float *x, *logits, *dl, *z, *dz;
    int32_t *tok, *tgt;
    int64_t *ids;
} taylor_state;

static void taylor_free(taylor_state *s) {
    vt_fwd_free(&s->f);
    vt_tape_free(&s->tape);
    vt_bwd_free(&s->bw);
    free(s->x);
    free(s->logits);
    free(s->dl);
    free(s->z);
    free(s->dz);
    free(s->tok);
    free(s->tgt);
    free(s->ids);
}

static int check_calib(const vt_model *m, const vt_calib *calib, int batches, int batch_size) {
    if (!calib) return vt_fail("taylor scores need calibration data");
    if (batches < 1 || batch_size < 1)
        return vt_fail("taylor scores need at least one batch of one sequence (got %d batches of %d)", batches,
                       batch_size);
    if (calib->n_seq < 1 || calib->seq_len < 2)
        return vt_fail("taylor scores need calibration sequences of at least 2 tokens (got %zu of %d)", calib->n_seq,
                       calib->seq_len);
    if (calib->seq_len > m->cfg.seq_len)
        return vt_fail("calibration sequences of %d tokens exceed the model's %d positions", calib->seq_len,
                       m->cfg.seq_len);
    size_t n = calib->n_seq * (size_t)calib->seq_len;
    for (size_t i = 0; i < n; i++)
        if (calib->tokens[i] < 0 || calib->tokens[i] >= m->cfg.vocab)
            return vt_fail("calibration token %zu is %d, outside the vocabulary of %d", i, (int)calib->tokens[i],
                           m->cfg.vocab);
    return 0;
}

/* g[j] = d/dz_j at z = 1 of the mean over the batches of the next-token cross-entropy. */
static int taylor_gradients(const vt_model *m, const vt_masks *layout, const vt_calib *calib, int batches, int B,
                            uint64_t seed, double *g) {
    const vt_config *c = &m->cfg;
    int T = calib->seq_len, rows = B * T;
    size_t n = layout->n, V = (size_t)c->vocab;
    taylor_state s;
    memset(&s, 0, sizeof s);
    int rc = -1;
    if (vt_fwd_init(&s.f, m, B, T, T) || vt_tape_init(&s.tape, m, B, T, 0) || vt_bwd_init(&s.bw, m, B, T, T)) goto done;
    s.x = vt_malloc(sizeof(float) * (size_t)rows * c->dim, "activations");
    s.logits = vt_malloc(sizeof(float) * (size_t)rows * V, "logits");
    s.dl = vt_malloc(sizeof(float) * (size_t)rows * V, "logit gradients");
    s.z = vt_malloc(sizeof(float) * n * B, "gate values");
    s.dz = vt_malloc(sizeof(float) * n * B, "gate gradients");
    s.tok = vt_malloc(sizeof(int32_t) * rows, "batch tokens");
    s.tgt = vt_malloc(sizeof(int32_t) * rows, "batch targets");
    s.ids = vt_malloc(sizeof(int64_t) * B, "batch ids");
    if (!s.x || !s.logits || !s.dl || !s.z || !s.dz || !s.tok || !s.tgt || !s.ids) goto done;
    for (size_t i = 0; i < n * B; i++) s.z[i] = 1.0f;
    memset(g, 0, sizeof(double) * n);
    vt_gates gates = {layout, s.z, n};
    for (int step = 0; step < batches; step++) {
        vt_calib_batch(calib, seed, step, B, s.ids);
        for (int b = 0; b < B; b++) {
            const int32_t *q = vt_calib_seq(calib, s.ids[b]);
            memcpy(s.tok + (size_t)b * T, q, sizeof(int32_t) * T);
            for (int t = 0; t < T; t++) s.tgt[b * T + t] = t + 1 < T ? q[t + 1] : -1;
        }
        vt_embed_gated(m, s.tok, B, T, &gates, s.x);
        vt_layers_forward_ex(m, &s.f, 0, c->n_layers, s.x, B, T, 0, &gates, &s.tape);
        vt_head_forward_ex(m, &s.f, s.x, rows, s.logits, &s.tape);
        memset(s.dl, 0, sizeof(float) * rows * V);
        vt_loss_ce(s.logits, s.tgt, rows, c->vocab, 1.0f / batches, s.dl);
        memset(s.dz, 0, sizeof(float) * n * B);
        vt_head_backward(m, &s.bw, &s.tape, s.dl, rows, s.x, NULL);
        vt_layers_backward(m, &s.f, &s.bw, 0, c->n_layers, s.x, B, T, &gates, &s.tape, s.dz, NULL);
        vt_embed_backward(m, s.tok, B, T, s.x, s.dz, n);
        for (int b = 0; b < B; b++)
            for (size_t j = 0; j < n; j++) g[j] += s.dz[(size_t)b * n + j];
    }
    rc = 0;
done:
    taylor_free(&s);
    return rc;
}

int vt_baseline_scores(const vt_model *m, const vt_masks *layout, vt_score_kind kind, const vt_calib *calib,
                       int batches, int batch_size, uint64_t seed, float *score) {
    if (kind != VT_SCORE_MAGNITUDE && kind != VT_SCORE_RANDOM && kind != VT_SCORE_TAYLOR)
        return vt_fail("unknown baseline score kind %d", (int)kind);
    if (check_model_layout(m, layout)) return -1;
    size_t n = layout->n;
    if (kind == VT_SCORE_RANDOM) {
        for (size_t j = 0; j < n; j++) score[j] = (float)vt_uniform(seed, (uint64_t)layout->unit_id[j]);
        return 0;
    }
    if (kind == VT_SCORE_TAYLOR && check_calib(m, calib, batches, batch_size)) return -1;
    double *imp = vt_malloc(sizeof(double) * n, "gate importances");
    double *cost = vt_malloc(sizeof(double) * n, "gate costs");
    int rc = -1;
    if (!imp || !cost) goto done;
    if (kind == VT_SCORE_MAGNITUDE) {
        magnitude_sumsq(m, layout, imp);
    } else {
        if (taylor_gradients(m, layout, calib, batches, batch_size, seed, imp)) goto done;
        for (size_t j = 0; j < n; j++) imp[j] = fabs(imp[j]);
    }
    vt_baseline_costs(&m->cfg, layout, cost);
    for (size_t j = 0; j < n; j++) {
        double v = cost[j] > 0 ? imp[j] / cost[j] : 0.0; /* a removed block's gate controls nothing */
        if (!isfinite(v)) {
            rc = vt_fail("%s importance of gate %zu (unit %lld) is not finite: the model has non-finite weights or "
                         "activations",
                         vt_score_kind_name(kind), j, (long long)layout->unit_id[j]);
            goto done;
        }
        score[j] = (float)-v;
    }
    rc = 0;
done:
    free(imp);
    free(cost);
    return rc;
}

int vt_baseline_prune(const vt_model *m, vt_score_kind kind, const vt_calib *calib, int batches, int batch_size,
                      uint64_t seed, int budget_kind, double budget_size, double ctx, int round_to, int uniform, vt_model *out,
                      vt_slice_map *map) {
    vt_masks layout;
    if (vt_masks_init(&layout, &m->cfg, seed)) return -1;
    size_t n = layout.n;
    float *score = vt_malloc(sizeof(float) * n, "gate scores");
    float *z = vt_malloc(sizeof(float) * n, "gate values");
    uint8_t *keep = vt_malloc(n, "keep flags");
    int rc = -1;
    vt_config pruned;
    double size;
    if (!score || !z || !keep) goto done;
    if (vt_baseline_scores(m, &layout, kind, calib, batches, batch_size, seed, score)) goto done;
    if ((uniform ? vt_budget_decide_uniform : vt_budget_decide)(&layout, &m->cfg, (vt_budget_kind)budget_kind, ctx, budget_size, round_to, score, keep,
                         &pruned, &size))
        goto done;
    vt_config_free(&pruned);
    for (size_t j = 0; j < n; j++) z[j] = 1.0f; /* the baseline keeps the weights unscaled */
    rc = vt_slice_model(m, &layout, z, keep, 1, out);
    if (rc == 0 && map && (rc = vt_slice_map_build(map, &layout, &m->cfg, z, keep)) != 0) vt_model_free(out);
done:
    if (rc) vt_fail_context("%s baseline: ", vt_score_kind_name(kind));
    free(score);
    free(z);
    free(keep);
    vt_masks_free(&layout);
    return rc;
}
