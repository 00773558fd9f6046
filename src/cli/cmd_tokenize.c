/* cmd_tokenize.c — `vtrans-dist tokenize`: any readable data file or archive to an llm.c token shard. */
#include <stdio.h>

#include "util/args.h"
#include "cli/commands.h"
#include "data/data.h"
#include "util/error.h"
#include "io/tokenizer.h"

int vt_cmd_tokenize(int argc, char **argv) {
    vt_opt opts[] = {
        {"tokenizer", 1, "tokenizer.json or llama2.c tokenizer.bin", NULL, 0},
        {"data", 1, "text, JSON Lines, token file, or a tar/tar.gz/tar.zst/zip archive of them", NULL, 0},
        {"out", 1, "output llm.c token shard (uint16 ids; uint32 past 65536 tokens of vocabulary)", NULL, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), help;
    if (vt_args_parse(opts, n, argc, argv, 1, &help)) return vt_cmd_fail("tokenize");
    if (help) {
        vt_args_usage("tokenize", "--tokenizer PATH --data FILE --out FILE", opts, n);
        return 0;
    }
    if (vt_args_require(opts, n, "tokenizer") || vt_args_require(opts, n, "data") || vt_args_require(opts, n, "out"))
        return vt_cmd_fail("tokenize");

    const char *data_path = vt_args_get(opts, n, "data"), *out_path = vt_args_get(opts, n, "out");
    vt_tokenizer tok;
    if (vt_tokenizer_load(&tok, vt_args_get(opts, n, "tokenizer"))) return vt_cmd_fail("tokenize");
    vt_tokens tokens;
    vt_data_stats stats;
    int rc = vt_data_read(data_path, &tok, &tokens, &stats);
    if (rc == 0) rc = vt_tokens_write(out_path, &tokens, tok.vocab_size);
    if (rc == 0)
        printf("tokenize: %s: %zu file%s, %zu documents, %zu tokens -> %s\n", data_path, stats.files,
               stats.files == 1 ? "" : "s", stats.text.documents, tokens.n, out_path);
    if (rc == 0 && stats.text.unk) vt_data_note_unk(stderr, data_path, &stats, &tok);
    vt_tokens_free(&tokens);
    vt_tokenizer_free(&tok);
    return rc ? vt_cmd_fail("tokenize") : 0;
}
