/* plan.h — a cluster run sized before it starts, from the model's configuration alone (no
 * weights): the topology, each stage's layers, per-rank memory and the FLOPs of a step. */
#ifndef VT_PLAN_H
#define VT_PLAN_H

#include <stddef.h>

#include "nn/model.h"

/* What the estimate needs from the run configuration. */
typedef struct {
    const vt_config *cfg; /* the model before pruning */
    int ranks;
    int stages;           /* requested; 0 = automatic (vt_topology_choose) */
    int micro_batches;    /* requested per replica and step; 0 = automatic (vt_micro_batches_choose) */
    int seq_chunks;       /* requested chunks per sequence; 0 = automatic, 1 = off (vt_seq_chunks_choose) */
    int batch_size;       /* sequences per step over all replicas */
    int seq_len;          /* tokens per sequence */
    long steps;           /* mask-phase steps */
    long finetune_steps;  /* joint fine-tuning steps; 0 = masks only (weights frozen) */
    int prune_interval;   /* > 0: iterative pruning slices a student copy during the mask phase */
    double keep_fraction; /* the budget: the fine-tuned student is this fraction of the model */
    long calib_sequences; /* calibration sequences the teacher cache holds; 0 = unknown */
    int pack_weights;     /* 1: the mask phase multiplies by packed copies of the frozen weights */
    vt_dtype hold;        /* the type the packs are held in (vt_model.hold; the checkpoint's 16-bit type) */
    int refit_sequences;  /* the re-fit after the decision ([reconstruct]) on this many sequences; 0 = none */
    int refit_batch;      /* its sequences per forward batch */
    int refit_seq_len;    /* tokens per re-fit sequence; 0 = seq_len */
    int refit_inputs;     /* 1: it also re-fits QKV and gate/up (wider systems) */
    int threads;          /* threads per rank (parallel.threads); the rate, not the memory, depends on it */
    int checkpoint_16bit; /* 1: the checkpoint is bf16/f16 and the run holds its frozen matrices in that
                           * type (VTrans with model.hold = auto; vt_plan_frozen_weights) */
    int recover_method;   /* [recover] (train/recover.h: 0 none, 1 lora, 2 full) */
    long recover_steps;
    int recover_batch;    /* sequences per recovery step over all replicas */
    int recover_micro;    /* sequences per forward/backward pass on a replica; 0 = all of its share */
    int recover_rank;     /* lora */
    unsigned recover_targets; /* lora: bit set of 1 << vt_lora_proj */
} vt_plan_input;

/* Bytes of the frozen weights of stage s of `stages` (layers [l0, l1)) as a rank holds them
 * (vt_model.raw): the layers' matrices and an untied embedding in 2 bytes with checkpoint_16bit,
 * else 4; the norms and the classifier (a tied embedding with it) in 4. */
double vt_plan_frozen_weights(const vt_plan_input *in, int stages, int s, int l0, int l1);

/* The re-fit ([reconstruct], DESIGN.md 1.3), after training (its memory is not in the training
 * totals), sized with the dense model's shapes: an upper bound, the pruned model is smaller.
 * Bytes per rank of the largest stage; FLOPs of the whole cluster. */
typedef struct {
    double streams; /* both models' residual streams of the replica's share of the sequences */
    double work;    /* a batch's forward buffers (both models) and system rows; G, C and the solution */
    double solver;  /* the rank's block-cyclic share of the widest system and its right-hand sides */
    double total;
    int widest_in, widest_out; /* the widest system: inputs (G is widest_in^2), outputs */
    double flops;   /* both models' passes (fp32) */
    double flops_double; /* the sums into G and C and the solves (fp64) */
    double models;  /* both models' weights of the largest stage, held during the re-fit */
} vt_refit_plan;

/* The recovery stage ([recover]; on the mask phase's stages x replicas, each stage holding its
 * layers of the dense teacher and the kept student), sized at the dense widths: an upper bound.
 * Bytes per rank of the largest stage (stage 0 with stages: also the whole trained state it gathers
 * for checkpoints). */
typedef struct {
    size_t lora_params;     /* rank-r adapters on the targets */
    size_t full_params;     /* what full fine-tuning trains: the kept fraction of the layers' weights */
    double adam_lora, adam_full; /* the two Adam moments of each (fp32) */
    double weights;         /* the teacher held frozen, the student (fp32), packs when packing */
    double trained;         /* the trained parameters' gradients and moments (the chosen method) */
    double activations;     /* both models' forward scratch, the student's tape and backward scratch, logits */
    double total;
    double flops_token;     /* the teacher's forward, the student's forward and backward */
    double flops_step;      /* whole cluster, one step */
    int micro;              /* sequences per forward/backward pass on a replica */
} vt_recover_plan;

/* One stage; memory in bytes for each of its D ranks (all replicas of a stage hold the same). */
typedef struct {
    int layer_begin, layer_end;
    size_t params;          /* its weights: layers, plus the embedding (stage 0), final norm and classifier (last) */
    double flops_token;     /* its forward FLOPs per token at the training context: layers + classifier share */
    double flops_layers;    /* of which its layers' (the embedding is a row copy) */
    double flops_head;      /* of which its share of the classifier, 2 dim x its vocabulary rows */
    double flops_rank_step; /* FLOPs each of its ranks computes in one step (mask phase) */
    double weights;         /* fp32 weights, plus the sliced student copy when there is one, plus
                             * the packs when pack_weights */
    double packs;           /* the layers' and the classifier share's packed copies, both
                             * directions, in the input's hold type (mask phase,
                             * parallel.pack_weights; matmul.h) */
    double activations;     /* saved activations of every micro-batch in flight, scratch, logits */
    double optimizer;       /* gates with gradients and Adam moments; weight gradients and moments */
    double teacher_cache;   /* last stage: the teacher's final hidden states (0 when unknown) */
    double total;
} vt_stage_plan;

typedef struct {
    int ranks, stages, replicas;
    int seqs_per_replica, micro_batches, micro_batch; /* per step; sequences per micro-batch */
    int seq_chunks, chunk_tokens; /* C chunks of T / C tokens per sequence: the pipeline runs M C
                                   * micro-batches of micro_batch sequences x chunk_tokens tokens */
    double bubble;              /* idle fraction of the layers' forward and backward, (S - 1) / (M C + S - 1) */
    double ctx;                 /* mean attended positions of a training sequence, (T + 1) / 2 */
    double flops_token;         /* the model's forward FLOPs per token at ctx */
    double flops_step_masks;    /* whole cluster, one mask-phase step */
    double flops_step_finetune; /* whole cluster, one fine-tuning step (0 when masks only) */
    double flops_teacher;       /* whole cluster, the teacher cache pass before training (0 when unknown) */
    double flops_run;           /* all of the above over the run */
    double cache_per_sequence;  /* teacher cache bytes per calibration sequence on a last-stage rank */
    size_t gates;               /* VIB gates of the model, held by every rank */
    vt_refit_plan refit;        /* zero without a re-fit */
    vt_recover_plan recover;    /* zero without a recovery */
    double peak;                /* the largest rank over the phases (training, re-fit, recovery) */
    vt_stage_plan *stage;       /* [stages] */
    double *sched;              /* [stages x (seq_chunks + 1)]: vt_plan_step_phases' scratch */
} vt_plan;

/* Chooses the topology, the partition, the micro-batches and the sequence chunks (partition.h)
 * and estimates memory and FLOPs. The memory model follows what a training rank allocates
 * (vt_trainer_bytes; docs/CLUSTER.md lists every term): GPipe keeps the activation tape of all
 * M C micro-batches (chunk c of a sequence attends to the c + 1 chunks up to it); mask gradients
 * need activation gradients only (a step is ~2 forward passes), fine-tuning also weight gradients
 * (~3). Fails with the reason when the topology, the batch split or the chunks are impossible. */
int vt_plan_make(const vt_plan_input *in, vt_plan *out);
void vt_plan_free(vt_plan *p);

/* How fast a rank computes: gflops_core sustained per core on one thread (a measured figure,
 * docs/PERFORMANCE.md), each thread past the first adding thread_eff of a core, and fp64 work (the
 * re-fit's sums and solves) at double_ratio of the fp32 rate. */
typedef struct {
    double gflops_core, thread_eff, double_ratio;
} vt_speed;

/* A matmul of m rows on weights BLIS copies into micro-panels on every call (not packed once,
 * parallel.pack_weights) costs about what this many more rows would: bench_layer's LLaMA-2-7B-shaped
 * layer, forward and backward, ran 12% slower at 128 rows, 6-8% at 256 and 2% at 1024 than with
 * the weights packed once (docs/PERFORMANCE.md), i.e. 15-20 rows. So such a matmul runs at
 * m / (m + VT_PLAN_REPACK_ROWS) of the rate, which is what makes short micro-batches slower per FLOP. */
#define VT_PLAN_REPACK_ROWS 18.0

/* Compute-bound times (messages not counted, they are small against the matmuls). A step follows
 * train_step.c's schedule (vt_plan_step_phases); the teacher pass teacher_cache.c's (the stages one
 * after another); the re-fit is split evenly over the ranks, a recovery step over the replicas (its
 * micro-batches pass the stages one after another). */
typedef struct {
    double rank_gflops;
    double mask_step_s, finetune_step_s, recover_step_s;
    double mask_phase_s[3]; /* a mask step's forward, classifier and backward phases */
    double mask_idle;       /* the fraction of a mask step the busiest stage waits */
    double teacher_h, masks_h, finetune_h, refit_h, recover_h, hours;
} vt_plan_time;
/* The rate (FLOP/s) of a rank at rate for matmuls of `rows` rows: VT_PLAN_REPACK_ROWS. */
double vt_plan_rows_rate(int packed, double rate, double rows);
/* The three phases of one training step as train_step.c runs them, in seconds at `rate` FLOP/s
 * per rank (before vt_plan_rows_rate): every micro-batch (chunk c of a sequence attends to its
 * own and the c earlier chunks' positions) forward through the stages, a flow shop (stage s takes
 * micro-batch k when it is done with k - 1 and stage s - 1 with k; stages of unequal work wait for
 * the slowest); then every micro-batch's classifier share in lock step on all stages (each
 * micro-batch's inputs are broadcast from the last stage and its softmax statistics summed, so
 * every stage waits for the largest share); then every micro-batch backward, last first, from the
 * last stage to the first. bwd: the layers' backward FLOPs per forward FLOP (1: activation
 * gradients only; 2: weight gradients too). The idle time this leaves is GPipe's bubble, but only
 * around the layers' work: the classifier phase has none. */
void vt_plan_step_phases(const vt_plan_input *in, const vt_plan *p, double rate, double bwd, int packed,
                         double phase[3]);
void vt_plan_times(const vt_plan_input *in, const vt_plan *p, const vt_speed *sp, vt_plan_time *t);

/* The machine a layout must fit: every node holds ranks / nodes ranks. */
typedef struct {
    int nodes, cores_per_node;
    double memory_per_node; /* bytes */
} vt_machine;

/* The fastest layout of the machine that fits: threads per rank t dividing cores_per_node, ranks =
 * nodes x cores_per_node / t, stages dividing the ranks (in->stages when set), the configured micro-batches or else automatic ones.
 * *fits = 1 when one fits (nodes x peak x ranks per node within memory); else *fits = 0 and *best
 * is the layout with the smallest peak. best_in gets the input that made it. Fails when no layout
 * is possible at all. */
int vt_plan_search(const vt_plan_input *in, const vt_machine *m, const vt_speed *sp, vt_plan_input *best_in,
                   vt_plan *best, int *fits);

/* Floats vt_model_alloc gives a stage owning layers [l0, l1) of `stages` stages (embedding on
 * stage 0, final norm and classifier on the last; a tied classifier is shared only when one
 * stage holds both). */
size_t vt_plan_weight_floats(const vt_config *c, int stages, int s, int l0, int l1);

/* Floats vt_tape_init allocates for layers [l0, l1) and B sequences of T tokens at positions
 * pos0..pos0+T-1 (a chunk of longer sequences: its attention probabilities span pos0 + T keys). */
size_t vt_plan_tape_floats(const vt_config *c, int l0, int l1, int B, int T, int pos0);

#endif
