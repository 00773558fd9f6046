/* fuzz_tokenizer_json.c — a Hugging Face tokenizer.json (BPE: normalizers, pre-tokenizers, added
 * tokens, merges as strings or pairs): loaded, texts encoded, every id decoded, merge scores. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "io/tokenizer.h"
#include "io/tokenizer_hf.h"

static const char *const TEXTS[] = {
    "Once upon a time, \xc3\xa9t\xc3\xa9 ab an hi 12345!\n",
    "<s>ab</s> <|user|>  hi<|end|> <|endoftext|>x",
    "\xf0\x9f\x98\x80 unk\xff\xc3 end   \t\r\n  ",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vt_tokenizer t;
    if (vt_tokenizer_load(&t, fz_write("tokenizer.json", data, size)) != 0) return 0;
    for (size_t k = 0; k < sizeof TEXTS / sizeof *TEXTS; k++) {
        int *ids = NULL;
        size_t n = 0, n_unk = 0;
        const char *s = TEXTS[k];
        size_t len = 0;
        while (s[len]) len++;
        if (vt_tokenizer_encode(&t, s, len, 1, 1, &ids, &n, &n_unk) == 0)
            for (size_t i = 0; i < n; i++) vt_decode_piece(&t, i ? ids[i - 1] : -1, ids[i]);
        free(ids);
    }
    for (int id = -1; id <= t.vocab_size && id < 4096; id++) vt_decode_piece(&t, 1, id);
    vt_tokenizer_lookup(&t, "ab", 2);
    if (t.hf) free(vt_hf_piece_scores(&t));
    vt_tokenizer_free(&t);
    return 0;
}
