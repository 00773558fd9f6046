/* fuzz_data.c — the data readers: the first byte picks the kind (text, JSONL, llm.c token shard,
 * raw u32 tokens), the rest is the file, read with the stories260K tokenizer. */
#include <stdio.h>
#include <stdlib.h>

#include "data/data.h"
#include "fuzz_util.h"
#include "io/tokenizer.h"

static vt_tokenizer tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (vt_tokenizer_load(&tok, fz_fixture("stories260K/tok512.bin")) != 0) {
        fprintf(stderr, "fuzz_data: needs the stories260K tokenizer (set VT_FIXTURES)\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"data.txt", "data.jsonl", "data.bin", "data.u32"};
    if (size == 0) return 0;
    vt_tokens out = {0};
    vt_data_stats stats;
    vt_data_read(fz_write(names[data[0] & 3], data + 1, size - 1), &tok, &out, &stats);
    vt_tokens_free(&out);
    return 0;
}
