/* report.h — the run report vtrans_report.json: sizes before and after, per-layer structure,
 * perplexities, method, steps, tokens, time, losses. */
#ifndef VT_REPORT_H
#define VT_REPORT_H

#include <jansson.h>

#include "nn/model.h"

/* {"params_before", "params_after", "params_non_embedding_before/after", "flops_per_token_before/
 * after" (at context ctx), "hidden_before", "hidden_kept", "layers": [{"layer", "heads", "kv_heads",
 * "ffn", "attention", "mlp", "heads_before", "kv_heads_before", "ffn_before"}], "removed_blocks",
 * "removed_layers"}. */
json_t *vt_report_structure(const vt_config *before, const vt_config *after, double ctx);

/* Writes obj as indented JSON to path, directly (prune writes it into an output directory that
 * appears only when complete; a failed write removes the file). */
int vt_report_write(json_t *obj, const char *path);

/* Prints the before/after table a person reads at the end of a run. */
void vt_report_print_table(FILE *out, const vt_config *before, const vt_config *after, double ppl_before,
                           double ppl_after);

#endif
