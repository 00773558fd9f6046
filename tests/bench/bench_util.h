/* bench_util.h — what every benchmark of tests/bench needs: CPU seconds, exit on a failed call. */
#ifndef VT_BENCH_UTIL_H
#define VT_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "util/clock.h"
#include "util/error.h"

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

#endif
