/* calib.h — calibration sequences cut from a token stream, and the order batches visit them:
 * a pure function of (seed, step), so every layout of ranks sees the same global batches. */
#ifndef VT_CALIB_H
#define VT_CALIB_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const int32_t *tokens; /* n_seq * seq_len tokens (not owned) */
    size_t n_seq;
    int seq_len;
} vt_calib;

/* Cuts the first `fraction` of stream[n] into non-overlapping sequences of seq_len tokens (the
 * remainder is dropped), at most max_seq of them (0 = no limit). Fails when none fits. */
int vt_calib_init(vt_calib *c, const int32_t *stream, size_t n, double fraction, int seq_len, size_t max_seq);

/* Global sample indices of the B sequences of batch `step`: consecutive slots of an endless
 * sequence of epochs, each a seeded permutation of the n_seq sequences. */
void vt_calib_batch(const vt_calib *c, uint64_t seed, long step, int B, int64_t *ids);

/* Tokens of sequence id. */
static inline const int32_t *vt_calib_seq(const vt_calib *c, int64_t id) {
    return c->tokens + (size_t)id * (size_t)c->seq_len;
}

#endif
