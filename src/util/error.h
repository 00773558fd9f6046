/* error.h — the last error of this thread: what went wrong and where (file, tensor, line). */
#ifndef VT_ERROR_H
#define VT_ERROR_H

#include <stddef.h>

/* Formats the message into this thread's error buffer and returns -1, so a failing function can
 * `return vt_fail("%s: tensor %s: shape [%d] does not match config", path, name, n);`.
 * A message set while another is pending replaces it. */
int vt_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prepends context ("while loading X: ") to the pending message; returns -1. Keeps its
 * reported flag. */
int vt_fail_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The pending message, or "" when none. */
const char *vt_error(void);
void vt_error_clear(void);

/* Whether the failure has already been shown to the user (printed by this process or gathered
 * and printed by another rank), so whoever ends the command does not print it again. Set by
 * vt_error_set_reported; a new message (vt_fail) and vt_error_clear reset it. */
void vt_error_set_reported(void);
int vt_error_reported(void);

/* malloc/calloc that set an error naming what was being allocated when they fail. */
void *vt_malloc(size_t bytes, const char *what);
void *vt_calloc(size_t count, size_t size, const char *what);

#endif
