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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama2_golden),
        cmocka_unit_test(phi3_golden),
        cmocka_unit_test(phi2_golden),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
