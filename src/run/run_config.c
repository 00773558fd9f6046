/* run_config.c — the prune run configuration: a table of every key, the INI reader, --set,
 * validation, and printing the effective values as INI and JSON. */
#include "run/run_config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "nn/lora.h"
#include "nn/matmul.h"
#include "util/args.h"
#include "util/error.h"
#include "util/fsutil.h"

/* Enum fields are written through int pointers by the table-driven reader. */
_Static_assert(sizeof(vt_method) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_variant) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_lr_schedule) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_archive) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_dtype) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_reconstruct_method) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_refit_target) == sizeof(int), "enum size");
_Static_assert(VT_RECONSTRUCT_NONE == 0 && VT_REFIT_LAYER == 0 && VT_REFIT_RESIDUAL == 1, "name tables order");
_Static_assert(sizeof(vt_recover_method) == sizeof(int), "enum size");
_Static_assert(sizeof(vt_hold) == sizeof(int) && VT_HOLD_AUTO == 0, "enum size, hold_names order");
/* The name tables below are indexed by these values. */
_Static_assert(VT_LR_CONSTANT == 0 && VT_LR_COSINE == 1 && VT_LR_LINEAR == 2, "schedule_names order");
_Static_assert(VT_F32 == 0 && VT_F16 == 1 && VT_BF16 == 2, "dtype_names order");

typedef enum { K_STRING, K_INT, K_LONG, K_DOUBLE, K_BOOL, K_ENUM, K_SIZE, K_U64 } key_kind;

typedef struct {
    const char *section, *key;
    key_kind kind;
    size_t offset;
    const char *const *names; /* K_ENUM: value names, indexed by the enum value */
    double lo, hi;            /* numeric range (bounds included unless *_open) */
    int lo_open, hi_open;
    const int *allowed;       /* K_INT: the only accepted values, 0-terminated; NULL = any in range */
    int required;
    int zero_off;             /* 0 is accepted too, outside the range (the feature off or automatic) */
} key_def;

static const char *const method_names[] = {"vib", "magnitude", "random", "taylor", NULL};
static const char *const variant_names[] = {"faster", "full", "fast", NULL};
static const char *const schedule_names[] = {"constant", "cosine", "linear", NULL};
static const char *const archive_names[] = {"none", "tar", "tar.zst", NULL};
static const char *const hold_names[] = {"auto", "fp32", NULL}; /* vt_hold */
static const char *const dtype_names[] = {"f32", "f16", "bf16", NULL}; /* VT_F32, VT_F16, VT_BF16 */
static const char *const format_names[] = {"hf", "gguf", NULL};
static const char *const quantize_names[] = {"none", "q8_0", NULL};
static const char *const reconstruct_names[] = {"none", "lsq", NULL};
static const char *const target_names[] = {"layer", "residual", NULL};
static const int round_to_allowed[] = {1, 8, 64, 128, 0};
static const char *const recover_names[] = {"none", "lora", "full", NULL}; /* vt_recover_method */

#define OFF(field) offsetof(vt_run_config, field)
#define INF INFINITY
/* Shorthands: a string, an int/long/double with a closed range (INT0: or 0), an open-interval fraction. */
#define STR(s, k, f, req) {s, k, K_STRING, OFF(f), NULL, 0, 0, 0, 0, NULL, req, 0}
#define INT(s, k, f, lo) {s, k, K_INT, OFF(f), NULL, lo, INT_MAX, 0, 0, NULL, 0, 0}
#define INT0(s, k, f, lo) {s, k, K_INT, OFF(f), NULL, lo, INT_MAX, 0, 0, NULL, 0, 1}
#define DBL(s, k, f, lo, hi) {s, k, K_DOUBLE, OFF(f), NULL, lo, hi, 0, 0, NULL, 0, 0}
#define POS(s, k, f) {s, k, K_DOUBLE, OFF(f), NULL, 0, INF, 1, 0, NULL, 0, 0}
#define ENUM(s, k, f, names) {s, k, K_ENUM, OFF(f), names, 0, 0, 0, 0, NULL, 0, 0}

static const key_def keys[] = {
    STR("model", "path", model.path, 1),
    STR("model", "tokenizer", model.tokenizer, 0),
    ENUM("model", "hold", model.hold, hold_names),

    STR("data", "calib", data.calib, 1),
    STR("data", "eval", data.eval, 0),
    INT("data", "seq_len", data.seq_len, 2),
    INT("data", "eval_window", data.eval_window, 2),
    {"data", "fraction", K_DOUBLE, OFF(data.fraction), NULL, 0, 1, 1, 0, NULL, 0, 0},
    {"data", "max_sequences", K_LONG, OFF(data.max_sequences), NULL, 0, (double)LONG_MAX, 0, 0, NULL, 0, 0},

    {"budget", "params", K_DOUBLE, OFF(budget.params), NULL, 0, 1, 1, 1, NULL, 0, 0},
    {"budget", "flops", K_DOUBLE, OFF(budget.flops), NULL, 0, 1, 1, 1, NULL, 0, 0},
    {"budget", "round_to", K_INT, OFF(budget.round_to), NULL, 1, 128, 0, 0, round_to_allowed, 0, 0},
    DBL("budget", "warmup", budget.warmup, 0, 1),
    {"budget", "uniform", K_BOOL, OFF(budget.uniform), NULL, 0, 0, 0, 0, NULL, 0, 0},

    ENUM("method", "name", method.name, method_names),
    ENUM("method", "variant", vib.variant, variant_names),
    DBL("method", "beta", vib.beta, 0, INF),
    DBL("method", "kl_hidden", vib.kl_mult[VT_GROUP_HIDDEN], 0, INF),
    DBL("method", "kl_heads", vib.kl_mult[VT_GROUP_HEADS], 0, INF),
    DBL("method", "kl_ffn", vib.kl_mult[VT_GROUP_FFN], 0, INF),
    DBL("method", "kl_blocks", vib.kl_mult[VT_GROUP_BLOCKS], 0, INF),
    POS("method", "temperature", vib.temperature),
    DBL("method", "ce_weight", vib.ce_weight, 0, INF),
    DBL("method", "mse_weight", vib.mse_weight, 0, INF),
    DBL("method", "theta", vib.theta, -INF, INF),
    POS("method", "sharpness", vib.sharpness),
    INT("method", "prune_interval", vib.prune_interval, 0),
    {"method", "seed", K_U64, OFF(vib.seed), NULL, 0, 0, 0, 0, NULL, 0, 0},
    INT("method", "taylor_batches", method.taylor_batches, 1),

    INT("schedule", "steps", schedule.steps, 1),
    INT("schedule", "finetune_steps", schedule.finetune_steps, 0),
    INT("schedule", "batch_size", schedule.batch_size, 1),
    POS("schedule", "lr_mask", schedule.lr_mask),
    DBL("schedule", "lr_weight", schedule.lr_weight, 0, INF),
    DBL("schedule", "lr_lambda", schedule.lr_lambda, 0, INF),
    ENUM("schedule", "lr_schedule", schedule.lr_schedule, schedule_names),
    INT("schedule", "warmup_steps", schedule.warmup_steps, 0),
    DBL("schedule", "clip", schedule.clip, 0, INF),
    DBL("schedule", "weight_decay", schedule.weight_decay, 0, INF),
    INT("schedule", "log_interval", schedule.log_interval, 0),

    STR("output", "dir", output.dir, 1),
    ENUM("output", "dtype", output.dtype, dtype_names),
    {"output", "shard_size", K_SIZE, OFF(output.shard_size), NULL, 0, 0, 0, 0, NULL, 0, 0},
    {"output", "overwrite", K_BOOL, OFF(output.overwrite), NULL, 0, 0, 0, 0, NULL, 0, 0},
    ENUM("output", "archive", output.archive, archive_names),
    ENUM("output", "format", output.format, format_names),
    ENUM("output", "quantize", output.quantize, quantize_names),

    INT("parallel", "stages", pipeline.stages, 0),
    INT("parallel", "micro_batches", pipeline.micro_batches, 0),
    INT("parallel", "seq_chunks", pipeline.seq_chunks, 0),
    {"parallel", "pack_weights", K_BOOL, OFF(pipeline.pack_weights), NULL, 0, 0, 0, 0, NULL, 0, 0},
    {"parallel", "threads", K_INT, OFF(pipeline.threads), NULL, 0, VT_MAX_THREADS, 0, 0, NULL, 0, 0},

    STR("run", "dir", ckpt.dir, 0),
    INT("run", "checkpoint_steps", ckpt.steps, 0),
    DBL("run", "checkpoint_minutes", ckpt.minutes, 0, INF),

    ENUM("reconstruct", "method", reconstruct.method, reconstruct_names),
    ENUM("reconstruct", "target", reconstruct.fit.target, target_names),
    {"reconstruct", "norm_match", K_BOOL, OFF(reconstruct.fit.norm_match), NULL, 0, 0, 0, 0, NULL, 0, 0},
    {"reconstruct", "inputs", K_BOOL, OFF(reconstruct.fit.inputs), NULL, 0, 0, 0, 0, NULL, 0, 0},
    {"reconstruct", "head", K_BOOL, OFF(reconstruct.fit.head), NULL, 0, 0, 0, 0, NULL, 0, 0},
    {"reconstruct", "bias", K_BOOL, OFF(reconstruct.fit.bias), NULL, 0, 0, 0, 0, NULL, 0, 0},
    POS("reconstruct", "damp", reconstruct.fit.damp),
    INT("reconstruct", "sequences", reconstruct.sequences, 1),
    INT0("reconstruct", "seq_len", reconstruct.seq_len, 2), /* 0: data.seq_len */
    INT("reconstruct", "batch", reconstruct.fit.batch, 1),
    ENUM("recover", "method", recover.method, recover_names),
    {"recover", "steps", K_LONG, OFF(recover.steps), NULL, 1, (double)LONG_MAX, 0, 0, NULL, 0, 0},
    DBL("recover", "lr", recover.lr, 0, INF),
    INT("recover", "rank", recover.rank, 1),
    DBL("recover", "alpha", recover.alpha, 0, INF),
    STR("recover", "targets", recover_targets, 0),
    DBL("recover", "lm_weight", recover.lm_weight, 0, INF),
    INT("recover", "batch_size", recover.batch_size, 1),
    INT("recover", "micro_batch", recover.micro_batch, 0),
    INT("recover", "warmup_steps", recover.warmup, 0),
    {"recover", "norms", K_BOOL, OFF(recover.norms), NULL, 0, 0, 0, 0, NULL, 0, 0},
    INT("plugin", "k", plugin.k, 1),
    INT("plugin", "r", plugin.r, 1),
    INT("plugin", "exact_tail", plugin.exact_tail, 1),
    {"plugin", "prompt_fraction", K_DOUBLE, OFF(plugin.prompt_fraction), NULL, 0, 1, 1, 1, NULL, 0, 0},
    INT("plugin", "steps", plugin.steps, 0),
    INT("plugin", "batch_size", plugin.batch_size, 1),
    POS("plugin", "lr", plugin.lr),
    ENUM("plugin", "lr_schedule", plugin.lr_schedule, schedule_names),
    {"plugin", "seed", K_U64, OFF(plugin.seed), NULL, 0, 0, 0, 0, NULL, 0, 0},
    INT("plugin", "eval_windows", plugin.eval_windows, 0),
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))
_Static_assert(sizeof keys / sizeof keys[0] <= VT_RC_MAX_KEYS, "raise VT_RC_MAX_KEYS");

static const char *const sections[] = {"model", "data", "budget", "method", "schedule", "output", "parallel", "run",
                                      "reconstruct", "recover", "plugin"};
#define N_SECTIONS ((int)(sizeof sections / sizeof sections[0]))

void vt_run_config_defaults(vt_run_config *rc) {
    memset(rc, 0, sizeof *rc);
    rc->data.seq_len = 128;
    rc->data.eval_window = 256;
    rc->data.fraction = 1.0;
    rc->data.max_sequences = 0;
    rc->budget.params = -1;
    rc->budget.flops = -1;
    rc->budget.round_to = 1;
    rc->budget.warmup = 0.5;
    rc->method.name = VT_METHOD_VIB;
    rc->vib.variant = VT_VARIANT_FASTER;
    rc->vib.beta = 1e-4;
    for (int g = 0; g < VT_N_GROUPS; g++) rc->vib.kl_mult[g] = 1.0;
    rc->vib.temperature = 2.0;
    rc->vib.ce_weight = 0;
    rc->vib.mse_weight = 0;
    rc->vib.theta = 0;
    rc->vib.sharpness = 10;
    rc->vib.prune_interval = 0;
    rc->vib.seed = 1;
    rc->method.taylor_batches = 4;
    rc->schedule.steps = 200;
    rc->schedule.finetune_steps = 100;
    rc->schedule.batch_size = 8;
    rc->schedule.lr_mask = 0.05;
    rc->schedule.lr_weight = 1e-4;
    rc->schedule.lr_lambda = 0.05;
    rc->schedule.lr_schedule = VT_LR_COSINE;
    rc->schedule.warmup_steps = 0;
    rc->schedule.clip = 1.0;
    rc->schedule.weight_decay = 0;
    rc->schedule.log_interval = 10;
    rc->output.dtype = VT_F32;
    rc->output.shard_size = 0;
    rc->output.overwrite = 0;
    rc->output.archive = VT_ARCHIVE_NONE;
    rc->pipeline.stages = 0;
    rc->pipeline.micro_batches = 0;
    rc->pipeline.seq_chunks = 0;
    rc->pipeline.pack_weights = 0;
    rc->pipeline.threads = 0;
    rc->ckpt.dir[0] = '\0';
    rc->ckpt.steps = 0;
    rc->ckpt.minutes = 30;
    rc->reconstruct = (vt_reconstruct_spec){.method = VT_RECONSTRUCT_LSQ, .sequences = 256,
                                            .fit = {.target = VT_REFIT_RESIDUAL, .norm_match = 1, .damp = 1e-3,
                                                    .batch = 16, .inputs = 1, .head = 1}};
    rc->recover = vt_recover_defaults();
    strcpy(rc->recover_targets, "q,k,v,o,gate,up,down");
    rc->plugin.k = 4;
    rc->plugin.r = 16;
    rc->plugin.exact_tail = 1;
    rc->plugin.prompt_fraction = 0.75;
    rc->plugin.steps = 100;
    rc->plugin.batch_size = 8;
    rc->plugin.lr = 1e-3;
    rc->plugin.lr_schedule = VT_LR_CONSTANT;
    rc->plugin.seed = 1;
    rc->plugin.eval_windows = 0;
}

const char *vt_method_name(vt_method m) { return (unsigned)m < 4 ? method_names[m] : "?"; }
const char *vt_variant_name(vt_variant v) { return (unsigned)v < 3 ? variant_names[v] : "?"; }
const char *vt_lr_schedule_name(vt_lr_schedule s) { return (unsigned)s < 3 ? schedule_names[s] : "?"; }
const char *vt_archive_name(vt_archive a) { return (unsigned)a < 3 ? archive_names[a] : "?"; }
const char *vt_reconstruct_method_name(vt_reconstruct_method m) { return (unsigned)m < 2 ? reconstruct_names[m] : "?"; }
const char *vt_refit_target_name(vt_refit_target t) { return (unsigned)t < 2 ? target_names[t] : "?"; }

/* ---- the key table ---- */

static void *field(vt_run_config *rc, const key_def *k) { return (char *)rc + k->offset; }
static const void *cfield(const vt_run_config *rc, const key_def *k) { return (const char *)rc + k->offset; }

static int find_key(const char *section, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0) return i;
    return -1;
}

static int known_section(const char *section) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (strcmp(sections[i], section) == 0) return 1;
    return 0;
}

/* "unknown key 'steps' in section [budget]; known keys: params, flops, ... ('steps' is a key of
 * [schedule])" into buf. */
static void unknown_key_message(char *buf, size_t cap, const char *section, const char *key) {
    size_t n = (size_t)snprintf(buf, cap, "unknown key '%s' in section [%s]; known keys:", key, section);
    const char *sep = " ";
    for (int i = 0; i < N_KEYS && n < cap; i++)
        if (strcmp(keys[i].section, section) == 0) {
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, keys[i].key);
            sep = ", ";
        }
    for (int i = 0; i < N_KEYS && n < cap; i++)
        if (strcmp(keys[i].key, key) == 0) {
            n += (size_t)snprintf(buf + n, cap - n, " ('%s' is a key of [%s])", key, keys[i].section);
            break;
        }
}

static void unknown_section_message(char *buf, size_t cap, const char *section) {
    size_t n = (size_t)snprintf(buf, cap, "unknown section [%s]; known sections:", section);
    for (int i = 0; i < N_SECTIONS && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : " ", sections[i]);
}

/* Where a key's value came from, for messages: "configs/x.ini:12", "--set", or the file. */
static const char *key_origin(const vt_run_config *rc, int i, char *buf, size_t cap) {
    int line = rc->key_line[i];
    if (line > 0) snprintf(buf, cap, "%s:%d", rc->source, line);
    else if (line < 0) snprintf(buf, cap, "--set %s.%s", keys[i].section, keys[i].key);
    else snprintf(buf, cap, "%s", rc->source[0] ? rc->source : "configuration");
    return buf;
}

static const char *config_name(const vt_run_config *rc) { return rc->source[0] ? rc->source : "configuration"; }

/* ---- values ---- */

/* The shortest %g form that reads back as exactly x. */
static void format_double(char *buf, size_t cap, double x) {
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void format_range(char *buf, size_t cap, const key_def *k) {
    if (k->zero_off && isfinite(k->lo) && k->hi >= INT_MAX)
        snprintf(buf, cap, "0 or at least %g", k->lo);
    else if (isfinite(k->lo) && isfinite(k->hi) && k->hi < INT_MAX)
        snprintf(buf, cap, "in %c%g, %g%c", k->lo_open ? '(' : '[', k->lo, k->hi, k->hi_open ? ')' : ']');
    else if (isfinite(k->lo))
        snprintf(buf, cap, "%s %g", k->lo_open ? "greater than" : "at least", k->lo);
    else
        snprintf(buf, cap, "finite");
}

static int check_range(const key_def *k, double x, const char *where) {
    int ok = (k->zero_off && x == 0) ||
             (x >= k->lo && x <= k->hi && !(k->lo_open && x == k->lo) && !(k->hi_open && x == k->hi));
    if (!ok) {
        char range[64], got[32];
        format_range(range, sizeof range, k);
        format_double(got, sizeof got, x);
        return vt_fail("%s: %s.%s must be %s: got %s", where, k->section, k->key, range, got);
    }
    if (k->allowed) {
        for (const int *a = k->allowed; *a; a++)
            if ((int)x == *a) return 0;
        char list[64] = "";
        for (const int *a = k->allowed; *a; a++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", a == k->allowed ? "" : ", ", *a);
        return vt_fail("%s: %s.%s must be one of %s: got %g", where, k->section, k->key, list, x);
    }
    return 0;
}


/* Parses text into key i's field (text is already trimmed and unquoted); where prefixes errors. */
static int set_value(vt_run_config *rc, int i, const char *text, const char *where) {
    const key_def *k = &keys[i];
    void *f = field(rc, k);
    char *end;
    switch (k->kind) {
    case K_STRING:
        if (strlen(text) >= VT_PATH_MAX)
            return vt_fail("%s: %s.%s: value is longer than %d characters", where, k->section, k->key, VT_PATH_MAX - 1);
        strcpy((char *)f, text);
        return 0;
    case K_INT:
    case K_LONG: {
        errno = 0;
        long x = strtol(text, &end, 10);
        if (errno || end == text || *end || (k->kind == K_INT && (x < INT_MIN || x > INT_MAX)))
            return vt_fail("%s: %s.%s: '%s' is not an integer", where, k->section, k->key, text);
        if (check_range(k, (double)x, where)) return -1;
        if (k->kind == K_INT) *(int *)f = (int)x;
        else *(long *)f = x;
        return 0;
    }
    case K_DOUBLE: {
        errno = 0;
        double x = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(x))
            return vt_fail("%s: %s.%s: '%s' is not a number", where, k->section, k->key, text);
        if (check_range(k, x, where)) return -1;
        *(double *)f = x;
        return 0;
    }
    case K_U64: {
        errno = 0;
        unsigned long long x = strtoull(text, &end, 10);
        if (errno || end == text || *end || text[0] == '-' || text[0] == '+' || x > (unsigned long long)INT64_MAX)
            return vt_fail("%s: %s.%s: '%s' is not an integer in [0, 2^63)", where, k->section, k->key, text);
        *(uint64_t *)f = x;
        return 0;
    }
    case K_SIZE:
        if (vt_parse_size(text, (uint64_t *)f))
            return vt_fail("%s: %s.%s: '%s' is not a size (bytes, or a number with a K, M or G suffix)", where,
                           k->section, k->key, text);
        return 0;
    case K_BOOL:
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcasecmp(text, "on") || !strcmp(text, "1"))
            *(int *)f = 1;
        else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcasecmp(text, "off") || !strcmp(text, "0"))
            *(int *)f = 0;
        else
            return vt_fail("%s: %s.%s: '%s' is not true or false", where, k->section, k->key, text);
        return 0;
    case K_ENUM:
        for (int v = 0; k->names[v]; v++)
            if (strcasecmp(text, k->names[v]) == 0) {
                *(int *)f = v;
                return 0;
            }
        char list[128] = "";
        for (int v = 0; k->names[v]; v++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", v ? ", " : "", k->names[v]);
        return vt_fail("%s: %s.%s: unknown value '%s'; expected one of %s", where, k->section, k->key, text, list);
    }
    return vt_fail("%s: %s.%s: internal error: unknown key kind", where, k->section, k->key);
}

/* ---- the file ---- */

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static int is_comment_start(const char *s) { return *s == '#' || *s == ';'; }

/* Turns the text after '=' into the value in place: trims it, takes a "quoted" value whole, and
 * drops a trailing comment ('#' or ';' at the start or after whitespace). NULL with *why set when
 * the quotes are malformed. */
static char *clean_value(char *v, int allow_comment, const char **why) {
    v = trim(v);
    if (*v == '"') {
        char *close = strchr(v + 1, '"');
        if (!close) {
            *why = "unterminated quote";
            return NULL;
        }
        *close = '\0';
        char *rest = trim(close + 1);
        if (*rest && !(allow_comment && is_comment_start(rest))) {
            *why = "text after the closing quote";
            return NULL;
        }
        return v + 1;
    }
    if (allow_comment)
        for (char *p = v; *p; p++)
            if (is_comment_start(p) && (p == v || isspace((unsigned char)p[-1]))) {
                *p = '\0';
                break;
            }
    return trim(v);
}

static int parse_line(vt_run_config *rc, char *line, int lineno, char *section, size_t section_cap) {
    char where[VT_PATH_MAX + 32];
    char msg[1024];
    snprintf(where, sizeof where, "%s:%d", rc->source, lineno);
    char *s = trim(line);
    if (*s == '\0' || is_comment_start(s)) return 0;
    if (*s == '[') {
        char *close = strchr(s, ']');
        char *rest = close ? trim(close + 1) : NULL;
        if (!close || (*rest && !is_comment_start(rest)))
            return vt_fail("%s: malformed section header '%s' (expected [name])", where, s);
        *close = '\0';
        char *name = trim(s + 1);
        if (!known_section(name)) {
            unknown_section_message(msg, sizeof msg, name);
            return vt_fail("%s: %s", where, msg);
        }
        snprintf(section, section_cap, "%s", name);
        return 0;
    }
    char *eq = strchr(s, '=');
    if (!eq) return vt_fail("%s: malformed line '%s' (expected 'key = value', '[section]' or a # comment)", where, s);
    *eq = '\0';
    char *key = trim(s);
    if (!*key) return vt_fail("%s: malformed line: no key before '='", where);
    if (!section[0]) return vt_fail("%s: key '%s' comes before any [section]", where, key);
    int i = find_key(section, key);
    if (i < 0) {
        unknown_key_message(msg, sizeof msg, section, key);
        return vt_fail("%s: %s", where, msg);
    }
    if (rc->key_line[i] > 0)
        return vt_fail("%s: %s.%s is set twice (first at line %d)", where, section, key, rc->key_line[i]);
    const char *why = NULL;
    char *value = clean_value(eq + 1, 1, &why);
    if (!value) return vt_fail("%s: %s.%s: %s", where, section, key, why);
    if (set_value(rc, i, value, where)) return -1;
    rc->key_line[i] = lineno;
    return 0;
}

int vt_run_config_load(vt_run_config *rc, const char *path) {
    vt_run_config_defaults(rc);
    if (strlen(path) >= sizeof rc->source) return vt_fail("config path '%.64s...' is too long", path);
    strcpy(rc->source, path);
    char *text;
    size_t size;
    if (vt_read_file(path, &text, &size)) return vt_fail_context("reading the configuration");
    if (memchr(text, '\0', size)) {
        free(text);
        return vt_fail("%s: not a text file (contains NUL bytes)", path);
    }
    char section[64] = "";
    int lineno = 0, rc_code = 0;
    for (char *line = text; line && rc_code == 0;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = '\0';
        lineno++;
        rc_code = parse_line(rc, line, lineno, section, sizeof section);
        line = next;
    }
    free(text);
    return rc_code;
}

int vt_run_config_set(vt_run_config *rc, const char *assignment) {
    char buf[VT_PATH_MAX + 256];
    char msg[1024];
    if (strlen(assignment) >= sizeof buf) return vt_fail("--set '%.64s...': too long", assignment);
    strcpy(buf, assignment);
    char *eq = strchr(buf, '=');
    if (!eq) return vt_fail("--set '%s': expected section.key=value, e.g. schedule.steps=100", assignment);
    *eq = '\0';
    char *name = trim(buf);
    char *dot = strchr(name, '.');
    if (!dot) return vt_fail("--set '%s': the key must name its section, e.g. schedule.steps=100", assignment);
    *dot = '\0';
    char *section = trim(name), *key = trim(dot + 1);
    if (!known_section(section)) {
        unknown_section_message(msg, sizeof msg, section);
        return vt_fail("--set '%s': %s", assignment, msg);
    }
    int i = find_key(section, key);
    if (i < 0) {
        unknown_key_message(msg, sizeof msg, section, key);
        return vt_fail("--set '%s': %s", assignment, msg);
    }
    const char *why = NULL;
    char *value = clean_value(eq + 1, 0, &why);
    char where[VT_PATH_MAX + 300];
    snprintf(where, sizeof where, "--set '%s'", assignment);
    if (!value) return vt_fail("%s: %s", where, why);
    if (set_value(rc, i, value, where)) return -1;
    rc->key_line[i] = -1;
    /* budget.params and budget.flops are alternatives: --set of one replaces the file's other. */
    int other = -1;
    if (strcmp(section, "budget") == 0 && strcmp(key, "params") == 0) other = find_key("budget", "flops");
    if (strcmp(section, "budget") == 0 && strcmp(key, "flops") == 0) other = find_key("budget", "params");
    if (other >= 0 && rc->key_line[other] > 0) {
        *(double *)field(rc, &keys[other]) = -1;
        rc->key_line[other] = 0;
    }
    return 0;
}

/* The index in keys[] of "section.key", or -1. */
static int find_section_key(const char *section_key) {
    const char *dot = strchr(section_key, '.');
    if (!dot || (size_t)(dot - section_key) >= 64) return -1;
    char section[64];
    memcpy(section, section_key, (size_t)(dot - section_key));
    section[dot - section_key] = '\0';
    return find_key(section, dot + 1);
}

int vt_run_config_is_set(const vt_run_config *rc, const char *section_key) {
    int i = find_section_key(section_key);
    return i >= 0 && rc->key_line[i] != 0;
}

/* ---- validation ---- */

/* An input named by key i must exist and be readable; a directory only when dir_ok. */
static int check_input(const vt_run_config *rc, const char *section, const char *key, int dir_ok) {
    int i = find_key(section, key);
    const char *path = (const char *)cfield(rc, &keys[i]);
    char origin[VT_PATH_MAX + 64];
    key_origin(rc, i, origin, sizeof origin);
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0)
        return vt_fail("%s: %s.%s: cannot read '%s': %s", origin, section, key, path, strerror(errno));
    if (S_ISDIR(st.st_mode) && !dir_ok)
        return vt_fail("%s: %s.%s: '%s' is a directory, not a file", origin, section, key, path);
    return 0;
}

/* 1 when path is missing or an empty directory. */
static int output_is_free(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT;
    if (!S_ISDIR(st.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    int empty = 1;
    struct dirent *e;
    while (empty && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

/* Every required key set. */
static int check_required(const vt_run_config *rc) {
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (k->required && ((const char *)cfield(rc, k))[0] == '\0')
            return vt_fail("%s: missing required key '%s' in section [%s]", config_name(rc), k->key, k->section);
    }
    return 0;
}

/* Ranges again (the program may have changed fields after loading); an unset budget key is skipped. */
static int check_ranges(const vt_run_config *rc) {
    char origin[VT_PATH_MAX + 64];
    int ip = find_key("budget", "params"), ifl = find_key("budget", "flops");
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        const void *f = cfield(rc, k);
        double x;
        if (k->kind == K_INT) x = *(const int *)f;
        else if (k->kind == K_LONG) x = (double)*(const long *)f;
        else if (k->kind == K_DOUBLE) x = *(const double *)f;
        else continue;
        if ((i == ip && rc->budget.params < 0) || (i == ifl && rc->budget.flops < 0)) continue;
        if (check_range(k, x, key_origin(rc, i, origin, sizeof origin))) return -1;
    }
    return 0;
}

/* The model, tokenizer and data files named exist. */
static int check_inputs(const vt_run_config *rc) {
    if (check_input(rc, "model", "path", 1)) return -1;
    if (rc->model.tokenizer[0] && check_input(rc, "model", "tokenizer", 0)) return -1;
    if (check_input(rc, "data", "calib", 0)) return -1;
    if (rc->data.eval[0] && check_input(rc, "data", "eval", 0)) return -1;
    return 0;
}

int vt_run_config_validate(vt_run_config *rc) {
    const char *name = config_name(rc);
    char origin[VT_PATH_MAX + 64];
    if (check_required(rc)) return -1;
    int ip = find_key("budget", "params"), ifl = find_key("budget", "flops");
    int has_params = rc->budget.params >= 0, has_flops = rc->budget.flops >= 0;
    if (has_params && has_flops) {
        char o1[VT_PATH_MAX + 64], o2[VT_PATH_MAX + 64];
        return vt_fail("%s: budget.params (%s) and budget.flops (%s) are both set; set exactly one", name,
                       key_origin(rc, ip, o1, sizeof o1), key_origin(rc, ifl, o2, sizeof o2));
    }
    if (!has_params && !has_flops)
        return vt_fail("%s: no budget: set budget.params (fraction of parameters kept) or budget.flops (fraction "
                       "of FLOPs per token kept) in section [budget]",
                       name);
    if (check_ranges(rc)) return -1;

    if (vt_lora_parse_targets(rc->recover_targets, &rc->recover.targets))
        return vt_fail_context("%s", key_origin(rc, find_key("recover", "targets"), origin, sizeof origin));
    rc->recover.seed = rc->vib.seed;

    if (!vt_run_config_is_set(rc, "data.fraction"))
        rc->data.fraction = rc->method.name == VT_METHOD_VIB && rc->vib.variant == VT_VARIANT_FAST
                                ? VT_FAST_FRACTION_DEFAULT
                                : 1.0;
    if (check_inputs(rc)) return -1;
    /* Intermediate pruning removes units (and blocks) layer by layer as their gates cross theta, so
     * the final uniform decision would start from layers of different sizes. */
    if (rc->budget.uniform && rc->method.name == VT_METHOD_VIB && rc->vib.prune_interval > 0)
        return vt_fail("%s: budget.uniform = true keeps every layer the same size, but method.prune_interval = %d "
                       "removes units and blocks layer by layer during training; set method.prune_interval = 0 "
                       "or budget.uniform = false",
                       name, rc->vib.prune_interval);

    if (!rc->output.overwrite && !output_is_free(rc->output.dir)) {
        key_origin(rc, find_key("output", "dir"), origin, sizeof origin);
        return vt_fail("%s: output.dir '%s' already exists and is not empty; choose another directory or set "
                       "output.overwrite = true",
                       origin, rc->output.dir);
    }
    return 0;
}

int vt_run_config_validate_plug(vt_run_config *rc) {
    if (check_required(rc) || check_ranges(rc) || check_inputs(rc)) return -1;
    struct stat st;
    if (stat(rc->output.dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        char origin[VT_PATH_MAX + 64];
        key_origin(rc, find_key("output", "dir"), origin, sizeof origin);
        return vt_fail("%s: output.dir '%s' is a file; plug writes its plugin into a directory", origin,
                       rc->output.dir);
    }
    return 0;
}

/* ---- printing ---- */

static int needs_quotes(const char *s) {
    size_t n = strlen(s);
    if (n == 0) return 0;
    if (isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1]) || s[0] == '"') return 1;
    for (const char *p = s; *p; p++)
        if (is_comment_start(p)) return 1;
    return 0;
}

/* budget.params or budget.flops holding its "unset" value. */
static int budget_unset(const vt_run_config *rc, const key_def *k) {
    return strcmp(k->section, "budget") == 0 && (strcmp(k->key, "params") == 0 || strcmp(k->key, "flops") == 0) &&
           *(const double *)cfield(rc, k) < 0;
}

/* The value of key k as INI text into buf. */
static void format_value(char *buf, size_t cap, const vt_run_config *rc, const key_def *k) {
    const void *f = cfield(rc, k);
    switch (k->kind) {
    case K_STRING: {
        const char *s = (const char *)f;
        snprintf(buf, cap, needs_quotes(s) ? "\"%s\"" : "%s", s);
        return;
    }
    case K_INT: snprintf(buf, cap, "%d", *(const int *)f); return;
    case K_LONG: snprintf(buf, cap, "%ld", *(const long *)f); return;
    case K_DOUBLE: format_double(buf, cap, *(const double *)f); return;
    case K_U64:
    case K_SIZE: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)f); return;
    case K_BOOL: snprintf(buf, cap, "%s", *(const int *)f ? "true" : "false"); return;
    case K_ENUM: snprintf(buf, cap, "%s", k->names[*(const int *)f]); return;
    }
}

void vt_run_config_print(const vt_run_config *rc, FILE *out) {
    char value[VT_PATH_MAX + 8];
    fprintf(out, "# vtrans-dist prune: effective configuration%s%s\n", rc->source[0] ? " of " : "", rc->source);
    const char *section = "";
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (strcmp(section, k->section) != 0) {
            fprintf(out, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        if (budget_unset(rc, k)) {
            fprintf(out, "# %s: not set\n", k->key);
            continue;
        }
        format_value(value, sizeof value, rc, k);
        fprintf(out, "%s =%s%s\n", k->key, value[0] ? " " : "", value);
    }
}

static json_t *config_json(const vt_run_config *rc) {
    json_t *root = json_object();
    if (!root) goto oom;
    if (json_object_set_new(root, "source", json_string(rc->source))) goto oom;
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        json_t *sec = json_object_get(root, k->section);
        if (!sec) {
            sec = json_object();
            if (json_object_set_new(root, k->section, sec)) goto oom;
        }
        const void *f = cfield(rc, k);
        json_t *v = NULL;
        if (budget_unset(rc, k)) v = json_null();
        else switch (k->kind) {
            case K_STRING: v = json_string((const char *)f); break;
            case K_INT: v = json_integer(*(const int *)f); break;
            case K_LONG: v = json_integer(*(const long *)f); break;
            case K_DOUBLE: v = json_real(*(const double *)f); break;
            case K_U64:
            case K_SIZE: v = json_integer((json_int_t) * (const uint64_t *)f); break;
            case K_BOOL: v = json_boolean(*(const int *)f); break;
            case K_ENUM: v = json_string(k->names[*(const int *)f]); break;
            }
        if (json_object_set_new(sec, k->key, v)) goto oom;
    }
    return root;
oom:
    json_decref(root);
    vt_fail("cannot build the configuration JSON (out of memory, or a path that is not UTF-8)");
    return NULL;
}

/* Doubles are printed at 17 digits, so they come back exactly. */
char *vt_run_config_json(const vt_run_config *rc) {
    json_t *j = config_json(rc);
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (j && !text) vt_fail("cannot format the configuration JSON (out of memory)");
    return text;
}

/* ---- what a resumed run must share with the run it continues ---- */

/* Keys that may differ between a run and its resume: where the result goes and how it is
 * reported or evaluated, how long the phases run, when checkpoints are saved, how a step is cut
 * into micro-batches and sequence chunks (float summation order only), whether weights are packed and
 * in which type (the same numbers), the threads per rank (results do not depend on them), and the
 * layout (stages x replicas), which the
 * checkpoint manifest checks by itself. method.taylor_batches is the taylor baseline's (no
 * checkpoints). [reconstruct] and [recover] are recorded: the recovery's checkpoints hold adapters
 * (or weights) trained on the re-fitted model, which another re-fit or recipe would not match;
 * recover.micro_batch changes the summation order only. [plugin] is plug's (vt_run_config_plug_settings).
 * Every other key is recorded with the checkpoints and must stay the same. */
static const char *const resume_may_change[] = {
    "data.eval",       "data.eval_window",        "model.hold",        "method.taylor_batches", "schedule.steps",
    "schedule.finetune_steps", "schedule.log_interval", "output.*",    "parallel.stages",
    "parallel.micro_batches",  "parallel.seq_chunks",     "parallel.pack_weights", "parallel.threads", "run.*",
    "recover.micro_batch",     "plugin.*",
};

static int may_change_on_resume(const key_def *k) {
    for (size_t i = 0; i < sizeof resume_may_change / sizeof *resume_may_change; i++) {
        const char *name = resume_may_change[i], *dot = strchr(name, '.');
        size_t sl = (size_t)(dot - name);
        if (strlen(k->section) == sl && strncmp(k->section, name, sl) == 0 &&
            (strcmp(dot + 1, "*") == 0 || strcmp(dot + 1, k->key) == 0))
            return 1;
    }
    return 0;
}

int vt_run_config_resume_may_change(const char *section_key) {
    int i = find_section_key(section_key);
    return i >= 0 && may_change_on_resume(&keys[i]);
}

int vt_run_config_check_accept(const char *list) {
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[128];
        if (n == 0 || n >= sizeof name) return vt_fail("--accept-changed %s: an empty or overlong key name", list);
        memcpy(name, p, n);
        name[n] = '\0';
        int i = find_section_key(name);
        if (i < 0) return vt_fail("--accept-changed: unknown key '%s' (docs/CONFIG.md lists the keys)", name);
        if (may_change_on_resume(&keys[i]))
            return vt_fail("--accept-changed: %s may change on resume anyway; name only keys a resume checks", name);
        p = end ? end + 1 : p + n;
    }
    return 0;
}

/* plug's settings besides the common ones: the window, the plugin (its evaluation aside). */
static int plug_key(const key_def *k) {
    return (strcmp(k->section, "plugin") == 0 && strcmp(k->key, "eval_windows") != 0) ||
           (strcmp(k->section, "data") == 0 && strcmp(k->key, "eval_window") == 0);
}

/* "section.key = value" lines of the keys that must stay the same; plug adds its own. */
static char *settings_text(const vt_run_config *rc, int plug) {
    size_t cap = 4096, n = 0;
    char *out = vt_malloc(cap, "the run's settings");
    if (!out) return NULL;
    out[0] = '\0';
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *k = &keys[i];
        if (may_change_on_resume(k) && !(plug && plug_key(k))) continue;
        char value[VT_PATH_MAX + 8], resolved[VT_PATH_MAX];
        if (budget_unset(rc, k)) snprintf(value, sizeof value, "(not set)");
        else format_value(value, sizeof value, rc, k);
        /* an input file by where it is, whatever the directory the run starts from */
        const char *path = (const char *)cfield(rc, k);
        if (k->kind == K_STRING && path[0] && vt_real_path(path, resolved, sizeof resolved) == 0)
            snprintf(value, sizeof value, needs_quotes(resolved) ? "\"%s\"" : "%s", resolved);
        size_t need = strlen(k->section) + strlen(k->key) + strlen(value) + 6;
        if (n + need > cap) {
            cap = 2 * (n + need);
            char *grown = realloc(out, cap);
            if (!grown) {
                free(out);
                vt_fail("out of memory for the run's settings");
                return NULL;
            }
            out = grown;
        }
        n += (size_t)snprintf(out + n, cap - n, "%s.%s = %s\n", k->section, k->key, value);
    }
    return out;
}

char *vt_run_config_resume_settings(const vt_run_config *rc) { return settings_text(rc, 0); }

char *vt_run_config_plug_settings(const vt_run_config *rc) { return settings_text(rc, 1); }
