/* test_plug_step.c — the plugin training step: its gradient against finite differences of its own
 * loss, Adam's first update, and a short run on stories260K that lowers the held-out KL. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "io/tokenizer.h"
#include "testutil.h"
#include "train/plug_step.h"
#include "util/clock.h"

static void test_gradient(void **st) {
    (void)st;
    vt_config c;
    tu_small_config(&c);
    vt_model m;
    tu_random_model(&m, &c, 21);
    enum { B = 2, T = 13, P = 8 };
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 11 + 3 * i * i) % c.vocab;
    vt_plugin p;
    assert_int_equal(vt_plugin_alloc(&p, &c, 3, 4), 0);
    srand(5);
    for (size_t i = 0; i < p.arena_floats; i++) p.arena[i] = ((float)rand() / (float)RAND_MAX - 0.5f) * 0.6f;
    vt_plug_step s;
    assert_int_equal(vt_plug_step_init(&s, &m, &p, B, T, P), 0);
    double loss = vt_plug_loss_grad(&m, &p, &s, ids);
    print_message("loss %.6g\n", loss);
    assert_true(loss > 0.0);
    float *g = malloc(sizeof(float) * p.arena_floats);
    memcpy(g, s.grad.arena, sizeof(float) * p.arena_floats);
    int checked = 0;
    for (int l = 0; l < c.n_layers; l++) {
        vt_plugin_layer *L = &p.layers[l];
        if (!L->w) continue; /* the last layer has no plugin */
        float *q[] = {L->w, L->w + 5, L->w1 + 3, L->w1 + 2 * c.dim + 1, L->b1 + 2, L->w2 + 7, L->b2 + 1};
        for (size_t i = 0; i < sizeof q / sizeof *q; i++) {
            size_t at = (size_t)(q[i] - p.arena);
            float keep = *q[i], h = 1e-2f;
            *q[i] = keep + h;
            double up = vt_plug_loss_grad(&m, &p, &s, ids);
            *q[i] = keep - h;
            double dn = vt_plug_loss_grad(&m, &p, &s, ids);
            *q[i] = keep;
            double fd = (up - dn) / (2 * h);
            print_message("layer %d param %zu: analytic %.6g, central difference %.6g\n", l, at, g[at], fd);
            assert_true(fabs(g[at] - fd) <= 3e-2 * fabs(fd) + 2e-4);
            checked += fabs(fd) > 1e-3;
        }
    }
    assert_true(checked >= 5);
    /* Adam's first step moves every parameter with a gradient by lr against its sign */
    float *before = malloc(sizeof(float) * p.arena_floats);
    memcpy(before, p.arena, sizeof(float) * p.arena_floats);
    double l0 = vt_plug_step_run(&m, &p, &s, ids, 1e-3);
    assert_true(fabs(l0 - loss) <= 1e-6 * loss);
    for (size_t i = 0; i < p.arena_floats; i++)
        if (fabsf(g[i]) > 1e-5f) assert_true(fabsf(before[i] - p.arena[i] - 1e-3f * (g[i] > 0 ? 1 : -1)) < 1e-5f);
    free(before), free(g);
    vt_plug_step_free(&s);
    vt_plugin_free(&p);
    vt_model_free(&m);
    vt_config_free(&c);
}

/* The mean loss over the first n full windows of stream (batches of s->B). */
static double held_out_kl(const vt_model *m, const vt_plugin *p, vt_plug_step *s, const int32_t *ids, int n) {
    double sum = 0.0;
    for (int w = 0; w < n; w += s->B) sum += vt_plug_loss_grad(m, p, s, ids + (size_t)w * s->T);
    return sum / (n / s->B);
}

static void text_head(const char *src, const char *path, size_t bytes) {
    FILE *f = fopen(src, "rb");
    assert_non_null(f);
    char *buf = malloc(bytes + 1);
    size_t n = fread(buf, 1, bytes, f);
    fclose(f);
    while (n > 2 && !(buf[n - 1] == '\n' && buf[n - 2] == '\n')) n--;
    assert_int_equal(tu_write_file(path, buf, n), 0);
    free(buf);
}

static void test_short_run(void **st) {
    (void)st;
    if (!tu_have_fixture("stories260K/stories260K.bin") || !tu_have_fixture("tinystories/calib.txt")) {
        print_message("skipped: no stories260K or tinystories fixture\n");
        skip();
    }
    enum { B = 4, T = 256, P = 192, K = 4, R = 16, STEPS = 30, HELD = 8 };
    vt_model m;
    vt_tokenizer tok;
    vt_tokens calib = {0}, eval = {0};
    assert_int_equal(vt_model_load(&m, tu_fixture("stories260K/stories260K.bin"), vt_load_all()), 0);
    assert_int_equal(vt_tokenizer_load(&tok, tu_fixture("stories260K/tok512.bin")), 0);
    assert_int_equal(vt_data_tokens(tu_fixture("tinystories/calib.txt"), &tok, &calib), 0);
    char *dir = tu_tempdir(), head[4200];
    snprintf(head, sizeof head, "%s/eval-head.txt", dir);
    text_head(tu_fixture("tinystories/eval.txt"), head, 40000);
    assert_int_equal(vt_data_tokens(head, &tok, &eval), 0);
    size_t windows = calib.n / T;
    assert_true(windows >= B * STEPS / 4);
    vt_plugin p;
    assert_int_equal(vt_plugin_alloc(&p, &m.cfg, K, R), 0);
    vt_plugin_init(&p, 1);
    vt_plug_step s;
    assert_int_equal(vt_plug_step_init(&s, &m, &p, B, T, P), 0);
    vt_cont_plan pl;
    vt_cont_result r0, r1;
    assert_int_equal(vt_cont_plan_make(&pl, eval.n, T, P), 0);
    assert_int_equal(vt_cont_eval(&m, &p, eval.ids, eval.n, &pl, 0, &r0), 0);
    double kl0 = held_out_kl(&m, &p, &s, eval.ids, HELD), t0 = vt_seconds(), loss = 0.0;
    for (int step = 0; step < STEPS; step++) {
        size_t w = (size_t)step * B % (windows - B + 1);
        loss = vt_plug_step_run(&m, &p, &s, calib.ids + w * T, 1e-3);
        if (step % 10 == 0 || step == STEPS - 1) print_message("step %d: train KL %.5f\n", step, loss);
    }
    double per_step = (vt_seconds() - t0) / STEPS;
    double kl1 = held_out_kl(&m, &p, &s, eval.ids, HELD);
    assert_int_equal(vt_cont_eval(&m, &p, eval.ids, eval.n, &pl, 0, &r1), 0);
    print_message("stories260K k %d r %d, P %d of %d, batch %d: %.3f s a step (%d steps)\n", K, R, P, T, B, per_step,
                  STEPS);
    print_message("held-out KL (%d windows): %.5f -> %.5f\n", HELD, kl0, kl1);
    print_message("continuation ppl on %zu scored tokens of eval.txt's head: dense %.4f; plugged %.4f -> %.4f; "
                  "prefill FLOPs saved %.1f%%\n",
                  r1.tokens, r1.ppl_dense, r0.ppl, r1.ppl, 100 * r1.prefill_flops_saved);
    assert_true(kl1 < 0.9 * kl0);
    assert_true(r1.ppl < r0.ppl);
    vt_plug_step_free(&s);
    vt_plugin_free(&p);
    vt_tokens_free(&calib), vt_tokens_free(&eval);
    vt_tokenizer_free(&tok);
    vt_model_free(&m);
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gradient),
        cmocka_unit_test(test_short_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
