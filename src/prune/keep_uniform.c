/* keep_uniform.c — the keep decision under budget.uniform: the same kept hidden dims, heads per KV
 * group, KV groups and FFN neurons in every layer (see keep_decide.h).
 *
 * The rule: a uniform structure keeps, in every layer, the k best-scored units of each kind for one
 * common k, so the unit kept or dropped together is a rank slot (the k-th best neuron of every
 * layer), not a single unit. Each slot is scored by the mean over the layers of the scores at that
 * rank: the average importance of what keeping it keeps, comparable with the hidden dims' scores
 * (means of log alpha, or of a baseline's scores, are on the scale of a single one). Heads: in each
 * layer the KV groups are ranked by their best head and the heads within a group by score; slot
 * (a, b) is the b-th best head of the a-th best group. The slots then take the place of the gates
 * in the global rule of vt_budget_decide: the largest score threshold whose structure fits, then
 * growths in slot-score order while the size fits, then exchanges when that leaves it more than 1%
 * under (a growth paid for with the worst-scored hidden dims or neurons). The mean, not the sum:
 * a sum would weigh a slot L times a hidden dim's score. No block is removed: a model without attention
 * or MLP in every layer is not one other tools run, and removing blocks in some layers is what
 * uniform excludes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "prune/keep_decide.h"
#include "util/error.h"

typedef struct {
    float s;
    int i;
} slot;

static int cmp_slot(const void *a, const void *b) {
    const slot *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

typedef struct {
    const vt_masks *mk;
    vt_budget_kind kind;
    double ctx;
    int r, L, D, G, NG, F;
    int *hid;      /* [D] hidden gates, best first */
    int *head;     /* [L][NG*G] head index (in the layer) of slot (a, b) at a*G + b */
    int *neu;      /* [L][F] neuron index of the k-th best */
    float *sh;     /* [D] hidden slot scores */
    float *sq;     /* [NG*G] head slot scores (means over layers) */
    float *sf;     /* [F] neuron slot scores (means over layers) */
    int *rank;     /* [D + NG*G + F] rank of each slot among all slots */
    vt_config work;
} uni;

/* A candidate: kd hidden dims, m heads in each flagged group slot, f neurons, in every layer. */
typedef struct {
    int kd, m, f;
    uint8_t *grp; /* [NG] */
} ustate;

static float gate_score(const vt_masks *mk, const float *score, size_t j) {
    return score ? score[j] : vt_log_alpha(mk->mu[j], mk->logvar[j]);
}

/* Writes into out[n] the indices first..first+n-1 (as offsets from first) best-scored first. */
static void order(const vt_masks *mk, const float *score, size_t first, int n, slot *tmp, int *out) {
    for (int k = 0; k < n; k++) tmp[k] = (slot){gate_score(mk, score, first + (size_t)k), k};
    qsort(tmp, (size_t)n, sizeof *tmp, cmp_slot);
    for (int k = 0; k < n; k++) out[k] = tmp[k].i;
}

/* Layer l's head slots: groups ranked by their best head, heads within a group by score. */
static void order_heads(uni *u, const float *score, int l, slot *tmp, int *within) {
    size_t hb = vt_gate_heads(u->mk, l);
    int *out = u->head + (size_t)l * (size_t)(u->NG * u->G);
    slot *grp = tmp + u->G;
    for (int g = 0; g < u->NG; g++) {
        order(u->mk, score, hb + (size_t)(g * u->G), u->G, tmp, within + g * u->G);
        grp[g] = (slot){gate_score(u->mk, score, hb + (size_t)(g * u->G + within[g * u->G])), g};
    }
    qsort(grp, (size_t)u->NG, sizeof *grp, cmp_slot);
    for (int a = 0; a < u->NG; a++)
        for (int b = 0; b < u->G; b++) out[a * u->G + b] = grp[a].i * u->G + within[grp[a].i * u->G + b];
}

/* The orders, the slot scores and the ranks of all slots. */
static int uni_scores(uni *u, const float *score) {
    const vt_masks *mk = u->mk;
    int H = u->NG * u->G, M = u->D + H + u->F, big = M > 2 * H + u->NG ? M : 2 * H + u->NG;
    slot *tmp = vt_malloc((size_t)big * sizeof *tmp, "slot scores");
    int *within = vt_malloc((size_t)(H > 0 ? H : 1) * sizeof *within, "slot scores");
    if (!tmp || !within) return free(tmp), free(within), -1;
    order(mk, score, 0, u->D, tmp, u->hid);
    for (int i = 0; i < u->D; i++) u->sh[i] = gate_score(mk, score, (size_t)u->hid[i]);
    for (int l = 0; l < u->L; l++) {
        order_heads(u, score, l, tmp, within);
        order(mk, score, vt_gate_ffn(mk, l), u->F, tmp, u->neu + (size_t)l * (size_t)u->F);
        for (int s = 0; s < H; s++)
            u->sq[s] += gate_score(mk, score, vt_gate_heads(mk, l) + (size_t)u->head[(size_t)l * (size_t)H + (size_t)s]) / u->L;
        for (int k = 0; k < u->F; k++)
            u->sf[k] += gate_score(mk, score, vt_gate_ffn(mk, l) + (size_t)u->neu[(size_t)l * (size_t)u->F + (size_t)k]) / u->L;
    }
    for (int i = 0; i < M; i++) tmp[i] = (slot){i < u->D ? u->sh[i] : i < u->D + H ? u->sq[i - u->D] : u->sf[i - u->D - H], i};
    qsort(tmp, (size_t)M, sizeof *tmp, cmp_slot);
    for (int o = 0; o < M; o++) u->rank[tmp[o].i] = o;
    free(tmp);
    free(within);
    return 0;
}

static double ustate_size(uni *u, const ustate *st) {
    int kv = 0;
    for (int a = 0; a < u->NG; a++) kv += st->grp[a];
    u->work.dim = st->kd;
    for (int l = 0; l < u->L; l++) {
        u->work.layers[l].n_heads = st->m * kv;
        u->work.layers[l].n_kv_heads = kv;
        u->work.layers[l].ffn = st->f;
    }
    return vt_structure_size(&u->work, u->kind, u->ctx);
}

/* Leading slots of [first, first + n) ranked below cut. */
static int below(const uni *u, int first, int n, int cut) {
    int k = 0;
    while (k < n && u->rank[first + k] < cut) k++;
    return k;
}

/* The structure of the cut best slots: counts rounded down to r (at least r), the grouped-query
 * shape as in vt_budget_decide (per-group head counts, the m that adds and drops fewest), at least
 * one head in one group. */
static void ustate_from_cut(const uni *u, int cut, ustate *st) {
    int r = u->r, H = u->NG * u->G, best_m = 1, best_cost = -1;
    st->kd = below(u, 0, u->D, cut) / r * r;
    st->f = below(u, u->D + H, u->F, cut) / r * r;
    st->kd = st->kd < r ? r : st->kd;
    st->f = st->f < r ? r : st->f;
    for (int m = 1; m <= u->G; m++) {
        int cost = 0;
        for (int a = 0; a < u->NG; a++) {
            int cnt = below(u, u->D + a * u->G, u->G, cut), diff = abs(cnt - m);
            cost += diff < cnt ? diff : cnt;
        }
        if (best_cost < 0 || cost < best_cost) best_cost = cost, best_m = m;
    }
    st->m = best_m;
    int any = 0;
    for (int a = 0; a < u->NG; a++) any += st->grp[a] = 2 * below(u, u->D + a * u->G, u->G, cut) > best_m;
    if (!any) st->grp[0] = 1; /* slot 0 is the best group of every layer */
}

/* Applies growth kind k (0: kd + r, 1: f + r, 2: m + 1, the next head of every kept group, 3: the
 * best unflagged group) when it exists, returning its slot score (INFINITY: none); *undo_a gets the
 * flagged group for kind 3. */
static float grow(uni *u, ustate *st, int k, int *undo_a) {
    float best = INFINITY;
    if (k == 0 && st->kd + u->r <= u->D) best = u->sh[st->kd], st->kd += u->r;
    if (k == 1 && st->f + u->r <= u->F) best = u->sf[st->f], st->f += u->r;
    if (k == 2 && st->m < u->G) {
        for (int a = 0; a < u->NG; a++)
            if (st->grp[a] && u->sq[a * u->G + st->m] < best) best = u->sq[a * u->G + st->m];
        st->m++;
    }
    if (k == 3) {
        *undo_a = -1;
        for (int a = 0; a < u->NG; a++)
            if (!st->grp[a] && u->sq[a * u->G] < best) best = u->sq[a * u->G], *undo_a = a;
        if (*undo_a >= 0) st->grp[*undo_a] = 1;
    }
    return best;
}

static void ungrow(uni *u, ustate *st, int k, int a) {
    if (k == 0) st->kd -= u->r;
    if (k == 1) st->f -= u->r;
    if (k == 2) st->m--;
    if (k == 3) st->grp[a] = 0;
}

/* Fill: repeatedly applies, among the growths that fit, the one whose slot scores best, until none
 * fits. */
static void fill(uni *u, ustate *st, double budget) {
    for (;;) {
        int pick = -1;
        float pick_s = INFINITY;
        for (int k = 0; k < 4; k++) {
            int a = -1;
            float s = grow(u, st, k, &a);
            if (s == INFINITY) continue;
            if (ustate_size(u, st) <= budget && s < pick_s) pick = k, pick_s = s;
            ungrow(u, st, k, a);
        }
        if (pick < 0) return;
        int a = -1;
        grow(u, st, pick, &a);
    }
}

/* Gives back r hidden dims or r neurons per layer, the worse-scored tail first, never the kind
 * `grown`, until the size fits; returns the size (over the budget when nothing more may go). */
static double give_back(uni *u, ustate *st, int grown, double budget) {
    double size = ustate_size(u, st);
    while (size > budget) {
        int can_d = grown != 0 && st->kd >= 2 * u->r, can_f = grown != 1 && st->f >= 2 * u->r;
        if (!can_d && !can_f) break;
        if (can_d && (!can_f || u->sh[st->kd - 1] >= u->sf[st->f - 1])) st->kd -= u->r;
        else st->f -= u->r;
        size = ustate_size(u, st);
    }
    return size;
}

/* Exchanges, when the fill leaves the size more than 1% under the budget (coarse steps: few layers'
 * worth of a unit is a large share of a small model): each growth kind in turn taken and paid for
 * with the worst-scored hidden dims or neurons; kept when the size gets closer to the budget, then
 * filled again. Sizes only rise, so this ends. */
static void exchange(uni *u, ustate *st, double budget) {
    double size = ustate_size(u, st);
    for (int improved = 1; improved && size < 0.99 * budget;) {
        improved = 0;
        for (int k = 0; k < 4 && !improved; k++) {
            ustate keep = *st;
            int a = -1;
            if (grow(u, st, k, &a) == INFINITY) continue;
            double s = give_back(u, st, k, budget);
            if (s <= budget && s > size) {
                size = s, improved = 1;
                fill(u, st, budget);
                size = ustate_size(u, st);
            } else {
                ungrow(u, st, k, a);
                st->kd = keep.kd, st->f = keep.f;
            }
        }
    }
}

/* The keep vector of a candidate, layer by layer through each layer's own orders. */
static void ustate_keep(const uni *u, const ustate *st, uint8_t *keep) {
    const vt_masks *mk = u->mk;
    int H = u->NG * u->G;
    memset(keep, 0, mk->n);
    for (int i = 0; i < st->kd; i++) keep[u->hid[i]] = 1;
    for (int l = 0; l < u->L; l++) {
        size_t hb = vt_gate_heads(mk, l), fb = vt_gate_ffn(mk, l), bb = vt_gate_blocks(mk, l);
        keep[bb] = keep[bb + 1] = 1;
        for (int a = 0; a < u->NG; a++)
            for (int b = 0; st->grp[a] && b < st->m; b++) keep[hb + (size_t)u->head[(size_t)l * (size_t)H + (size_t)(a * u->G + b)]] = 1;
        for (int k = 0; k < st->f; k++) keep[fb + (size_t)u->neu[(size_t)l * (size_t)u->F + (size_t)k]] = 1;
    }
}

int vt_budget_uniform_check(const vt_config *c, vt_budget_kind kind, double ctx, int round_to, double budget_size) {
    if (c->n_layers < 1) return vt_fail("budget.uniform: the model has no layers");
    const vt_layer_shape *l0 = &c->layers[0];
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *x = &c->layers[l];
        if (!x->n_heads || !x->ffn || x->n_heads != l0->n_heads || x->n_kv_heads != l0->n_kv_heads || x->ffn != l0->ffn)
            return vt_fail("budget.uniform needs a model whose layers all have the same sizes: layer %d has %d heads, "
                           "%d KV heads, %d FFN neurons; layer 0 has %d, %d, %d",
                           l, x->n_heads, x->n_kv_heads, x->ffn, l0->n_heads, l0->n_kv_heads, l0->ffn);
    }
    if (round_to < 1 || round_to > c->dim || round_to > l0->ffn)
        return vt_fail("budget rounding to multiples of %d must be between 1 and the hidden size %d and FFN size %d",
                       round_to, c->dim, l0->ffn);
    vt_config w;
    if (vt_config_copy(&w, c)) return -1;
    w.dim = round_to;
    for (int l = 0; l < w.n_layers; l++) w.layers[l] = (vt_layer_shape){1, 1, round_to};
    double full = vt_structure_size(c, kind, ctx), min = vt_structure_size(&w, kind, ctx);
    vt_config_free(&w);
    if (!(budget_size >= min))
        return vt_fail("budget.uniform: a budget of %.6g %s (%.6f of the unpruned size) is below the smallest uniform "
                       "structure, %.6f of it (%d hidden dims, one head and %d FFN neurons in every layer)",
                       budget_size, kind == VT_BUDGET_FLOPS ? "FLOPs per token" : "parameters", budget_size / full,
                       min / full, round_to, round_to);
    return 0;
}

static void uni_free(uni *u) {
    free(u->hid);
    free(u->head);
    free(u->neu);
    free(u->sh);
    free(u->sq);
    free(u->sf);
    free(u->rank);
    vt_config_free(&u->work);
}

static int uni_init(uni *u, const vt_masks *mk, const vt_config *c, const float *score) {
    const vt_layer_shape *l0 = &c->layers[0];
    u->mk = mk, u->L = c->n_layers, u->D = c->dim, u->NG = l0->n_kv_heads, u->G = l0->n_heads / l0->n_kv_heads;
    u->F = l0->ffn;
    size_t H = (size_t)(u->NG * u->G), L = (size_t)u->L;
    u->hid = vt_malloc((size_t)u->D * sizeof *u->hid, "uniform decision");
    u->head = vt_malloc(L * H * sizeof *u->head, "uniform decision");
    u->neu = vt_malloc(L * (size_t)u->F * sizeof *u->neu, "uniform decision");
    u->sh = vt_malloc((size_t)u->D * sizeof *u->sh, "uniform decision");
    u->sq = vt_calloc(H, sizeof *u->sq, "uniform decision");
    u->sf = vt_calloc((size_t)u->F, sizeof *u->sf, "uniform decision");
    u->rank = vt_malloc(((size_t)u->D + H + (size_t)u->F) * sizeof *u->rank, "uniform decision");
    if (!u->hid || !u->head || !u->neu || !u->sh || !u->sq || !u->sf || !u->rank || vt_config_copy(&u->work, c)) return -1;
    for (size_t j = 0; j < mk->n; j++)
        if (isnan(gate_score(mk, score, j)))
            return vt_fail("score of gate %zu (unit %lld) is NaN", j, (long long)mk->unit_id[j]);
    return uni_scores(u, score);
}

int vt_budget_decide_uniform(const vt_masks *mk, const vt_config *c, vt_budget_kind kind, double ctx,
                             double budget_size, int round_to, const float *score, uint8_t *keep, vt_config *out_cfg,
                             double *out_size) {
    memset(out_cfg, 0, sizeof *out_cfg);
    if (vt_gates_check_layout(mk, c) || vt_budget_uniform_check(c, kind, ctx, round_to, budget_size)) return -1;
    uni u;
    memset(&u, 0, sizeof u);
    u.kind = kind, u.ctx = ctx, u.r = round_to;
    int rc = -1;
    ustate st = {0};
    st.grp = vt_calloc((size_t)c->layers[0].n_kv_heads, 1, "uniform decision");
    if (!st.grp || uni_init(&u, mk, c, score)) goto done;
    int lo = 0, hi = u.D + u.NG * u.G + u.F;
    while (lo < hi) { /* the largest cut whose structure fits; cut 0 fits */
        int mid = lo + (hi - lo + 1) / 2;
        ustate_from_cut(&u, mid, &st);
        if (ustate_size(&u, &st) <= budget_size) lo = mid;
        else hi = mid - 1;
    }
    ustate_from_cut(&u, lo, &st);
    fill(&u, &st, budget_size);
    exchange(&u, &st, budget_size);
    ustate_keep(&u, &st, keep);
    if (vt_keep_structure(mk, c, keep, out_cfg)) goto done;
    *out_size = vt_structure_size(out_cfg, kind, ctx);
    rc = 0;
done:
    free(st.grp);
    uni_free(&u);
    return rc;
}
