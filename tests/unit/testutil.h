/* testutil.h — shared helpers for the cmocka unit tests: fixture paths, temp dirs, tiny models. */
#ifndef VT_TESTUTIL_H
#define VT_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "nn/model.h"
#include "train/vib_train.h"

/* Path under the fixtures directory ($VT_FIXTURES, default ../shared/fixtures next to the source). */
const char *tu_fixture(const char *relative);
/* 1 when the fixture file exists; tests that need it call skip() otherwise. */
int tu_have_fixture(const char *relative);
/* A fresh empty directory under $TMPDIR (removed by tu_rmtree). Returned string is static per call slot. */
char *tu_tempdir(void);
void tu_rmtree(const char *path);
/* Writes bytes to a file; returns 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
/* A small dense config (dim 16, 2 layers, 4 heads, 2 KV heads, ffn 24, vocab 32, seq 64) and a
 * model with deterministic pseudo-random weights (seeded). */
void tu_small_config(vt_config *c);
void tu_random_model(vt_model *m, const vt_config *c, uint64_t seed);
/* A stories260K-shaped dense config: dim 64, 5 layers, 8 heads / 4 KV heads, ffn 172, vocab 512,
 * tied, 64 positions, interleaved RoPE. */
void tu_stories_config(vt_config *c);
/* VTrans settings for small training tests: a parameter budget of 60%, 12 mask steps of 4
 * sequences, constant learning rates, clipping at 1. */
vt_vib_params tu_vib_params(void);

#endif
