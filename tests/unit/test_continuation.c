/* test_continuation.c — continuation perplexity: the window plan by hand, the split prefill and
 * continuation against one pass over each window, k = 1 with a zero adapter equal to dense, and
 * the dense figure on stories260K against PyTorch (tests/reference/continuation_ref.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "io/tokenizer.h"
#include "nn/continuation.h"
#include "testutil.h"
#include "util/error.h"

static void test_plan(void **st) {
    (void)st;
    vt_cont_plan pl;
    /* 23 tokens, windows of 8, prompt 5: windows [0,8) [8,16) [16,23); the last has 7 >= 5 + 2 */
    assert_int_equal(vt_cont_plan_make(&pl, 23, 8, 5), 0);
    assert_int_equal(pl.windows, 3);
    assert_int_equal(pl.scored_windows, 3);
    assert_int_equal(pl.full_windows, 2);
    assert_int_equal(pl.tokens, 3 + 3 + 2);
    assert_int_equal(vt_cont_window_len(&pl, 23, 2), 7);
    /* 22 tokens: the last window has 6 < 7 tokens: a protocol window, not scored */
    assert_int_equal(vt_cont_plan_make(&pl, 22, 8, 5), 0);
    assert_int_equal(pl.windows, 3);
    assert_int_equal(pl.scored_windows, 2);
    assert_int_equal(pl.tokens, 6);
    /* 17 tokens: the last piece has 1 token, not even a window */
    assert_int_equal(vt_cont_plan_make(&pl, 17, 8, 5), 0);
    assert_int_equal(pl.windows, 2);
    assert_int_equal(pl.tokens, 6);
    /* the default prompt: floor(3 L / 4) = 192 of 256, 6 of 8, 7 of 10 */
    assert_int_equal(vt_cont_plan_make(&pl, 1000, 256, 0), 0);
    assert_int_equal(pl.prompt, 192);
    assert_int_equal(pl.tokens, 3 * 64 + (232 - 192));
    assert_int_equal(vt_cont_plan_make(&pl, 100, 8, 0), 0);
    assert_int_equal(pl.prompt, 6);
    assert_int_equal(pl.tokens, 12 * 2 + 0); /* the last 4 tokens: shorter than 8 */
    assert_int_equal(vt_cont_plan_make(&pl, 100, 10, 0), 0);
    assert_int_equal(pl.prompt, 7);
    assert_int_not_equal(vt_cont_plan_make(&pl, 100, 8, 7), 0); /* no room for 2 scored tokens */
    print_message("  expected failure: %s\n", vt_error());
    assert_int_not_equal(vt_cont_plan_make(&pl, 6, 8, 5), 0); /* nothing scored */
    print_message("  expected failure: %s\n", vt_error());
}

/* Dense continuation NLL the plain way: each window in one forward pass, token t scored by the
 * logits at t - 1 for t >= P. */
static double one_pass_nll(const vt_model *m, const int32_t *ids, size_t n, const vt_cont_plan *pl) {
    int V = m->cfg.vocab, d = m->cfg.dim;
    double nll = 0.0;
    for (size_t w = 0; w < pl->scored_windows; w++) {
        int T = (int)vt_cont_window_len(pl, n, w);
        const int32_t *tok = ids + vt_cont_window_start(pl, w);
        vt_fwd f;
        assert_int_equal(vt_fwd_init(&f, m, 1, T, T), 0);
        float *x = malloc(sizeof(float) * T * d), *lg = malloc(sizeof(float) * T * V);
        vt_embed(m, tok, T, x);
        vt_layers_forward(m, &f, 0, m->cfg.n_layers, x, 1, T, 0);
        vt_head_forward(m, &f, x, T, lg);
        for (int t = pl->prompt; t < T; t++) nll += vt_cont_nll(lg + (size_t)(t - 1) * V, V, tok[t]);
        free(x), free(lg);
        vt_fwd_free(&f);
    }
    return nll;
}

static void test_small_model(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 11);
    enum { N = 3 * 16 + 13, L = 16, P = 9 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 7 + i * i) % c.vocab;
    vt_cont_plan pl;
    assert_int_equal(vt_cont_plan_make(&pl, N, L, P), 0);
    assert_int_equal(pl.tokens, 3 * 7 + 4);
    vt_plugin p;
    assert_int_equal(vt_plugin_alloc(&p, &c, 1, 3), 0); /* k = 1, zero adapter: the dense model */
    vt_cont_result r;
    for (int batch = 1; batch <= 3; batch += 2) {
        assert_int_equal(vt_cont_eval(&m, &p, ids, N, &pl, batch, &r), 0);
        double ref = one_pass_nll(&m, ids, N, &pl);
        print_message("batch %d: dense NLL %.9g, one pass %.9g, plugged k 1 %.9g, %zu tokens\n", batch, r.nll_dense,
                      ref, r.nll, r.tokens);
        assert_int_equal(r.tokens, pl.tokens);
        assert_int_equal(r.windows, 4);
        assert_true(fabs(r.nll_dense - ref) <= 1e-5 * fabs(ref));
        assert_true(r.nll == r.nll_dense); /* bit for bit */
        assert_true(r.ppl == r.ppl_dense);
    }
    vt_plugin_init(&p, 3); /* a nonzero adapter input layer alone changes nothing either (W2 = 0) ... */
    p.k = 2;               /* ... but merging pairs does */
    assert_int_equal(vt_cont_eval(&m, &p, ids, N, &pl, 0, &r), 0);
    print_message("k 2 untrained: ppl %.6g vs dense %.6g, prefill FLOPs saved %.3f\n", r.ppl, r.ppl_dense,
                  r.prefill_flops_saved);
    assert_true(r.nll != r.nll_dense);
    assert_true(r.prefill_flops_saved > 0.0);
    ids[5] = c.vocab;
    assert_int_not_equal(vt_cont_eval(&m, &p, ids, N, &pl, 0, &r), 0);
    print_message("  expected failure: %s\n", vt_error());
    vt_plugin_free(&p);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* The first `bytes` of a text file, cut after its last "\n\n" before that, into path. */
static void text_head(const char *src, const char *path, size_t bytes) {
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    char *buf = malloc(bytes + 1);
    size_t n = fread(buf, 1, bytes, f);
    fclose(f);
    buf[n] = 0;
    while (n > 2 && !(buf[n - 1] == '\n' && buf[n - 2] == '\n')) n--;
    assert_int_equal(tu_write_file(path, buf, n), 0);
    free(buf);
}

static void test_stories_vs_torch(void **st) {
    (void)st;
    if (!tu_have_fixture("stories260K/stories260K.bin") || !tu_have_fixture("tinystories/eval.txt") ||
        !tu_have_torch()) {
        print_message("skipped: no VT_SOURCE_DIR, no stories260K or eval.txt fixture, or no python3 with torch\n");
        skip();
    }
    char *dir = tu_tempdir(), data[4200], model[4200], tokp[4200];
    snprintf(data, sizeof data, "%s/eval-head.txt", dir);
    snprintf(model, sizeof model, "%s", tu_fixture("stories260K/stories260K.bin"));
    snprintf(tokp, sizeof tokp, "%s", tu_fixture("stories260K/tok512.bin"));
    text_head(tu_fixture("tinystories/eval.txt"), data, 40000);
    vt_model m;
    vt_tokenizer tok;
    vt_tokens ids = {0};
    assert_int_equal(vt_model_load(&m, model, vt_load_all()), 0);
    assert_int_equal(vt_tokenizer_load(&tok, tokp), 0);
    assert_int_equal(vt_data_tokens(data, &tok, &ids), 0);
    vt_cont_plan pl;
    assert_int_equal(vt_cont_plan_make(&pl, ids.n, 256, 0), 0);
    vt_plugin p;
    assert_int_equal(vt_plugin_alloc(&p, &m.cfg, 4, 16), 0);
    vt_plugin_init(&p, 1);
    vt_cont_result r;
    assert_int_equal(vt_cont_eval(&m, &p, ids.ids, ids.n, &pl, 0, &r), 0);
    const char *out = tu_run_reference("continuation_ref.py", "%s %s %s 256 192", model, tokp, data);
    double ppl = tu_json_number(out, "ppl");
    long tokens = (long)tu_json_number(out, "tokens");
    print_message("stories260K, %zu tokens of eval.txt, windows 256, prompt 192: %zu scored; dense ppl C %.6f, "
                  "torch %.6f; untrained k 4 r 16: %.4f, prefill FLOPs saved %.1f%% (%.2fs)\n",
                  ids.n, r.tokens, r.ppl_dense, ppl, r.ppl, 100 * r.prefill_flops_saved, r.seconds);
    assert_int_equal((long)r.tokens, tokens);
    assert_true(fabs(r.ppl_dense - ppl) <= 1e-4 * ppl);
    assert_true(r.ppl > r.ppl_dense);
    assert_true(r.prefill_flops_saved > 0.35 && r.prefill_flops_saved < 0.43);
    vt_plugin_free(&p);
    vt_tokens_free(&ids);
    vt_tokenizer_free(&tok);
    vt_model_free(&m);
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_small_model),
        cmocka_unit_test(test_stories_vs_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
