/* plug_run.h — the driver of `vtrans-dist plug` (docs/PLUGINS.md): Variator plugins for a frozen
 * model trained by distillation over pipeline stages x data-parallel replicas, saved beside a
 * small JSON report with the continuation perplexity dense against plugged. */
#ifndef VT_PLUG_RUN_H
#define VT_PLUG_RUN_H

#include "dist/comm.h"
#include "nn/model.h"
#include "run/run_config.h"

/* The plugin file and report plug writes for rc: output.dir/plugin-k{K}.safetensors and
 * output.dir/plugin-k{K}.json. */
int vt_plug_paths(const vt_run_config *rc, char *plugin, char *report, size_t cap);

/* Every rank of c holds its stage's part m of the model (the whole model with one stage); the
 * replicas split each batch. Trains rc->plugin.steps steps, world rank 0 gathers and writes the
 * plugin, data.eval is scored (by world rank 0 with one stage, through the stages otherwise) and
 * world rank 0 writes the report. Collective; failures are agreed on. rc passed
 * vt_run_config_validate_plug. */
int vt_plug_run(const vt_run_config *rc, vt_comm *c, const vt_model *m);

#endif
