/* run_config.h — the run configuration of `vtrans-dist prune`: an INI file a person edits, --set
 * overrides, defaults, validation before any work starts, and the effective values as INI or JSON. */
#ifndef VT_RUN_CONFIG_H
#define VT_RUN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "util/dtype.h"
#include "nn/optim.h" /* vt_lr_schedule */

typedef enum { VT_METHOD_VIB = 0, VT_METHOD_MAGNITUDE, VT_METHOD_RANDOM, VT_METHOD_TAYLOR } vt_method;
/* VTrans variants (the paper's names): faster = masks only; full = masks, then joint fine-tuning;
 * fast = full on a fraction of the calibration data. */
typedef enum { VT_VARIANT_FASTER = 0, VT_VARIANT_FULL, VT_VARIANT_FAST } vt_variant;
typedef enum { VT_ARCHIVE_NONE = 0, VT_ARCHIVE_TAR, VT_ARCHIVE_TAR_ZST } vt_archive;

#define VT_PATH_MAX 4096
#define VT_RC_MAX_KEYS 64
/* data.fraction of the fast variant when the configuration does not set it. */
#define VT_FAST_FRACTION_DEFAULT 0.03

/* Every key of the file, named section_key. docs/CONFIG.md documents each one. Relative paths
 * are relative to the current working directory (not to the config file). */
typedef struct {
    char model_path[VT_PATH_MAX];      /* required: llama2.c .bin or HF directory */
    char model_tokenizer[VT_PATH_MAX]; /* "": found next to the model */

    char data_calib[VT_PATH_MAX]; /* required */
    char data_eval[VT_PATH_MAX];  /* "": no perplexity before/after */
    int data_seq_len;
    int data_eval_window;
    double data_fraction; /* (0, 1]; vt_run_config_validate fills the fast variant's default */
    long data_max_sequences; /* 0 = no limit */

    double budget_params; /* fraction of total parameters kept, (0, 1); negative when unset */
    double budget_flops;  /* fraction of forward FLOPs per token kept, (0, 1); negative when unset */
    int budget_round_to;  /* 1, 8, 64 or 128 */
    double budget_warmup; /* fraction of mask-phase steps over which the target ramps */

    vt_method method_name;
    vt_variant method_variant; /* only used when method_name is VT_METHOD_VIB */
    double method_beta;
    double method_kl_hidden, method_kl_heads, method_kl_ffn, method_kl_blocks;
    double method_temperature;
    double method_ce_weight;
    double method_mse_weight;
    double method_theta;
    double method_sharpness;
    int method_prune_interval; /* 0 = no iterative pruning */
    uint64_t method_seed;
    int method_taylor_batches;

    int schedule_steps;
    int schedule_finetune_steps;
    int schedule_batch_size;
    double schedule_lr_mask, schedule_lr_weight, schedule_lr_lambda;
    vt_lr_schedule schedule_lr_schedule;
    int schedule_warmup_steps;
    double schedule_clip; /* 0 = off */
    double schedule_weight_decay;
    int schedule_log_interval; /* 0 = no progress lines */

    char output_dir[VT_PATH_MAX]; /* required */
    vt_dtype output_dtype;
    uint64_t output_shard_size; /* bytes; 0 = one file */
    int output_overwrite;
    vt_archive output_archive;

    int parallel_stages;        /* 0 = automatic */
    int parallel_micro_batches; /* 0 = automatic */
    int parallel_seq_chunks;    /* 0 = automatic */
    int parallel_pack_weights;  /* 1 = pack frozen weights for the micro-kernel (matmul.h); default 0 */

    char run_dir[VT_PATH_MAX]; /* training checkpoints; "" = "<output.dir>.run" */
    int run_checkpoint_steps;     /* save every N steps (0 = by time only) */
    double run_checkpoint_minutes; /* save at least this often (0 = by steps only) */

    char source[VT_PATH_MAX]; /* the file loaded, "" when none */
    char resume[VT_PATH_MAX]; /* --resume RUNDIR of the command line ("" = a fresh run); not a key */
    /* --accept-changed KEY[,KEY...]: recorded settings a resume may change all the same (an input
     * moved to another path, say), comma-separated "section.key" names; not a key */
    char resume_accept[1024];
    /* Where each key was set, by its index in the key table: 0 = default, > 0 = line of source,
     * -1 = --set. Query it with vt_run_config_is_set. */
    int key_line[VT_RC_MAX_KEYS];
} vt_run_config;

/* Every key at its default; budget_params and budget_flops unset. */
void vt_run_config_defaults(vt_run_config *rc);

/* Resets rc to the defaults, then reads the INI file at path: [section] headers, key = value
 * lines, '#' or ';' comments (whole lines, or trailing after whitespace), blank lines; values are
 * trimmed and may be quoted with "...". Unknown sections and keys, malformed lines, duplicate keys,
 * bad numbers and out-of-range values are errors naming path:line and the key. */
int vt_run_config_load(vt_run_config *rc, const char *path);

/* Applies one --set assignment, "section.key=value", over what the file said. Setting one of
 * budget.params / budget.flops this way clears the other when it came from the file. */
int vt_run_config_set(vt_run_config *rc, const char *assignment);

/* Checks the whole configuration before any work starts: required keys, ranges, exactly one
 * budget, that model.path, model.tokenizer, data.calib and data.eval exist, and that output.dir
 * is free (or output.overwrite is set). Fills derived defaults: data.fraction is 0.03 for
 * the fast VTrans variant unless set explicitly. Returns 0, or -1 naming the key and the path. */
int vt_run_config_validate(vt_run_config *rc);

/* 1 when "section.key" was set by the file or --set, 0 when at its default (or unknown). */
int vt_run_config_is_set(const vt_run_config *rc, const char *section_key);

/* The effective configuration as an INI file that loads back to the same values. */
void vt_run_config_print(const vt_run_config *rc, FILE *out);

/* The effective configuration as {"source": ..., "model": {...}, "data": {...}, ...} for the run
 * report (an unset budget key is null). NULL with an error when out of memory. */
json_t *vt_run_config_json(const vt_run_config *rc);

/* The settings a resumed run must share with the run that saved its checkpoints: one
 * "section.key = value" line per such key, in the key order, input paths resolved to absolute ones
 * (realpath), an unset budget key as "(not set)". The keys left out may change on resume:
 * data.eval, data.eval_window, method.taylor_batches, schedule.steps, schedule.finetune_steps,
 * schedule.log_interval, output.*, parallel.stages (the layout is checked against the manifest
 * instead), parallel.micro_batches and run.* (docs/CONFIG.md). A malloc'd string; NULL with an
 * error when out of memory. */
char *vt_run_config_resume_settings(const vt_run_config *rc);
/* 1 when "section.key" may change on resume, 0 when it is recorded and checked (or unknown). */
int vt_run_config_resume_may_change(const char *section_key);
/* Checks a --accept-changed list: comma-separated names of keys that are recorded and checked on
 * resume. 0, or -1 with an error naming the first unknown or unchecked key. */
int vt_run_config_check_accept(const char *list);

/* Names as written in the file: "vib", "faster", "cosine", "tar.zst", "f16". */
const char *vt_method_name(vt_method m);
const char *vt_variant_name(vt_variant v);
const char *vt_lr_schedule_name(vt_lr_schedule s);
const char *vt_archive_name(vt_archive a);

#endif
