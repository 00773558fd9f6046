/* cmd_convert.c — `vtrans-dist convert`: any readable checkpoint to an HF directory in F32, F16 or
 * BF16, single-file or sharded, with the tokenizer copied; or (--to gguf) to one GGUF file in F32,
 * F16, BF16 or Q8_0 with the tokenizer embedded. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/args.h"
#include "cli/commands.h"
#include "util/dtype.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "io/gguf_model.h"
#include "io/gguf_writer.h"
#include "io/hf_writer.h"
#include "nn/model.h"
#include "io/tokenizer.h"

/* The model's tokenizer: --tokenizer, the one embedded in a GGUF model, or one found beside it. */
static int load_tokenizer(const char *model_path, const char *given, vt_tokenizer *tok) {
    char path[VT_PATH_MAX];
    if (!given && vt_gguf_is_file(model_path)) return vt_gguf_tokenizer_load(tok, model_path);
    if (vt_tokenizer_locate(model_path, given, path, sizeof path)) return -1;
    return vt_tokenizer_load(tok, path);
}

static int convert_gguf(vt_opt *opts, int n) {
    uint32_t type;
    if (vt_args_require(opts, n, "model") || vt_args_require(opts, n, "out") ||
        vt_ggml_type_parse(vt_args_get(opts, n, "dtype"), &type))
        return -1;
    if (strcmp(vt_args_get(opts, n, "shard-size"), "0")) return vt_fail("--shard-size: a GGUF file is never sharded");
    const char *model_path = vt_args_get(opts, n, "model"), *out = vt_args_get(opts, n, "out");
    vt_tokenizer tok;
    vt_model m;
    if (load_tokenizer(model_path, vt_args_get(opts, n, "tokenizer"), &tok))
        return vt_fail_context("GGUF embeds the tokenizer");
    int rc = vt_model_load(&m, model_path, vt_load_all());
    if (rc == 0) {
        rc = vt_gguf_write(&m, &tok, type, out, 0);
        vt_model_free(&m);
    }
    vt_tokenizer_free(&tok);
    if (rc == 0) fprintf(stderr, "wrote %s (GGUF, %s)\n", out, vt_ggml_type_name(type));
    return rc;
}

int vt_cmd_convert(int argc, char **argv) {
    vt_opt opts[] = {
        {"model", 1, "checkpoint to read: llama2.c .bin, HF directory or GGUF file", NULL, 0},
        {"out", 1, "HF checkpoint directory (must not exist or be empty), or the .gguf file, to create", NULL, 0},
        {"to", 1, "output format: hf or gguf", "hf", 0},
        {"dtype", 1, "stored type: f32, f16 or bf16 (gguf also q8_0)", "f32", 0},
        {"shard-size", 1, "largest shard in bytes (K/M/G suffixes); 0 = one model.safetensors", "0", 0},
        {"tokenizer", 1, "tokenizer.json or tokenizer.bin to write with it (default: found next to the model)", NULL, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), help;
    if (vt_args_parse(opts, n, argc, argv, 1, &help)) return vt_cmd_fail("convert");
    if (help) {
        vt_args_usage("convert",
                      "--model PATH --out DIR|FILE [--to hf|gguf] [--dtype f32|f16|bf16|q8_0] [--shard-size BYTES] "
                      "[--tokenizer PATH]", opts, n);
        return 0;
    }
    const char *to = vt_args_get(opts, n, "to");
    if (!strcmp(to, "gguf")) return convert_gguf(opts, n) ? vt_cmd_fail("convert") : 0;
    if (strcmp(to, "hf")) {
        vt_fail("--to: '%s' is not an output format (hf or gguf)", to);
        return vt_cmd_fail("convert");
    }
    vt_dtype dtype;
    uint64_t shard_bytes = 0;
    if (vt_args_require(opts, n, "model") || vt_args_require(opts, n, "out") ||
        vt_dtype_parse(vt_args_get(opts, n, "dtype"), &dtype) ||
        (vt_parse_size(vt_args_get(opts, n, "shard-size"), &shard_bytes) &&
         vt_fail("--shard-size: '%s' is not a size (bytes, or a K, M or G suffix)", vt_args_get(opts, n, "shard-size"))))
        return vt_cmd_fail("convert");
    const char *model_path = vt_args_get(opts, n, "model"), *out = vt_args_get(opts, n, "out");
    const char *given = vt_args_get(opts, n, "tokenizer");
    if (given && !vt_path_exists(given)) {
        vt_fail("%s: tokenizer not found", given);
        return vt_cmd_fail("convert");
    }
    vt_model m;
    if (vt_model_load(&m, model_path, vt_load_all())) return vt_cmd_fail("convert");
    char tok_path[VT_PATH_MAX];
    const char *tokenizer = NULL;
    if (vt_tokenizer_locate(model_path, given, tok_path, sizeof tok_path) == 0) tokenizer = tok_path;
    else if (!given) fprintf(stderr, "vtrans-dist convert: note: %s; writing no tokenizer\n", vt_error());
    int rc = tokenizer || !given ? vt_hf_write_from(&m, out, dtype, (size_t)shard_bytes, tokenizer, model_path) : -1;
    vt_model_free(&m);
    if (rc) return vt_cmd_fail("convert");
    fprintf(stderr, "wrote %s (%s%s%s)\n", out, vt_dtype_name(dtype), tokenizer ? ", tokenizer " : "",
            tokenizer ? tokenizer : "");
    return 0;
}
