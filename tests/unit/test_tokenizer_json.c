/* test_tokenizer_json.c — Hugging Face tokenizer.json: the golden ids of the HF tokenizers JS port
 * (and sentencepiece's for LLaMA-2) on 47 strings for every fixture tokenizer, decoding, <unk>
 * counting, bad files, and finding tokenizer.json in a model directory. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"
#include "io/tokenizer.h"
#include "util/error.h"

#define GOLDEN "tokenizers/golden/"

/* Encodes each golden line's text (no BOS) and counts exact matches; prints the first mismatches. */
static int golden_matches(const vt_tokenizer *t, const char *golden, int skip_line, int *lines) {
    json_error_t err;
    FILE *f = fopen(tu_fixture(golden), "r");
    assert_non_null(f);
    char line[65536];
    int ok = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, &err);
        assert_non_null(j);
        if (++n == skip_line) {
            json_decref(j);
            continue;
        }
        const char *text = json_string_value(json_object_get(j, "text"));
        json_t *want = json_object_get(j, "ids");
        int *ids;
        size_t k, n_unk;
        assert_int_equal(vt_tokenizer_encode(t, text, strlen(text), 0, 0, &ids, &k, &n_unk), 0);
        int same = k == json_array_size(want);
        for (size_t i = 0; same && i < k; i++) same = ids[i] == json_integer_value(json_array_get(want, i));
        if (!same) {
            fprintf(stderr, "%s line %d %s: got", golden, n, text);
            for (size_t i = 0; i < k; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
        }
        ok += same;
        free(ids);
        json_decref(j);
    }
    fclose(f);
    *lines = n - (skip_line > 0);
    return ok;
}

static void check_golden(const char *tok, const char *golden, int skip_line) {
    vt_tokenizer t;
    if (vt_tokenizer_load(&t, tu_fixture(tok))) fail_msg("%s", vt_error());
    int lines, ok = golden_matches(&t, golden, skip_line, &lines);
    fprintf(stderr, "%s on %s: %d of %d exact\n", tok, golden, ok, lines);
    assert_int_equal(lines, 47 - (skip_line > 0));
    assert_int_equal(ok, lines);
    vt_tokenizer_free(&t);
}

static void llama2_golden(void **state) {
    (void)state;
    check_golden("tokenizers/llama2/tokenizer.json", GOLDEN "llama2.jsonl", 0);
}

static void phi3_golden(void **state) {
    (void)state;
    check_golden("tokenizers/phi3-mini/tokenizer.json", GOLDEN "phi3-mini.jsonl", 0);
}

static void phi2_golden(void **state) {
    (void)state;
    check_golden("tokenizers/phi2/tokenizer.json", GOLDEN "phi2.jsonl", 0);
}

/* The json's defect (NBSP pieces turned into spaces, SOURCES.md) and HF's added-token matching are
 * the only differences from sentencepiece on tokenizer.model: lines 46 and 47. */
static void llama2_sentencepiece(void **state) {
    (void)state;
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, tu_fixture("tokenizers/llama2/tokenizer.json")), 0);
    int lines, ok = golden_matches(&t, GOLDEN "llama2.sentencepiece.jsonl", 46, &lines);
    fprintf(stderr, "llama2 tokenizer.json on sentencepiece ids: %d of %d exact (line 46 skipped)\n", ok, lines);
    assert_int_equal(ok, lines - 1); /* line 47, NBSP: byte fallback here, 30081 in tokenizer.model */
    vt_tokenizer_free(&t);
    /* phi3-mini has the NBSP pieces intact: sentencepiece's ids. */
    assert_int_equal(vt_tokenizer_load(&t, tu_fixture("tokenizers/phi3-mini/tokenizer.json")), 0);
    const char nbsp[] = "non\xc2\xa0" "breaking\xc2\xa0\xc2\xa0space";
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(&t, nbsp, strlen(nbsp), 0, 0, &ids, &n), 0);
    int want[] = {1661, 30081, 1030, 5086, 8655, 3493};
    assert_int_equal(n, 6);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], want[i]);
    free(ids);
    vt_tokenizer_free(&t);
}

/* decode(encode(x)) == x piece by piece, with BOS (sentencepiece-style drops the space after it). */
static void round_trip(const char *tok, const char *text) {
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, tu_fixture(tok)), 0);
    int *ids;
    size_t n;
    assert_int_equal(vt_encode(&t, text, strlen(text), 1, 0, &ids, &n), 0);
    char out[1024] = "";
    int prev = t.add_bos ? ids[0] : -1;
    for (size_t i = t.add_bos ? 1 : 0; i < n; i++) {
        strcat(out, vt_decode_piece(&t, prev, ids[i]));
        prev = ids[i];
    }
    assert_string_equal(out, text);
    free(ids);
    vt_tokenizer_free(&t);
}

static void decoding(void **state) {
    (void)state;
    const char *text = "Hello, world!\n  caf\xc3\xa9 \xf0\x93\x80\x80 \xe6\x97\xa5\xe6\x9c\xac <b>";
    round_trip("tokenizers/llama2/tokenizer.json", text);
    round_trip("tokenizers/phi3-mini/tokenizer.json", text);
    round_trip("tokenizers/phi2/tokenizer.json", text);
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, tu_fixture("tokenizers/llama2/tokenizer.json")), 0);
    assert_int_equal(t.vocab_size, 32000);
    assert_int_equal(t.bos_id, 1);
    assert_int_equal(t.eos_id, 2);
    assert_int_equal(t.unk_id, 0);
    assert_int_equal(t.add_bos, 1);
    vt_tokenizer_free(&t);
    assert_int_equal(vt_tokenizer_load(&t, tu_fixture("tokenizers/phi2/tokenizer.json")), 0);
    assert_int_equal(t.bos_id, 50256);
    assert_int_equal(t.vocab_size, 50295);
    vt_tokenizer_free(&t);
}

static char *write_file(const char *dir, const char *name, const char *text) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* A vocabulary without byte pieces and without byte_fallback: unknown characters are <unk>, fused
 * when fuse_unk, and counted. */
static void unknown_characters(void **state) {
    (void)state;
    char *dir = tu_tempdir();
    const char *json = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true,"
                       " \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3}, \"merges\": [\"a b\"]}}";
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, write_file(dir, "tokenizer.json", json)), 0);
    int *ids;
    size_t n, n_unk;
    assert_int_equal(vt_tokenizer_encode(&t, "abxyab\xc3\xa9", 8, 1, 0, &ids, &n, &n_unk), 0);
    assert_int_equal(n, 4); /* ab <unk> ab <unk> ("xy" fused); no BOS in this tokenizer */
    assert_int_equal(n_unk, 3);
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 0);
    assert_int_equal(ids[2], 3);
    assert_int_equal(ids[3], 0);
    free(ids);
    vt_tokenizer_free(&t);
    tu_tempdir_remove(dir);
}

/* Metaspace with its one-character replacement (3 bytes, "▁"): spaces replaced, "▁" prepended, the
 * text split before each "▁"; within the bounds that refuse a longer replacement. */
static void metaspace(void **state) {
    (void)state;
    char *dir = tu_tempdir();
    const char *json = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xe2\x96\x81\": 0, \"a\": 1, \"b\": 2,"
                       " \"\xe2\x96\x81" "a\": 3, \"\xe2\x96\x81" "b\": 4}, \"merges\": [\"\xe2\x96\x81 a\", \"\xe2\x96\x81 b\"]},"
                       " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\","
                       " \"prepend_scheme\": \"always\", \"split\": true}}";
    vt_tokenizer t;
    if (vt_tokenizer_load(&t, write_file(dir, "tokenizer.json", json))) fail_msg("%s", vt_error());
    int *ids;
    size_t n, n_unk;
    assert_int_equal(vt_tokenizer_encode(&t, "a b", 3, 1, 0, &ids, &n, &n_unk), 0);
    assert_int_equal(n, 2); /* "▁a" "▁b" */
    assert_int_equal(ids[0], 3);
    assert_int_equal(ids[1], 4);
    free(ids);
    vt_tokenizer_free(&t);
    tu_tempdir_remove(dir);
}

static void expect_error(const char *dir, const char *json, const char *message) {
    vt_tokenizer t;
    const char *path = write_file(dir, "tokenizer.json", json);
    assert_int_equal(vt_tokenizer_load(&t, path), -1);
    if (!strstr(vt_error(), message) || !strstr(vt_error(), "tokenizer.json"))
        fail_msg("error \"%s\" does not name the file and \"%s\"", vt_error(), message);
}

static void bad_files(void **state) {
    (void)state;
    char *dir = tu_tempdir();
    expect_error(dir, "{\"model\": ", "not valid JSON");
    expect_error(dir, "{\"version\": \"1.0\"}", "no \"model\" object");
    expect_error(dir, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model type \"Unigram\" is not supported");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", "model.vocab is missing");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "model.merges is missing");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
                 "model.merges[0] \"a c\": the second piece is not in the vocabulary");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
                 "their concatenation is not in the vocabulary");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"pre_tokenizer\": {\"type\": \"Whitespace\"}}", "pre_tokenizer \"Whitespace\" is not supported");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
                 "pre-tokenizer pattern /(/");
    /* found by fuzz_tokenizer_json: texts grown to gigabytes by a chain of replacements */
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"a b c\"}}",
                 "Metaspace replacement \"a b c\" is not one character");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
                      "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"  x  \"},"
                      "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \" yy \"}]}}",
                 "Replace steps can make a text 20 times longer (at most 16 accepted)");
    /* found by fuzz_tokenizer_json: an id of 61 million in a 558-byte file made a 490 MB table;
     * and an id past 2^32 was truncated to an int */
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 61332723}, \"merges\": []}}",
                 "model.vocab[\"b\"] = 61332723 is outside [0, 65538): ids number the 2 pieces, with at most 65536 unused");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 4294967296}, \"merges\": []}}",
                 "model.vocab[\"a\"] = 4294967296 is outside");
    expect_error(dir, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                      " \"added_tokens\": [{\"id\": -3, \"content\": \"<s>\"}]}",
                 "added_tokens[0].id = -3 is outside [0, 65538)");
    tu_tempdir_remove(dir);
}

/* A model directory's tokenizer.json comes before its tokenizer.bin. */
static void locate_json_first(void **state) {
    (void)state;
    char *dir = tu_tempdir();
    char out[4096], want[4096];
    write_file(dir, "tokenizer.bin", "x");
    assert_int_equal(vt_tokenizer_locate(dir, NULL, out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/tokenizer.bin", dir);
    assert_string_equal(out, want);
    write_file(dir, "tokenizer.json", "{}");
    assert_int_equal(vt_tokenizer_locate(dir, NULL, out, sizeof out), 0);
    snprintf(want, sizeof want, "%s/tokenizer.json", dir);
    assert_string_equal(out, want);
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2_golden),
        cmocka_unit_test(phi3_golden),
        cmocka_unit_test(phi2_golden),
        cmocka_unit_test(llama2_sentencepiece),
        cmocka_unit_test(decoding),
        cmocka_unit_test(unknown_characters),
        cmocka_unit_test(metaspace),
        cmocka_unit_test(bad_files),
        cmocka_unit_test(locate_json_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
