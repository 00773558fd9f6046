/* masks.c — VIB gate parameters: layout, initialisation, sampling, deterministic values, KL. */
#include "nn/masks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/rng.h"

float vt_log_alpha(float mu, float logvar) { return logvar - logf(mu * mu + 1e-30f); }

int vt_masks_alloc(vt_masks *mk, int dim, int n_layers, const int *heads, const int *ffn) {
    memset(mk, 0, sizeof *mk);
    int L = n_layers;
    mk->n_layers = L;
    mk->dim = dim;
    mk->heads = vt_calloc((size_t)L + 1, sizeof(int), "gate layout");
    mk->ffn = vt_calloc((size_t)L + 1, sizeof(int), "gate layout");
    mk->off = vt_calloc((size_t)L + 1, sizeof(size_t), "gate layout");
    if (!mk->heads || !mk->ffn || !mk->off) goto fail;
    size_t n = (size_t)dim;
    for (int l = 0; l < L; l++) {
        mk->heads[l] = heads[l];
        mk->ffn[l] = ffn[l];
        mk->off[l] = n;
        n += (size_t)(mk->heads[l] + mk->ffn[l] + 2);
    }
    mk->n = n;
    mk->mu = vt_malloc(n * sizeof(float), "gate mu");
    mk->logvar = vt_malloc(n * sizeof(float), "gate logvar");
    mk->g_mu = vt_calloc(n, sizeof(float), "gate gradients");
    mk->g_logvar = vt_calloc(n, sizeof(float), "gate gradients");
    mk->unit_id = vt_malloc(n * sizeof(int64_t), "gate ids");
    mk->group = vt_malloc(n, "gate groups");
    mk->layer = vt_malloc(n * sizeof(int16_t), "gate layers");
    if (!mk->mu || !mk->logvar || !mk->g_mu || !mk->g_logvar || !mk->unit_id || !mk->group || !mk->layer) goto fail;
    return 0;
fail:
    vt_masks_free(mk);
    return -1;
}

int vt_masks_init(vt_masks *mk, const vt_config *c, uint64_t seed) {
    int L = c->n_layers, *heads = vt_malloc(sizeof(int) * (size_t)(L + 1), "gate layout");
    int *ffn = vt_malloc(sizeof(int) * (size_t)(L + 1), "gate layout");
    int rc = heads && ffn ? 0 : -1;
    for (int l = 0; rc == 0 && l < L; l++) {
        heads[l] = c->layers[l].n_heads;
        ffn[l] = c->layers[l].ffn;
    }
    if (rc == 0) rc = vt_masks_alloc(mk, c->dim, L, heads, ffn);
    free(heads);
    free(ffn);
    if (rc) return -1;
    size_t n = mk->n;
    int64_t U = (int64_t)c->n_heads + c->ffn_dim + 2;
    for (int i = 0; i < c->dim; i++) {
        mk->unit_id[i] = i;
        mk->group[i] = VT_GROUP_HIDDEN;
        mk->layer[i] = -1;
    }
    for (int l = 0; l < L; l++) {
        int64_t base = c->dim + l * U;
        size_t o = mk->off[l];
        for (int h = 0; h < mk->heads[l]; h++, o++) {
            mk->unit_id[o] = base + h;
            mk->group[o] = VT_GROUP_HEADS;
            mk->layer[o] = (int16_t)l;
        }
        for (int j = 0; j < mk->ffn[l]; j++, o++) {
            mk->unit_id[o] = base + c->n_heads + j;
            mk->group[o] = VT_GROUP_FFN;
            mk->layer[o] = (int16_t)l;
        }
        for (int b = 0; b < 2; b++, o++) {
            mk->unit_id[o] = base + c->n_heads + c->ffn_dim + b;
            mk->group[o] = VT_GROUP_BLOCKS;
            mk->layer[o] = (int16_t)l;
        }
    }
    for (size_t i = 0; i < n; i++) {
        mk->mu[i] = 1.0f + 0.01f * vt_gauss(seed, 0xFFFFFFFFull, 0, (uint64_t)mk->unit_id[i]);
        mk->logvar[i] = -9.0f + 0.01f * vt_gauss(seed, 0xFFFFFFFEull, 0, (uint64_t)mk->unit_id[i]);
    }
    return 0;
}

void vt_masks_free(vt_masks *mk) {
    free(mk->heads);
    free(mk->ffn);
    free(mk->off);
    free(mk->mu);
    free(mk->logvar);
    free(mk->g_mu);
    free(mk->g_logvar);
    free(mk->unit_id);
    free(mk->group);
    free(mk->layer);
    memset(mk, 0, sizeof *mk);
}

void vt_masks_zero_grad(vt_masks *mk) {
    memset(mk->g_mu, 0, mk->n * sizeof(float));
    memset(mk->g_logvar, 0, mk->n * sizeof(float));
}

void vt_masks_sample(const vt_masks *mk, uint64_t seed, uint64_t step, const int64_t *sample_ids, int B, float *z,
                     float *eps) {
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < mk->n; i++) {
            float e = vt_gauss(seed, step, (uint64_t)sample_ids[b], (uint64_t)mk->unit_id[i]);
            eps[(size_t)b * mk->n + i] = e;
            z[(size_t)b * mk->n + i] = mk->mu[i] + expf(0.5f * mk->logvar[i]) * e;
        }
}

void vt_masks_deterministic(const vt_masks *mk, float theta, float *z) {
    for (size_t i = 0; i < mk->n; i++) z[i] = vt_log_alpha(mk->mu[i], mk->logvar[i]) < theta ? mk->mu[i] : 0.0f;
}

void vt_masks_backward(vt_masks *mk, int B, const float *eps, const float *dz) {
    for (size_t i = 0; i < mk->n; i++) {
        float half_sigma = 0.5f * expf(0.5f * mk->logvar[i]);
        double gm = 0.0, gl = 0.0;
        for (int b = 0; b < B; b++) {
            float d = dz[(size_t)b * mk->n + i];
            gm += d;
            gl += (double)d * eps[(size_t)b * mk->n + i] * half_sigma;
        }
        mk->g_mu[i] += (float)gm;
        mk->g_logvar[i] += (float)gl;
    }
}

double vt_masks_kl(vt_masks *mk, const double mult[VT_N_GROUPS], double beta) {
    double total = 0.0;
    for (size_t i = 0; i < mk->n; i++) {
        double w = beta * mult[mk->group[i]];
        if (w == 0.0) continue;
        double mu = mk->mu[i], r = mu * mu * exp(-(double)mk->logvar[i]); /* mu^2 / sigma^2 */
        total += w * 0.5 * log1p(r);
        double dr = w * 0.5 / (1.0 + r); /* d/dr of 0.5 log(1 + r) */
        mk->g_mu[i] += (float)(dr * 2.0 * mu * exp(-(double)mk->logvar[i]));
        mk->g_logvar[i] += (float)(dr * -r);
    }
    return total;
}
