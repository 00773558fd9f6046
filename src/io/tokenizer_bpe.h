/* tokenizer_bpe.h — the pair-merge loop both tokenizers share: repeatedly merge the adjacent pair
 * that comes first (highest score, leftmost on ties) until no pair merges. */
#ifndef VT_TOKENIZER_BPE_H
#define VT_TOKENIZER_BPE_H

#include <stddef.h>

/* Whether tokens a then b merge: 1 with *id the merged token and *score its priority (higher
 * first), else 0. */
typedef int (*vt_bpe_pair_fn)(const void *ctx, int a, int b, int *id, float *score);

/* Merges tok[0..n) in place; *n_out is the new length. -1 only when memory runs out. */
int vt_bpe_merge(int *tok, size_t n, vt_bpe_pair_fn pair, const void *ctx, size_t *n_out);

#endif
