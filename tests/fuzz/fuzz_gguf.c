/* fuzz_gguf.c — a GGUF file: the container (header, key/values, tensor infos, data), every
 * key/value read as the loaders read them, the LLaMA config, the weights and the embedded
 * tokenizer. With VT_FUZZ_WRITE_SEED=dir it writes small seeds of the tiny test model (F32 and
 * BF16, with a 32-piece vocabulary) into dir and exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/gguf_writer.h"
#include "io/tokenizer.h"
#include "testutil.h"
#include "util/error.h"
#include "util/fsutil.h"

static const char TEXT[] = "Once upon a time, \xc3\xa9t\xc3\xa9 <0x0A> unk\xff end";

/* Every key/value through the accessors the config and tokenizer readers use. */
static void read_values(const vt_gguf *g) {
    for (int i = 0; i < g->n_kv; i++) {
        const vt_gguf_kv *kv = &g->kv[i];
        int64_t v;
        double d;
        if (vt_gguf_kv_int(g, kv, &v) == 0 || vt_gguf_kv_float(g, kv, &d) == 0) continue;
        if (kv->type != VT_GGUF_ARRAY) continue;
        uint64_t n = kv->count < 64 ? kv->count : 64;
        if (kv->elem_type == VT_GGUF_STRING) {
            vt_gguf_str *s = calloc(kv->count ? kv->count : 1, sizeof *s);
            if (s) vt_gguf_arr_strings(kv, s);
            free(s);
        } else if (kv->elem_type != VT_GGUF_ARRAY && kv->elem_type != VT_GGUF_BOOL) {
            for (uint64_t k = 0; k < n; k++) {
                if (kv->elem_type == VT_GGUF_F32 || kv->elem_type == VT_GGUF_F64) vt_gguf_arr_float(kv, k);
                else vt_gguf_arr_int(kv, k);
            }
        }
    }
}

/* The first elements of every tensor converted to fp32. */
static void read_tensors(const vt_gguf *g) {
    float buf[256];
    for (int i = 0; i < g->n_tensors; i++) {
        const vt_gguf_tensor *t = &g->tensors[i];
        uint64_t n = t->ne[0] < 256 ? t->ne[0] : 256;
        if (t->type == VT_GGML_Q8_0) n -= n % VT_Q8_0_BLOCK;
        if (vt_ggml_row_bytes(t->type, n) <= t->bytes) vt_ggml_to_f32(buf, t->data, t->type, n);
        vt_gguf_find_tensor(g, "token_embd.weight");
    }
}

static void write_seeds(const char *dir) {
    vt_config c;
    vt_model m;
    tu_small_config(&c);
    tu_random_model(&m, &c, 7);
    /* tokenizer.bin: <unk>, BOS, EOS, then single characters */
    unsigned char bin[4 + 32 * 16];
    size_t n = 0;
    uint32_t max_len = 5;
    memcpy(bin, &max_len, 4);
    n = 4;
    for (int i = 0; i < c.vocab; i++) {
        const char *piece = i == 0 ? "<unk>" : i == 1 ? "<s>" : i == 2 ? "</s>" : NULL;
        char one[2] = {(char)(i == 3 ? ' ' : 'a' + i - 4), 0};
        if (!piece) piece = one;
        float score = -(float)i;
        int32_t len = (int32_t)strlen(piece);
        memcpy(bin + n, &score, 4);
        memcpy(bin + n + 4, &len, 4);
        memcpy(bin + n + 8, piece, (size_t)len);
        n += 8 + (size_t)len;
    }
    vt_tokenizer tok;
    if (vt_tokenizer_load(&tok, fz_write("tok.bin", bin, n))) abort();
    static const uint32_t types[] = {VT_GGML_F32, VT_GGML_BF16};
    for (int k = 0; k < 2; k++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tiny-%s.gguf", dir, vt_ggml_type_name(types[k]));
        if (vt_gguf_write(&m, &tok, types[k], path, 1)) {
            fprintf(stderr, "%s\n", vt_error());
            abort();
        }
    }
    vt_tokenizer_free(&tok);
    vt_model_free(&m);
    exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (getenv("VT_FUZZ_WRITE_SEED")) write_seeds(getenv("VT_FUZZ_WRITE_SEED"));
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("model.gguf", data, size);
    vt_gguf g;
    if (vt_gguf_open(&g, path) != 0) return 0;
    read_values(&g);
    read_tensors(&g);
    vt_config c;
    if (vt_gguf_config(&g, &c) == 0) vt_config_free(&c);
    vt_gguf_close(&g);
    vt_model m;
    if (vt_gguf_load(&m, path, vt_load_all()) == 0) vt_model_free(&m);
    vt_tokenizer t;
    if (vt_gguf_tokenizer_load(&t, path) == 0) {
        int *ids = NULL;
        size_t n = 0;
        if (vt_encode(&t, TEXT, sizeof TEXT - 1, 1, 1, &ids, &n) == 0)
            for (size_t i = 0; i < n; i++) vt_decode_piece(&t, i ? ids[i - 1] : 1, ids[i]);
        free(ids);
        vt_tokenizer_free(&t);
    }
    return 0;
}
