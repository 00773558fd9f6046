/* test_hf_config.c — config.json: per-layer sizes round trip, defaults, and errors that name the
 * line (invalid JSON) or the key (missing, ill-typed, inconsistent). */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "io/hf_config.h"

static char path[VT_PATH_MAX]; /* config.json in the group's directory */

static int setup(void **state) {
    if (tu_group_setup(state)) return -1;
    snprintf(path, sizeof path, "%s", tu_in_dir("config.json"));
    return 0;
}

static void write_text(const char *text) { assert_int_equal(tu_write_file(path, text, strlen(text)), 0); }

static char *read_text(void) {
    static char buf[8192];
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Reading path fails and the message names the file and the fragments. */
static void expect_error(const char *frag1, const char *frag2) {
    vt_config c;
    vt_error_clear();
    assert_int_equal(vt_hf_config_read(path, &c, NULL), -1);
    const char *msg = vt_error();
    if (!strstr(msg, path) || !strstr(msg, frag1) || (frag2 && !strstr(msg, frag2)))
        fail_msg("error '%s' should name %s, '%s' and '%s'", msg, path, frag1, frag2 ? frag2 : "");
}

static const char *base =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 64,\n"
    " \"intermediate_size\": 172, \"num_attention_heads\": 8, \"num_hidden_layers\": 2,\n"
    " \"rms_norm_eps\": 1e-05, \"vocab_size\": 512, \"max_position_embeddings\": 512%s}";

static void write_base(const char *extra) {
    char text[4096];
    snprintf(text, sizeof text, base, extra);
    write_text(text);
}

static void test_pruned_round_trip(void **state) {
    (void)state;
    vt_config c, r;
    tu_small_config(&c);
    c.n_layers = 3;
    free(c.layers);
    vt_config_init_dense(&c);
    c.tied = 0;
    c.rope_theta = 500000.0f;
    c.layers[0] = (vt_layer_shape){2, 1, 10};
    c.layers[1] = (vt_layer_shape){0, 0, 24}; /* attention removed */
    c.layers[2] = (vt_layer_shape){4, 2, 0};  /* MLP removed */
    c.attn_bias = 1; /* a re-fit with output biases (reconstruct.bias) */
    c.mlp_bias = 1;
    assert_int_equal(vt_hf_config_write(path, &c, VT_BF16), 0);
    const char *text = read_text();
    assert_non_null(strstr(text, "\"num_attention_heads_per_layer\": [\n    2,\n    0,\n    4\n  ]"));
    assert_non_null(strstr(text, "\"rms_norm_eps\": 1e-5,"));
    assert_non_null(strstr(text, "\"torch_dtype\": \"bfloat16\""));
    int dt;
    assert_int_equal(vt_hf_config_read(path, &r, &dt), 0);
    assert_int_equal(dt, VT_BF16);
    assert_int_equal(r.dim, c.dim);
    assert_int_equal(r.n_layers, 3);
    assert_int_equal(r.n_heads, c.n_heads);
    assert_int_equal(r.n_kv_heads, c.n_kv_heads);
    assert_int_equal(r.head_dim, c.head_dim);
    assert_int_equal(r.ffn_dim, c.ffn_dim);
    assert_int_equal(r.vocab, c.vocab);
    assert_int_equal(r.seq_len, c.seq_len);
    assert_true(r.norm_eps == c.norm_eps);
    assert_true(r.rope_theta == c.rope_theta);
    assert_int_equal(r.tied, 0);
    assert_true(r.attn_bias == 1 && r.mlp_bias == 1);
    assert_int_equal(r.rope, VT_ROPE_HALF); /* HF directories are rotate-half */
    for (int l = 0; l < 3; l++) {
        assert_int_equal(r.layers[l].n_heads, c.layers[l].n_heads);
        assert_int_equal(r.layers[l].n_kv_heads, c.layers[l].n_kv_heads);
        assert_int_equal(r.layers[l].ffn, c.layers[l].ffn);
    }
    vt_config_free(&r);
    vt_config_free(&c);
}

static void test_dense_has_no_per_layer_keys(void **state) {
    (void)state;
    vt_config c, r;
    tu_small_config(&c);
    assert_int_equal(vt_hf_config_write(path, &c, VT_F32), 0);
    const char *text = read_text();
    assert_null(strstr(text, "_per_layer"));
    assert_non_null(strstr(text, "\"tie_word_embeddings\": true"));
    assert_int_equal(vt_hf_config_read(path, &r, NULL), 0);
    assert_int_equal(vt_config_is_dense(&r), 1);
    assert_int_equal(r.tied, 1);
    vt_config_free(&r);
    vt_config_free(&c);
}

static void test_defaults(void **state) {
    (void)state;
    vt_config c;
    int dt;
    write_base("");
    assert_int_equal(vt_hf_config_read(path, &c, &dt), 0);
    assert_int_equal(dt, -1);
    assert_int_equal(c.n_kv_heads, 8);
    assert_int_equal(c.head_dim, 8);
    assert_true(c.rope_theta == 10000.0f);
    assert_int_equal(c.tied, 0);
    assert_int_equal(c.layers[1].ffn, 172);
    vt_config_free(&c);
    write_base(", \"head_dim\": 16, \"num_key_value_heads\": 2, \"rope_theta\": 10000, \"torch_dtype\": \"float16\"");
    assert_int_equal(vt_hf_config_read(path, &c, &dt), 0);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.n_kv_heads, 2);
    assert_int_equal(c.layers[0].n_kv_heads, 2);
    assert_int_equal(dt, VT_F16);
    vt_config_free(&c);
}

static void test_invalid_json_names_line(void **state) {
    (void)state;
    write_text("{\n  \"hidden_size\": 64,\n  \"vocab_size\": oops\n}\n");
    expect_error("invalid JSON", "line 3");
}

static void test_missing_and_ill_typed_keys(void **state) {
    (void)state;
    write_text("{\"hidden_size\": 64, \"intermediate_size\": 172, \"num_attention_heads\": 8, \"num_hidden_layers\": 2,"
               " \"rms_norm_eps\": 1e-05, \"max_position_embeddings\": 512}");
    expect_error("missing key \"vocab_size\"", NULL);
    write_text("{\"hidden_size\": \"64\"}");
    expect_error("\"hidden_size\"", "must be an integer");
    write_base(", \"tie_word_embeddings\": 1");
    expect_error("\"tie_word_embeddings\"", "boolean");
    write_base(", \"hidden_act\": \"gelu\"");
    expect_error("hidden_act", "gelu");
    write_base(", \"rope_scaling\": {\"type\": \"linear\"}");
    expect_error("rope_scaling", NULL);
    write_base(", \"num_key_value_heads\": 3");
    expect_error("8 attention heads", "3 key/value heads");
}

static void expect_reads(const char *extra) {
    vt_config c;
    write_base(extra);
    if (vt_hf_config_read(path, &c, NULL)) fail_msg("config with '%s' should read: %s", extra, vt_error());
    vt_config_free(&c);
}

/* Keys that change the computation are refused naming the key (and the file); their neutral
 * values read. */
static void test_computation_keys(void **state) {
    (void)state;
    write_base(", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}");
    expect_error("\"rope_scaling\"", "llama3");
    write_base(", \"partial_rotary_factor\": 0.5");
    expect_error("\"partial_rotary_factor\" is 0.5", NULL);
    write_base(", \"attention_bias\": 1");
    expect_error("\"attention_bias\"", "boolean");
    expect_reads(", \"rope_scaling\": null, \"attention_bias\": false, \"mlp_bias\": false, \"hidden_act\": \"silu\"");
    expect_reads(", \"rope_scaling\": {\"rope_type\": \"default\"}, \"partial_rotary_factor\": 1.0");
    /* head_dim other than hidden / heads is computed as given (q/k/v have heads x head_dim rows). */
    vt_config c;
    /* biases (LlamaConfig's attention_bias / mlp_bias) read into the config, absent = false */
    write_base(", \"attention_bias\": true, \"mlp_bias\": false");
    assert_int_equal(vt_hf_config_read(path, &c, NULL), 0);
    assert_true(c.attn_bias == 1 && c.mlp_bias == 0);
    vt_config_free(&c);
    write_base(", \"mlp_bias\": true");
    assert_int_equal(vt_hf_config_read(path, &c, NULL), 0);
    assert_true(c.attn_bias == 0 && c.mlp_bias == 1);
    vt_config_free(&c);
    write_base(", \"head_dim\": 16, \"rope_theta\": 500000.0");
    assert_int_equal(vt_hf_config_read(path, &c, NULL), 0);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.rope_theta == 500000.0f);
    vt_config_free(&c);
}

static void test_bad_per_layer_arrays(void **state) {
    (void)state;
    write_base(", \"intermediate_size_per_layer\": [10]");
    expect_error("\"intermediate_size_per_layer\"", "has 1 entries but num_hidden_layers is 2");
    write_base(", \"intermediate_size_per_layer\": [10, -1]");
    expect_error("\"intermediate_size_per_layer\" entry 1", NULL);
    write_base(", \"num_attention_heads_per_layer\": [8, 0]");
    expect_error("\"num_attention_heads_per_layer\"", "together");
    write_base(", \"num_attention_heads_per_layer\": [8, 0], \"num_key_value_heads_per_layer\": [8, 2]");
    expect_error("layer 1", NULL);
    write_base(", \"num_attention_heads_per_layer\": [6, 0], \"num_key_value_heads_per_layer\": [3, 0],"
               " \"intermediate_size_per_layer\": [0, 100]");
    vt_config c;
    assert_int_equal(vt_hf_config_read(path, &c, NULL), 0);
    assert_int_equal(c.layers[0].n_heads, 6);
    assert_int_equal(c.layers[0].ffn, 0);
    assert_int_equal(c.layers[1].n_heads, 0);
    assert_int_equal(c.layers[1].ffn, 100);
    assert_int_equal(vt_config_is_dense(&c), 0);
    vt_config_free(&c);
}

/* A 250-byte config.json declaring 54 million layers allocated 650 MB of per-layer table before
 * anything could refuse it (found by fuzz_hf_config); the count is bounded first. */
static void test_layer_count_bounded(void **state) {
    (void)state;
    static const char *fmt = "{\"hidden_size\": 64, \"intermediate_size\": 172, \"num_attention_heads\": 8, "
                             "\"num_hidden_layers\": %d, \"vocab_size\": 512, \"rms_norm_eps\": 1e-05, "
                             "\"max_position_embeddings\": 512}";
    char text[512];
    snprintf(text, sizeof text, fmt, 54444444);
    write_text(text);
    expect_error("num_hidden_layers 54444444 is out of range", "(1 to 4096)");
    snprintf(text, sizeof text, fmt, 0);
    write_text(text);
    expect_error("num_hidden_layers 0 is out of range", NULL);
    snprintf(text, sizeof text, fmt, VT_MAX_LAYERS);
    write_text(text);
    vt_config c;
    assert_int_equal(vt_hf_config_read(path, &c, NULL), 0);
    assert_int_equal(c.n_layers, VT_MAX_LAYERS);
    vt_config_free(&c);
    /* the backstop every reader passes through */
    vt_config big = {.n_layers = VT_MAX_LAYERS + 1};
    assert_int_equal(vt_config_init_dense(&big), -1);
    assert_non_null(strstr(vt_error(), "4097 layers is more than the 4096 supported"));
    assert_null(big.layers);
}

static void test_missing_file(void **state) {
    (void)state;
    remove(path);
    expect_error("cannot open", NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pruned_round_trip),
        cmocka_unit_test(test_dense_has_no_per_layer_keys),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_invalid_json_names_line),
        cmocka_unit_test(test_missing_and_ill_typed_keys),
        cmocka_unit_test(test_computation_keys),
        cmocka_unit_test(test_bad_per_layer_arrays),
        cmocka_unit_test(test_layer_count_bounded),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, setup, tu_group_teardown);
}
