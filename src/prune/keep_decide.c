/* keep_decide.c — the final keep decision: gates ranked globally by score against their cost, a
 * valid structure at or just under the budget (see keep_decide.h). */
#include "prune/keep_decide.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

/* A candidate structure: the best-scored kd hidden dims; per layer m query heads (0: attention
 * removed) in each KV group flagged in grp, and the best-scored ffn neurons (0: MLP removed). */
typedef struct {
    int kd;
    int *m, *ffn;
    uint8_t *grp; /* per layer at grp_off[l], one flag per KV group */
} dstate;

typedef struct {
    const vt_masks *mk;
    const vt_config *c;
    vt_budget_kind kind;
    double ctx;
    int r;               /* rounding multiple */
    size_t *rank;        /* [n] position of each gate in the global score order */
    size_t *ord;         /* [n] gates in score order */
    size_t *sorted;      /* [n] gates by score within each segment: the hidden dims, each KV group's
                          * query heads, each layer's neurons (block gates: segments of one) */
    int *pos;            /* [n] position of a gate inside its segment */
    size_t *grp_off;     /* [L] first KV group flag of each layer */
    int *cnt;            /* scratch: raw kept heads per group */
    int *ffn_base, *ffn_grown, *ffn_a; /* scratch: [L] neuron counts during an exchange */
    vt_config work;      /* the candidate's shape, for sizes */
} decider;

typedef struct {
    float s;
    size_t i;
} scored;

static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static int group_size(const vt_config *c, int l) {
    return c->layers[l].n_heads ? c->layers[l].n_heads / c->layers[l].n_kv_heads : 1;
}

static int n_groups(const vt_config *c, int l) { return c->layers[l].n_heads ? c->layers[l].n_kv_heads : 0; }

static double state_size(decider *d, const dstate *st) {
    vt_config *w = &d->work;
    w->dim = st->kd;
    for (int l = 0; l < w->n_layers; l++) {
        int kv = 0;
        for (int g = 0; g < n_groups(d->c, l); g++) kv += st->grp[d->grp_off[l] + (size_t)g];
        w->layers[l].n_heads = st->m[l] ? st->m[l] * kv : 0;
        w->layers[l].n_kv_heads = st->m[l] ? kv : 0;
        w->layers[l].ffn = st->ffn[l];
    }
    return vt_structure_size(w, d->kind, d->ctx);
}

/* The grouped-query shape closest to a raw selection of cnt[g] heads in each of ng groups of G:
 * the per-group count m and the groups keeping m heads that add plus drop the fewest heads (a group
 * kept with m heads differs by |cnt - m|, a dropped group by cnt); ties go to the smaller m. */
static int gqa_shape(const int *cnt, int ng, int G, uint8_t *grp) {
    int best_m = 0, best_cost = 0;
    for (int g = 0; g < ng; g++) best_cost += cnt[g];
    for (int m = 1; m <= G; m++) {
        int cost = 0;
        for (int g = 0; g < ng; g++) {
            int diff = abs(cnt[g] - m);
            cost += diff < cnt[g] ? diff : cnt[g];
        }
        if (cost < best_cost) best_cost = cost, best_m = m;
    }
    for (int g = 0; g < ng; g++) grp[g] = best_m > 0 && 2 * cnt[g] > best_m;
    return best_m;
}

/* Counts the leading gates of a sorted segment whose rank is below cut. */
static int count_below(const decider *d, size_t first, int n, size_t cut) {
    int k = 0;
    while (k < n && d->rank[d->sorted[first + (size_t)k]] < cut) k++;
    return k;
}

/* The valid structure closest to keeping the cut best-scored gates. */
static void state_from_cut(decider *d, size_t cut, dstate *st) {
    const vt_masks *mk = d->mk;
    int r = d->r;
    int kd = count_below(d, 0, mk->dim, cut) / r * r;
    st->kd = kd < r ? r : kd;
    for (int l = 0; l < mk->n_layers; l++) {
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        int G = group_size(d->c, l), ng = n_groups(d->c, l);
        uint8_t *grp = st->grp + d->grp_off[l];
        st->m[l] = 0;
        memset(grp, 0, (size_t)ng);
        if (ng && d->rank[bb] < cut) {
            for (int g = 0; g < ng; g++) d->cnt[g] = count_below(d, hb + (size_t)(g * G), G, cut);
            st->m[l] = gqa_shape(d->cnt, ng, G, grp);
        }
        st->ffn[l] = 0;
        if (mk->ffn[l] && d->rank[bb + 1] < cut) st->ffn[l] = count_below(d, fb, mk->ffn[l], cut) / r * r;
    }
}

/* A growth of the candidate: an int raised (hidden dims, a layer's heads per group or neurons)
 * and/or a KV group flag set; undone by restoring both. */
typedef struct {
    int *slot, old;
    uint8_t *flag;
} growth;

static void undo(growth *g) {
    if (g->slot) *g->slot = g->old;
    if (g->flag) *g->flag = 0;
}

/* Applies the smallest valid growth that keeps gate j (for a head of a kept group: the next head of
 * every kept group; for a removed block's gate: the block with its best head or best neurons).
 * Returns 0 when j is kept already or cannot grow. */
static int grow(decider *d, dstate *st, size_t j, growth *g) {
    const vt_masks *mk = d->mk;
    int r = d->r, l = mk->layer[j], p = d->pos[j], by = 0;
    memset(g, 0, sizeof *g);
    switch (mk->group[j]) {
    case VT_GROUP_HIDDEN:
        if (p >= st->kd && st->kd + r <= mk->dim) g->slot = &st->kd, by = r;
        break;
    case VT_GROUP_FFN:
        if (st->ffn[l] && p >= st->ffn[l] && st->ffn[l] + r <= mk->ffn[l]) g->slot = &st->ffn[l], by = r;
        break;
    case VT_GROUP_HEADS:
        if (st->m[l]) {
            int G = group_size(d->c, l);
            uint8_t *f = st->grp + d->grp_off[l] + (size_t)((int)(j - vt_gate_heads(mk, l)) / G);
            if (!*f) g->flag = f;
            else if (p >= st->m[l] && st->m[l] < G) g->slot = &st->m[l], by = 1;
        }
        break;
    default:
        if (j == vt_gate_blocks(mk, l) && !st->m[l] && n_groups(d->c, l)) {
            size_t hb = vt_gate_heads(mk, l);
            int G = group_size(d->c, l), best = 0;
            for (int k = 1; k < n_groups(d->c, l); k++)
                if (d->rank[d->sorted[hb + (size_t)(k * G)]] < d->rank[d->sorted[hb + (size_t)(best * G)]]) best = k;
            g->slot = &st->m[l], by = 1;
            g->flag = st->grp + d->grp_off[l] + (size_t)best;
        } else if (j != vt_gate_blocks(mk, l) && !st->ffn[l] && mk->ffn[l] >= r) {
            g->slot = &st->ffn[l], by = r;
        }
        break;
    }
    if (!g->slot && !g->flag) return 0;
    if (g->slot) g->old = *g->slot, *g->slot += by;
    if (g->flag) *g->flag = 1;
    return 1;
}

/* One pass over the gates in score order: each gate the candidate does not keep tries its growth,
 * kept when the size stays within the budget. Returns the number of growths kept. */
static long fill_pass(decider *d, dstate *st, double budget) {
    long accepted = 0;
    for (size_t o = 0; o < d->mk->n; o++) {
        growth g;
        if (!grow(d, st, d->ord[o], &g)) continue;
        if (state_size(d, st) <= budget) accepted++;
        else undo(&g);
    }
    return accepted;
}

/* A segment whose worst-ranked tail may be given back: the hidden dims or one layer's neurons. */
typedef enum { TAIL_NONE, TAIL_HIDDEN, TAIL_NEURONS } tail_kind;

typedef struct {
    tail_kind kind;
    int layer; /* TAIL_NEURONS: whose neurons */
} tail;

static const tail NO_TAIL = {TAIL_NONE, 0};

static int same_tail(tail a, tail b) { return a.kind == b.kind && (a.kind != TAIL_NEURONS || a.layer == b.layer); }

/* The worst-ranked segment tail that may be given back: the last r kept hidden dims or neurons of
 * a layer, all ranked at least min_rank, the segment keeping r units after giving; never the
 * segment `skip`; hidden dims not at all when neurons_only. NO_TAIL when there is none. */
static tail worst_tail(const decider *d, const dstate *st, size_t min_rank, tail skip, int neurons_only) {
    const vt_masks *mk = d->mk;
    int r = d->r;
    tail best = NO_TAIL;
    size_t best_rank = 0;
    for (int l = neurons_only ? 0 : -1; l < mk->n_layers; l++) { /* l = -1: the hidden dims */
        tail t = l < 0 ? (tail){TAIL_HIDDEN, 0} : (tail){TAIL_NEURONS, l};
        int cnt = l < 0 ? st->kd : st->ffn[l];
        size_t seg = l < 0 ? 0 : vt_gate_ffn(mk, l);
        if (same_tail(t, skip) || cnt < 2 * r || d->rank[d->sorted[seg + (size_t)(cnt - r)]] < min_rank) continue;
        size_t worst = d->rank[d->sorted[seg + (size_t)(cnt - 1)]];
        if (best.kind == TAIL_NONE || worst > best_rank) best = t, best_rank = worst;
    }
    return best;
}

/* Gives back segment tails (worst-ranked first; with neurons_first, hidden dims only when no
 * neurons can go) until the size fits the budget or nothing more may go. Returns the size. */
static double give_back(decider *d, dstate *st, double budget, size_t min_rank, tail skip, int neurons_first) {
    double s = state_size(d, st);
    while (s > budget) {
        tail t = worst_tail(d, st, min_rank, skip, neurons_first);
        if (t.kind == TAIL_NONE && neurons_first) t = worst_tail(d, st, min_rank, skip, 0);
        if (t.kind == TAIL_NONE) break;
        if (t.kind == TAIL_HIDDEN) st->kd -= d->r;
        else st->ffn[t.layer] -= d->r;
        s = state_size(d, st);
    }
    return s;
}

/* One pass of exchanges: each gate the candidate does not keep takes its growth and gives back
 * hidden dims and neurons (the units fine enough to give; heads and blocks are not) until the size
 * fits, trying worst-ranked first and neurons first and keeping the larger result; kept when it is
 * larger than before (closer to the budget), undone otherwise. Strict: only units ranked after
 * the gate go, so the kept set only improves by rank. Relaxed: any may go. */
static long exchange_pass(decider *d, dstate *st, double budget, int relaxed) {
    const vt_masks *mk = d->mk;
    size_t ffn_bytes = (size_t)mk->n_layers * sizeof *st->ffn;
    long accepted = 0;
    double size = state_size(d, st);
    for (size_t o = 0; o < mk->n; o++) {
        size_t j = d->ord[o];
        int kd0 = st->kd;
        memcpy(d->ffn_base, st->ffn, ffn_bytes);
        growth g;
        if (!grow(d, st, j, &g)) continue;
        tail skip = mk->group[j] == VT_GROUP_HIDDEN           ? (tail){TAIL_HIDDEN, 0}
                    : g.slot == &st->ffn[mk->layer[j]] ? (tail){TAIL_NEURONS, mk->layer[j]}
                                                       : NO_TAIL; /* the segment the growth raised */
        size_t min_rank = relaxed ? 0 : o + 1;
        int kd_grown = st->kd;
        memcpy(d->ffn_grown, st->ffn, ffn_bytes);
        double sa = give_back(d, st, budget, min_rank, skip, 0);
        int kd_a = st->kd;
        memcpy(d->ffn_a, st->ffn, ffn_bytes);
        st->kd = kd_grown;
        memcpy(st->ffn, d->ffn_grown, ffn_bytes);
        double sb = give_back(d, st, budget, min_rank, skip, 1);
        if (sa <= budget && (sb > budget || sa > sb)) {
            st->kd = kd_a;
            memcpy(st->ffn, d->ffn_a, ffn_bytes);
            sb = sa;
        }
        if (sb <= budget && sb > size) {
            size = sb;
            accepted++;
            continue;
        }
        undo(&g);
        st->kd = kd0;
        memcpy(st->ffn, d->ffn_base, ffn_bytes);
    }
    return accepted;
}

/* Fills, then exchanges while that brings the size closer to the budget; relaxed exchanges only
 * when the rank-respecting ones leave it more than DECIDE_SLACK under (coarse structures: tiny
 * models, large rounding). */
#define DECIDE_SLACK 0.01

static void fill_and_exchange(decider *d, dstate *st, double budget) {
    for (int relaxed = 0; relaxed < 2; relaxed++) {
        if (relaxed && state_size(d, st) >= (1.0 - DECIDE_SLACK) * budget) break;
        do {
            while (fill_pass(d, st, budget) > 0) {
            }
        } while (exchange_pass(d, st, budget, relaxed) > 0);
    }
}

static void state_keep(const decider *d, const dstate *st, uint8_t *keep) {
    const vt_masks *mk = d->mk;
    memset(keep, 0, mk->n);
    for (int i = 0; i < st->kd; i++) keep[d->sorted[i]] = 1;
    for (int l = 0; l < mk->n_layers; l++) {
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        int G = group_size(d->c, l);
        if (st->m[l]) {
            keep[bb] = 1;
            for (int g = 0; g < n_groups(d->c, l); g++)
                if (st->grp[d->grp_off[l] + (size_t)g])
                    for (int h = 0; h < st->m[l]; h++) keep[d->sorted[hb + (size_t)(g * G + h)]] = 1;
        }
        if (st->ffn[l]) {
            keep[bb + 1] = 1;
            for (int j = 0; j < st->ffn[l]; j++) keep[d->sorted[fb + (size_t)j]] = 1;
        }
    }
}

/* Sorts the gates globally and within each segment, and records ranks and positions. */
static int decider_init(decider *d, const float *score) {
    const vt_masks *mk = d->mk;
    size_t n = mk->n;
    int L = mk->n_layers;
    scored *sc = vt_malloc(n * sizeof *sc, "gate scores");
    d->rank = vt_malloc(n * sizeof *d->rank, "gate ranks");
    d->ord = vt_malloc(n * sizeof *d->ord, "gate order");
    d->sorted = vt_malloc(n * sizeof *d->sorted, "gate order");
    d->pos = vt_malloc(n * sizeof *d->pos, "gate order");
    d->grp_off = vt_malloc((size_t)(L > 0 ? L : 1) * sizeof *d->grp_off, "KV groups");
    int max_groups = 1;
    for (int l = 0; l < L; l++)
        if (n_groups(d->c, l) > max_groups) max_groups = n_groups(d->c, l);
    d->cnt = vt_malloc((size_t)max_groups * sizeof *d->cnt, "KV groups");
    size_t lbytes = (size_t)(L > 0 ? L : 1) * sizeof(int);
    d->ffn_base = vt_malloc(lbytes, "decision state");
    d->ffn_grown = vt_malloc(lbytes, "decision state");
    d->ffn_a = vt_malloc(lbytes, "decision state");
    size_t *seg_of = vt_malloc(n * sizeof *seg_of, "gate order");
    if (!sc || !d->rank || !d->ord || !d->sorted || !d->pos || !d->grp_off || !d->cnt || !d->ffn_base ||
        !d->ffn_grown || !d->ffn_a || !seg_of) {
        free(sc);
        free(seg_of);
        return -1;
    }
    for (size_t j = 0; j < n; j++) {
        sc[j].s = score ? score[j] : vt_log_alpha(mk->mu[j], mk->logvar[j]);
        sc[j].i = j;
        if (isnan(sc[j].s)) {
            free(sc);
            free(seg_of);
            return vt_fail("score of gate %zu (unit %lld) is NaN", j, (long long)mk->unit_id[j]);
        }
    }
    qsort(sc, n, sizeof *sc, cmp_scored);
    for (size_t o = 0; o < n; o++) {
        d->ord[o] = sc[o].i;
        d->rank[sc[o].i] = o;
    }
    free(sc);
    /* seg_of[j]: the first slot of gate j's segment; segments are filled in score order. */
    size_t ngroups = 0;
    for (int i = 0; i < mk->dim; i++) seg_of[i] = 0;
    for (int l = 0; l < L; l++) {
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        int G = group_size(d->c, l);
        for (int h = 0; h < mk->heads[l]; h++) seg_of[hb + (size_t)h] = hb + (size_t)(h / G * G);
        for (int j = 0; j < mk->ffn[l]; j++) seg_of[fb + (size_t)j] = fb;
        seg_of[bb] = bb;
        seg_of[bb + 1] = bb + 1;
        d->grp_off[l] = ngroups;
        ngroups += (size_t)n_groups(d->c, l);
    }
    size_t *next = vt_malloc(n * sizeof *next, "gate order");
    if (!next) {
        free(seg_of);
        return -1;
    }
    memcpy(next, seg_of, n * sizeof *next); /* next free slot, indexed by segment start */
    for (size_t o = 0; o < n; o++) {
        size_t j = d->ord[o], seg = seg_of[j];
        d->sorted[next[seg]] = j;
        d->pos[j] = (int)(next[seg] - seg);
        next[seg]++;
    }
    free(next);
    free(seg_of);
    return 0;
}

static void decider_free(decider *d) {
    free(d->rank);
    free(d->ord);
    free(d->sorted);
    free(d->pos);
    free(d->grp_off);
    free(d->cnt);
    free(d->ffn_base);
    free(d->ffn_grown);
    free(d->ffn_a);
    vt_config_free(&d->work);
}

int vt_budget_decide(const vt_masks *mk, const vt_config *c, vt_budget_kind kind, double ctx, double budget_size,
                     int round_to, const float *score, uint8_t *keep, vt_config *out_cfg, double *out_size) {
    memset(out_cfg, 0, sizeof *out_cfg);
    if (vt_gates_check_layout(mk, c)) return -1;
    if (round_to < 1) return vt_fail("budget rounding %d must be at least 1", round_to);
    if (round_to > c->dim)
        return vt_fail("budget rounding to multiples of %d exceeds the hidden size %d", round_to, c->dim);
    double full = vt_structure_size(c, kind, ctx), min = vt_budget_min_size(c, kind, ctx, round_to);
    const char *unit = kind == VT_BUDGET_FLOPS ? "FLOPs per token" : "parameters";
    if (!(budget_size >= min))
        return vt_fail("budget of %.6g %s (%.6f of the unpruned %.6g) is below the smallest structure allowed: %.6g "
                       "(%.6f of the unpruned size: %d hidden dim(s), every layer removed)",
                       budget_size, unit, budget_size / full, full, min, min / full, round_to);

    decider d;
    memset(&d, 0, sizeof d);
    d.mk = mk, d.c = c, d.kind = kind, d.ctx = ctx, d.r = round_to;
    dstate st = {0};
    int L = c->n_layers, rc = -1;
    size_t ngroups = 0;
    for (int l = 0; l < L; l++) ngroups += (size_t)n_groups(c, l);
    st.m = vt_calloc((size_t)(L > 0 ? L : 1), sizeof *st.m, "decision state");
    st.ffn = vt_calloc((size_t)(L > 0 ? L : 1), sizeof *st.ffn, "decision state");
    st.grp = vt_calloc(ngroups > 0 ? ngroups : 1, 1, "decision state");
    if (!st.m || !st.ffn || !st.grp || vt_config_copy(&d.work, c) || decider_init(&d, score)) goto done;

    /* The largest cut (number of best-scored gates) whose valid structure fits; cut 0 is the
     * minimum structure, which fits. */
    size_t lo = 0, hi = mk->n;
    state_from_cut(&d, hi, &st);
    if (state_size(&d, &st) <= budget_size) {
        lo = hi;
    } else {
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            state_from_cut(&d, mid, &st);
            if (state_size(&d, &st) <= budget_size) lo = mid;
            else hi = mid;
        }
    }
    state_from_cut(&d, lo, &st);
    fill_and_exchange(&d, &st, budget_size);
    state_keep(&d, &st, keep);
    if (vt_keep_structure(mk, c, keep, out_cfg)) goto done;
    *out_size = vt_structure_size(out_cfg, kind, ctx);
    rc = 0;
done:
    free(st.m);
    free(st.ffn);
    free(st.grp);
    decider_free(&d);
    return rc;
}
