/* clock.c — seconds on the monotonic clock. */
#include "util/clock.h"

#include <time.h>

double vt_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
