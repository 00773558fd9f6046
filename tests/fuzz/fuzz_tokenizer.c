/* fuzz_tokenizer.c — a llama2.c tokenizer.bin: loaded, then a text encoded and every id decoded. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "io/tokenizer.h"

static const char TEXT[] = "Once upon a time, \xc3\xa9t\xc3\xa9 <0x0A> \xf0\x9f\x98\x80 unk\xff end";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vt_tokenizer t;
    if (vt_tokenizer_load(&t, fz_write("tokenizer.bin", data, size)) != 0) return 0;
    int *ids = NULL;
    size_t n = 0;
    if (vt_encode(&t, TEXT, sizeof TEXT - 1, 1, 1, &ids, &n) == 0)
        for (size_t i = 0; i < n; i++) vt_decode_piece(&t, i ? ids[i - 1] : 1, ids[i]);
    for (int id = 0; id < t.vocab_size && id < 4096; id++) vt_decode_piece(&t, 1, id);
    vt_tokenizer_lookup(&t, "a", 1);
    free(ids);
    vt_tokenizer_free(&t);
    return 0;
}
