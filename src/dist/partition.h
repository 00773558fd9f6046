/* partition.h — how a run spreads over P ranks: S pipeline stages x D data-parallel replicas,
 * contiguous layer ranges balanced by FLOPs, and the micro-batches of a pipelined step. */
#ifndef VT_PARTITION_H
#define VT_PARTITION_H

#include "nn/model.h"

/* Stages chosen automatically are at most this many (see vt_topology_choose). */
#define VT_AUTO_MAX_STAGES 8

/* What the pipeline runs: training splits the classifier by vocabulary over every stage
 * (docs/TRAINING.md); eval and generation run it on the last stage. */
typedef enum { VT_PARTITION_TRAIN = 0, VT_PARTITION_INFER = 1 } vt_partition_use;

/* How a training run uses the pipeline (section [parallel] of the run configuration); 0 = automatic. */
typedef struct {
    int stages;        /* pipeline stages (vt_topology_choose) */
    int micro_batches; /* per replica and step (vt_micro_batches_choose) */
    int seq_chunks;    /* chunks per sequence of a micro-batch (vt_seq_chunks_choose) */
    int pack_weights;  /* 1: while the weights are frozen, multiply by copies packed once for BLIS's
                        * micro-kernel (matmul.h) */
    int threads;       /* threads per rank (vt_threads_set); 0 = BLIS_NUM_THREADS or 1 */
} vt_pipeline_opts;

/* What the partition balances, per token: each layer's vt_layer_flops at the mean context of
 * the model's positions, (seq_len + 1) / 2; on stage 0 also the embedding (dim: a row copy and
 * its hidden gates); the final norm and classifier (2 dim vocab + 4 dim) on the last stage for
 * inference, 1/S of it on every stage for training. */
double vt_partition_layer_cost(const vt_config *c, int l);
double vt_partition_embed_cost(const vt_config *c);
double vt_partition_head_cost(const vt_config *c);
/* Cost of stage s of `stages` owning layers [l0, l1). */
double vt_partition_stage_cost(const vt_config *c, int stages, vt_partition_use use, int s, int l0, int l1);

/* Splits the layers into `stages` contiguous non-empty runs: stage s owns [begin[s], begin[s+1]),
 * begin[0] = 0, begin[stages] = n_layers (begin has stages + 1 entries). The largest stage cost
 * is as small as possible (exact dynamic programme); among such splits, the one with the smallest
 * sum of squared stage costs (so stages below the bottleneck are even too). Fails when stages < 1
 * or stages > n_layers. */
int vt_partition_layers(const vt_config *c, int stages, vt_partition_use use, int *begin);

/* P ranks = S stages x D replicas (rank = replica * S + stage). stages_requested > 0 is checked:
 * it must divide ranks and be at most n_layers. stages_requested = 0 chooses the largest divisor
 * of ranks that is at most min(n_layers, VT_AUTO_MAX_STAGES): deep pipelines add bubbles and
 * messages, while every replica holds a whole stage, so pipelining is what lets large models fit;
 * 8 stages hold a 7B model in fp32 on 24 GiB ranks. `vtrans-dist plan` shows the memory of other
 * choices. */
int vt_topology_choose(int ranks, int n_layers, int stages_requested, int *stages, int *replicas);

/* Micro-batches per replica and step for a GPipe pipeline of `stages` stages, each replica
 * running seqs_per_replica sequences. requested > 0 must divide seqs_per_replica. requested = 0
 * chooses one sequence per micro-batch when stages > 1 (GPipe keeps every micro-batch's
 * activations until the backward pass, so memory is the same for any count, while the idle
 * bubble (S - 1) / (M + S - 1) shrinks as M grows) and 1 when stages = 1 (nothing to overlap). */
int vt_micro_batches_choose(int stages, int seqs_per_replica, int requested, int *micro_batches);

/* The idle fraction of a GPipe step of `stages` stages and `micro_batches` micro-batches,
 * (S - 1) / (M + S - 1); and whether it is at most 10%, the automatic choices' aim. */
double vt_pipeline_bubble(int stages, int micro_batches);
int vt_pipeline_bubble_small(int stages, int micro_batches);

/* Fewest tokens of a sequence chunk that the automatic choice makes: under that, matmuls of fewer
 * rows lose about what the smaller bubble gains (BLIS sgemm at LLaMA-7B shapes: 128 rows at about
 * 80% of the 2048-row rate, 256 rows at about 90%; docs/PERFORMANCE.md). */
#define VT_CHUNK_MIN_TOKENS 256

/* Chunks each sequence of a pipelined step is cut into along its tokens, so that a replica's step
 * runs micro_batches x chunks micro-batches through the pipeline (a chunk's attention reads the
 * earlier chunks' keys and values). requested > 1 needs micro-batches of one sequence and must
 * divide seq_len; 1 turns chunking off. requested = 0 chooses, for stages > 1 and micro-batches
 * of one sequence, the fewest chunks that bring the bubble (S - 1) / (M C + S - 1) to 10% or
 * less, without chunks under VT_CHUNK_MIN_TOKENS tokens (the most chunks of that size when 10% is
 * out of reach), and 1 otherwise. */
int vt_seq_chunks_choose(int stages, int micro_batches, int seqs_per_micro_batch, int seq_len, int requested,
                         int *chunks);

#endif
