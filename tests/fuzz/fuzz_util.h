/* fuzz_util.h — what every libFuzzer target shares: the input written as a file in a private
 * temporary directory (the parsers take paths), and the fixtures directory. */
#ifndef VT_FUZZ_UTIL_H
#define VT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* This process's scratch directory (made on first use, removed at exit). */
const char *fz_dir(void);
/* Writes data as path (replacing it), without fsync: the scratch files are rewritten per execution. */
void fz_put(const char *path, const void *data, size_t size);
/* Writes data as fz_dir()/name (replacing it) and returns its path in a static buffer. */
const char *fz_write(const char *name, const uint8_t *data, size_t size);
/* fz_dir()/name, in a static buffer of its own per call slot (0..3). */
const char *fz_path(int slot, const char *name);
/* A file under the fixtures directory ($VT_FIXTURES, else the one next to the source tree). */
const char *fz_fixture(const char *relative);

#endif
