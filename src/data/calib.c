/* calib.c — calibration sequences and the seeded, layout-independent batch order. */
#include "data/calib.h"

#include "util/error.h"
#include "util/rng.h"

int vt_calib_init(vt_calib *c, const int32_t *stream, size_t n, double fraction, int seq_len, size_t max_seq) {
    if (seq_len < 2) return vt_fail("data.seq_len must be at least 2, got %d", seq_len);
    size_t use = (size_t)((double)n * fraction);
    if (use > n) use = n;
    c->tokens = stream;
    c->seq_len = seq_len;
    c->n_seq = use / (size_t)seq_len;
    if (max_seq && c->n_seq > max_seq) c->n_seq = max_seq;
    if (c->n_seq >= ((size_t)1 << 32)) return vt_fail("calibration data: too many sequences (%zu)", c->n_seq);
    if (c->n_seq == 0)
        return vt_fail("calibration data: %zu tokens (fraction %g of %zu) do not fill one sequence of %d tokens", use,
                       fraction, n, seq_len);
    return 0;
}

void vt_calib_batch(const vt_calib *c, uint64_t seed, long step, int B, int64_t *ids) {
    for (int b = 0; b < B; b++) {
        uint64_t slot = (uint64_t)step * (uint64_t)B + (uint64_t)b;
        ids[b] = (int64_t)vt_permuted(c->n_seq, seed, slot / c->n_seq, (size_t)(slot % c->n_seq));
    }
}
