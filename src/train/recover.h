/* recover.h — the recovery stage: after the structure is fixed (and re-fitted), the kept model is
 * trained by distillation from the dense one (KL of next-token distributions at T = 1 plus
 * lm_weight x the LM cross-entropy), either every layer weight (`full`) or low-rank adapters on
 * chosen projections (`lora`, nn/lora.h, merged into the weights at the end). Nothing after it
 * should move the weights. Over pipeline stages x replicas: each stage holds its layers of both
 * models and trains their adapters (or weights); replicas split each batch and sum gradients. */
#ifndef VT_RECOVER_H
#define VT_RECOVER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/calib.h"
#include "dist/comm.h"
#include "nn/model.h"
#include "train/arena_ckpt.h"

typedef enum { VT_RECOVER_NONE = 0, VT_RECOVER_LORA, VT_RECOVER_FULL } vt_recover_method;

/* The [recover] section of a run configuration. */
typedef struct {
    vt_recover_method method;
    long steps;
    double lr;          /* 0: the method's default (lora 1e-2, full 1e-3) */
    int rank;           /* lora */
    double alpha;       /* lora; 0: = rank */
    unsigned targets;   /* lora: bit set of 1 << vt_lora_proj */
    double lm_weight;   /* weight of the LM cross-entropy next to the KL */
    int batch_size;     /* sequences per step, over all replicas */
    int micro_batch;    /* sequences per forward/backward pass on a replica; 0: all of its share */
    int warmup;         /* steps of linear warm-up before the cosine decay */
    int norms;          /* lora: the RMSNorm gains (attn_norm, ffn_norm, final_norm) train too, at lr */
    uint64_t seed;      /* batch order and adapter initialisation */
    int pack;           /* pack the frozen weights (the teacher; lora: the student's base) for the
                         * matmuls when BLIS's micro-kernel allows (parallel.pack_weights) */
} vt_recover_spec;

/* The defaults: method none, 300 steps, rank 8 on q,k,v,o,gate,up,down, lm_weight 0.5, 8 sequences. */
vt_recover_spec vt_recover_defaults(void);
const char *vt_recover_method_name(vt_recover_method m);
/* "none", "lora" or "full"; -1 otherwise. */
int vt_recover_method_parse(const char *s, vt_recover_method *m);
/* The learning rate a spec runs at (its lr, or the method's default). */
double vt_recover_lr(const vt_recover_spec *s);

typedef struct {
    long steps, tokens;         /* tokens trained on, over all replicas */
    double seconds;             /* wall time of the loop */
    double first_loss, last_loss; /* the loss (KL + lm_weight CE) of the first and the last step */
    size_t trained_params;      /* adapter parameters (and norm gains), or layer weights for full: all stages' */
    size_t adam_bytes;          /* the optimizer's two moments on this rank (its stage's) */
    long resumed_at;            /* the step a resume continued from (0: from the start) */
    int stopped;                /* 1: stopped on request with a checkpoint saved; student unchanged */
} vt_recover_result;

/* Trains student (this rank's part: the whole model, or its pipeline stage's layers) by
 * distillation from teacher (the dense model's same part, frozen) over calib's sequences; lora
 * adapters are merged into student's weights before it returns. Progress lines go to log (may be
 * NULL; the coordinator's only). ck (NULL: none) says where the loop's checkpoints go (the trained
 * arena: the adapters, or the layer weights for full, in the whole model's layout whatever the
 * stages: world rank 0 gathers them) and whether it resumes from them, from any layout; stopped on
 * request, out->stopped is set and the student is left as it came. Collective over the world. */
int vt_recover(vt_model *student, const vt_model *teacher, const vt_calib *calib, const vt_recover_spec *s,
               vt_comm *comm, const vt_arena_run *ck, FILE *log, vt_recover_result *out);

#endif
