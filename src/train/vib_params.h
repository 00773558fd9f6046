/* vib_params.h — the parameters, progress records and result of a VTrans run (types only): the
 * loop's public header (vib_train.h) and the trainer's parts below it all see them, so no train
 * file needs the loop's header. */
#ifndef VT_VIB_PARAMS_H
#define VT_VIB_PARAMS_H

#include <signal.h>
#include <stdio.h>

#include "dist/partition.h"
#include "prune/size.h"
#include "train/ckpt_policy.h"
#include "nn/model.h"
#include "prune/slice.h"
#include "nn/optim.h"

/* VTrans variants (the paper's names): faster = masks only; full = masks, then joint fine-tuning;
 * fast = full on a fraction of the calibration data. */
typedef enum { VT_VARIANT_FASTER = 0, VT_VARIANT_FULL, VT_VARIANT_FAST } vt_variant;

/* The VIB method's hyperparameters (section [method] of the run configuration). */
typedef struct {
    vt_variant variant;
    double beta, kl_mult[VT_N_GROUPS]; /* kl_mult indexed by vt_group */
    double temperature, ce_weight, mse_weight, theta, sharpness;
    int prune_interval;     /* 0: no iterative pruning */
    uint64_t seed;
} vt_vib_hyper;

/* How long and how fast training runs (section [schedule]). */
typedef struct {
    int steps, finetune_steps; /* finetune_steps counts only for the full/fast variants */
    int batch_size;         /* sequences per step, over all replicas */
    double lr_mask, lr_weight, lr_lambda;
    vt_lr_schedule lr_schedule;
    int warmup_steps;
    double clip, weight_decay; /* clip 0: off */
    int log_interval;       /* 0: silent */
} vt_train_schedule;

/* What one run of the trainer needs besides its settings: where it reports and resumes from. */
typedef struct {
    const char *resume_dir; /* continue from the newest complete checkpoint here (NULL: fresh) */
    /* The settings a resume must not change, as "section.key = value" lines
     * (vt_run_config_resume_settings): recorded in the manifest with the checkpoints, and a resume
     * whose settings differ from the recorded ones is refused, naming them (NULL: not recorded,
     * not checked). */
    const char *settings;
    const char *resume_accept; /* comma-separated keys whose recorded value may differ (NULL: none) */
    volatile sig_atomic_t *stop; /* set (by a signal handler) to save and stop: read at each step's
                                  * gradient sum, so the run stops after that step */
    FILE *log;              /* progress lines (NULL: none) */
    FILE *jsonl;            /* machine-readable progress (NULL: none) */
    int save_last;          /* save a checkpoint after the last step too: a later stage (recovery)
                             * resumes from it instead of training again */
} vt_vib_runtime;

/* The same sub-structs as the run configuration holds (run/run_config.h), and the runtime part. */
typedef struct {
    vt_budget_spec budget;
    vt_vib_hyper vib;
    vt_train_schedule schedule;
    vt_pipeline_opts pipeline; /* micro_batches, seq_chunks, pack_weights (stages come from the comm) */
    vt_ckpt_policy ckpt;       /* ckpt.dir "": no training checkpoints */
    vt_vib_runtime run;
} vt_vib_params;

/* Fine-tuning steps of the configured variant: none for Faster-VTrans (masks only). */
static inline long vt_vib_finetune_steps(const vt_vib_params *p) {
    return p->vib.variant == VT_VARIANT_FASTER ? 0 : p->schedule.finetune_steps;
}

/* One progress record. */
typedef struct {
    long step;
    int phase; /* 0 masks, 1 fine-tuning */
    double kd, ce, mse, kl, budget, size, hard_size, target, lambda1, lambda2, beta, seconds;
} vt_train_record;

typedef struct {
    vt_model pruned;          /* the sliced model */
    vt_slice_map map;         /* where its units sit in the dense model (prune/slice.h), for the re-fit */
    long steps, tokens;       /* optimizer steps and training tokens processed */
    double seconds;
    vt_train_record *records; /* one per log interval */
    size_t n_records;
    double final_kd;
    size_t weight_state_bytes; /* weight gradients + optimizer moments held (0 for masks only) */
    size_t removed_early;      /* units iterative pruning removed during the mask phase */
    int stopped;               /* 1: stopped on request after saving a checkpoint (no result) */
    size_t weight_bytes, work_bytes; /* the most this rank held (vt_trainer_bytes) */
} vt_vib_result;

/* Mean sequence context for FLOP counts of a training/eval length L: (L + 1) / 2. */
static inline double vt_mean_ctx(int L) { return (L + 1) / 2.0; }

#endif
