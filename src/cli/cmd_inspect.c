/* cmd_inspect.c — `vtrans-dist inspect`: architecture, per-layer sizes, stored dtype and parameter
 * counts of a checkpoint, as text or one JSON object. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "util/args.h"
#include "io/checkpoint_info.h"
#include "cli/commands.h"
#include "util/error.h"

static const char *format_name(vt_ckpt_format f) {
    return f == VT_CKPT_HF ? "hf-safetensors" : f == VT_CKPT_GGUF ? "gguf" : "llama2c-v0";
}

static const char *rope_name(vt_rope_layout r) { return r == VT_ROPE_HALF ? "rotate-half" : "interleaved"; }

static void print_text(const char *path, const vt_checkpoint_info *info) {
    const vt_config *c = &info->cfg;
    char dtypes[64];
    vt_checkpoint_dtypes_str(info, dtypes, sizeof dtypes);
    printf("model            %s\n", path);
    printf("format           %s (%d weight file%s, %d tensors, %.2f MB)\n",
           info->format == VT_CKPT_HF ? "HF safetensors" : info->format == VT_CKPT_GGUF ? "GGUF" : "llama2.c v0 .bin",
           info->n_files,
           info->n_files == 1 ? "" : "s", info->n_tensors, info->tensor_bytes / 1e6);
    int kinds = 0;
    for (int t = 0; t < VT_N_DTYPES; t++) kinds += info->dtype_tensors[t] > 0;
    kinds += info->q8_0_tensors > 0;
    printf("dtype            %s", dtypes);
    if (kinds > 1)
        printf(" (F32 %d, F16 %d, BF16 %d, Q8_0 %d tensors)", info->dtype_tensors[VT_F32], info->dtype_tensors[VT_F16],
               info->dtype_tensors[VT_BF16], info->q8_0_tensors);
    printf("\n");
    printf("hidden size      %d\n", c->dim);
    printf("layers           %d\n", c->n_layers);
    printf("heads            %d\n", c->n_heads);
    printf("kv heads         %d\n", c->n_kv_heads);
    printf("head dim         %d\n", c->head_dim);
    printf("ffn size         %d\n", c->ffn_dim);
    printf("vocab            %d\n", c->vocab);
    printf("max positions    %d\n", c->seq_len);
    printf("rms norm eps     %g\n", c->norm_eps);
    printf("rope theta       %g\n", c->rope_theta);
    printf("rope layout      %s\n", rope_name(c->rope));
    printf("classifier       %s\n", c->tied ? "tied to the embedding" : "separate");
    printf("\n%5s %6s %6s %8s %12s\n", "layer", "heads", "kv", "ffn", "params");
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        printf("%5d %6d %6d %8d %12zu\n", l, s->n_heads, s->n_kv_heads, s->ffn, vt_layer_params(c, l));
    }
    printf("\nparameters       %zu total, %zu non-embedding\n", vt_params_total(c), vt_params_non_embedding(c));
}

static int print_json(const char *path, const vt_checkpoint_info *info) {
    const vt_config *c = &info->cfg;
    json_t *o = json_object(), *dt = json_object(), *layers = json_array();
    for (int t = 0; t < VT_N_DTYPES; t++)
        if (info->dtype_tensors[t])
            json_object_set_new(dt, vt_dtype_name((vt_dtype)t), json_integer(info->dtype_tensors[t]));
    if (info->q8_0_tensors) json_object_set_new(dt, "Q8_0", json_integer(info->q8_0_tensors));
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        json_t *e = json_object();
        json_object_set_new(e, "layer", json_integer(l));
        json_object_set_new(e, "heads", json_integer(s->n_heads));
        json_object_set_new(e, "kv_heads", json_integer(s->n_kv_heads));
        json_object_set_new(e, "ffn", json_integer(s->ffn));
        json_object_set_new(e, "params", json_integer((json_int_t)vt_layer_params(c, l)));
        json_array_append_new(layers, e);
    }
    json_object_set_new(o, "model", json_string(path));
    json_object_set_new(o, "format", json_string(format_name(info->format)));
    json_object_set_new(o, "files", json_integer(info->n_files));
    json_object_set_new(o, "tensors", json_integer(info->n_tensors));
    json_object_set_new(o, "tensor_bytes", json_integer((json_int_t)info->tensor_bytes));
    json_object_set_new(o, "dtypes", dt);
    json_object_set_new(o, "hidden_size", json_integer(c->dim));
    json_object_set_new(o, "num_layers", json_integer(c->n_layers));
    json_object_set_new(o, "num_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_kv_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "ffn_size", json_integer(c->ffn_dim));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    json_object_set_new(o, "max_positions", json_integer(c->seq_len));
    json_object_set_new(o, "rms_norm_eps", json_real(c->norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "rope_layout", json_string(rope_name(c->rope)));
    json_object_set_new(o, "tied", json_boolean(c->tied));
    json_object_set_new(o, "layers", layers);
    json_object_set_new(o, "params_total", json_integer((json_int_t)vt_params_total(c)));
    json_object_set_new(o, "params_non_embedding", json_integer((json_int_t)vt_params_non_embedding(c)));
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return vt_fail("out of memory formatting JSON");
    printf("%s\n", text);
    free(text);
    return 0;
}

int vt_cmd_inspect(int argc, char **argv) {
    vt_opt opts[] = {
        {"model", 1, "checkpoint: llama2.c .bin, HF directory or GGUF file", NULL, 0},
        {"json", 0, "print one JSON object", NULL, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), help;
    if (vt_args_parse(opts, n, argc, argv, 1, &help)) return vt_cmd_fail("inspect");
    if (help) {
        vt_args_usage("inspect", "--model PATH [--json]", opts, n);
        return 0;
    }
    if (vt_args_require(opts, n, "model")) return vt_cmd_fail("inspect");
    const char *path = vt_args_get(opts, n, "model");
    vt_checkpoint_info info;
    if (vt_checkpoint_info_read(path, &info)) return vt_cmd_fail("inspect");
    int rc = 0;
    if (vt_args_get(opts, n, "json")) rc = print_json(path, &info);
    else print_text(path, &info);
    vt_checkpoint_info_free(&info);
    return rc ? vt_cmd_fail("inspect") : 0;
}
