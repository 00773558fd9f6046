/* test_tokenizer.c — the llama2.c tokenizer: loading, encoding against llama2.c's own algorithm,
 * decoding the greedy fixture, byte fallback, errors, and finding a tokenizer beside a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "data/documents.h"
#include "util/error.h"
#include "io/tokenizer.h"
#include "util/rng.h"

#define TOK "stories260K/tok512.bin"

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    buf[size] = '\0';
    *n = (size_t)size;
    return buf;
}

static void load_fixture(vt_tokenizer *t) {
    if (!tu_have_fixture(TOK)) skip();
    assert_int_equal(vt_tokenizer_load(t, tu_fixture(TOK)), 0);
}

/* llama2.c run.c encode(), transcribed as directly as possible (quadratic merge loop, linear
 * vocabulary scan) to check the fast encoder against. */
static int naive_lookup(const vt_tokenizer *t, const char *s) {
    for (int i = 0; i < t->vocab_size; i++)
        if (strcmp(t->vocab[i], s) == 0) return i;
    return -1;
}

static size_t naive_encode(const vt_tokenizer *t, const char *text, int bos, int *tokens) {
    char *str_buffer = malloc(t->max_token_length * 2 + 1 + 2);
    size_t str_len = 0;
    size_t n_tokens = 0;
    if (bos) tokens[n_tokens++] = 1;
    if (text[0] != '\0') tokens[n_tokens++] = naive_lookup(t, " ");
    for (const char *c = text; *c != '\0'; c++) {
        if ((*c & 0xC0) != 0x80) str_len = 0;
        str_buffer[str_len++] = *c;
        str_buffer[str_len] = '\0';
        if ((*(c + 1) & 0xC0) == 0x80 && str_len < 4) continue;
        int id = naive_lookup(t, str_buffer);
        if (id != -1) {
            tokens[n_tokens++] = id;
        } else {
            for (size_t i = 0; i < str_len; i++) tokens[n_tokens++] = (unsigned char)str_buffer[i] + 3;
        }
        str_len = 0;
    }
    while (1) {
        float best_score = -1e10;
        int best_id = -1;
        long best_idx = -1;
        for (size_t i = 0; i + 1 < n_tokens; i++) {
            sprintf(str_buffer, "%s%s", t->vocab[tokens[i]], t->vocab[tokens[i + 1]]);
            int id = naive_lookup(t, str_buffer);
            if (id != -1 && t->scores[id] > best_score) {
                best_score = t->scores[id];
                best_id = id;
                best_idx = (long)i;
            }
        }
        if (best_idx == -1) break;
        tokens[best_idx] = best_id;
        for (size_t i = (size_t)best_idx + 1; i + 1 < n_tokens; i++) tokens[i] = tokens[i + 1];
        n_tokens--;
    }
    free(str_buffer);
    return n_tokens;
}

static void assert_encodes_like_llama2c(const vt_tokenizer *t, const char *text, int bos) {
    int *expect = malloc((strlen(text) + 3) * sizeof *expect);
    size_t n_expect = naive_encode(t, text, bos, expect);
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(t, text, strlen(text), bos, 0, &ids, &n), 0);
    if (n != n_expect || memcmp(ids, expect, n * sizeof *ids) != 0) fail_msg("encoding differs from llama2.c for \"%s\"", text);
    free(ids);
    free(expect);
}

static void test_load_fixture(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    assert_int_equal(t.vocab_size, 512);
    assert_int_equal(t.max_token_length, 7);
    assert_string_equal(t.vocab[0], "<unk>");
    assert_string_equal(t.vocab[1], "\n<s>\n");
    assert_string_equal(t.vocab[2], "\n</s>\n");
    assert_string_equal(t.vocab[3], "<0x00>");
    assert_string_equal(t.vocab[258], "<0xFF>");
    assert_int_equal(vt_tokenizer_lookup(&t, "<0x41>", 6), 3 + 0x41);
    assert_int_equal(vt_tokenizer_lookup(&t, "<0x4", 4), -1);
    assert_int_equal(t.space_id, vt_tokenizer_lookup(&t, " ", 1));
    assert_true(t.space_id > 258);
    vt_tokenizer_free(&t);
}

static void test_decode_pieces(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    assert_string_equal(vt_decode_piece(&t, 5, 3 + 'A'), "A");    /* <0x41> */
    assert_string_equal(vt_decode_piece(&t, 5, 3 + '\n'), "\n"); /* <0x0A> */
    int the = vt_tokenizer_lookup(&t, " the", 4);
    assert_true(the > 0);
    assert_string_equal(vt_decode_piece(&t, 42, the), " the");
    assert_string_equal(vt_decode_piece(&t, VT_TOKEN_BOS, the), "the"); /* leading space dropped after BOS */
    assert_null(vt_decode_piece(&t, 1, 512));
    assert_null(vt_decode_piece(&t, 1, -1));
    vt_tokenizer_free(&t);
}

/* The model's greedy output ids, decoded piece by piece from BOS, give its text exactly; the text
 * encodes back to the same ids. */
static void test_decode_greedy_fixture(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    size_t n_text, n_ids;
    char *text = slurp(tu_fixture("stories260K/greedy_t0.txt"), &n_text);
    char *ids_text = slurp(tu_fixture("stories260K/greedy_t0_ids.txt"), &n_ids);
    char *out = calloc(n_text + 4096, 1);
    int prev = VT_TOKEN_BOS, count = 0, fixture_ids[256];
    char *p = ids_text, *end;
    for (long id = strtol(p, &end, 10); end != p; p = end, id = strtol(p, &end, 10)) {
        const char *piece = vt_decode_piece(&t, prev, (int)id);
        assert_non_null(piece);
        assert_true(count < 256);
        strcat(out, piece);
        fixture_ids[count++] = (int)id;
        prev = (int)id;
    }
    assert_int_equal(count, 256);
    assert_string_equal(out, text);
    /* And encoding the text from BOS gives back exactly the model's ids. */
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(&t, text, n_text, 1, 0, &ids, &n), 0);
    assert_int_equal(n, 257);
    assert_int_equal(ids[0], VT_TOKEN_BOS);
    assert_memory_equal(ids + 1, fixture_ids, sizeof fixture_ids);
    free(ids);
    free(out);
    free(text);
    free(ids_text);
    vt_tokenizer_free(&t);
}

static void test_encode_known(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    /* The model's greedy story starts with these four ids for "Once upon a time"
     * (greedy_t0_ids.txt): " Once" " upon" " a" " time". */
    const char *s = "Once upon a time";
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(&t, s, strlen(s), 1, 1, &ids, &n), 0);
    int expect[] = {1, 403, 407, 261, 378, 2};
    assert_int_equal(n, 6);
    assert_memory_equal(ids, expect, sizeof expect);
    free(ids);
    /* Empty text: no dummy prefix. */
    assert_int_equal(vt_encode(&t, "", 0, 1, 0, &ids, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], 1);
    free(ids);
    assert_int_equal(vt_encode(&t, "", 0, 0, 0, &ids, &n), 0);
    assert_int_equal(n, 0);
    free(ids);
    vt_tokenizer_free(&t);
}

/* Code points missing from the vocabulary fall back to their bytes, id = byte + 3. */
static void test_byte_fallback(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    const char *u_umlaut = "\xC3\xBC", *emoji = "\xF0\x9F\x99\x82"; /* U+00FC, U+1F642 */
    assert_int_equal(vt_tokenizer_lookup(&t, u_umlaut, 2), -1);
    assert_int_equal(vt_tokenizer_lookup(&t, emoji, 4), -1);
    int *ids;
    size_t n;
    char text[16];
    snprintf(text, sizeof text, "%s%s", u_umlaut, emoji);
    assert_int_equal(vt_encode(&t, text, strlen(text), 0, 0, &ids, &n), 0);
    int expect[] = {t.space_id, 0xC3 + 3, 0xBC + 3, 0xF0 + 3, 0x9F + 3, 0x99 + 3, 0x82 + 3};
    assert_int_equal(n, 7);
    assert_memory_equal(ids, expect, sizeof expect);
    /* And they decode back to the bytes. */
    char out[16] = "";
    for (size_t i = 1; i < n; i++) strcat(out, vt_decode_piece(&t, ids[i - 1], ids[i]));
    assert_string_equal(out, text);
    free(ids);
    vt_tokenizer_free(&t);
}

/* The heap-based encoder must give exactly llama2.c's tokens: calibration paragraphs, and random
 * strings built to produce many competing merges and malformed UTF-8. */
static void test_matches_llama2c_encode(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    if (!tu_have_fixture("tinystories/calib.txt")) skip();
    size_t len;
    char *text = slurp(tu_fixture("tinystories/calib.txt"), &len);
    vt_span *docs;
    size_t n_docs;
    assert_int_equal(vt_documents_split(text, len, &docs, &n_docs), 0);
    assert_true(n_docs > 2000);
    for (size_t i = 0; i < n_docs; i += 100) { /* every 100th document, to stay fast */
        char *doc = strndup(docs[i].text, docs[i].len);
        assert_encodes_like_llama2c(&t, doc, (int)(i % 2));
        free(doc);
    }
    free(docs);
    free(text);

    static const char *alphabet[] = {"a", "b", "e", "h", "t", " ", "  ", "\n", "the", "\xC3\xA9", "\xE2\x80\x9C",
                                     "\x80", "\xFF", "\xE2\x82", "ing", "ed"};
    uint64_t s = 12345;
    for (int trial = 0; trial < 300; trial++) {
        char buf[256] = "";
        int pieces = trial % 40;
        for (int k = 0; k < pieces; k++) {
            vt_xorshift64(&s);
            strcat(buf, alphabet[s % (sizeof alphabet / sizeof alphabet[0])]);
        }
        assert_encodes_like_llama2c(&t, buf, trial % 3 == 0);
    }
    vt_tokenizer_free(&t);
}

/* Writes a tokenizer.bin with these pieces and scores; returns its path (static). */
static const char *write_tokenizer(const char *dir, const char **pieces, const float *scores, int n) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/synthetic.bin", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int max_len = 0;
    for (int i = 0; i < n; i++)
        if ((int)strlen(pieces[i]) > max_len) max_len = (int)strlen(pieces[i]);
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < n; i++) {
        int len = (int)strlen(pieces[i]);
        fwrite(&scores[i], 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(pieces[i], 1, (size_t)len, f);
    }
    assert_int_equal(fclose(f), 0);
    return path;
}

static void assert_encoding(const vt_tokenizer *t, const char *text, const int *expect, size_t n_expect) {
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(t, text, strlen(text), 0, 0, &ids, &n), 0);
    assert_int_equal(n, n_expect);
    assert_memory_equal(ids, expect, n * sizeof *ids);
    free(ids);
}

/* Equal scores merge the leftmost pair first; pieces scoring -1e10 or less never merge. */
static void test_merge_ties_and_threshold(void **state) {
    (void)state;
    enum { SP = 3, A, B, AA, AB, BA, ABAB, BB };
    const char *pieces[] = {"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "aa", "ab", "ba", "abab", "bb"};
    const float scores[] = {0, 0, 0, -5, -5, -5, 1, 1, 1, 2, -1e10f};
    char *dir = tu_tempdir();
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, write_tokenizer(dir, pieces, scores, 11)), 0);
    assert_encoding(&t, "aaa", (int[]){SP, AA, A}, 3);   /* two equal "aa" pairs: the left one merges */
    assert_encoding(&t, "aab", (int[]){SP, AA, B}, 3);   /* "aa" and "ab" tie: leftmost wins */
    assert_encoding(&t, "baa", (int[]){SP, BA, A}, 3);
    assert_encoding(&t, "aaaa", (int[]){SP, AA, AA}, 3);
    assert_encoding(&t, "abab", (int[]){SP, ABAB}, 2);   /* merges build on merges */
    assert_encoding(&t, "bb", (int[]){SP, B, B}, 3);     /* a piece scoring -1e10 never merges */
    /* No byte pieces in this vocabulary: a character outside it is <unk> (as HF gives), counted,
     * never the unrelated id byte + 3. */
    int *ids;
    size_t n, n_unk;
    assert_int_equal(vt_tokenizer_encode(&t, "acb", 3, 1, 0, &ids, &n, &n_unk), 0);
    assert_int_equal(n, 5); /* BOS, " ", a, <unk>, b */
    assert_int_equal(n_unk, 1);
    assert_int_equal(ids[3], 0); /* <unk> */
    free(ids);
    uint64_t s = 99;
    for (int trial = 0; trial < 500; trial++) {
        char buf[64];
        int len = trial % 48;
        for (int k = 0; k < len; k++) {
            vt_xorshift64(&s);
            buf[k] = "aab "[s % 4];
        }
        buf[len] = '\0';
        assert_encodes_like_llama2c(&t, buf, trial % 2);
    }
    vt_tokenizer_free(&t);
    tu_tempdir_remove(dir);
}

/* A long text (the whole calibration file as one string) encodes without trouble and decodes back. */
static void test_long_text_round_trip(void **state) {
    (void)state;
    vt_tokenizer t;
    load_fixture(&t);
    if (!tu_have_fixture("tinystories/calib.txt")) skip();
    size_t len;
    char *text = slurp(tu_fixture("tinystories/calib.txt"), &len);
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(&t, text, len, 1, 0, &ids, &n), 0);
    assert_true(n > len / 8 && n < len);
    char *out = malloc(len + 1), *p = out;
    for (size_t i = 1; i < n; i++) {
        const char *piece = vt_decode_piece(&t, ids[i - 1], ids[i]);
        size_t k = strlen(piece);
        assert_true((size_t)(p - out) + k <= len);
        memcpy(p, piece, k);
        p += k;
    }
    assert_int_equal((size_t)(p - out), len);
    assert_memory_equal(out, text, len);
    free(out);
    free(ids);
    free(text);
    vt_tokenizer_free(&t);
}

static void expect_load_error(const char *dir, const char *name, const void *data, size_t n, const char *what) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(tu_write_file(path, data, n), 0);
    vt_tokenizer t;
    if (vt_tokenizer_load(&t, path) != -1) fail_msg("%s loaded without error", name);
    if (!strstr(vt_error(), path) || !strstr(vt_error(), what))
        fail_msg("error for %s should name the file and say '%s', got: %s", name, what, vt_error());
}

static void test_bad_files(void **state) {
    (void)state;
    if (!tu_have_fixture(TOK)) skip();
    size_t n;
    char *good = slurp(tu_fixture(TOK), &n);
    char *dir = tu_tempdir();
    expect_load_error(dir, "truncated.bin", good, 105, "truncated");
    /* The format has no token count: a file cut at a record boundary is a smaller tokenizer. */
    char path[4096];
    snprintf(path, sizeof path, "%s/first7.bin", dir);
    assert_int_equal(tu_write_file(path, good, 100), 0);
    vt_tokenizer t7;
    assert_int_equal(vt_tokenizer_load(&t7, path), 0);
    assert_int_equal(t7.vocab_size, 7);
    vt_tokenizer_free(&t7);
    expect_load_error(dir, "cut_header.bin", good, n - 3, "truncated");
    expect_load_error(dir, "empty.bin", good, 0, "shorter than its 4-byte header");
    unsigned char bad_len[4 + 8 + 1] = {7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 'x'}; /* len 9 > 7 */
    expect_load_error(dir, "long_piece.bin", bad_len, sizeof bad_len, "outside [1, max_token_length=7]");
    unsigned char zero_len[4 + 8] = {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    expect_load_error(dir, "zero_piece.bin", zero_len, sizeof zero_len, "outside [1, max_token_length=7]");
    unsigned char absurd[4] = {0xff, 0xff, 0xff, 0x7f};
    expect_load_error(dir, "absurd.bin", absurd, sizeof absurd, "max_token_length");
    expect_load_error(dir, "header_only.bin", good, 4, "has 0 tokens");
    /* a file larger than any tokenizer (sparse: nothing is written) is refused before reading */
    snprintf(path, sizeof path, "%s/huge.bin", dir);
    assert_int_equal(tu_write_file(path, good, 4), 0);
    assert_int_equal(truncate(path, (off_t)(1u << 30) + 1), 0);
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, path), -1);
    assert_non_null(strstr(vt_error(), "is this the tokenizer?"));
    assert_int_equal(vt_tokenizer_load(&t, "/nonexistent/tok.bin"), -1);
    assert_non_null(strstr(vt_error(), "/nonexistent/tok.bin"));
    tu_tempdir_remove(dir);
    free(good);
}

static void touch(const char *dir, const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(tu_write_file(path, "x", 1), 0);
}

static void test_locate(void **state) {
    (void)state;
    char *dir = tu_tempdir();
    char model[4096], out[4096], expect[4096];
    snprintf(model, sizeof model, "%s/stories.bin", dir);
    touch(dir, "stories.bin");
    /* Given: used as is. */
    assert_int_equal(vt_tokenizer_locate(model, "/some/tok.bin", out, sizeof out), 0);
    assert_string_equal(out, "/some/tok.bin");
    /* Nothing beside the model. */
    assert_int_equal(vt_tokenizer_locate(model, NULL, out, sizeof out), -1);
    assert_non_null(strstr(vt_error(), "pass --tokenizer"));
    assert_non_null(strstr(vt_error(), model));
    /* A single tok*.bin. */
    touch(dir, "tok512.bin");
    assert_int_equal(vt_tokenizer_locate(model, NULL, out, sizeof out), 0);
    snprintf(expect, sizeof expect, "%s/tok512.bin", dir);
    assert_string_equal(out, expect);
    /* Two candidates: ambiguous. */
    touch(dir, "tok32000.bin");
    assert_int_equal(vt_tokenizer_locate(model, NULL, out, sizeof out), -1);
    assert_non_null(strstr(vt_error(), "pass --tokenizer"));
    /* tokenizer.bin wins. */
    touch(dir, "tokenizer.bin");
    assert_int_equal(vt_tokenizer_locate(model, NULL, out, sizeof out), 0);
    snprintf(expect, sizeof expect, "%s/tokenizer.bin", dir);
    assert_string_equal(out, expect);
    /* An HF directory: <dir>/tokenizer.bin. */
    assert_int_equal(vt_tokenizer_locate(dir, NULL, out, sizeof out), 0);
    assert_string_equal(out, expect);
    /* The model itself is never its own tokenizer. */
    char *dir2 = tu_tempdir();
    snprintf(model, sizeof model, "%s/tokmodel.bin", dir2);
    touch(dir2, "tokmodel.bin");
    assert_int_equal(vt_tokenizer_locate(model, NULL, out, sizeof out), -1);
    assert_int_equal(vt_tokenizer_locate(dir2, NULL, out, sizeof out), -1);
    /* Beside a .bin model with no llama2.c tokenizer, an HF tokenizer.json is found. */
    touch(dir2, "tokenizer.json");
    assert_int_equal(vt_tokenizer_locate(model, NULL, out, sizeof out), 0);
    snprintf(expect, sizeof expect, "%s/tokenizer.json", dir2);
    assert_string_equal(out, expect);
    tu_tempdir_remove(dir2);
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_fixture),          cmocka_unit_test(test_decode_pieces),
        cmocka_unit_test(test_decode_greedy_fixture), cmocka_unit_test(test_encode_known),
        cmocka_unit_test(test_byte_fallback),         cmocka_unit_test(test_matches_llama2c_encode),
        cmocka_unit_test(test_merge_ties_and_threshold),
        cmocka_unit_test(test_long_text_round_trip),  cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_locate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
