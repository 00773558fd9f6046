/* report.c — building, writing and printing the run report. */
#include "report/report.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "util/error.h"

json_t *vt_report_structure(const vt_config *b, const vt_config *a, double ctx) {
    json_t *o = json_object(), *layers = json_array();
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
    return o;
}

int vt_report_write(json_t *obj, const char *path) {
    if (json_dump_file(obj, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
        unlink(path);
        return vt_fail("%s: cannot write the report", path);
    }
    return 0;
}

void vt_report_print_table(FILE *out, const vt_config *b, const vt_config *a, double ppl_before, double ppl_after) {
    size_t pb = vt_params_total(b), pa = vt_params_total(a);
    fprintf(out, "\n%-22s %14s %14s\n", "", "before", "after");
    fprintf(out, "%-22s %14zu %14zu  (%.1f%%)\n", "parameters", pb, pa, 100.0 * (double)pa / (double)pb);
    fprintf(out, "%-22s %14zu %14zu\n", "non-embedding params", vt_params_non_embedding(b), vt_params_non_embedding(a));
    fprintf(out, "%-22s %14d %14d\n", "hidden dims", b->dim, a->dim);
    if (!isnan(ppl_before)) fprintf(out, "%-22s %14.4f %14.4f\n", "perplexity", ppl_before, ppl_after);
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
