/* prune_write.h — writing a pruned checkpoint from the parts of a pipeline: every stage writes its
 * own piece in parallel (io/hf_writer.h), the coordinator the common files and the run report; the
 * directory appears under its name only when everything is written (one process: one part). */
#ifndef VT_PRUNE_WRITE_H
#define VT_PRUNE_WRITE_H

#include <stddef.h>

#include "dist/comm.h"
#include "nn/model.h"
#include "report/report.h"
#include "util/dtype.h"

/* Every rank calls it with its part. With one stage the files are those of vt_hf_write (shards of
 * at most shard_bytes); with S stages, one shard per stage. source is the model pruned (its HF
 * tokenizer and generation files are carried over: vt_hf_write_common). report (coordinator only; may be NULL)
 * is written as vtrans_report.json, with its picture vtrans_report.svg. */
int vt_write_pruned(vt_comm *c, const vt_model *part, const char *out_dir, int overwrite, vt_dtype dtype,
                    size_t shard_bytes, const char *tokenizer, const char *source, const vt_run_report *report);

#endif
