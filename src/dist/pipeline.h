/* pipeline.h — a model run as a pipeline over a world, in one process as under MPI: the world
 * laid out into stages x replicas for the model, this rank's part loaded; the forward step of one
 * micro-batch through the stages, and windowed perplexity (the one eval loop) with GPipe-style
 * micro-batches across stages and windows split between data-parallel replicas. */
#ifndef VT_PIPELINE_H
#define VT_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "dist/comm.h"
#include "dist/partition.h"
#include "nn/eval.h"
#include "nn/forward.h"
#include "nn/model.h"

typedef struct {
    vt_world *world;
    vt_config cfg; /* the whole model's architecture */
    vt_comm *comm; /* this rank's place in the layout: stage, replica, layers */
    vt_model part; /* this rank's tensors (vt_pipeline_load) */
    int have_cfg, have_part;
} vt_pipeline;

/* Reads the configuration of the model at path, splits its layers into `stages` stages
 * (0 = automatic; more than 1 in one process is refused as a --stages option) for `use`, lays
 * the world out so and, over several ranks, has world rank 0 print the split for `command`
 * ("eval: 4 ranks = 2 stages x 2 replicas; layers 0-2, 3-4"). Collective, and agreed on: on
 * failure every rank returns -1 with nothing left open (the message printed once over ranks). */
int vt_pipeline_layout(vt_pipeline *p, vt_world *w, const char *path, int stages, vt_partition_use use,
                       const char *command);
/* This rank's part of the model (its layers, the embedding on the first stage, the final norm
 * and classifier on the last). Collective and agreed on as vt_pipeline_layout. */
int vt_pipeline_load(vt_pipeline *p, const char *path);
/* Frees what is open; safe after a failed vt_pipeline_layout or vt_pipeline_load, and twice. */
void vt_pipeline_close(vt_pipeline *p);

/* Micro-batch `tag` (B sequences x T tokens at positions pos0..) on this rank's stage of c: the
 * first stage embeds tokens[B*T] into x, the others receive x [B*T, dim] from the previous stage;
 * this stage's layers run on x (keys and values go to f's cache); every stage but the last sends
 * x to the next. On the last stage x is then the last layer's output (before the final norm). A
 * failure here ends every rank (vt_comm_abort_all); in one process nothing can fail. */
int vt_pipeline_step(vt_comm *c, const vt_model *part, vt_fwd *f, const int32_t *tokens, float *x, int B, int T,
                     int pos0, int tag);

/* Perplexity of ids: cut into consecutive windows of `window` tokens from token 0 (a last
 * shorter window is scored when it has at least 2 tokens), every token after the first of its
 * window scored, with the model part this rank holds. Replica d scores the d-th of D contiguous
 * blocks of windows; within a replica the windows go through the stages in micro-batches of
 * `batch` windows (0 = automatic), so stage s works on micro-batch m while stage s+1 works on
 * m-1. Sums are added over the world (only the last stages hold any): every rank calls this and
 * gets the same result, which differs between layouts only in float summation order. progress,
 * if not NULL, is called on world rank 0 after each micro-batch. Failures before the pipeline
 * starts (checks, memory) are agreed on (vt_comm_agree). */
int vt_pipeline_eval(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, int batch,
                     vt_eval_result *out, void (*progress)(size_t done, size_t total, void *arg), void *arg);

#endif
