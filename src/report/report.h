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
    double ppl_masks;                /* the pruned model before its re-fit and recovery; NAN or 0: neither ran, or
                                      * not evaluated */
    double ppl_refit;                /* after the re-fit, before the recovery; NAN or 0: not both ran, or not
                                      * evaluated */
    int eval_window;
    long steps, tokens;
    long train_tokens;               /* every token trained on (mask phase, fine-tuning, recovery) */
    const char *reconstruct;         /* the re-fit's method ("lsq"), NULL when none ran */
    const vt_refit_stat *refit;      /* [before->n_layers][VT_REFIT_SLOTS] fits of the re-fit, or NULL */
    double refit_seconds;
    const char *recover;             /* the recovery's method ("lora", "full"), NULL when none ran */
    long recover_steps, recover_tokens;
    double recover_seconds;          /* of the last process (a resumed run: since the resume) */
    double recover_loss[2];          /* its first and last step's loss */
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
 * "train_tokens", "prune_seconds", "wall_seconds", "stages": [{"stage" ("masks", "refit", "recover"),
 * "seconds", "tokens" (trained on), "ppl" (after the stage; null when not evaluated)}] for the
 * stages that ran, with a recovery "ppl_refit" and "recover": {"method", "steps", "tokens",
 * "seconds", "first_loss", "last_loss"}, with a re-fit "reconstruct": {"method", "seconds",
 * "layers": [{"layer", and per projection re-fitted ("qkv_proj", "o_proj", "gate_up_proj",
 * "down_proj") {"error_before", "error_after", "retries"}}]} (relative output errors), with a curve "losses": [{"phase", "step" (steps done), "kd",
 * "kl", "budget", "size", "expected_size", "beta", "target", "seconds"}] and "final_kd", and
 * "config" (r->config_json) when given. docs/FORMATS.md describes them. */
int vt_report_write_json(const vt_run_report *r, const char *path);

/* The perplexity after stage (0 masks, 1 re-fit, 2 recovery): the final one for the last stage
 * that ran, the intermediate evaluation for an earlier one; NAN when not evaluated. */
double vt_report_stage_ppl(const vt_run_report *r, int stage);

/* Prints the before/after table a person reads at the end of a run. */
void vt_report_print_table(FILE *out, const vt_run_report *r);

#endif
