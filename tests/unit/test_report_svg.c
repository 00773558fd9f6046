/* test_report_svg.c — the run report and its picture: well-formed SVG, one bar group per layer,
 * removed blocks named, the numbers written, one curve point per record, no curves without
 * records, the run report drawing the same, errors naming the path, nothing but the picture
 * written; vtrans_report.json rendered from the same struct with its keys, values and config. */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "report/report.h"
#include "report/report_svg.h"
#include "testutil.h"

/* stories260K's shape (tu_stories_config) and a pruned version of it:
 * layer 1 lost its MLP, layer 2 its attention, layer 3 both, layer 4 is untouched. */
static void pruned_pair(vt_config *b, vt_config *a) {
    tu_stories_config(b);
    assert_int_equal(vt_config_copy(a, b), 0);
    a->dim = 48;
    static const vt_layer_shape kept[5] = {{6, 3, 120}, {4, 2, 0}, {0, 0, 64}, {0, 0, 0}, {8, 4, 172}};
    memcpy(a->layers, kept, sizeof kept);
}

/* n records every 10 steps, the first n_mask in the mask phase; the loss falls by 3 decades. Only
 * the fields the picture draws are set. */
static vt_train_record *make_records(size_t n, size_t n_mask) {
    vt_train_record *r = calloc(n, sizeof *r);
    assert_non_null(r);
    for (size_t i = 0; i < n; i++) {
        double t = (double)(i + 1) / (double)n_mask;
        r[i].step = (long)(i + 1) * 10 - 1;
        r[i].phase = i >= n_mask;
        r[i].target = i < n_mask ? fmax(0.5, 1.0 - 0.5 * t / 0.6) : 0.5;
        r[i].hard_size = i < n_mask ? fmax(0.497, 1.0 - 0.55 * t) : 0.497;
        r[i].kd = 4.0 * exp(-0.7 * (double)i) + 0.002;
        r[i].beta = 1e-4 * (double)(i + 1);
    }
    return r;
}

__attribute__((noinline)) static char *slurp(const char *path) {
    char *data = NULL;
    size_t n = 0;
    int rc = vt_read_file(path, &data, &n);
    assert_int_equal(rc, 0);
    return data;
}

static size_t count(const char *s, const char *needle) {
    size_t k = 0, len = strlen(needle);
    for (const char *p = s; (p = strstr(p, needle)); p += len) k++;
    return k;
}

/* XML-ish: every tag closed in order (one <svg> root around everything), no '<' inside a tag, every
 * '&' an entity. Fails the test with the reason otherwise. */
static void check_well_formed(const char *s) {
    char stack[32][24];
    int depth = 0, roots = 0;
    for (const char *a = s; (a = strchr(a, '&')); a++)
        if (strncmp(a, "&amp;", 5) && strncmp(a, "&lt;", 4) && strncmp(a, "&gt;", 4) && strncmp(a, "&quot;", 6))
            fail_msg("bare '&' at offset %ld", (long)(a - s));
    const char *p = s;
    while ((p = strchr(p, '<'))) {
        if (strncmp(p, "<?", 2) == 0) {
            assert_true(p == s); /* only the XML declaration, first */
            p = strstr(p, "?>");
            assert_non_null(p);
            continue;
        }
        const char *end = strchr(p, '>');
        assert_non_null(end);
        if (memchr(p + 1, '<', (size_t)(end - p - 1))) fail_msg("'<' inside a tag at offset %ld", (long)(p - s));
        int closing = p[1] == '/', self = end[-1] == '/';
        const char *name = p + 1 + closing;
        size_t len = strcspn(name, " \t\n/>");
        assert_true(len > 0 && len < sizeof stack[0]);
        if (closing) {
            if (depth == 0 || strlen(stack[depth - 1]) != len || strncmp(stack[depth - 1], name, len))
                fail_msg("</%.*s> at offset %ld closes <%s>", (int)len, name, (long)(p - s),
                         depth ? stack[depth - 1] : "nothing");
            depth--;
        } else if (!self) {
            if (depth == 0) {
                roots++;
                assert_true(len == 3 && strncmp(name, "svg", 3) == 0);
            }
            assert_true(depth < 32);
            memcpy(stack[depth], name, len);
            stack[depth++][len] = 0;
        } else {
            assert_true(depth > 0); /* nothing outside the root */
        }
        p = end + 1;
    }
    assert_int_equal(depth, 0);
    assert_int_equal(roots, 1);
    assert_int_equal(count(s, "<svg"), 1);
    assert_int_equal(count(s, "</svg>"), 1);
    const char *tail = strstr(s, "</svg>");
    assert_string_equal(tail, "</svg>\n");
}

/* The number of x,y points of the polyline with this class (-1 when there is none). */
static long polyline_points(const char *s, const char *cls) {
    char key[64];
    snprintf(key, sizeof key, "<polyline class=\"%s\"", cls);
    const char *p = strstr(s, key);
    if (!p) return -1;
    p = strstr(p, "points=\"");
    assert_non_null(p);
    p += 8;
    long n = 0;
    while (*p && *p != '"') {
        while (*p == ' ') p++;
        if (*p == '"') break;
        double x, y;
        int used = 0;
        if (sscanf(p, "%lf,%lf%n", &x, &y, &used) != 2) fail_msg("bad point in %s: %.20s", cls, p);
        assert_true(x >= 0 && x <= 900 && y >= 0);
        p += used;
        n++;
    }
    return n;
}

static size_t dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void check_structure(const char *svg) {
    assert_int_equal(count(svg, "<g class=\"layer\""), 5);
    for (int l = 0; l < 5; l++) {
        char want[64];
        snprintf(want, sizeof want, "data-layer=\"%d\"", l);
        assert_int_equal(count(svg, want), 1);
    }
    /* layer 1 MLP, layer 2 attention (heads and KV heads), layer 3 all three: 6 hatched bars */
    assert_int_equal(count(svg, ">removed</text>"), 6);
    assert_int_equal(count(svg, "<rect class=\"removed\""), 6);
    assert_non_null(strstr(svg, ">6/8<"));
    assert_non_null(strstr(svg, ">3/4<"));
    assert_non_null(strstr(svg, ">120/172<"));
    assert_non_null(strstr(svg, ">0/172<"));
    assert_non_null(strstr(svg, ">172/172<"));
    assert_non_null(strstr(svg, "hidden dims kept 48 of 64"));
    assert_non_null(strstr(svg, "4 blocks removed (1 whole layer)"));
}

static void test_pruned_with_records(void **st) {
    (void)st;
    vt_config b, a;
    pruned_pair(&b, &a);
    size_t n = 12;
    vt_train_record *r = make_records(n, 8);
    char *dir = tu_tempdir(), path[4200];
    assert_non_null(dir);
    snprintf(path, sizeof path, "%s/vtrans_report.svg", dir);
    assert_int_equal(vt_report_svg_write(path, &b, &a, r, n, "VTrans full: budget 50% <test> & more"), 0);
    assert_int_equal(dir_entries(dir), 1); /* the picture and nothing else */
    char *svg = slurp(path);
    check_well_formed(svg);
    check_structure(svg);
    assert_non_null(strstr(svg, "VTrans full: budget 50% &lt;test&gt; &amp; more"));
    /* one point per record in every curve; the phases and the log scale of the loss */
    assert_int_equal(polyline_points(svg, "size"), (long)n);
    assert_int_equal(polyline_points(svg, "target"), (long)n);
    assert_int_equal(polyline_points(svg, "kd"), (long)n);
    assert_int_equal(polyline_points(svg, "beta"), (long)n);
    assert_non_null(strstr(svg, "stroke-dasharray=\"7 5\" points=")); /* the target is dashed */
    assert_non_null(strstr(svg, ">mask phase<"));
    assert_non_null(strstr(svg, ">fine-tuning<"));
    assert_int_equal(count(svg, "class=\"finetune\""), 3); /* shaded in all three curve panels */
    assert_non_null(strstr(svg, "(log scale)"));
    assert_non_null(strstr(svg, ">optimizer step<"));
    assert_non_null(strstr(svg, ">49.7%<"));       /* the final kept size */
    assert_non_null(strstr(svg, ">target 50%<"));  /* and the target */
    assert_non_null(strstr(svg, ">120<"));         /* the last step is a tick */
    free(svg);

    /* Masks only (Faster-VTrans): no fine-tuning shade; a narrow loss range stays linear. */
    for (size_t i = 0; i < n; i++) {
        r[i].phase = 0;
        r[i].kd = 2.0 + 0.01 * (double)i;
    }
    assert_int_equal(vt_report_svg_write(path, &b, &a, r, n, NULL), 0);
    svg = slurp(path);
    check_well_formed(svg);
    assert_null(strstr(svg, "fine-tuning"));
    assert_null(strstr(svg, "log scale"));
    assert_int_equal(polyline_points(svg, "kd"), (long)n);
    free(svg);

    free(r);
    vt_config_free(&a);
    vt_config_free(&b);
    tu_tempdir_remove(dir);
}

static void test_no_records(void **st) {
    (void)st;
    vt_config b, a;
    pruned_pair(&b, &a);
    char *dir = tu_tempdir(), path[4200];
    snprintf(path, sizeof path, "%s/vtrans_report.svg", dir);
    assert_int_equal(vt_report_svg_write(path, &b, &a, NULL, 0, "magnitude baseline"), 0);
    char *svg = slurp(path);
    check_well_formed(svg);
    check_structure(svg);
    assert_null(strstr(svg, "<polyline"));
    assert_null(strstr(svg, "optimizer step"));
    free(svg);
    vt_config_free(&a);
    vt_config_free(&b);
    tu_tempdir_remove(dir);
}

static void test_errors_name_path(void **st) {
    (void)st;
    vt_config b, a;
    pruned_pair(&b, &a);
    char *dir = tu_tempdir(), path[4200];
    snprintf(path, sizeof path, "%s/no-such-dir/vtrans_report.svg", dir);
    vt_error_clear();
    assert_int_equal(vt_report_svg_write(path, &b, &a, NULL, 0, NULL), -1);
    assert_non_null(strstr(vt_error(), path));
    assert_non_null(strstr(vt_error(), "No such file"));
    /* configurations that do not match */
    snprintf(path, sizeof path, "%s/vtrans_report.svg", dir);
    a.n_layers = 4;
    vt_error_clear();
    assert_int_equal(vt_report_svg_write(path, &b, &a, NULL, 0, NULL), -1);
    assert_non_null(strstr(vt_error(), path));
    a.n_layers = 5;
    assert_int_equal(dir_entries(dir), 0);
    /* a run report without the configuration after */
    vt_run_report rep = {.before = &b};
    vt_error_clear();
    assert_int_equal(vt_report_svg_write_report(&rep, path), -1);
    assert_non_null(strstr(vt_error(), path));
    assert_int_equal(dir_entries(dir), 0);
    vt_config_free(&a);
    vt_config_free(&b);
    tu_tempdir_remove(dir);
}

/* A run report as prune fills it for VTrans: a 50% parameter budget, the curve. */
static vt_run_report vib_report(const vt_config *b, const vt_config *a, const vt_train_record *r, size_t n) {
    return (vt_run_report){.before = b, .after = a, .ctx = 128.0, .method = "vib", .variant = "full",
                           .budget_kind = "params", .budget_target = 0.5, .budget_achieved = 0.497,
                           .ppl_before = 10.5, .ppl_after = 12.25, .eval_window = 256, .steps = 90,
                           .tokens = 11520, .prune_seconds = 1.5, .wall_seconds = 2.75, .losses = r,
                           .n_losses = n, .final_kd = 0.125};
}

/* From the run report: the same structure and curves under a title naming method and budget. */
static void test_from_run_report(void **st) {
    (void)st;
    vt_config b, a;
    pruned_pair(&b, &a);
    size_t n = 9;
    vt_train_record *r = make_records(n, 6);
    vt_run_report rep = vib_report(&b, &a, r, n);
    char *dir = tu_tempdir(), path[4200], path2[4200];
    snprintf(path, sizeof path, "%s/from-report.svg", dir);
    snprintf(path2, sizeof path2, "%s/direct.svg", dir);
    assert_int_equal(vt_report_svg_write_report(&rep, path), 0);
    char *svg = slurp(path);
    check_well_formed(svg);
    check_structure(svg);
    char want[128]; /* the parameters kept, counted from the two configurations */
    snprintf(want, sizeof want, "of %.4gk parameters", (double)vt_params_total(&b) / 1e3);
    assert_non_null(strstr(svg, "VTrans full: parameter budget 50%, achieved 49.7%"));
    assert_non_null(strstr(svg, want));
    assert_int_equal(polyline_points(svg, "size"), (long)n);
    assert_int_equal(polyline_points(svg, "kd"), (long)n);
    assert_non_null(strstr(svg, ">fine-tuning<"));

    /* Everything below the title is what the configurations and records draw directly. */
    assert_int_equal(vt_report_svg_write(path2, &b, &a, r, n, "x"), 0);
    char *direct = slurp(path2);
    const char *h1 = strstr(svg, "class=\"h1\""), *h2 = strstr(direct, "class=\"h1\"");
    assert_non_null(h1);
    assert_non_null(h2);
    assert_string_equal(strstr(h1, "</text>"), strstr(h2, "</text>"));
    free(direct);
    free(svg);

    /* Baselines: no losses, only the structure. */
    rep.method = "magnitude";
    rep.variant = NULL;
    rep.losses = NULL;
    rep.n_losses = 0;
    rep.budget_kind = "flops";
    assert_int_equal(vt_report_svg_write_report(&rep, path), 0);
    svg = slurp(path);
    check_well_formed(svg);
    assert_null(strstr(svg, "<polyline"));
    assert_non_null(strstr(svg, "magnitude baseline: FLOP budget 50%"));
    assert_null(strstr(svg, "re-fitted"));
    free(svg);

    /* After a re-fit the title gives the perplexity before and after it. */
    rep.ppl_masks = 20.5;
    rep.reconstruct = "lsq";
    assert_int_equal(vt_report_svg_write_report(&rep, path), 0);
    svg = slurp(path);
    check_well_formed(svg);
    assert_non_null(strstr(svg, "perplexity 20.5 masks only, 12.25 re-fitted"));
    free(svg);

    free(r);
    vt_config_free(&a);
    vt_config_free(&b);
    tu_tempdir_remove(dir);
}

static json_t *load_json(const char *path) {
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) fail_msg("%s: %s", path, err.text);
    return j;
}

static double num(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) fail_msg("\"%s\" is not a number", key);
    return json_number_value(v);
}

/* vtrans_report.json from the same struct: the keys in their order, the values, the curve, the
 * configuration embedded as an object, null perplexities when not evaluated; errors name the path. */
static void test_report_json(void **st) {
    (void)st;
    vt_config b, a;
    pruned_pair(&b, &a);
    size_t n = 9;
    vt_train_record *r = make_records(n, 6);
    vt_run_report rep = vib_report(&b, &a, r, n);
    rep.config_json = "{\"source\":\"x.ini\",\"budget\":{\"params\":0.5,\"flops\":null}}";
    /* a re-fit of layer 1's o_proj and down_proj (the other slots not re-fitted) */
    vt_refit_stat fits[8 * VT_REFIT_SLOTS] = {{0}};
    fits[VT_REFIT_SLOTS + VT_REFIT_O] = (vt_refit_stat){.err_before = 0.5, .err_after = 0.25, .retries = 1, .done = 1};
    fits[VT_REFIT_SLOTS + VT_REFIT_DOWN] = (vt_refit_stat){.err_before = 0.75, .err_after = 0.125, .done = 1};
    rep.ppl_masks = 20.5;
    rep.train_tokens = 12345;
    rep.reconstruct = "lsq";
    rep.refit = fits;
    rep.refit_seconds = 3.5;
    /* then a lora recovery of 10 steps: 2000 of the 12345 tokens trained on */
    rep.ppl_refit = 15.5;
    rep.recover = "lora";
    rep.recover_steps = 10;
    rep.recover_tokens = 2000;
    rep.recover_seconds = 2.5;
    rep.recover_loss[0] = 1.5, rep.recover_loss[1] = 0.75;
    char *dir = tu_tempdir(), path[4200];
    snprintf(path, sizeof path, "%s/vtrans_report.json", dir);
    assert_int_equal(vt_report_write_json(&rep, path), 0);
    json_t *j = load_json(path);
    static const char *const keys[] = {
        "params_before", "params_after", "params_non_embedding_before", "params_non_embedding_after",
        "flops_per_token_before", "flops_per_token_after", "hidden_before", "hidden_kept", "layers",
        "removed_blocks", "removed_layers", "method", "variant", "budget", "ppl_before", "ppl_masks", "ppl_after",
        "eval_window", "steps", "tokens", "train_tokens", "prune_seconds", "wall_seconds", "stages", "ppl_refit",
        "recover", "losses", "final_kd",
        "reconstruct", "config"};
    size_t k = 0;
    for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it), k++) {
        assert_true(k < sizeof keys / sizeof keys[0]);
        assert_string_equal(json_object_iter_key(it), keys[k]);
    }
    assert_int_equal(k, sizeof keys / sizeof keys[0]);
    assert_int_equal((size_t)num(j, "params_before"), vt_params_total(&b));
    assert_int_equal((size_t)num(j, "params_after"), vt_params_total(&a));
    assert_int_equal((int)num(j, "hidden_kept"), 48);
    assert_int_equal((int)num(j, "removed_blocks"), 4);
    assert_int_equal(json_array_size(json_object_get(j, "removed_layers")), 1);
    const json_t *l2 = json_array_get(json_object_get(j, "layers"), 2);
    assert_int_equal((int)num(l2, "heads"), 0);
    assert_int_equal((int)num(l2, "kv_heads_before"), 4);
    assert_true(json_is_false(json_object_get(l2, "attention")));
    assert_string_equal(json_string_value(json_object_get(j, "variant")), "full");
    assert_float_equal(num(json_object_get(j, "budget"), "achieved"), 0.497, 1e-12);
    assert_float_equal(num(j, "ppl_after"), 12.25, 0);
    assert_float_equal(num(j, "ppl_masks"), 20.5, 0);
    assert_int_equal((long)num(j, "train_tokens"), 12345);
    /* the stages: time, tokens, perplexity after each (the last one's is ppl_after) */
    const json_t *sg = json_object_get(j, "stages");
    assert_int_equal(json_array_size(sg), 3);
    static const char *const stage_names[] = {"masks", "refit", "recover"};
    const double stage_ppl[] = {20.5, 15.5, 12.25}, stage_tokens[] = {10345, 0, 2000}, stage_s[] = {NAN, 3.5, 2.5};
    for (size_t i = 0; i < 3; i++) {
        const json_t *e = json_array_get(sg, i);
        assert_string_equal(json_string_value(json_object_get(e, "stage")), stage_names[i]);
        assert_float_equal(num(e, "ppl"), stage_ppl[i], 0);
        assert_int_equal((long)num(e, "tokens"), (long)stage_tokens[i]);
        if (i) assert_float_equal(num(e, "seconds"), stage_s[i], 0);
    }
    assert_float_equal(num(json_array_get(sg, 0), "seconds"), rep.prune_seconds, 0);
    assert_float_equal(num(j, "ppl_refit"), 15.5, 0);
    const json_t *rv = json_object_get(j, "recover");
    assert_string_equal(json_string_value(json_object_get(rv, "method")), "lora");
    assert_int_equal((long)num(rv, "steps"), 10);
    assert_int_equal((long)num(rv, "tokens"), 2000);
    assert_float_equal(num(rv, "seconds"), 2.5, 0);
    assert_float_equal(num(rv, "first_loss"), 1.5, 0);
    assert_float_equal(num(rv, "last_loss"), 0.75, 0);
    const json_t *rf = json_object_get(j, "reconstruct");
    assert_string_equal(json_string_value(json_object_get(rf, "method")), "lsq");
    assert_float_equal(num(rf, "seconds"), 3.5, 0);
    const json_t *rl = json_object_get(rf, "layers");
    assert_int_equal(json_array_size(rl), (size_t)b.n_layers);
    assert_null(json_object_get(json_array_get(rl, 0), "o_proj"));
    assert_null(json_object_get(json_array_get(rl, 1), "qkv_proj"));
    const json_t *o1 = json_object_get(json_array_get(rl, 1), "o_proj");
    assert_float_equal(num(o1, "error_before"), 0.5, 0);
    assert_float_equal(num(o1, "error_after"), 0.25, 0);
    assert_int_equal((int)num(o1, "retries"), 1);
    assert_float_equal(num(json_object_get(json_array_get(rl, 1), "down_proj"), "error_after"), 0.125, 0);
    const json_t *losses = json_object_get(j, "losses");
    assert_int_equal(json_array_size(losses), n);
    assert_int_equal((long)num(json_array_get(losses, 0), "step"), r[0].step + 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(losses, 8), "phase")), "finetune");
    assert_float_equal(num(json_array_get(losses, 3), "kd"), r[3].kd, 1e-9 * r[3].kd);
    const json_t *cfg = json_object_get(j, "config");
    assert_string_equal(json_string_value(json_object_get(cfg, "source")), "x.ini");
    assert_true(json_is_null(json_object_get(json_object_get(cfg, "budget"), "flops")));
    json_decref(j);

    /* the picture's stages panel: a row per stage, the re-fit's mean relative error (of o_proj
     * 0.5 -> 0.25 and down_proj 0.75 -> 0.125), the recovery's loss */
    char svg_path[4300];
    snprintf(svg_path, sizeof svg_path, "%s/vtrans_report.svg", dir);
    assert_int_equal(vt_report_svg_write_report(&rep, svg_path), 0);
    char *svg = slurp(svg_path);
    assert_non_null(strstr(svg, ">Stages</text>"));
    assert_non_null(strstr(svg, "relative output error 0.625 \xe2\x86\x92 0.188 (mean of 2)"));
    assert_non_null(strstr(svg, "lora, 10 steps, loss 1.5 \xe2\x86\x92 0.75"));
    assert_non_null(strstr(svg, ">15.5</text>"));
    assert_non_null(strstr(svg, "masks only, 12.25 recovered"));
    free(svg);

    /* A baseline without evaluation: no variant, no curve, null perplexities, no config. */
    rep = (vt_run_report){.before = &b, .after = &a, .method = "random", .budget_kind = "flops",
                          .ppl_before = NAN, .ppl_after = NAN};
    assert_int_equal(vt_report_write_json(&rep, path), 0);
    j = load_json(path);
    assert_null(json_object_get(j, "variant"));
    assert_null(json_object_get(j, "losses"));
    assert_null(json_object_get(j, "final_kd"));
    assert_null(json_object_get(j, "config"));
    assert_true(json_is_null(json_object_get(j, "ppl_before")));
    assert_true(json_is_null(json_object_get(j, "ppl_after")));
    json_decref(j);

    /* Errors name the path. */
    rep.config_json = "{not json";
    vt_error_clear();
    assert_int_equal(vt_report_write_json(&rep, path), -1);
    assert_non_null(strstr(vt_error(), path));
    rep.config_json = NULL;
    snprintf(path, sizeof path, "%s/no-such-dir/vtrans_report.json", dir);
    vt_error_clear();
    assert_int_equal(vt_report_write_json(&rep, path), -1);
    assert_non_null(strstr(vt_error(), path));

    free(r);
    vt_config_free(&a);
    vt_config_free(&b);
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pruned_with_records),
        cmocka_unit_test(test_no_records),
        cmocka_unit_test(test_errors_name_path),
        cmocka_unit_test(test_from_run_report),
        cmocka_unit_test(test_report_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
