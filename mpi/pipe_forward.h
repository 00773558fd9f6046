/* pipe_forward.h — inference through the pipeline: one micro-batch's step on this stage, and
 * windowed perplexity with GPipe-style micro-batches across stages and windows split between
 * data-parallel replicas. */
#ifndef VT_PIPE_FORWARD_H
#define VT_PIPE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "dist/comm.h"
#include "nn/eval.h"
#include "nn/forward.h"
#include "nn/model.h"

/* Micro-batch `tag` (B sequences x T tokens at positions pos0..) on this rank's stage of c: the
 * first stage embeds tokens[B*T] into x, the others receive x [B*T, dim] from the previous stage;
 * this stage's layers run on x (keys and values go to f's cache); every stage but the last sends
 * x to the next (c->pipe_send and c->pipe_recv, the transport training uses). On the last stage x
 * is then the last layer's output (before the final norm). A failure here aborts every rank. */
void vt_pipe_step(vt_comm *c, const vt_model *part, vt_fwd *f, const int32_t *tokens, float *x, int B, int T, int pos0,
                  int tag);

/* Perplexity of ids by the protocol of vt_eval_stream, with the model part this rank holds.
 * Replica d scores the d-th of D contiguous blocks of windows; within a replica the windows go
 * through the stages in micro-batches of `batch` windows (0 = automatic), so stage s works on
 * micro-batch m while stage s+1 works on m-1. Sums are added over the world (only the last
 * stages hold any): every rank of the world calls this and gets the same result; it differs from
 * one process's only in float summation order. progress, if not NULL, is called on world rank 0.
 * Failures before the pipeline starts (checks, memory) are agreed on (vt_comm_agree): every rank
 * returns -1 and the message is printed once. */
int vt_pipe_eval(vt_comm *c, const vt_model *part, const int32_t *ids, size_t n, int window, int batch,
                 vt_eval_result *out, void (*progress)(size_t done, size_t total, void *arg), void *arg);

#endif
