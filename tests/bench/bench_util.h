/* bench_util.h — what every benchmark of tests/bench needs: CPU seconds, exit on a failed call. */
#ifndef VT_BENCH_UTIL_H
#define VT_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util/clock.h"
#include "util/error.h"
#include "util/rng.h"

/* CPU seconds of all this process's threads (wall seconds: vt_seconds). */
static inline double bench_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* A benchmark has nothing to recover: a failed call ends it with the library's message. */
static inline void bench_check(const char *bench, int rc, const char *what) {
    if (rc) {
        fprintf(stderr, "%s: %s: %s\n", bench, what, vt_error());
        exit(1);
    }
}

/* n uniform values in [-scale/2, scale/2) from the xorshift stream s: random weights. */
static inline void bench_fill(float *a, size_t n, uint64_t *s, float scale) {
    for (size_t i = 0; i < n; i++) {
        vt_xorshift64(s);
        a[i] = ((float)(*s >> 40) / (float)(1u << 24) - 0.5f) * scale;
    }
}

#endif
