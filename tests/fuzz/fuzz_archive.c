/* fuzz_archive.c — a data archive (tar, compressed or not, zip): its members listed, read and each
 * parsed by its name, with the stories260K tokenizer. */
#include <stdio.h>
#include <stdlib.h>

#include "data/data.h"
#include "fuzz_util.h"
#include "io/tokenizer.h"

static vt_tokenizer tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    if (vt_tokenizer_load(&tok, fz_fixture("stories260K/tok512.bin")) != 0) {
        fprintf(stderr, "fuzz_archive: needs the stories260K tokenizer (set VT_FIXTURES)\n");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vt_tokens out = {0};
    vt_data_stats stats;
    vt_data_read(fz_write("data.tar", data, size), &tok, &out, &stats);
    vt_tokens_free(&out);
    return 0;
}
