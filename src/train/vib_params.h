/* vib_params.h — the parameters, progress records and result of a VTrans run (types only): the
 * loop's public header (vib_train.h) and the trainer's parts below it all see them, so no train
 * file needs the loop's header. */
#ifndef VT_VIB_PARAMS_H
#define VT_VIB_PARAMS_H

#include <signal.h>
#include <stdio.h>

#include "prune/size.h"
#include "nn/model.h"
#include "nn/optim.h"

typedef struct {
    vt_budget_kind kind;
    double target_fraction; /* of the dense size */
    int round_to;
    double ramp_fraction;   /* of mask steps over which the target ramps down */
    double beta, kl_mult[4];
    double temperature, ce_weight, mse_weight, theta, sharpness;
    int prune_interval;     /* 0: no iterative pruning */
    uint64_t seed;
    long steps, finetune_steps; /* finetune_steps 0: masks only (Faster-VTrans) */
    int batch_size;         /* sequences per step, over all replicas */
    int micro_batches;      /* per replica and step (0: automatic, vt_micro_batches_choose) */
    int seq_chunks;         /* chunks per sequence of a micro-batch (0: automatic, vt_seq_chunks_choose) */
    int pack_weights;       /* 1: while the weights are frozen, multiply by copies packed once for
                             * BLIS's micro-kernel (matmul.h), when BLIS runs one thread */
    double lr_mask, lr_weight, lr_lambda, clip, weight_decay;
    vt_lr_schedule schedule;
    long warmup_steps;
    int log_interval;       /* 0: silent */
    const char *run_dir;    /* training checkpoints go here (NULL: none) */
    long checkpoint_steps;  /* save every N steps (0: by time only) */
    double checkpoint_minutes; /* save at least this often (0: by steps only) */
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
} vt_vib_params;

/* One progress record. */
typedef struct {
    long step;
    int phase; /* 0 masks, 1 fine-tuning */
    double kd, ce, mse, kl, budget, size, hard_size, target, lambda1, lambda2, beta, seconds;
} vt_train_record;

typedef struct {
    vt_model pruned;          /* the sliced model */
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
