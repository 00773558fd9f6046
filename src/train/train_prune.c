/* train_prune.c — structural changes during a VTrans run: hard pruning of units whose gates
 * crossed the threshold (iterative pruning), and the final keep decision. The coordinator (world
 * rank 0) decides; every rank applies the broadcast decision to its part of the model. */
#include "train/train_prune.h"

#include <stdlib.h>
#include <string.h>

#include "prune/keep_decide.h"
#include "util/error.h"
#include "prune/slice.h"

int vt_trainer_slice(trainer *t, const uint8_t *keep) {
    vt_student *st = &t->st;
    vt_model next;
    vt_masks mk2;
    if (vt_slice_model(st->model, &st->mk, NULL, keep, 0, &next)) return -1;
    int64_t *cols = vt_malloc(sizeof(int64_t) * ((size_t)st->mk.dim + 1), "kept hidden dims");
    if (!cols || vt_slice_masks(&st->mk, keep, &mk2)) {
        free(cols);
        vt_model_free(&next);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < st->mk.dim; i++) /* the hidden gates come first in the layout */
        if (keep[i]) cols[n++] = i;
    vt_head_share_columns(&t->head, cols, n);
    free(cols);
    if (vt_train_optim_remap(&t->opt, &st->mk, &mk2)) {
        vt_model_free(&next);
        vt_masks_free(&mk2);
        return -1;
    }
    vt_student_adopt(st, &t->g, next, mk2);
    return vt_trainer_alloc_student(t);
}

/* A group of gates iterative pruning removes together: one hidden dim, one neuron, one block, or
 * in grouped-query layers a whole KV group of heads (so every layer stays a valid GQA layer). */
typedef struct {
    size_t first;   /* first gate */
    int count;      /* gates first .. first+count-1 */
    float log_alpha; /* the group's smallest log alpha: it goes only when all its gates crossed */
} removal;

static int by_log_alpha_desc(const void *a, const void *b) {
    float x = ((const removal *)a)->log_alpha, y = ((const removal *)b)->log_alpha;
    return (x < y) - (x > y);
}

/* Exact size after removing the first n groups, or -1 when no valid structure remains. */
static double size_without(trainer *t, const removal *r, size_t n, uint8_t *keep) {
    memset(keep, 1, t->st.mk.n);
    for (size_t i = 0; i < n; i++) memset(keep + r[i].first, 0, (size_t)r[i].count);
    vt_config c;
    if (vt_keep_structure(&t->st.mk, &t->st.model->cfg, keep, &c)) {
        vt_error_clear();
        return -1.0;
    }
    double size = vt_structure_size(&c, vt_budget_spec_kind(&t->p->budget), t->ctx);
    vt_config_free(&c);
    return size;
}

/* Iterative pruning: groups whose log alpha passed theta leave the computation for good, worst
 * first, as many as keep the exact size at or above the final budget (so the final decision can
 * still land on it). */
int vt_trainer_prune_crossed(trainer *t, int *removed) {
    const vt_masks *mk = &t->st.mk;
    const vt_config *c = &t->st.model->cfg;
    float theta = (float)t->p->vib.theta;
    removal *r = vt_malloc(sizeof *r * mk->n, "pruning candidates");
    uint8_t *keep = vt_malloc(mk->n, "keep flags");
    size_t n = 0;
    int rc = -1;
    *removed = 0;
    if (!r || !keep) goto out;
    for (size_t i = 0; i < mk->n; i++) {
        float la = vt_log_alpha(mk->mu[i], mk->logvar[i]);
        int l = mk->layer[i];
        if (la < theta) continue;
        if (mk->group[i] == VT_GROUP_HEADS) {
            int g = c->layers[l].n_heads / c->layers[l].n_kv_heads;
            size_t h = i - vt_gate_heads(mk, l);
            if (h % (size_t)g) continue; /* groups start at their first head */
            float lo = la;
            for (int k = 1; k < g; k++) {
                float x = vt_log_alpha(mk->mu[i + k], mk->logvar[i + k]);
                lo = x < lo ? x : lo;
            }
            if (lo < theta) continue;
            r[n++] = (removal){i, g, lo};
        } else if (mk->group[i] == VT_GROUP_BLOCKS) {
            int is_mlp = i != vt_gate_blocks(mk, l);
            if (is_mlp ? c->layers[l].ffn : c->layers[l].n_heads) r[n++] = (removal){i, 1, la};
        } else {
            r[n++] = (removal){i, 1, la};
        }
    }
    qsort(r, n, sizeof *r, by_log_alpha_desc);
    double floor_size = vt_budget_spec_target(&t->p->budget) * t->dense_size;
    size_t lo = 0, hi = n; /* largest count whose size stays >= the final budget */
    while (lo < hi) {
        size_t mid = (lo + hi + 1) / 2;
        if (size_without(t, r, mid, keep) >= floor_size) lo = mid;
        else hi = mid - 1;
    }
    size_without(t, r, lo, keep);
    if (vt_comm_bcast(t->comm, keep, mk->n)) goto out; /* the coordinator's choice holds everywhere */
    for (size_t i = 0; i < mk->n; i++) *removed += !keep[i];
    rc = *removed ? vt_trainer_slice(t, keep) : 0;
out:
    free(r);
    free(keep);
    return rc;
}

/* The final decision: all gates ranked globally by log alpha against their cost, a structure at
 * or just under the budget (budget.h). */
int vt_trainer_decide(trainer *t, uint8_t **keep_out) {
    const vt_vib_params *p = t->p;
    uint8_t *keep = vt_malloc(t->st.mk.n, "keep flags");
    if (!keep) return -1;
    int rc = 0;
    if (t->comm->world_rank == 0) {
        vt_config pruned;
        double size;
        rc = (p->budget.uniform ? vt_budget_decide_uniform : vt_budget_decide)(&t->st.mk, &t->st.model->cfg, vt_budget_spec_kind(&p->budget), t->ctx, vt_budget_spec_target(&p->budget) * t->dense_size,
                              p->budget.round_to, NULL, keep, &pruned, &size);
        if (rc == 0) vt_config_free(&pruned);
    }
    /* The status first, so no rank waits for a decision that failed. */
    int status = rc;
    if (vt_comm_bcast(t->comm, &status, sizeof status)) goto fail;
    if (status) {
        if (t->comm->world_rank != 0) vt_fail("the coordinator's keep decision failed");
        goto fail;
    }
    if (vt_comm_bcast(t->comm, keep, t->st.mk.n)) goto fail;
    *keep_out = keep;
    return 0;
fail:
    free(keep);
    return -1;
}
