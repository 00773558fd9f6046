/* llama_cpp_check.c — runs a GGUF through the real llama.cpp (libllama from npm, see
 * scripts/install-deps) for tests/e2e/gguf_llama_cpp.sh. Built by that script, not by CMake.
 *   llama_cpp_check BINS gen MODEL N          N greedy ids from BOS, one per line
 *   llama_cpp_check BINS text MODEL N         the same as text, printed as `vtrans-dist generate` does
 *     (the first piece's leading space dropped, one newline at the end)
 *   llama_cpp_check BINS ppl MODEL IDS.u32 W  windowed NLL exactly as `vtrans-dist eval --window W`
 *     counts it: consecutive windows of W ids from id 0 (a last one of >= 2 ids), every id after
 *     the first of its window scored; prints "tokens N nll SUM".
 *   llama_cpp_check BINS meta MODEL KEY       the value of a GGUF key as llama.cpp read it
 *   llama_cpp_check BINS tok MODEL FILE       each line of FILE (escapes \n \t \\ undone) tokenized
 *     with special tokens added and parsed as `vtrans-dist` encodes text: one line of ids each */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *data) {
    (void)data;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int32_t *read_ids(const char *path, long *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f) / 4;
    fseek(f, 0, SEEK_SET);
    int32_t *ids = malloc((size_t)*n * 4 + 4);
    if (ids && fread(ids, 4, (size_t)*n, f) != (size_t)*n) *n = 0;
    fclose(f);
    return ids;
}

static double window_nll(struct llama_context *ctx, struct llama_batch *b, const int32_t *ids, int len, int n_vocab) {
    llama_memory_clear(llama_get_memory(ctx), 1);
    b->n_tokens = 0;
    for (int i = 0; i < len; i++) {
        b->token[i] = ids[i];
        b->pos[i] = i;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = 0;
        b->logits[i] = 1;
        b->n_tokens++;
    }
    if (llama_decode(ctx, *b)) return NAN;
    double nll = 0;
    for (int i = 0; i + 1 < len; i++) {
        const float *lg = llama_get_logits_ith(ctx, i);
        double mx = lg[0], se = 0;
        for (int v = 1; v < n_vocab; v++) mx = lg[v] > mx ? lg[v] : mx;
        for (int v = 0; v < n_vocab; v++) se += exp(lg[v] - mx);
        nll += -(lg[ids[i + 1]] - mx - log(se));
    }
    return nll;
}

/* One line of text with \n, \t and \\ escapes undone, in place; returns its length. */
static size_t unescape(char *s) {
    size_t o = 0;
    for (size_t i = 0; s[i] && s[i] != '\n'; i++) {
        if (s[i] == '\\' && s[i + 1]) {
            i++;
            s[o++] = s[i] == 'n' ? '\n' : s[i] == 't' ? '\t' : s[i] == 'r' ? '\r' : s[i];
        } else
            s[o++] = s[i];
    }
    s[o] = 0;
    return o;
}

static int tokenize_lines(const struct llama_vocab *vocab, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return fprintf(stderr, "cannot open %s\n", path), 1;
    static char line[65536];
    static llama_token ids[65536];
    while (fgets(line, sizeof line, f)) {
        size_t len = unescape(line);
        int n = llama_tokenize(vocab, line, (int32_t)len, ids, 65536, 0, 1);
        if (n < 0) return fprintf(stderr, "llama_tokenize failed on %s\n", line), 1;
        for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) return fprintf(stderr, "usage: see the header comment\n"), 2;
    llama_log_set(quiet, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[3], mp);
    if (!model) return fprintf(stderr, "llama.cpp could not load %s\n", argv[3]), 1;
    if (!strcmp(argv[2], "meta")) {
        char val[256];
        if (llama_model_meta_val_str(model, argv[4], val, sizeof val) < 0) return fprintf(stderr, "no key %s\n", argv[4]), 1;
        return printf("%s\n", val), 0;
    }
    if (!strcmp(argv[2], "tok")) return tokenize_lines(llama_model_get_vocab(model), argv[4]);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab), is_ppl = !strcmp(argv[2], "ppl");
    int window = is_ppl && argc > 5 ? atoi(argv[5]) : 0;
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = is_ppl ? (uint32_t)window : 512;
    cp.n_threads = cp.n_threads_batch = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return fprintf(stderr, "failed to create a context\n"), 1;
    if (!is_ppl) {
        int text = !strcmp(argv[2], "text");
        llama_token tok = llama_vocab_bos(vocab);
        for (int s = 0, steps = atoi(argv[4]); s < steps; s++) {
            if (llama_decode(ctx, llama_batch_get_one(&tok, 1))) return fprintf(stderr, "decode failed\n"), 1;
            const float *lg = llama_get_logits_ith(ctx, -1);
            llama_token best = 0;
            for (int v = 1; v < n_vocab; v++) best = lg[v] > lg[best] ? v : best;
            if (text) {
                char piece[256];
                int k = llama_token_to_piece(vocab, best, piece, sizeof piece - 1, 0, 0);
                piece[k > 0 ? k : 0] = 0;
                fputs(s == 0 && piece[0] == ' ' ? piece + 1 : piece, stdout);
            } else
                printf("%d\n", best);
            tok = best;
        }
        if (text) printf("\n");
    } else {
        long n;
        int32_t *ids = read_ids(argv[4], &n);
        if (!ids || n < 2 || window < 2) return fprintf(stderr, "bad ids file or window\n"), 1;
        struct llama_batch b = llama_batch_init(window, 0, 1);
        double nll = 0;
        long scored = 0;
        for (long start = 0; start < n; start += window) {
            int len = n - start < window ? (int)(n - start) : window;
            if (len < 2) break;
            nll += window_nll(ctx, &b, ids + start, len, n_vocab);
            scored += len - 1;
        }
        printf("tokens %ld nll %.10f\n", scored, nll);
        llama_batch_free(b);
        free(ids);
    }
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
