/* test_convert_logits.c — a model converted to HF (F32/F16/BF16, single and sharded) loads and
 * gives the logits of its source: F32 to 1e-5 relative, F16/BF16 within their precision. Runs on
 * stories260K (skipped without the fixture) and on a random untied model. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/dtype.h"
#include "nn/forward.h"
#include "io/hf_writer.h"
#include "nn/model.h"

enum { T = 48 };

/* logits[T, vocab] of one sequence. */
static float *run_logits(const vt_model *m, const int32_t *tokens) {
    const vt_config *c = &m->cfg;
    vt_fwd f;
    assert_int_equal(vt_fwd_init(&f, m, 1, T, T), 0);
    float *x = malloc(sizeof(float) * T * (size_t)c->dim), *logits = malloc(sizeof(float) * T * (size_t)c->vocab);
    vt_embed(m, tokens, T, x);
    vt_layers_forward(m, &f, 0, c->n_layers, x, 1, T, 0);
    vt_head_forward(m, &f, x, T, logits);
    vt_fwd_free(&f);
    free(x);
    return logits;
}

/* max |a - b| / max |a| over all logits. */
static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)a[i]));
    }
    return num / den;
}

static void check_conversions(const vt_model *src, const char *tag) {
    const vt_config *c = &src->cfg;
    int32_t tokens[T];
    for (int t = 0; t < T; t++) tokens[t] = t == 0 ? 1 : (int32_t)((t * 7919u) % (unsigned)c->vocab);
    float *want = run_logits(src, tokens);
    char *dir = tu_tempdir();
    size_t total = 4 * vt_params_total(c);
    struct {
        vt_dtype dtype;
        size_t shard;
        double tol;
    } cases[] = {
        {VT_F32, 0, 1e-5},         {VT_F32, total / 3, 1e-5},  {VT_F16, 0, 5e-3},
        {VT_F16, total / 5, 5e-3}, {VT_BF16, 0, 5e-2},         {VT_BF16, total / 4, 5e-2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[4200];
        snprintf(out, sizeof out, "%s/%s-%s-%zu", dir, tag, vt_dtype_name(cases[i].dtype), cases[i].shard);
        assert_int_equal(vt_hf_write(src, out, cases[i].dtype, cases[i].shard, NULL), 0);
        vt_model m;
        assert_int_equal(vt_model_load(&m, out, vt_load_all()), 0);
        assert_int_equal(m.cfg.rope, VT_ROPE_HALF);
        float *got = run_logits(&m, tokens);
        double d = rel_diff(want, got, (size_t)T * (size_t)c->vocab);
        if (!(d <= cases[i].tol))
            fail_msg("%s %s shard %zu: logits differ by %.3g relative (tolerance %.g)", tag,
                     vt_dtype_name(cases[i].dtype), cases[i].shard, d, cases[i].tol);
        /* Reduced precision must actually change something, or the test would prove little. */
        if (cases[i].dtype != VT_F32) assert_true(d > 0);
        free(got);
        vt_model_free(&m);
    }
    tu_tempdir_remove(dir);
    free(want);
}

static void test_stories260k_conversions(void **state) {
    (void)state;
    if (!tu_have_fixture("stories260K/stories260K.bin")) skip();
    vt_model m;
    assert_int_equal(vt_model_load(&m, tu_fixture("stories260K/stories260K.bin"), vt_load_all()), 0);
    check_conversions(&m, "stories260K");
    vt_model_free(&m);
}

static void test_random_untied_conversions(void **state) {
    (void)state;
    vt_config c;
    tu_small_config(&c);
    c.tied = 0;
    vt_model m;
    tu_random_model(&m, &c, 31);
    check_conversions(&m, "random");
    vt_model_free(&m);
    vt_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_conversions),
        cmocka_unit_test(test_random_untied_conversions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
