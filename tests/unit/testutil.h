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
/* The temporary directories of the tests, made and removed only here.
 * tu_tempdir: a fresh empty directory under $TMPDIR (malloc'd name; NULL when it cannot be made);
 * tu_tempdir_remove removes it with its contents and frees the name. tu_rmtree removes any tree. */
char *tu_tempdir(void);
void tu_tempdir_remove(char *dir);
void tu_rmtree(const char *path);
/* The directory of a test group, for cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown)
 * (or called from a group's own setup and teardown): tu_dir while the group runs. tu_in_dir(name) is
 * tu_dir/name in one of 8 rotating buffers, so a few such paths can be held at once. */
extern char *tu_dir;
int tu_group_setup(void **state);
int tu_group_teardown(void **state);
const char *tu_in_dir(const char *name);
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

/* max |a - b| / max |b| over n values (b: the reference). */
double tu_rel_diff(const float *a, const float *b, size_t n);

/* Logits [B T, vocab] of B sequences of T tokens through the whole model m (malloc'd). */
float *tu_model_logits(const vt_model *m, const int32_t *tokens, int B, int T);

/* Uniform in [-0.5, 0.5) from the test stream vt_lcg32 (util/rng.h). */
double tu_urand(unsigned *s);
/* Fails unless max |analytic - fd| <= tol * max |fd| (fd: the finite-difference reference). */
void tu_assert_grad(const char *what, const double *analytic, const double *fd, size_t n, double tol);

/* The PyTorch references (the scripts in tests/reference/, run with /usr/bin/python3). tu_have_torch: 1 when
 * VT_SOURCE_DIR is set and that python imports torch; tests skip() otherwise.
 * tu_run_reference runs tests/reference/<script> with the printf-formatted arguments, fails the
 * test unless it exits 0 and returns its standard output (a static buffer, valid until the next
 * call). tu_json_number reads the number after "key": in it, failing the test when it is absent. */
int tu_have_torch(void);
const char *tu_run_reference(const char *script, const char *args_fmt, ...);
double tu_json_number(const char *out, const char *key);

#endif
