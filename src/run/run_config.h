/* run_config.h — the run configuration of `vtrans-dist prune`: an INI file a person edits, --set
 * overrides, defaults, validation before any work starts, and the effective values as INI or JSON. */
#ifndef VT_RUN_CONFIG_H
#define VT_RUN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "util/dtype.h"
#include "util/fsutil.h"
#include "prune/budget.h"
#include "prune/refit.h"
#include "dist/partition.h"
#include "train/ckpt_policy.h"
#include "train/recover.h"
#include "train/vib_train.h"


typedef enum { VT_METHOD_VIB = 0, VT_METHOD_MAGNITUDE, VT_METHOD_RANDOM, VT_METHOD_TAYLOR } vt_method;
typedef enum { VT_ARCHIVE_NONE = 0, VT_ARCHIVE_TAR, VT_ARCHIVE_TAR_ZST } vt_archive;

#define VT_RC_MAX_KEYS 96
/* data.fraction of the fast variant when the configuration does not set it. */
#define VT_FAST_FRACTION_DEFAULT 0.03

/* model.hold: auto holds packed copies of frozen weights in the checkpoint's 16-bit type when it
 * stored them in one (vt_model.hold), fp32 always in fp32 (the same results, twice the bytes). */
typedef enum { VT_HOLD_AUTO = 0, VT_HOLD_FP32 = 1 } vt_hold;

/* [model]: what is pruned. */
typedef struct {
    char path[VT_PATH_MAX];      /* required: llama2.c .bin or HF directory */
    char tokenizer[VT_PATH_MAX]; /* "": found next to the model */
    vt_hold hold;
} vt_model_inputs;

/* [data]: calibration and evaluation text. */
typedef struct {
    char calib[VT_PATH_MAX]; /* required */
    char eval[VT_PATH_MAX];  /* "": no perplexity before/after */
    int seq_len;
    int eval_window;
    double fraction;    /* (0, 1]; vt_run_config_validate fills the fast variant's default */
    long max_sequences; /* 0 = no limit */
} vt_data_inputs;

/* [method] name and the baselines' own key (the VIB method's keys are vt_vib_hyper). */
typedef struct {
    vt_method name;
    int taylor_batches;
} vt_method_opts;

/* [output]: the pruned checkpoint. */
typedef struct {
    char dir[VT_PATH_MAX]; /* required */
    vt_dtype dtype;
    uint64_t shard_size; /* bytes; 0 = one file */
    int overwrite;
    vt_archive archive;
    int format;   /* 0: HF directory; 1: one GGUF file at dir (output.format = gguf) */
    int quantize; /* GGUF only: 0 none (output.dtype), 1 Q8_0 */
} vt_output_opts;

/* [plugin]: Variator plugins trained by `vtrans-dist plug` (docs/PLUGINS.md); prune ignores them. */
typedef struct {
    int k, r;               /* group size, adapter width */
    int exact_tail;         /* at least the prompt's last exact_tail positions run exactly (>= 1) */
    double prompt_fraction; /* (0, 1): prompt tokens of each window of data.eval_window */
    int steps, batch_size;  /* batch_size windows a step, split between the replicas */
    double lr;              /* Adam's base rate */
    vt_lr_schedule lr_schedule; /* constant (the default), cosine or linear decay over the steps */
    uint64_t seed;          /* plugin initialisation and window order */
    int eval_windows;       /* windows of data.eval scored (0 = all) */
} vt_plugin_opts;

/* Every key of the file, by section, in the sub-structs of the modules that use them; the key
 * table of run_config.c names each. docs/CONFIG.md documents each one. Relative paths are relative
 * to the current working directory (not to the config file). */
typedef struct {
    vt_model_inputs model;
    vt_data_inputs data;
    vt_budget_spec budget;      /* budget.params / budget.flops negative when unset */
    vt_method_opts method;      /* method.name, method.taylor_batches */
    vt_vib_hyper vib;           /* the other [method] keys; method.variant only counts for vib */
    vt_train_schedule schedule; /* [schedule] */
    vt_output_opts output;
    vt_pipeline_opts pipeline;  /* [parallel] */
    vt_ckpt_policy ckpt;        /* [run]; run.dir "" = "<output.dir>.run" */
    vt_reconstruct_spec reconstruct; /* [reconstruct] */
    vt_recover_spec recover;    /* [recover]; recover.lr 0 = the method's default, alpha 0 = rank */
    char recover_targets[VT_PATH_MAX]; /* recover.targets as written; validate parses it into recover.targets */
    vt_plugin_opts plugin;      /* [plugin], for `plug` */

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

/* vt_run_config_validate for `plug`: the same required keys, ranges and inputs, no budget, and
 * output.dir a directory (made when missing) that may hold other files. */
int vt_run_config_validate_plug(vt_run_config *rc);

/* 1 when "section.key" was set by the file or --set, 0 when at its default (or unknown). */
int vt_run_config_is_set(const vt_run_config *rc, const char *section_key);

/* The effective configuration as an INI file that loads back to the same values. */
void vt_run_config_print(const vt_run_config *rc, FILE *out);

/* The effective configuration as compact JSON text {"source": ..., "model": {...}, "data": {...},
 * ...} for the run report (an unset budget key is null); malloc'd, the caller frees it. NULL with an
 * error when out of memory. */
char *vt_run_config_json(const vt_run_config *rc);

/* The settings a resumed run must share with the run that saved its checkpoints: one
 * "section.key = value" line per such key, in the key order, input paths resolved to absolute ones
 * (realpath), an unset budget key as "(not set)". The keys left out may change on resume:
 * data.eval, data.eval_window, method.taylor_batches, schedule.steps, schedule.finetune_steps,
 * schedule.log_interval, output.*, parallel.stages (the layout is checked against the manifest
 * instead), parallel.micro_batches and run.* (docs/CONFIG.md). A malloc'd string; NULL with an
 * error when out of memory. */
char *vt_run_config_resume_settings(const vt_run_config *rc);
/* The same for plug: also [plugin] (but plugin.eval_windows) and data.eval_window. */
char *vt_run_config_plug_settings(const vt_run_config *rc);
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
const char *vt_reconstruct_method_name(vt_reconstruct_method m);
const char *vt_refit_target_name(vt_refit_target t);

#endif
