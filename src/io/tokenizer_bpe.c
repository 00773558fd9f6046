/* tokenizer_bpe.c — the merge loop over a linked list of tokens with a heap of candidate pairs. */
#include "io/tokenizer_bpe.h"

#include <stdlib.h>

#include "util/error.h"

/* A candidate merge of the adjacent tokens at nodes left and right into token id. The versions
 * record the nodes' state when it was found: a changed node makes the candidate stale. */
typedef struct {
    float score;
    int left, right, id;
    unsigned left_version, right_version;
} merge_candidate;

typedef struct {
    merge_candidate *items;
    size_t n;
} merge_heap;

/* The highest score, and the leftmost pair on ties. Merges keep the order of the nodes, so
 * "leftmost" is the smallest original index of the left node. */
static int comes_first(const merge_candidate *a, const merge_candidate *b) {
    if (a->score != b->score) return a->score > b->score;
    return a->left < b->left;
}

static void heap_push(merge_heap *h, merge_candidate c) {
    size_t i = h->n++;
    h->items[i] = c;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!comes_first(&h->items[i], &h->items[parent])) break;
        merge_candidate tmp = h->items[i];
        h->items[i] = h->items[parent];
        h->items[parent] = tmp;
        i = parent;
    }
}

static merge_candidate heap_pop(merge_heap *h) {
    merge_candidate top = h->items[0];
    h->items[0] = h->items[--h->n];
    size_t i = 0;
    for (;;) {
        size_t best = i, l = 2 * i + 1, r = l + 1;
        if (l < h->n && comes_first(&h->items[l], &h->items[best])) best = l;
        if (r < h->n && comes_first(&h->items[r], &h->items[best])) best = r;
        if (best == i) break;
        merge_candidate tmp = h->items[i];
        h->items[i] = h->items[best];
        h->items[best] = tmp;
        i = best;
    }
    return top;
}

typedef struct {
    vt_bpe_pair_fn pair;
    const void *ctx;
    int *tok, *next, *prev;
    unsigned *version;
    merge_heap heap;
} merger;

static void consider_pair(merger *m, int left, int right) {
    if (left < 0 || right < 0) return;
    int id;
    float score;
    if (!m->pair(m->ctx, m->tok[left], m->tok[right], &id, &score)) return;
    heap_push(&m->heap, (merge_candidate){score, left, right, id, m->version[left], m->version[right]});
}

static void run_merges(merger *m) {
    while (m->heap.n > 0) {
        merge_candidate c = heap_pop(&m->heap);
        if (m->next[c.left] != c.right || m->version[c.left] != c.left_version ||
            m->version[c.right] != c.right_version)
            continue; /* stale: one of the two tokens changed or was merged away */
        m->tok[c.left] = c.id;
        m->version[c.left]++;
        m->version[c.right]++;
        m->next[c.left] = m->next[c.right];
        if (m->next[c.right] >= 0) m->prev[m->next[c.right]] = c.left;
        m->tok[c.right] = -1;
        consider_pair(m, m->prev[c.left], c.left);
        consider_pair(m, c.left, m->next[c.left]);
    }
}

int vt_bpe_merge(int *tok, size_t n, vt_bpe_pair_fn pair, const void *ctx, size_t *n_out) {
    *n_out = n;
    if (n < 2) return 0;
    merger m = {.pair = pair, .ctx = ctx, .tok = tok};
    m.next = vt_malloc(n * sizeof *m.next, "encoder links");
    m.prev = vt_malloc(n * sizeof *m.prev, "encoder links");
    m.version = vt_calloc(n, sizeof *m.version, "encoder versions");
    /* Each merge adds at most two candidates to the n - 1 initial ones. */
    m.heap.items = vt_malloc(3 * n * sizeof *m.heap.items, "encoder merge queue");
    int rc = -1;
    if (m.next && m.prev && m.version && m.heap.items) {
        for (size_t i = 0; i < n; i++) {
            m.next[i] = i + 1 < n ? (int)(i + 1) : -1;
            m.prev[i] = (int)i - 1;
        }
        for (size_t i = 0; i + 1 < n; i++) consider_pair(&m, (int)i, (int)(i + 1));
        run_merges(&m);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (tok[i] >= 0) tok[k++] = tok[i];
        *n_out = k;
        rc = 0;
    }
    free(m.next);
    free(m.prev);
    free(m.version);
    free(m.heap.items);
    return rc;
}
