/* report.c — the run report written as JSON and printed as a table. */
#include "report/report.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "util/error.h"

/* The structure before and after: sizes, per-layer units, what was removed. */
static void put_structure(json_t *o, const vt_config *b, const vt_config *a, double ctx) {
    json_t *layers = json_array();
    json_object_set_new(o, "params_before", json_integer((json_int_t)vt_params_total(b)));
    json_object_set_new(o, "params_after", json_integer((json_int_t)vt_params_total(a)));
    json_object_set_new(o, "params_non_embedding_before", json_integer((json_int_t)vt_params_non_embedding(b)));
    json_object_set_new(o, "params_non_embedding_after", json_integer((json_int_t)vt_params_non_embedding(a)));
    json_object_set_new(o, "flops_per_token_before", json_real(vt_flops_per_token(b, ctx)));
    json_object_set_new(o, "flops_per_token_after", json_real(vt_flops_per_token(a, ctx)));
    json_object_set_new(o, "hidden_before", json_integer(b->dim));
    json_object_set_new(o, "hidden_kept", json_integer(a->dim));
    int removed_blocks = 0;
    json_t *removed_layers = json_array();
    for (int l = 0; l < b->n_layers; l++) {
        const vt_layer_shape *s = &a->layers[l], *s0 = &b->layers[l];
        json_t *e = json_object();
        json_object_set_new(e, "layer", json_integer(l));
        json_object_set_new(e, "heads", json_integer(s->n_heads));
        json_object_set_new(e, "kv_heads", json_integer(s->n_kv_heads));
        json_object_set_new(e, "ffn", json_integer(s->ffn));
        json_object_set_new(e, "attention", json_boolean(s->n_heads > 0));
        json_object_set_new(e, "mlp", json_boolean(s->ffn > 0));
        json_object_set_new(e, "heads_before", json_integer(s0->n_heads));
        json_object_set_new(e, "kv_heads_before", json_integer(s0->n_kv_heads));
        json_object_set_new(e, "ffn_before", json_integer(s0->ffn));
        json_array_append_new(layers, e);
        removed_blocks += (s0->n_heads && !s->n_heads) + (s0->ffn && !s->ffn);
        if (!s->n_heads && !s->ffn) json_array_append_new(removed_layers, json_integer(l));
    }
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "removed_blocks", json_integer(removed_blocks));
    json_object_set_new(o, "removed_layers", removed_layers);
}

/* The training curve, one entry per record ("step" counts steps done). */
static json_t *losses_json(const vt_train_record *records, size_t n) {
    json_t *curve = json_array();
    for (size_t i = 0; i < n; i++) {
        const vt_train_record *r = &records[i];
        json_t *e = json_object();
        json_object_set_new(e, "phase", json_string(r->phase ? "finetune" : "masks"));
        json_object_set_new(e, "step", json_integer(r->step + 1));
        json_object_set_new(e, "kd", json_real(r->kd));
        json_object_set_new(e, "kl", json_real(r->kl));
        json_object_set_new(e, "budget", json_real(r->budget));
        json_object_set_new(e, "size", json_real(r->hard_size));
        json_object_set_new(e, "expected_size", json_real(r->size));
        json_object_set_new(e, "beta", json_real(r->beta));
        json_object_set_new(e, "target", json_real(r->target));
        json_object_set_new(e, "seconds", json_real(r->seconds));
        json_array_append_new(curve, e);
    }
    return curve;
}

static json_t *real_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* The re-fit: per layer, each projection's relative output error before and after it. */
static json_t *refit_json(const vt_run_report *r) {
    static const char *const names[VT_REFIT_SLOTS] = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"};
    json_t *o = json_object(), *layers = json_array();
    json_object_set_new(o, "method", json_string(r->reconstruct));
    json_object_set_new(o, "seconds", json_real(r->refit_seconds));
    for (int l = 0; r->refit && l < r->before->n_layers; l++) {
        json_t *e = json_object();
        json_object_set_new(e, "layer", json_integer(l));
        for (int k = 0; k < VT_REFIT_SLOTS; k++) {
            const vt_refit_stat *st = &r->refit[l * VT_REFIT_SLOTS + k];
            if (!st->done) continue;
            json_t *p = json_object();
            json_object_set_new(p, "error_before", json_real(st->err_before));
            json_object_set_new(p, "error_after", json_real(st->err_after));
            json_object_set_new(p, "retries", json_integer(st->retries));
            json_object_set_new(e, names[k], p);
        }
        json_array_append_new(layers, e);
    }
    json_object_set_new(o, "layers", layers);
    return o;
}

double vt_report_stage_ppl(const vt_run_report *r, int stage) {
    int last = r->recover ? 2 : r->reconstruct ? 1 : 0;
    if (stage == last) return r->ppl_after;
    double v = stage == 0 ? r->ppl_masks : r->ppl_refit;
    return v > 0 ? v : NAN;
}

static json_t *stage_json(const char *name, double seconds, long tokens, double ppl) {
    json_t *e = json_object();
    json_object_set_new(e, "stage", json_string(name));
    json_object_set_new(e, "seconds", json_real(seconds));
    json_object_set_new(e, "tokens", json_integer(tokens));
    json_object_set_new(e, "ppl", real_or_null(ppl));
    return e;
}

/* Each stage that ran: its time, the tokens it trained on, the perplexity after it. */
static json_t *stages_json(const vt_run_report *r) {
    json_t *a = json_array();
    json_array_append_new(a, stage_json("masks", r->prune_seconds, r->train_tokens - r->recover_tokens,
                                        vt_report_stage_ppl(r, 0)));
    if (r->reconstruct) json_array_append_new(a, stage_json("refit", r->refit_seconds, 0, vt_report_stage_ppl(r, 1)));
    if (r->recover)
        json_array_append_new(a, stage_json("recover", r->recover_seconds, r->recover_tokens, vt_report_stage_ppl(r, 2)));
    return a;
}

static json_t *recover_json(const vt_run_report *r) {
    json_t *o = json_object();
    json_object_set_new(o, "method", json_string(r->recover));
    json_object_set_new(o, "steps", json_integer(r->recover_steps));
    json_object_set_new(o, "tokens", json_integer(r->recover_tokens));
    json_object_set_new(o, "seconds", json_real(r->recover_seconds));
    json_object_set_new(o, "first_loss", json_real(r->recover_loss[0]));
    json_object_set_new(o, "last_loss", json_real(r->recover_loss[1]));
    return o;
}

/* The run: method, budget, perplexities, work and time. */
static void put_run(json_t *o, const vt_run_report *r) {
    json_object_set_new(o, "method", json_string(r->method));
    if (r->variant) json_object_set_new(o, "variant", json_string(r->variant));
    json_t *budget = json_object();
    json_object_set_new(budget, "kind", json_string(r->budget_kind));
    json_object_set_new(budget, "target", json_real(r->budget_target));
    json_object_set_new(budget, "achieved", json_real(r->budget_achieved));
    json_object_set_new(o, "budget", budget);
    json_object_set_new(o, "ppl_before", real_or_null(r->ppl_before));
    json_object_set_new(o, "ppl_masks", r->ppl_masks > 0 ? json_real(r->ppl_masks) : json_null());
    json_object_set_new(o, "ppl_after", real_or_null(r->ppl_after));
    json_object_set_new(o, "eval_window", json_integer(r->eval_window));
    json_object_set_new(o, "steps", json_integer(r->steps));
    json_object_set_new(o, "tokens", json_integer(r->tokens));
    json_object_set_new(o, "train_tokens", json_integer(r->train_tokens));
    json_object_set_new(o, "prune_seconds", json_real(r->prune_seconds));
    json_object_set_new(o, "wall_seconds", json_real(r->wall_seconds));
    json_object_set_new(o, "stages", stages_json(r));
    if (r->recover) {
        json_object_set_new(o, "ppl_refit", r->ppl_refit > 0 ? json_real(r->ppl_refit) : json_null());
        json_object_set_new(o, "recover", recover_json(r));
    }
    if (r->n_losses) {
        json_object_set_new(o, "losses", losses_json(r->losses, r->n_losses));
        json_object_set_new(o, "final_kd", json_real(r->final_kd));
    }
    if (r->reconstruct) json_object_set_new(o, "reconstruct", refit_json(r));
}

int vt_report_write_json(const vt_run_report *r, const char *path) {
    json_t *o = json_object(), *config = NULL;
    if (!o) return vt_fail("%s: out of memory building the report", path);
    put_structure(o, r->before, r->after, r->ctx);
    put_run(o, r);
    /* The configuration comes as text from the run (report/ sits below run/); as a value, so the
     * report's indentation and number format apply to it too. */
    if (r->config_json) {
        json_error_t err;
        if (!(config = json_loads(r->config_json, 0, &err))) {
            json_decref(o);
            return vt_fail("%s: the run configuration is not JSON: %s", path, err.text);
        }
        json_object_set_new(o, "config", config);
    }
    int bad = json_dump_file(o, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0;
    json_decref(o);
    if (bad) {
        unlink(path);
        return vt_fail("%s: cannot write the report", path);
    }
    return 0;
}

void vt_report_print_table(FILE *out, const vt_run_report *r) {
    const vt_config *b = r->before, *a = r->after;
    size_t pb = vt_params_total(b), pa = vt_params_total(a);
    fprintf(out, "\n%-22s %14s %14s\n", "", "before", "after");
    fprintf(out, "%-22s %14zu %14zu  (%.1f%%)\n", "parameters", pb, pa, 100.0 * (double)pa / (double)pb);
    fprintf(out, "%-22s %14zu %14zu\n", "non-embedding params", vt_params_non_embedding(b), vt_params_non_embedding(a));
    fprintf(out, "%-22s %14d %14d\n", "hidden dims", b->dim, a->dim);
    if (!isnan(r->ppl_before)) fprintf(out, "%-22s %14.4f %14.4f\n", "perplexity", r->ppl_before, r->ppl_after);
    if (r->ppl_masks > 0) fprintf(out, "%-22s %14s %14.4f  (before the re-fit and recovery)\n",
                                  "perplexity, masks only", "", r->ppl_masks);
    if (r->ppl_refit > 0) fprintf(out, "%-22s %14s %14.4f  (before the recovery)\n", "perplexity, re-fitted", "",
                                  r->ppl_refit);
    fprintf(out, "\n%-6s %12s %12s %14s\n", "layer", "heads", "kv heads", "ffn");
    for (int l = 0; l < b->n_layers; l++) {
        const vt_layer_shape *s = &a->layers[l], *s0 = &b->layers[l];
        char h[32], k[32], f[32];
        snprintf(h, sizeof h, "%d -> %d", s0->n_heads, s->n_heads);
        snprintf(k, sizeof k, "%d -> %d", s0->n_kv_heads, s->n_kv_heads);
        snprintf(f, sizeof f, "%d -> %d", s0->ffn, s->ffn);
        fprintf(out, "%-6d %12s %12s %14s%s\n", l, h, k, f, (!s->n_heads && !s->ffn) ? "  (layer removed)" : "");
    }
}
