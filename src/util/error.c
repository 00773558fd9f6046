/* error.c — per-thread error message buffer and whether it was reported, and allocation helpers
 * that report what failed. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char vt_error_buf[2048];
static _Thread_local int vt_error_was_reported;

int vt_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vt_error_buf, sizeof vt_error_buf, fmt, ap);
    va_end(ap);
    vt_error_was_reported = 0;
    return -1;
}

int vt_fail_context(const char *fmt, ...) {
    char prefix[1024];
    char old[sizeof vt_error_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, vt_error_buf, sizeof old);
    snprintf(vt_error_buf, sizeof vt_error_buf, "%.1000s: %.1000s", prefix, old);
    return -1;
}

const char *vt_error(void) { return vt_error_buf; }

void vt_error_clear(void) {
    vt_error_buf[0] = '\0';
    vt_error_was_reported = 0;
}

void vt_error_set_reported(void) { vt_error_was_reported = 1; }

int vt_error_reported(void) { return vt_error_was_reported; }

void *vt_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) vt_fail("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *vt_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) vt_fail("out of memory allocating %zu x %zu bytes for %s", count, size, what);
    return p;
}
