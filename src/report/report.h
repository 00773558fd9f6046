/* report.h — the run report: one struct a pruning run fills, rendered as vtrans_report.json (here),
 * as its picture vtrans_report.svg (report_svg.h) and as the table printed at the end of a run. */
#ifndef VT_REPORT_H
#define VT_REPORT_H

#include <stddef.h>
#include <stdio.h>

#include "nn/model.h"
#include "prune/refit.h"
#include "train/vib_train.h"

/* What a run did. The pointers are borrowed (the report owns nothing). */
typedef struct {
    const vt_config *before, *after; /* the same layers; a removed block has 0 units in after */
    double ctx;                      /* mean context the FLOPs per token are counted at */
    const char *method;              /* "vib", "magnitude", ... */
    const char *variant;             /* VTrans's variant; NULL for the baselines */
    const char *budget_kind;         /* "params" or "flops" */
    double budget_target, budget_achieved; /* fractions of the dense size */
    double ppl_before, ppl_after;    /* NAN when not evaluated */
    double ppl_masks;                /* the pruned model before its re-fit; NAN or 0: no re-fit or not evaluated */
    int eval_window;
    long steps, tokens;
    long train_tokens;               /* every token trained on (mask phase, fine-tuning) */
    const char *reconstruct;         /* the re-fit's method ("lsq"), NULL when none ran */
    const vt_refit_stat *refit;      /* [before->n_layers][VT_REFIT_SLOTS] fits of the re-fit, or NULL */
    double refit_seconds;
    double prune_seconds, wall_seconds;
    const vt_train_record *losses;   /* the training curve in step order; NULL/0 for the baselines */
    size_t n_losses;
    double final_kd;                 /* written with the curve */
    const char *config_json;         /* the run's configuration as JSON text, or NULL */
} vt_run_report;

/* Writes r to path as indented JSON, directly (prune writes it into an output directory that
 * appears only when complete; a failed write removes the file). The keys, in this order:
 * "params_before", "params_after", "params_non_embedding_before/after", "flops_per_token_before/
 * after" (at r->ctx), "hidden_before", "hidden_kept", "layers": [{"layer", "heads", "kv_heads",
 * "ffn", "attention", "mlp", "heads_before", "kv_heads_before", "ffn_before"}], "removed_blocks",
 * "removed_layers", "method", "variant" (VTrans only), "budget": {"kind", "target", "achieved"},
 * "ppl_before", "ppl_masks", "ppl_after" (null when not evaluated), "eval_window", "steps", "tokens",
 * "train_tokens", "prune_seconds", "wall_seconds", with a re-fit "reconstruct": {"method", "seconds",
 * "layers": [{"layer", and per projection re-fitted ("qkv_proj", "o_proj", "gate_up_proj",
 * "down_proj") {"error_before", "error_after", "retries"}}]} (relative output errors), with a curve "losses": [{"phase", "step" (steps done), "kd",
 * "kl", "budget", "size", "expected_size", "beta", "target", "seconds"}] and "final_kd", and
 * "config" (r->config_json) when given. docs/FORMATS.md describes them. */
int vt_report_write_json(const vt_run_report *r, const char *path);

/* Prints the before/after table a person reads at the end of a run. */
void vt_report_print_table(FILE *out, const vt_run_report *r);

#endif
