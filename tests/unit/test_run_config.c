/* test_run_config.c — the prune INI configuration: parsing, defaults, every error with its
 * file:line and key, --set, validation of files, the fast-variant fraction, printing and the
 * shipped configs (and that docs/CONFIG.md documents every key, and which may change on resume),
 * the settings a resume must keep. */
#include "testutil.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "run/run_config.h"
#include "util/args.h"

static char *tmp;            /* this run's temporary directory (tu_dir) */
static char ini_path[1024];  /* tmp/run.ini */
static char model_path[1024], calib_path[1024], eval_path[1024], tok_path[1024], out_path[1024];

static int setup(void **state) {
    if (tu_group_setup(state)) return -1;
    tmp = tu_dir;
    snprintf(ini_path, sizeof ini_path, "%s/run.ini", tmp);
    snprintf(model_path, sizeof model_path, "%s/model.bin", tmp);
    snprintf(calib_path, sizeof calib_path, "%s/calib.txt", tmp);
    snprintf(eval_path, sizeof eval_path, "%s/eval.txt", tmp);
    snprintf(tok_path, sizeof tok_path, "%s/tok.bin", tmp);
    snprintf(out_path, sizeof out_path, "%s/out", tmp);
    const char *x = "x";
    return tu_write_file(model_path, x, 1) || tu_write_file(calib_path, x, 1) || tu_write_file(eval_path, x, 1) ||
           tu_write_file(tok_path, x, 1);
}

/* Writes text as tmp/run.ini and loads it. */
static int load_text(vt_run_config *rc, const char *text) {
    assert_int_equal(tu_write_file(ini_path, text, strlen(text)), 0);
    vt_error_clear();
    return vt_run_config_load(rc, ini_path);
}

/* A complete, valid configuration naming the temporary files, with extra text appended. */
static int load_valid(vt_run_config *rc, const char *extra) {
    char text[16384];
    snprintf(text, sizeof text,
             "[model]\npath = %s\n[data]\ncalib = %s\n[budget]\nparams = 0.5\n[output]\ndir = %s\n%s", model_path,
             calib_path, out_path, extra);
    return load_text(rc, text);
}

#define assert_error_has(s)                                                                                       \
    do {                                                                                                          \
        if (!strstr(vt_error(), (s))) fail_msg("error '%s' does not contain '%s'", vt_error(), (s));              \
    } while (0)

/* "<tmp>/run.ini:<line>" */
static const char *at_line(int line) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s:%d", ini_path, line);
    return buf;
}

static void test_defaults(void **state) {
    (void)state;
    vt_run_config rc;
    vt_run_config_defaults(&rc);
    assert_string_equal(rc.model.path, "");
    assert_string_equal(rc.model.tokenizer, "");
    assert_int_equal(rc.data.seq_len, 128);
    assert_int_equal(rc.data.eval_window, 256);
    assert_true(rc.data.fraction == 1.0);
    assert_int_equal(rc.data.max_sequences, 0);
    assert_true(rc.budget.params < 0 && rc.budget.flops < 0);
    assert_int_equal(rc.budget.round_to, 1);
    assert_true(rc.budget.warmup == 0.5);
    assert_int_equal(rc.method.name, VT_METHOD_VIB);
    assert_int_equal(rc.vib.variant, VT_VARIANT_FASTER);
    assert_true(rc.vib.beta == 1e-4);
    assert_true(rc.vib.kl_mult[VT_GROUP_HIDDEN] == 1 && rc.vib.kl_mult[VT_GROUP_HEADS] == 1 && rc.vib.kl_mult[VT_GROUP_FFN] == 1 && rc.vib.kl_mult[VT_GROUP_BLOCKS] == 1);
    assert_true(rc.vib.temperature == 2.0 && rc.vib.sharpness == 10 && rc.vib.theta == 0);
    assert_true(rc.vib.ce_weight == 0 && rc.vib.mse_weight == 0);
    assert_int_equal(rc.vib.prune_interval, 0);
    assert_int_equal(rc.vib.seed, 1);
    assert_int_equal(rc.method.taylor_batches, 4);
    assert_int_equal(rc.schedule.steps, 200);
    assert_int_equal(rc.schedule.finetune_steps, 100);
    assert_int_equal(rc.schedule.batch_size, 8);
    assert_true(rc.schedule.lr_mask == 0.05 && rc.schedule.lr_weight == 1e-4 && rc.schedule.lr_lambda == 0.05);
    assert_int_equal(rc.schedule.lr_schedule, VT_LR_COSINE);
    assert_true(rc.schedule.clip == 1.0 && rc.schedule.weight_decay == 0);
    assert_int_equal(rc.schedule.warmup_steps, 0);
    assert_int_equal(rc.schedule.log_interval, 10);
    assert_int_equal(rc.output.dtype, VT_F32);
    assert_int_equal(rc.output.shard_size, 0);
    assert_int_equal(rc.output.overwrite, 0);
    assert_int_equal(rc.output.archive, VT_ARCHIVE_NONE);
    assert_int_equal(rc.pipeline.stages, 0);
    assert_int_equal(rc.pipeline.micro_batches, 0);
    assert_false(vt_run_config_is_set(&rc, "schedule.steps"));
}

static void test_parse_syntax(void **state) {
    (void)state;
    vt_run_config rc;
    const char *text = "# a full-line comment\n"
                       "; another one\n"
                       "\n"
                       "   [ model ]   # trailing comment on a header\n"
                       "path=m.bin\n"
                       "  tokenizer   =   tok dir/t.bin   ; trailing comment\n"
                       "[data]\r\n"
                       "calib = \"/x/a # b.txt\"  # quoted: the # inside stays\r\n"
                       "eval = e#1.txt\n"
                       "seq_len = 64\n"
                       "fraction = 0.25\n"
                       "max_sequences = 1000\n"
                       "[budget]\n"
                       "flops = 0.3\n"
                       "round_to = 64\n"
                       "[method]\n"
                       "name = Taylor\n"
                       "variant = full\n"
                       "beta = 2.5e-3\n"
                       "theta = -1.5\n"
                       "seed = 18446744073\n"
                       "[schedule]\n"
                       "lr_schedule = linear\n"
                       "steps = 7\n"
                       "[output]\n"
                       "dir = out/x\n"
                       "dtype = bf16\n"
                       "shard_size = 2G\n"
                       "overwrite = yes\n"
                       "archive = tar.zst\n"
                       "[parallel]\n"
                       "stages = 3\n"
                       "[plugin]\n"
                       "lr_schedule = cosine\n"
                       "\t\n";
    assert_int_equal(load_text(&rc, text), 0);
    assert_string_equal(rc.source, ini_path);
    assert_string_equal(rc.model.path, "m.bin");
    assert_string_equal(rc.model.tokenizer, "tok dir/t.bin");
    assert_string_equal(rc.data.calib, "/x/a # b.txt");
    assert_string_equal(rc.data.eval, "e#1.txt");
    assert_int_equal(rc.data.seq_len, 64);
    assert_true(rc.data.fraction == 0.25);
    assert_int_equal(rc.data.max_sequences, 1000);
    assert_true(rc.budget.flops == 0.3);
    assert_true(rc.budget.params < 0);
    assert_int_equal(rc.budget.round_to, 64);
    assert_int_equal(rc.method.name, VT_METHOD_TAYLOR);
    assert_int_equal(rc.vib.variant, VT_VARIANT_FULL);
    assert_true(rc.vib.beta == 2.5e-3);
    assert_true(rc.vib.theta == -1.5);
    assert_true(rc.vib.seed == 18446744073ull);
    assert_int_equal(rc.schedule.lr_schedule, VT_LR_LINEAR);
    assert_int_equal(rc.plugin.lr_schedule, VT_LR_COSINE);
    assert_int_equal(rc.schedule.steps, 7);
    assert_int_equal(rc.schedule.batch_size, 8); /* untouched keys keep their defaults */
    assert_string_equal(rc.output.dir, "out/x");
    assert_int_equal(rc.output.dtype, VT_BF16);
    assert_true(rc.output.shard_size == 2ull << 30);
    assert_int_equal(rc.output.overwrite, 1);
    assert_int_equal(rc.output.archive, VT_ARCHIVE_TAR_ZST);
    assert_int_equal(rc.pipeline.stages, 3);
    assert_true(vt_run_config_is_set(&rc, "schedule.steps"));
    assert_true(vt_run_config_is_set(&rc, "budget.flops"));
    assert_false(vt_run_config_is_set(&rc, "schedule.batch_size"));
    assert_false(vt_run_config_is_set(&rc, "budget.params"));
    assert_false(vt_run_config_is_set(&rc, "nonsense"));
    assert_string_equal(vt_method_name(rc.method.name), "taylor");
    assert_string_equal(vt_variant_name(rc.vib.variant), "full");
    assert_string_equal(vt_lr_schedule_name(rc.schedule.lr_schedule), "linear");
    assert_string_equal(vt_archive_name(rc.output.archive), "tar.zst");

    /* An empty value is the empty string; a value that is only a comment too. */
    assert_int_equal(load_text(&rc, "[model]\ntokenizer =\n[data]\neval = # none\n"), 0);
    assert_string_equal(rc.model.tokenizer, "");
    assert_string_equal(rc.data.eval, "");
}

/* Each case: file text, the line the error names, and text the message must contain. */
static void test_parse_errors(void **state) {
    (void)state;
    static const struct {
        const char *text;
        int line;
        const char *what[3];
    } cases[] = {
        {"[model]\n[trainer]\n", 2, {"unknown section [trainer]", "known sections: model, data, budget"}},
        {"[budget]\nparams = 0.5\n\nsteps = 10\n", 4,
         {"unknown key 'steps' in section [budget]", "known keys: params, flops, round_to, warmup",
          "'steps' is a key of [schedule]"}},
        {"[model]\npath m.bin\n", 2, {"malformed line 'path m.bin'"}},
        {"[model\n", 1, {"malformed section header"}},
        {"[model] path = x\n", 1, {"malformed section header"}},
        {"[data]\n = 3\n", 2, {"no key before '='"}},
        {"path = m.bin\n", 1, {"key 'path' comes before any [section]"}},
        {"[data]\nseq_len = 12x\n", 2, {"data.seq_len", "'12x' is not an integer"}},
        {"[data]\nseq_len = 99999999999\n", 2, {"data.seq_len", "not an integer"}},
        {"[data]\nseq_len = 1\n", 2, {"data.seq_len must be at least 2: got 1"}},
        {"[reconstruct]\nseq_len = 1\n", 2, {"reconstruct.seq_len must be 0 or at least 2: got 1"}},
        {"[reconstruct]\nseq_len = -4\n", 2, {"reconstruct.seq_len must be 0 or at least 2: got -4"}},
        {"[method]\nbeta = fast\n", 2, {"method.beta", "'fast' is not a number"}},
        {"[method]\nbeta = nan\n", 2, {"method.beta", "not a number"}},
        {"[method]\nbeta =\n", 2, {"method.beta", "'' is not a number"}},
        {"[method]\nbeta = -1\n", 2, {"method.beta must be at least 0: got -1"}},
        {"[method]\ntemperature = 0\n", 2, {"method.temperature must be greater than 0: got 0"}},
        {"[budget]\nparams = 1.5\n", 2, {"budget.params must be in (0, 1): got 1.5"}},
        {"[budget]\nparams = 1\n", 2, {"budget.params must be in (0, 1): got 1"}},
        {"[budget]\nparams = 0\n", 2, {"budget.params must be in (0, 1): got 0"}},
        {"[budget]\nflops = -0.2\n", 2, {"budget.flops must be in (0, 1): got -0.2"}},
        {"[budget]\nround_to = 16\n", 2, {"budget.round_to must be one of 1, 8, 64, 128: got 16"}},
        {"[data]\nfraction = 0\n", 2, {"data.fraction must be in (0, 1]: got 0"}},
        {"[data]\nfraction = 1.01\n", 2, {"data.fraction must be in (0, 1]"}},
        {"[method]\nname = vibb\n", 2, {"method.name: unknown value 'vibb'", "vib, magnitude, random, taylor"}},
        {"[method]\nvariant = fastest\n", 2, {"method.variant: unknown value 'fastest'", "faster, full, fast"}},
        {"[schedule]\nlr_schedule = step\n", 2, {"schedule.lr_schedule", "constant, cosine, linear"}},
        {"[output]\ndtype = f64\n", 2, {"output.dtype", "f32, f16, bf16"}},
        {"[output]\narchive = zip\n", 2, {"output.archive", "none, tar, tar.zst"}},
        {"[output]\noverwrite = maybe\n", 2, {"output.overwrite", "'maybe' is not true or false"}},
        {"[output]\nshard_size = 5T\n", 2, {"output.shard_size", "'5T' is not a size"}},
        {"[output]\nshard_size = -5\n", 2, {"output.shard_size", "not a size"}},
        {"[method]\nseed = -1\n", 2, {"method.seed", "not an integer"}},
        {"[model]\npath = \"m.bin\n", 2, {"model.path", "unterminated quote"}},
        {"[model]\npath = \"m.bin\" x\n", 2, {"model.path", "text after the closing quote"}},
        {"[schedule]\nsteps = 5\n[budget]\n[schedule]\nsteps = 6\n", 5, {"schedule.steps is set twice (first at line 2)"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        vt_run_config rc;
        if (load_text(&rc, cases[c].text) != -1) fail_msg("case %zu loaded without error:\n%s", c, cases[c].text);
        char where[4300];
        snprintf(where, sizeof where, "%s: ", at_line(cases[c].line));
        if (strncmp(vt_error(), where, strlen(where)) != 0)
            fail_msg("case %zu: error '%s' does not start with '%s'", c, vt_error(), where);
        for (int w = 0; w < 3 && cases[c].what[w]; w++) assert_error_has(cases[c].what[w]);
    }
}

static void test_missing_file(void **state) {
    (void)state;
    vt_run_config rc;
    char path[4200];
    snprintf(path, sizeof path, "%s/absent.ini", tmp);
    assert_int_equal(vt_run_config_load(&rc, path), -1);
    assert_error_has("absent.ini");
    assert_int_equal(tu_write_file(ini_path, "[model]\n\0x", 10), 0);
    assert_int_equal(vt_run_config_load(&rc, ini_path), -1);
    assert_error_has("not a text file");
}

static void test_set(void **state) {
    (void)state;
    vt_run_config rc;
    assert_int_equal(load_valid(&rc, "[schedule]\nsteps = 50\n"), 0);
    assert_int_equal(rc.schedule.steps, 50);
    assert_int_equal(vt_run_config_set(&rc, "schedule.steps=75"), 0);
    assert_int_equal(rc.schedule.steps, 75);
    assert_int_equal(vt_run_config_set(&rc, " method.variant = full "), 0);
    assert_int_equal(rc.vib.variant, VT_VARIANT_FULL);
    assert_int_equal(vt_run_config_set(&rc, "model.tokenizer=\"a b#c\""), 0);
    assert_string_equal(rc.model.tokenizer, "a b#c");
    assert_int_equal(vt_run_config_set(&rc, "data.eval=x.txt # not a comment on the command line"), 0);
    assert_string_equal(rc.data.eval, "x.txt # not a comment on the command line");
    assert_int_equal(vt_run_config_set(&rc, "data.eval="), 0);
    assert_string_equal(rc.data.eval, "");
    assert_int_equal(vt_run_config_set(&rc, "model.tokenizer="), 0);
    assert_true(vt_run_config_is_set(&rc, "method.variant"));

    /* Errors: no '=', no section, unknown section or key, bad and out-of-range values. */
    assert_int_equal(vt_run_config_set(&rc, "schedule.steps"), -1);
    assert_error_has("--set 'schedule.steps'");
    assert_error_has("expected section.key=value");
    assert_int_equal(vt_run_config_set(&rc, "steps=5"), -1);
    assert_error_has("must name its section");
    assert_int_equal(vt_run_config_set(&rc, "schedul.steps=5"), -1);
    assert_error_has("unknown section [schedul]");
    assert_int_equal(vt_run_config_set(&rc, "budget.steps=5"), -1);
    assert_error_has("--set 'budget.steps=5'");
    assert_error_has("unknown key 'steps' in section [budget]");
    assert_error_has("'steps' is a key of [schedule]");
    assert_int_equal(vt_run_config_set(&rc, "schedule.steps=many"), -1);
    assert_error_has("schedule.steps: 'many' is not an integer");
    assert_int_equal(vt_run_config_set(&rc, "budget.params=1.0"), -1);
    assert_error_has("budget.params must be in (0, 1): got 1");
    assert_int_equal(rc.schedule.steps, 75); /* a failed --set changes nothing */
    assert_true(rc.budget.params == 0.5);

    /* --set of the other budget key replaces the file's budget... */
    assert_int_equal(vt_run_config_set(&rc, "budget.flops=0.4"), 0);
    assert_true(rc.budget.flops == 0.4);
    assert_true(rc.budget.params < 0);
    assert_false(vt_run_config_is_set(&rc, "budget.params"));
    assert_int_equal(vt_run_config_validate(&rc), 0);
    /* ...but two budgets both given with --set are an error. */
    assert_int_equal(vt_run_config_set(&rc, "budget.params=0.6"), 0);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has("budget.params (--set budget.params) and budget.flops (--set budget.flops) are both set");

    /* --set works without a file too. */
    vt_run_config_defaults(&rc);
    assert_int_equal(vt_run_config_set(&rc, "output.dtype=f16"), 0);
    assert_int_equal(rc.output.dtype, VT_F16);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has("configuration: missing required key 'path' in section [model]");
}

static void test_validate_budget_and_required(void **state) {
    (void)state;
    vt_run_config rc;
    assert_int_equal(load_valid(&rc, "[budget]\nflops = 0.5\n"), 0);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has(ini_path);
    assert_error_has("budget.params (");
    assert_error_has(":6) and budget.flops (");
    assert_error_has(":10) are both set; set exactly one");

    char text[8192];
    snprintf(text, sizeof text, "[model]\npath = %s\n[data]\ncalib = %s\n[output]\ndir = %s\n", model_path, calib_path,
             out_path);
    assert_int_equal(load_text(&rc, text), 0);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has("no budget: set budget.params");

    static const char *const required[][2] = {{"model", "path"}, {"data", "calib"}, {"output", "dir"}};
    for (int r = 0; r < 3; r++) {
        snprintf(text, sizeof text, "[budget]\nparams = 0.5\n[model]\n%s\n[data]\n%s\n[output]\n%s\n",
                 r == 0 ? "" : "path = m", r == 1 ? "" : "calib = c", r == 2 ? "" : "dir = o");
        assert_int_equal(load_text(&rc, text), 0);
        assert_int_equal(vt_run_config_validate(&rc), -1);
        char want[128];
        snprintf(want, sizeof want, "missing required key '%s' in section [%s]", required[r][1], required[r][0]);
        assert_error_has(ini_path);
        assert_error_has(want);
    }

    /* Ranges are checked again: the program may have changed a field after loading. */
    assert_int_equal(load_valid(&rc, ""), 0);
    rc.schedule.batch_size = 0;
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has("schedule.batch_size must be at least 1: got 0");
}

static void test_validate_files(void **state) {
    (void)state;
    vt_run_config rc;
    char extra[8192];
    snprintf(extra, sizeof extra, "[model]\ntokenizer = %s\n[data]\neval = %s\n", tok_path, eval_path);
    /* load_valid puts the [model] section first; keys of a repeated section merge. */
    assert_int_equal(load_valid(&rc, extra), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);

    static const char *const keys[] = {"model.path", "model.tokenizer", "data.calib", "data.eval"};
    for (int k = 0; k < 4; k++) {
        assert_int_equal(load_valid(&rc, extra), 0);
        char set[4300];
        snprintf(set, sizeof set, "%s=%s/missing-%d.bin", keys[k], tmp, k);
        assert_int_equal(vt_run_config_set(&rc, set), 0);
        assert_int_equal(vt_run_config_validate(&rc), -1);
        char want[4400];
        snprintf(want, sizeof want, "%s: cannot read '%s/missing-%d.bin': No such file or directory", keys[k], tmp, k);
        assert_error_has(want);
        assert_error_has("--set");
    }
    /* A missing file named in the file: the message has file:line. */
    snprintf(extra, sizeof extra, "[data]\neval = %s/nope.txt\n", tmp);
    assert_int_equal(load_valid(&rc, extra), 0);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has(at_line(10));
    assert_error_has("data.eval: cannot read");
    assert_error_has("nope.txt");

    /* Data must be a file; the model may be a directory (HF). */
    assert_int_equal(load_valid(&rc, ""), 0);
    char set[4300];
    snprintf(set, sizeof set, "data.calib=%s", tmp);
    assert_int_equal(vt_run_config_set(&rc, set), 0);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has("is a directory, not a file");
    snprintf(set, sizeof set, "model.path=%s", tmp);
    assert_int_equal(load_valid(&rc, ""), 0);
    assert_int_equal(vt_run_config_set(&rc, set), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);

    /* The output directory must be free unless overwrite is set; an empty one is free. */
    assert_int_equal(vt_mkdir_p(out_path), 0);
    assert_int_equal(load_valid(&rc, ""), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    char inside[4200];
    snprintf(inside, sizeof inside, "%s/config.json", out_path);
    assert_int_equal(tu_write_file(inside, "{}", 2), 0);
    assert_int_equal(vt_run_config_validate(&rc), -1);
    assert_error_has("output.dir");
    assert_error_has("already exists and is not empty");
    assert_error_has(at_line(8));
    assert_int_equal(vt_run_config_set(&rc, "output.overwrite=true"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    tu_rmtree(out_path);
}

static void test_fast_fraction_default(void **state) {
    (void)state;
    vt_run_config rc;
    assert_int_equal(load_valid(&rc, "[method]\nvariant = fast\n"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_true(rc.data.fraction == VT_FAST_FRACTION_DEFAULT);
    assert_true(rc.data.fraction == 0.03);

    assert_int_equal(load_valid(&rc, "[method]\nvariant = fast\n[data]\nfraction = 0.5\n"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_true(rc.data.fraction == 0.5);

    /* Explicitly 1.0 stays 1.0, also when set with --set. */
    assert_int_equal(load_valid(&rc, "[method]\nvariant = fast\n"), 0);
    assert_int_equal(vt_run_config_set(&rc, "data.fraction=1"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_true(rc.data.fraction == 1.0);

    /* Other variants and methods use all the data; validate twice is the same as once. */
    assert_int_equal(load_valid(&rc, "[method]\nvariant = full\n"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_true(rc.data.fraction == 1.0);
    assert_int_equal(load_valid(&rc, "[method]\nname = magnitude\nvariant = fast\n"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_true(rc.data.fraction == 1.0);
    assert_int_equal(vt_run_config_set(&rc, "method.name=vib"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    assert_true(rc.data.fraction == 0.03);
}

static char *print_to_string(const vt_run_config *rc) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    assert_non_null(f);
    vt_run_config_print(rc, f);
    fclose(f);
    return buf;
}

/* The printed configuration loads back to the same configuration. */
static void test_print_round_trip(void **state) {
    (void)state;
    vt_run_config rc, back;
    assert_int_equal(load_valid(&rc, "[model]\ntokenizer = \"odd # name \"\n[data]\nfraction = 0.1\n"
                                     "[method]\nname = random\nbeta = 3e-7\nseed = 123456789012\n"
                                     "[output]\nshard_size = 3M\ndtype = f16\narchive = tar\n"),
                     0);
    char *first = print_to_string(&rc);
    assert_non_null(strstr(first, "[budget]\nparams = 0.5\n# flops: not set\n"));
    assert_non_null(strstr(first, "tokenizer = \"odd # name \"\n"));
    assert_non_null(strstr(first, "fraction = 0.1\n"));
    assert_non_null(strstr(first, "beta = 3e-07\n"));
    assert_non_null(strstr(first, "shard_size = 3145728\n"));
    assert_non_null(strstr(first, "name = random\n"));
    assert_non_null(strstr(first, "eval =\n"));
    assert_int_equal(load_text(&back, first), 0);
    char *second = print_to_string(&back);
    /* Only the header line (which names the source file) may differ; here it is the same file. */
    assert_string_equal(first, second);
    assert_string_equal(back.model.tokenizer, "odd # name ");
    assert_true(back.vib.beta == 3e-7);
    assert_true(back.vib.seed == 123456789012ull);
    free(first);
    free(second);
}

static void test_json(void **state) {
    (void)state;
    vt_run_config rc;
    assert_int_equal(load_valid(&rc, "[method]\nvariant = full\n[output]\noverwrite = true\n"), 0);
    char *text = vt_run_config_json(&rc);
    assert_non_null(text);
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "source")), ini_path);
    json_t *model = json_object_get(j, "model");
    assert_string_equal(json_string_value(json_object_get(model, "path")), model_path);
    json_t *budget = json_object_get(j, "budget");
    assert_true(json_real_value(json_object_get(budget, "params")) == 0.5);
    assert_true(json_is_null(json_object_get(budget, "flops")));
    assert_int_equal(json_integer_value(json_object_get(budget, "round_to")), 1);
    json_t *method = json_object_get(j, "method");
    assert_string_equal(json_string_value(json_object_get(method, "name")), "vib");
    assert_string_equal(json_string_value(json_object_get(method, "variant")), "full");
    assert_true(json_is_true(json_object_get(json_object_get(j, "output"), "overwrite")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "output"), "dtype")), "f32");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "schedule"), "steps")), 200);
    json_t *rec = json_object_get(j, "reconstruct");
    assert_string_equal(json_string_value(json_object_get(rec, "method")), "lsq");
    assert_string_equal(json_string_value(json_object_get(rec, "target")), "residual");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "recover"), "method")), "none");
    assert_int_equal(json_object_size(j), 12); /* source + 11 sections */
    json_decref(j);
}

/* Every printed key appears as `section.key` in docs/CONFIG.md, and its full example loads. */
static void test_every_key_documented(void **state) {
    (void)state;
    const char *src = getenv("VT_SOURCE_DIR");
    if (!src) skip();
    char path[4200];
    snprintf(path, sizeof path, "%s/docs/CONFIG.md", src);
    char *doc;
    size_t n;
    assert_int_equal(vt_read_file(path, &doc, &n), 0);
    vt_run_config rc;
    vt_run_config_defaults(&rc);
    rc.budget.params = rc.budget.flops = 0.5;
    char *ini = print_to_string(&rc);
    char section[64] = "";
    int count = 0;
    for (char *line = strtok(ini, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        if (line[0] == '[') {
            snprintf(section, sizeof section, "%.*s", (int)(strchr(line, ']') - line - 1), line + 1);
            continue;
        }
        char want[160];
        snprintf(want, sizeof want, "`%s.%.*s`", section, (int)strcspn(line, " ="), line);
        if (!strstr(doc, want)) fail_msg("docs/CONFIG.md does not document %s", want);
        /* and its section "Resuming" lists exactly the keys that may change on resume */
        const char *from = strstr(doc, "#### Resuming"), *to = from ? strstr(from, "\n## ") : NULL;
        assert_non_null(to);
        char *resuming = strndup(from, (size_t)(to - from)), key[160];
        snprintf(key, sizeof key, "%.*s", (int)strlen(want) - 2, want + 1);
        int listed = strstr(resuming, want) != NULL;
        free(resuming);
        if (listed != vt_run_config_resume_may_change(key))
            fail_msg("docs/CONFIG.md, Resuming: %s %s, but it %s", want, listed ? "is listed" : "is not listed",
                     vt_run_config_resume_may_change(key) ? "may change" : "may not change");
        count++;
    }
    assert_true(count >= 45);

    /* The full example in the document is a valid config that sets every key. */
    char *start = strstr(doc, "```ini\n");
    assert_non_null(start);
    start += 7;
    char *end = strstr(start, "```");
    assert_non_null(end);
    *end = '\0';
    assert_int_equal(load_text(&rc, start), 0);
    int set = 0;
    for (int i = 0; i < VT_RC_MAX_KEYS; i++) set += rc.key_line[i] > 0;
    assert_int_equal(set, count - 1); /* all but the alternative budget key */
    assert_int_equal(rc.vib.variant, VT_VARIANT_FULL);
    free(ini);
    free(doc);
}

/* Every shipped configs/<name>.ini parses; the stories260K ones also validate (run from the repo root,
 * as the README says) when the fixtures are there. */
/* plug's validation: [plugin] keys with their defaults and ranges, no budget needed, output.dir a
 * directory that may already hold files (other plugins) but not a file. */
static void test_validate_plug(void **state) {
    (void)state;
    vt_run_config rc;
    char text[8192];
    snprintf(text, sizeof text, "[model]\npath = %s\n[data]\ncalib = %s\n[output]\ndir = %s\n[plugin]\nk = 8\n",
             model_path, calib_path, tmp);
    assert_int_equal(load_text(&rc, text), 0);
    assert_int_equal(vt_run_config_validate_plug(&rc), 0); /* tmp holds files: fine for plug */
    assert_int_equal(rc.plugin.k, 8);
    assert_int_equal(rc.plugin.r, 16);
    assert_true(rc.plugin.prompt_fraction == 0.75 && rc.plugin.lr == 1e-3);
    assert_int_equal(vt_run_config_validate(&rc), -1); /* prune still wants a budget */
    assert_error_has("no budget");
    assert_int_equal(vt_run_config_set(&rc, "plugin.prompt_fraction=1"), -1);
    assert_error_has("plugin.prompt_fraction");
    assert_int_equal(vt_run_config_set(&rc, "plugin.k=0"), -1);
    assert_int_equal(rc.plugin.exact_tail, 1); /* the last position only, as before the key */
    assert_int_equal(vt_run_config_set(&rc, "plugin.exact_tail=16"), 0);
    assert_int_equal(rc.plugin.exact_tail, 16);
    assert_int_equal(vt_run_config_set(&rc, "plugin.exact_tail=0"), -1);
    assert_error_has("plugin.exact_tail");
    snprintf(text, sizeof text, "output.dir=%s", model_path);
    assert_int_equal(vt_run_config_set(&rc, text), 0);
    assert_int_equal(vt_run_config_validate_plug(&rc), -1);
    assert_error_has("is a file; plug writes its plugin into a directory");
}

static void test_shipped_configs(void **state) {
    (void)state;
    const char *src = getenv("VT_SOURCE_DIR");
    if (!src) skip();
    char dir[4200], path[4600];
    snprintf(dir, sizeof dir, "%s/configs", src);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int count = 0;
    struct dirent *e;
    vt_run_config rc;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (vt_run_config_load(&rc, path)) fail_msg("%s", vt_error());
        count++;
    }
    closedir(d);
    assert_true(count >= 4);

    snprintf(path, sizeof path, "%s/configs/stories260k-50.ini", src);
    assert_int_equal(vt_run_config_load(&rc, path), 0);
    assert_true(rc.budget.params == 0.5);
    assert_int_equal(rc.method.name, VT_METHOD_VIB);
    assert_int_equal(rc.vib.variant, VT_VARIANT_FASTER);
    assert_string_equal(rc.output.dir, "out/stories260k-50");
    snprintf(path, sizeof path, "%s/configs/stories260k-plug.ini", src);
    assert_int_equal(vt_run_config_load(&rc, path), 0);
    assert_int_equal(rc.plugin.k, 4);
    assert_int_equal(rc.plugin.r, 16);
    assert_int_equal(rc.data.eval_window, 256);
    snprintf(path, sizeof path, "%s/configs/stories260k-20.ini", src);
    assert_int_equal(vt_run_config_load(&rc, path), 0);
    assert_true(rc.budget.params == 0.8);
    assert_string_equal(rc.output.dir, "out/stories260k-20");
    snprintf(path, sizeof path, "%s/configs/llama2-7b-50.ini", src);
    assert_int_equal(vt_run_config_load(&rc, path), 0);
    assert_true(rc.budget.params == 0.5);
    assert_int_equal(rc.vib.variant, VT_VARIANT_FASTER);
    assert_int_equal(rc.recover.method, VT_RECOVER_LORA);
    snprintf(path, sizeof path, "%s/configs/llama2-7b-20.ini", src);
    assert_int_equal(vt_run_config_load(&rc, path), 0);
    assert_true(rc.budget.params == 0.8);

    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(src), 0);
    int have = access("../shared/fixtures/stories260K/stories260K.bin", R_OK) == 0 &&
               access("../shared/fixtures/tinystories/calib.txt", R_OK) == 0;
    int rc50 = -1, rc20 = -1;
    if (have) {
        rc50 = vt_run_config_load(&rc, "configs/stories260k-50.ini") || vt_run_config_validate(&rc);
        if (rc50) print_message("stories260k-50: %s\n", vt_error());
        rc20 = vt_run_config_load(&rc, "configs/stories260k-20.ini") || vt_run_config_validate(&rc);
        if (rc20) print_message("stories260k-20: %s\n", vt_error());
        /* The 7B placeholders do not exist here: validate names the key and the path. */
        assert_int_equal(vt_run_config_load(&rc, "configs/llama2-7b-50.ini"), 0);
        assert_int_equal(vt_run_config_validate(&rc), -1);
        assert_error_has("model.path: cannot read '/data/llama-2-7b-hf'");
    }
    assert_int_equal(chdir(cwd), 0);
    if (!have) skip();
    assert_int_equal(rc50, 0);
    assert_int_equal(rc20, 0);
}

/* What a resume must keep: every key but the documented ones, input paths resolved; changing a
 * recorded key changes the text, changing one that may change does not. */
static void test_resume_settings(void **state) {
    (void)state;
    vt_run_config rc;
    assert_int_equal(load_valid(&rc, "[schedule]\nbatch_size = 4\n"), 0);
    assert_int_equal(vt_run_config_validate(&rc), 0);
    char *base = vt_run_config_resume_settings(&rc);
    assert_non_null(base);
    char want[4300], real[4096];
    assert_int_equal(vt_real_path(model_path, real, sizeof real), 0);
    assert_true(real[0] == '/');
    snprintf(want, sizeof want, "model.path = %s\n", real);
    assert_non_null(strstr(base, want));
    assert_non_null(strstr(base, "schedule.batch_size = 4\n"));
    assert_non_null(strstr(base, "budget.params = 0.5\n"));
    assert_non_null(strstr(base, "budget.flops = (not set)\n"));
    assert_non_null(strstr(base, "method.seed = 1\n"));
    assert_non_null(strstr(base, "data.seq_len = 128\n"));
    assert_null(strstr(base, "schedule.steps"));
    assert_null(strstr(base, "output."));
    assert_null(strstr(base, "run."));
    assert_null(strstr(base, "data.eval"));
    assert_null(strstr(base, "parallel."));
    /* a relative path to the same file reads the same */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(tmp), 0);
    vt_run_config rel = rc;
    snprintf(rel.model.path, sizeof rel.model.path, "./model.bin");
    char *same = vt_run_config_resume_settings(&rel);
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(same, base);
    free(same);
    /* may change */
    const char *free_keys[] = {"schedule.steps=999", "schedule.finetune_steps=7", "schedule.log_interval=3",
                               "output.dir=elsewhere", "output.dtype=bf16", "run.checkpoint_steps=5",
                               "run.checkpoint_minutes=1", "data.eval_window=64", "parallel.stages=2",
                               "parallel.micro_batches=2", "method.taylor_batches=9"};
    for (size_t i = 0; i < sizeof free_keys / sizeof *free_keys; i++) {
        vt_run_config c2 = rc;
        assert_int_equal(vt_run_config_set(&c2, free_keys[i]), 0);
        char *s = vt_run_config_resume_settings(&c2);
        if (strcmp(s, base) != 0) fail_msg("%s changed the resume settings", free_keys[i]);
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)strcspn(free_keys[i], "="), free_keys[i]);
        assert_true(vt_run_config_resume_may_change(key));
        assert_int_equal(vt_run_config_check_accept(key), -1); /* nothing to accept */
        free(s);
    }
    /* recorded */
    const char *kept[] = {"schedule.batch_size=8", "method.seed=2", "method.variant=full", "budget.params=0.4",
                          "data.seq_len=64", "data.max_sequences=10", "schedule.lr_mask=0.1",
                          "method.beta=0.5", "budget.round_to=8"};
    for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) {
        vt_run_config c2 = rc;
        assert_int_equal(vt_run_config_set(&c2, kept[i]), 0);
        char *s = vt_run_config_resume_settings(&c2);
        if (strcmp(s, base) == 0) fail_msg("%s left the resume settings unchanged", kept[i]);
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)strcspn(kept[i], "="), kept[i]);
        assert_false(vt_run_config_resume_may_change(key));
        assert_int_equal(vt_run_config_check_accept(key), 0);
        free(s);
    }
    free(base);
    /* --accept-changed lists */
    assert_int_equal(vt_run_config_check_accept("model.path,data.calib"), 0);
    assert_int_equal(vt_run_config_check_accept(""), 0);
    vt_error_clear();
    assert_int_equal(vt_run_config_check_accept("model.path,model.pth"), -1);
    assert_non_null(strstr(vt_error(), "unknown key 'model.pth'"));
    assert_int_equal(vt_run_config_check_accept("model.path,,data.calib"), -1);
    assert_int_equal(vt_run_config_check_accept("model.path,"), 0);
    assert_true(vt_key_listed("model.path,data.calib", "data.calib"));
    assert_true(vt_key_listed("model.path,data.calib", "model.path"));
    assert_false(vt_key_listed("model.path,data.calib", "model.pat"));
    assert_false(vt_key_listed("model.paths", "model.path"));
    assert_false(vt_key_listed(NULL, "model.path"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_parse_syntax),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_validate_budget_and_required),
        cmocka_unit_test(test_validate_files),
        cmocka_unit_test(test_fast_fraction_default),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_every_key_documented),
        cmocka_unit_test(test_resume_settings),
        cmocka_unit_test(test_validate_plug),
        cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests(tests, setup, tu_group_teardown);
}
