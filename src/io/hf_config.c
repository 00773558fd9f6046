/* hf_config.c — reads and writes LLaMA config.json (jansson), with per-layer head and FFN sizes. */
#include "io/hf_config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util/error.h"
#include "util/fsutil.h"

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* An integer key; absent: *out = dflt when !required, else an error naming the key. */
static int get_int(const char *path, json_t *root, const char *key, int required, int dflt, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) return vt_fail("%s: missing key \"%s\"", path, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v)) return vt_fail("%s: key \"%s\" must be an integer, not %s", path, key, json_type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < INT_MIN || x > INT_MAX) return vt_fail("%s: key \"%s\" = %lld is out of range", path, key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_number(const char *path, json_t *root, const char *key, int required, double dflt, double *out) {
    json_t *v = json_object_get(root, key);
    if (!v) {
        if (required) return vt_fail("%s: missing key \"%s\"", path, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) return vt_fail("%s: key \"%s\" must be a number, not %s", path, key, json_type_name(v));
    *out = json_number_value(v);
    return 0;
}

/* A string key that, when present, must equal one of the allowed values. */
static int check_string(const char *path, json_t *root, const char *key, const char *allowed) {
    json_t *v = json_object_get(root, key);
    if (!v) return 0;
    if (!json_is_string(v)) return vt_fail("%s: key \"%s\" must be a string, not %s", path, key, json_type_name(v));
    if (strcmp(json_string_value(v), allowed) != 0)
        return vt_fail("%s: \"%s\" is \"%s\"; only \"%s\" is supported", path, key, json_string_value(v), allowed);
    return 0;
}

/* Reads an optional per-layer array of n non-negative ints into field (offset into vt_layer_shape). */
static int get_layer_array(const char *path, json_t *root, const char *key, vt_config *c, size_t field, int *present) {
    json_t *v = json_object_get(root, key);
    *present = v != NULL && !json_is_null(v);
    if (!*present) return 0;
    if (!json_is_array(v)) return vt_fail("%s: key \"%s\" must be an array, not %s", path, key, json_type_name(v));
    if (json_array_size(v) != (size_t)c->n_layers)
        return vt_fail("%s: key \"%s\" has %zu entries but num_hidden_layers is %d", path, key, json_array_size(v),
                       c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        json_t *x = json_array_get(v, (size_t)l);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > INT_MAX)
            return vt_fail("%s: key \"%s\" entry %d must be a non-negative integer", path, key, l);
        *(int *)((char *)&c->layers[l] + field) = (int)json_integer_value(x);
    }
    return 0;
}

/* Keys that would change the computation into one this program does not do are refused, naming the
 * key: another activation, scaled RoPE (a rope_scaling of type "default" is plain RoPE), RoPE on part
 * of each head. Biases (attention_bias, mlp_bias) are read into the config. */
static int refuse_unsupported(const char *path, json_t *root) {
    if (check_string(path, root, "model_type", "llama") || check_string(path, root, "hidden_act", "silu")) return -1;
    json_t *v = json_object_get(root, "rope_scaling");
    if (v && !json_is_null(v)) {
        json_t *type = json_object_get(v, "rope_type");
        if (!type) type = json_object_get(v, "type");
        if (!json_is_string(type) || strcmp(json_string_value(type), "default") != 0)
            return vt_fail("%s: \"rope_scaling\" is set%s%s; scaled RoPE is not supported", path,
                           json_is_string(type) ? " to type " : "", json_is_string(type) ? json_string_value(type) : "");
    }
    double partial = 1.0;
    if (get_number(path, root, "partial_rotary_factor", 0, 1.0, &partial)) return -1;
    if (partial != 1.0)
        return vt_fail("%s: \"partial_rotary_factor\" is %g; RoPE on part of each head is not supported", path, partial);
    return 0;
}

/* attention_bias and mlp_bias (LlamaConfig: absent means false) into c. */
static int parse_biases(const char *path, json_t *root, vt_config *c) {
    const char *keys[] = {"attention_bias", "mlp_bias"};
    int *flags[] = {&c->attn_bias, &c->mlp_bias};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (v && !json_is_boolean(v))
            return vt_fail("%s: key \"%s\" must be a boolean, not %s", path, keys[i], json_type_name(v));
        *flags[i] = json_is_true(v);
    }
    return 0;
}

static int parse_config(const char *path, json_t *root, vt_config *c, int *declared_dtype) {
    if (!json_is_object(root)) return vt_fail("%s: expected a JSON object", path);
    if (refuse_unsupported(path, root)) return -1;
    json_t *v;
    double eps = 0.0, theta = 0.0;
    if (get_int(path, root, "hidden_size", 1, 0, &c->dim) ||
        get_int(path, root, "intermediate_size", 1, 0, &c->ffn_dim) ||
        get_int(path, root, "num_attention_heads", 1, 0, &c->n_heads) ||
        get_int(path, root, "num_hidden_layers", 1, 0, &c->n_layers) ||
        get_int(path, root, "vocab_size", 1, 0, &c->vocab) ||
        get_int(path, root, "max_position_embeddings", 1, 0, &c->seq_len) ||
        get_int(path, root, "num_key_value_heads", 0, c->n_heads, &c->n_kv_heads) || /* default: no GQA */
        get_number(path, root, "rms_norm_eps", 1, 0.0, &eps) ||
        get_number(path, root, "rope_theta", 0, 10000.0, &theta) || parse_biases(path, root, c))
        return -1;
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    if (c->n_heads <= 0) return vt_fail("%s: num_attention_heads must be positive, not %d", path, c->n_heads);
    int dflt_head_dim = c->dim % c->n_heads == 0 ? c->dim / c->n_heads : -1;
    v = json_object_get(root, "head_dim");
    if ((!v || json_is_null(v)) && dflt_head_dim < 0)
        return vt_fail("%s: hidden_size %d is not a multiple of num_attention_heads %d and no \"head_dim\" is given",
                       path, c->dim, c->n_heads);
    if (v && json_is_null(v)) c->head_dim = dflt_head_dim;
    else if (get_int(path, root, "head_dim", 0, dflt_head_dim, &c->head_dim)) return -1;
    v = json_object_get(root, "tie_word_embeddings");
    if (v && !json_is_boolean(v))
        return vt_fail("%s: key \"tie_word_embeddings\" must be a boolean, not %s", path, json_type_name(v));
    c->tied = json_is_true(v);
    c->rope = VT_ROPE_HALF;

    if (declared_dtype) {
        *declared_dtype = -1;
        v = json_object_get(root, "torch_dtype");
        if (!v) v = json_object_get(root, "dtype");
        vt_dtype dt;
        if (json_is_string(v) && vt_dtype_parse(json_string_value(v), &dt) == 0) *declared_dtype = (int)dt;
        vt_error_clear();
    }

    if (c->n_layers <= 0 || c->n_layers > VT_MAX_LAYERS) /* before the per-layer table (found by fuzz_hf_config) */
        return vt_fail("%s: num_hidden_layers %d is out of range (1 to %d)", path, c->n_layers, VT_MAX_LAYERS);
    if (vt_config_init_dense(c)) return -1;
    int heads, kv, ffn;
    if (get_layer_array(path, root, "num_attention_heads_per_layer", c, offsetof(vt_layer_shape, n_heads), &heads) ||
        get_layer_array(path, root, "num_key_value_heads_per_layer", c, offsetof(vt_layer_shape, n_kv_heads), &kv) ||
        get_layer_array(path, root, "intermediate_size_per_layer", c, offsetof(vt_layer_shape, ffn), &ffn))
        return -1;
    if (heads != kv)
        return vt_fail("%s: \"num_attention_heads_per_layer\" and \"num_key_value_heads_per_layer\" must be given "
                       "together", path);
    return vt_config_validate(c, path);
}

int vt_hf_config_read(const char *path, vt_config *c, int *declared_dtype) {
    memset(c, 0, sizeof *c);
    char *text;
    size_t n;
    if (vt_read_file(path, &text, &n)) return -1;
    json_error_t err;
    json_t *root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root) return vt_fail("%s: invalid JSON at line %d, column %d: %s", path, err.line, err.column, err.text);
    int rc = parse_config(path, root, c, declared_dtype);
    json_decref(root);
    if (rc) vt_config_free(c);
    return rc;
}

int vt_config_is_dense(const vt_config *c) {
    for (int l = 0; l < c->n_layers; l++) {
        const vt_layer_shape *s = &c->layers[l];
        if (s->n_heads != c->n_heads || s->n_kv_heads != c->n_kv_heads || s->ffn != c->ffn_dim) return 0;
    }
    return 1;
}

/* The shortest decimal that reads back as the same float, so 1e-5f is written 1e-05, not
 * 9.99999974737875e-06. */
static double short_real(float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

static json_t *layer_array(const vt_config *c, size_t field) {
    json_t *a = json_array();
    for (int l = 0; l < c->n_layers; l++)
        json_array_append_new(a, json_integer(*(const int *)((const char *)&c->layers[l] + field)));
    return a;
}

/* The config.json object for c with torch_dtype = dtype; caller json_decref()s it; NULL (error set)
 * on failure. */
static json_t *config_json(const vt_config *c, vt_dtype dtype) {
    json_t *o = json_object();
    if (!o) {
        vt_fail("out of memory building config.json");
        return NULL;
    }
    json_t *arch = json_array();
    json_array_append_new(arch, json_string("LlamaForCausalLM"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string("llama"));
    json_object_set_new(o, "hidden_size", json_integer(c->dim));
    json_object_set_new(o, "intermediate_size", json_integer(c->ffn_dim));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "rms_norm_eps", json_real(short_real(c->norm_eps)));
    json_object_set_new(o, "rope_theta", json_real(short_real(c->rope_theta)));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->seq_len));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tied));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "attention_bias", json_boolean(c->attn_bias));
    json_object_set_new(o, "mlp_bias", json_boolean(c->mlp_bias));
    json_object_set_new(o, "bos_token_id", json_integer(1));
    json_object_set_new(o, "eos_token_id", json_integer(2));
    json_object_set_new(o, "torch_dtype", json_string(vt_dtype_torch_name(dtype)));
    if (!vt_config_is_dense(c)) {
        json_object_set_new(o, "num_attention_heads_per_layer", layer_array(c, offsetof(vt_layer_shape, n_heads)));
        json_object_set_new(o, "num_key_value_heads_per_layer", layer_array(c, offsetof(vt_layer_shape, n_kv_heads)));
        json_object_set_new(o, "intermediate_size_per_layer", layer_array(c, offsetof(vt_layer_shape, ffn)));
    }
    return o;
}

int vt_hf_config_write(const char *path, const vt_config *c, vt_dtype dtype) {
    json_t *o = config_json(c, dtype);
    if (!o) return -1;
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(o);
    if (!text) return vt_fail("%s: out of memory formatting config.json", path);
    size_t n = strlen(text);
    int rc = 0;
    /* End the file with a newline, as HF does. */
    char *with_nl = vt_malloc(n + 2, "config.json text");
    if (!with_nl) rc = -1;
    else {
        memcpy(with_nl, text, n);
        with_nl[n] = '\n';
        rc = vt_write_file(path, with_nl, n + 1);
    }
    free(with_nl);
    free(text);
    return rc;
}
