/* test_data.c — data readers: document splitting, UTF-8 checks, text / JSON Lines / token files,
 * archives, and the errors for bad or empty data. */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"
#include "data/data.h"
#include "data/documents.h"
#include "util/error.h"

#define TOK "stories260K/tok512.bin"


static const char *write_text(const char *name, const char *text) {
    const char *p = tu_in_dir(name);
    assert_int_equal(tu_write_file(p, text, strlen(text)), 0);
    return p;
}

static void load_tok(vt_tokenizer *t) {
    if (!tu_have_fixture(TOK)) skip();
    assert_int_equal(vt_tokenizer_load(t, tu_fixture(TOK)), 0);
}

static void expect_error(const char *needle1, const char *needle2) {
    if (!strstr(vt_error(), needle1) || (needle2 && !strstr(vt_error(), needle2)))
        fail_msg("expected an error with '%s'%s%s, got: %s", needle1, needle2 ? " and " : "", needle2 ? needle2 : "",
                 vt_error());
}

/* The expected stream for documents: each encoded with BOS, concatenated. */
static void expected_stream(const vt_tokenizer *t, const char **docs, int n, vt_tokens *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; i++) {
        int *ids;
        size_t k;
        assert_int_equal(vt_encode(t, docs[i], strlen(docs[i]), 1, 0, &ids, &k), 0);
        assert_int_equal(vt_tokens_append(out, ids, k), 0);
        free(ids);
    }
}

static void assert_same_stream(const vt_tokens *a, const vt_tokens *b) {
    assert_int_equal(a->n, b->n);
    assert_memory_equal(a->ids, b->ids, a->n * sizeof *a->ids);
}

/* ---- documents ---- */

static void check_split(const char *text, int n_expect, const char **expect) {
    vt_span *docs;
    size_t n;
    assert_int_equal(vt_documents_split(text, strlen(text), &docs, &n), 0);
    if ((int)n != n_expect) fail_msg("split of \"%s\": %zu documents, expected %d", text, n, n_expect);
    for (int i = 0; i < n_expect; i++) {
        if (docs[i].len != strlen(expect[i]) || memcmp(docs[i].text, expect[i], docs[i].len) != 0)
            fail_msg("split of \"%s\": document %d is \"%.*s\", expected \"%s\"", text, i, (int)docs[i].len,
                     docs[i].text, expect[i]);
    }
    free(docs);
}

static void test_split_rules(void **state) {
    (void)state;
    check_split("a\n\nb", 2, (const char *[]){"a", "b"});
    check_split("\n\na\n\n\nb\n", 2, (const char *[]){"a", "b"});     /* "\n\n\n": the third newline is stripped */
    check_split("a\n\n\n\nb", 2, (const char *[]){"a", "b"});         /* an empty piece between is skipped */
    check_split("  \n\n\t \n\nx y\n z\n", 1, (const char *[]){"x y\n z"}); /* whitespace-only pieces skipped */
    check_split(" a \n\n b", 2, (const char *[]){" a ", " b"});       /* only newlines are stripped */
    check_split("one\nline\nbreaks", 1, (const char *[]){"one\nline\nbreaks"});
    check_split("a\r\n\r\nb", 1, (const char *[]){"a\r\n\r\nb"});     /* CRLF is not a "\n\n" */
    check_split("", 0, NULL);
    check_split("\n\n\n", 0, NULL);
    check_split("\n", 0, NULL);
    check_split("x", 1, (const char *[]){"x"});
}

static void test_utf8_check(void **state) {
    (void)state;
    const char *good = "plain, caf\xC3\xA9, \xE2\x80\x9Cquoted\xE2\x80\x9D, \xF0\x9F\x99\x82 U+10FFFF \xF4\x8F\xBF\xBF";
    assert_int_equal(vt_utf8_check("good.txt", good, strlen(good)), 0);
    const struct {
        const char *text, *where;
    } bad[] = {
        {"a\nb\nc\xFF", "line 3"},              /* not a UTF-8 byte */
        {"\xC0\x80", "line 1"},                 /* overlong NUL */
        {"x\n\xE0\x80\xAF", "line 2"},          /* overlong '/' */
        {"\xED\xA0\x80", "byte 0xED"},          /* surrogate */
        {"\xF4\x90\x80\x80", "byte 0xF4"},      /* past U+10FFFF */
        {"ab\xE2\x82", "byte offset 2"},   /* cut short at the end */
        {"\x80", "line 1"},                     /* stray continuation byte */
        {"ok\n\nok\n\xC3(", "line 4"},          /* bad continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(vt_utf8_check("bad.txt", bad[i].text, strlen(bad[i].text)), -1);
        expect_error("bad.txt", bad[i].where);
    }
}

/* ---- text and JSON Lines ---- */

static const char *docs3[] = {"Once upon a time, there was a cat.", "The cat was \xE2\x80\x9Chappy\xE2\x80\x9D.\nIt ran.",
                              "The end."};

static void test_text_file(void **state) {
    (void)state;
    vt_tokenizer t;
    load_tok(&t);
    const char *p = write_text("story.txt", "\n\nOnce upon a time, there was a cat.\n\n\nThe cat was \xE2\x80\x9Chappy\xE2\x80\x9D.\nIt ran.\n\n  \n\nThe end.\n");
    vt_tokens got, expect;
    vt_data_stats stats;
    assert_int_equal(vt_data_read(p, &t, &got, &stats), 0);
    expected_stream(&t, docs3, 3, &expect);
    assert_same_stream(&got, &expect);
    assert_int_equal(stats.text.documents, 3);
    assert_int_equal(stats.files, 1);
    assert_int_equal(got.ids[0], VT_TOKEN_BOS);
    vt_tokens_free(&got);
    /* .md is text too, and the extension is matched case-insensitively. */
    p = write_text("STORY.MD", "Once upon a time, there was a cat.\n\nThe cat was \xE2\x80\x9Chappy\xE2\x80\x9D.\nIt ran.\n\nThe end.");
    assert_int_equal(vt_data_tokens(p, &t, &got), 0);
    assert_same_stream(&got, &expect);
    vt_tokens_free(&got);
    vt_tokens_free(&expect);
    vt_tokenizer_free(&t);
}

/* Characters a vocabulary (no byte pieces, no byte_fallback) cannot encode become <unk>, counted
 * over documents and records, and a command's note says how many. */
static void test_unk_counted(void **state) {
    (void)state;
    const char *json = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"<unk>\": 0,"
                       " \"a\": 1, \"b\": 2, \"ab\": 3}, \"merges\": [\"a b\"]}}";
    vt_tokenizer t;
    assert_int_equal(vt_tokenizer_load(&t, write_text("unk-tokenizer.json", json)), 0);
    const char *p = write_text("unk.txt", "abxy\n\nab\xc3\xa9");
    vt_tokens got;
    vt_data_stats stats;
    assert_int_equal(vt_data_read(p, &t, &got, &stats), 0);
    assert_int_equal(stats.text.documents, 2);
    assert_int_equal(stats.text.unk, 3);
    assert_int_equal(got.ids[2], 0);
    vt_tokens_free(&got);
    p = write_text("unk.jsonl", "{\"text\": \"xab\"}\n{\"text\": \"ab\"}\n");
    assert_int_equal(vt_data_read(p, &t, &got, &stats), 0);
    assert_int_equal(stats.text.unk, 1);
    vt_tokens_free(&got);
    FILE *note = tmpfile();
    assert_non_null(note);
    assert_int_equal(vt_data_tokens_note(tu_in_dir("unk.txt"), &t, &got, note), 0);
    vt_tokens_free(&got);
    char line[512] = "";
    rewind(note);
    assert_non_null(fgets(line, sizeof line, note));
    if (!strstr(line, "unk.txt: 3 characters") || !strstr(line, "<unk> (id 0)")) fail_msg("note: %s", line);
    fclose(note);
    vt_tokenizer_free(&t);
}

static void test_jsonl_same_as_text(void **state) {
    (void)state;
    vt_tokenizer t;
    load_tok(&t);
    /* One record holds two documents; blank lines and CRLF endings are fine; other fields ignored. */
    const char *p = write_text("story.jsonl",
                               "{\"text\": \"Once upon a time, there was a cat.\\n\\nThe cat was \\u201chappy\\u201d.\\nIt ran.\", \"id\": 1}\r\n"
                               "\n"
                               "  {\"meta\": {\"x\": [1,2]}, \"text\": \"\\n\\nThe end.\\n\"}\n"
                               "{\"text\": \"   \"}\n");
    vt_tokens got, expect;
    vt_data_stats stats;
    assert_int_equal(vt_data_read(p, &t, &got, &stats), 0);
    expected_stream(&t, docs3, 3, &expect);
    assert_same_stream(&got, &expect);
    assert_int_equal(stats.text.documents, 3);
    vt_tokens_free(&got);
    vt_tokens_free(&expect);
    vt_tokenizer_free(&t);
}

static void test_jsonl_errors(void **state) {
    (void)state;
    vt_tokenizer t;
    load_tok(&t);
    vt_tokens got;
    const char *p = write_text("broken.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"unterminated}\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "line 2: invalid JSON");
    p = write_text("notext.jsonl", "\n{\"content\": \"no text field\"}\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "line 2: JSON Lines record has no string field \"text\"");
    p = write_text("number.jsonl", "{\"text\": 42}\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "line 1");
    p = write_text("array.jsonl", "[\"text\"]\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "line 1");
    p = write_text("badutf8.jsonl", "{\"text\": \"ok\"}\n{\"text\": \"\xC3\"}\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "line 2");
    vt_tokenizer_free(&t);
}

static void test_text_errors(void **state) {
    (void)state;
    vt_tokenizer t;
    load_tok(&t);
    vt_tokens got;
    const char *p = write_text("latin1.txt", "first line\nsecond line\ncaf\xE9 au lait\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "line 3");
    expect_error("invalid UTF-8", NULL);
    p = write_text("empty.txt", "");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "empty data");
    p = write_text("blank.txt", "\n\n  \n\t\n\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "empty data");
    p = write_text("empty.jsonl", "\n\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "empty data");
    p = write_text("data.csv", "text\nhello\n");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "unknown data format");
    assert_int_equal(vt_data_tokens(tu_in_dir("missing.txt"), &t, &got), -1);
    expect_error("missing.txt", "cannot open");
    /* Text needs a tokenizer. */
    p = write_text("notok.txt", "hello");
    assert_int_equal(vt_data_tokens(p, NULL, &got), -1);
    expect_error(p, "needs a tokenizer");
    vt_tokenizer_free(&t);
}

/* ---- token files ---- */

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size + 1);
    assert_int_equal(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return buf;
}

static uint32_t u32_at(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_shard_round_trip(void **state) {
    (void)state;
    vt_tokens t = {0}, back;
    for (int i = 0; i < 1000; i++) {
        int id = (i * 37) % 512;
        assert_int_equal(vt_tokens_append(&t, &id, 1), 0);
    }
    /* uint16 shard: llm.c's GPT-2 layout. */
    const char *p = tu_in_dir("stream.bin");
    assert_int_equal(vt_tokens_write(p, &t, 512), 0);
    size_t n;
    unsigned char *raw = slurp(p, &n);
    assert_int_equal(n, 1024 + 2 * 1000);
    assert_int_equal(u32_at(raw), 20240520);
    assert_int_equal(u32_at(raw + 4), 1);
    assert_int_equal(u32_at(raw + 8), 1000);
    assert_int_equal(raw[1024 + 2 * 1] | raw[1024 + 2 * 1 + 1] << 8, 37);
    free(raw);
    assert_int_equal(vt_data_tokens(p, NULL, &back), 0);
    assert_same_stream(&back, &t);
    vt_tokens_free(&back);
    /* uint32 shard for vocabularies past 65536, read under another shard extension. */
    t.ids[5] = 70000;
    p = tu_in_dir("stream.tok");
    assert_int_equal(vt_tokens_write(p, &t, 100000), 0);
    raw = slurp(p, &n);
    assert_int_equal(n, 1024 + 4 * 1000);
    assert_int_equal(u32_at(raw), 20240801);
    assert_int_equal(u32_at(raw + 4), 7);
    free(raw);
    vt_data_stats stats;
    assert_int_equal(vt_data_read(p, NULL, &back, &stats), 0);
    assert_same_stream(&back, &t);
    assert_int_equal(stats.text.documents, 0);
    vt_tokens_free(&back);
    /* Writing an id outside the vocabulary fails and leaves nothing behind. */
    p = tu_in_dir("bad.bin");
    assert_int_equal(vt_tokens_write(p, &t, 512), -1);
    expect_error(p, "token 5 has id 70000");
    struct stat st;
    assert_int_not_equal(stat(p, &st), 0);
    /* An unwritable place fails cleanly. */
    assert_int_equal(vt_tokens_write(tu_in_dir("no/such/dir/x.bin"), &t, 100000), -1);
    expect_error("no/such/dir/x.bin", NULL);
    vt_tokens_free(&t);
}

static void test_u32_and_token_errors(void **state) {
    (void)state;
    vt_tokenizer tok;
    load_tok(&tok);
    vt_tokens got;
    uint32_t ids[5] = {1, 400, 2, 511, 3};
    const char *p = tu_in_dir("ids.u32");
    assert_int_equal(tu_write_file(p, ids, sizeof ids), 0); /* x86: little-endian */
    assert_int_equal(vt_data_tokens(p, &tok, &got), 0);
    assert_int_equal(got.n, 5);
    for (int i = 0; i < 5; i++) assert_int_equal(got.ids[i], ids[i]);
    vt_tokens_free(&got);
    /* Ids must fit the tokenizer's vocabulary; the error names the file and position. */
    ids[3] = 512;
    assert_int_equal(tu_write_file(p, ids, sizeof ids), 0);
    assert_int_equal(vt_data_tokens(p, &tok, &got), -1);
    expect_error(p, "token 3 has id 512");
    /* Not a whole number of ids. */
    assert_int_equal(tu_write_file(p, ids, 7), 0);
    assert_int_equal(vt_data_tokens(p, &tok, &got), -1);
    expect_error(p, "not a whole number");
    /* Empty. */
    assert_int_equal(tu_write_file(p, ids, 0), 0);
    assert_int_equal(vt_data_tokens(p, &tok, &got), -1);
    expect_error(p, "empty data");

    /* Shards: out-of-range id, truncated, wrong magic. */
    vt_tokens t = {0};
    int some[4] = {5, 6, 7, 8};
    assert_int_equal(vt_tokens_append(&t, some, 4), 0);
    p = tu_in_dir("big.bin");
    assert_int_equal(vt_tokens_write(p, &t, 1000), 0);
    assert_int_equal(vt_data_tokens(p, &tok, &got), 0);
    vt_tokens_free(&got);
    t.ids[2] = 900;
    assert_int_equal(vt_tokens_write(p, &t, 1000), 0);
    assert_int_equal(vt_data_tokens(p, &tok, &got), -1);
    expect_error(p, "token 2 has id 900");
    size_t n;
    unsigned char *raw = slurp(p, &n);
    const char *q = tu_in_dir("cut.bin");
    assert_int_equal(tu_write_file(q, raw, n - 1), 0);
    assert_int_equal(vt_data_tokens(q, &tok, &got), -1);
    expect_error(q, "truncated");
    assert_int_equal(tu_write_file(q, raw, 100), 0);
    assert_int_equal(vt_data_tokens(q, &tok, &got), -1);
    expect_error(q, "shorter than the 1024-byte token shard header");
    raw[0] ^= 0xff;
    assert_int_equal(tu_write_file(q, raw, n), 0);
    assert_int_equal(vt_data_tokens(q, &tok, &got), -1);
    expect_error(q, "not an llm.c token shard");
    free(raw);
    vt_tokens_free(&t);
    vt_tokenizer_free(&tok);
}

/* ---- archives ---- */

typedef struct {
    const char *name;
    const void *data;
    size_t size; /* 0: strlen(data); a NULL data makes a directory */
} entry;

static void write_archive(const char *path, int zip, int filter, const entry *entries, int n) {
    struct archive *a = archive_write_new();
    if (zip) assert_int_equal(archive_write_set_format_zip(a), ARCHIVE_OK);
    else assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (filter == 'g') assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    if (filter == 'z') assert_int_equal(archive_write_add_filter_zstd(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, entries[i].name);
        size_t size = entries[i].data ? (entries[i].size ? entries[i].size : strlen(entries[i].data)) : 0;
        archive_entry_set_filetype(e, entries[i].data ? AE_IFREG : AE_IFDIR);
        archive_entry_set_perm(e, entries[i].data ? 0644 : 0755);
        archive_entry_set_size(e, (la_int64_t)size);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (size) assert_int_equal(archive_write_data(a, entries[i].data, size), (la_ssize_t)size);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static void test_archives(void **state) {
    (void)state;
    vt_tokenizer t;
    load_tok(&t);
    /* Members are read in name order whatever their order in the archive: a.jsonl, b.txt, sub/c.u32. */
    uint32_t c_ids[3] = {1, 300, 301};
    const entry members[] = {
        {"sub/", NULL, 0},
        {"sub/c.u32", c_ids, sizeof c_ids},
        {"b.txt", "The cat was \xE2\x80\x9Chappy\xE2\x80\x9D.\nIt ran.\n\nThe end.\n", 0},
        {"notes.csv", "ignored,\xFF\n", 0},
        {"._b.txt", "\xFF\xFE hidden resource fork", 0},
        {"inner.tar.gz", "nested archives are skipped", 0},
        {"a.jsonl", "{\"text\": \"Once upon a time, there was a cat.\"}\n", 0},
    };
    vt_tokens expect;
    expected_stream(&t, docs3, 3, &expect);
    assert_int_equal(vt_tokens_append(&expect, (const int[]){1, 300, 301}, 3), 0);

    const struct {
        const char *name;
        int zip, filter;
    } kinds[] = {{"data.tar", 0, 0}, {"data.tar.gz", 0, 'g'}, {"data.tgz", 0, 'g'}, {"data.tar.zst", 0, 'z'}, {"data.zip", 1, 0}};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        const char *p = tu_in_dir(kinds[k].name);
        write_archive(p, kinds[k].zip, kinds[k].filter, members, (int)(sizeof members / sizeof members[0]));
        vt_tokens got;
        vt_data_stats stats;
        if (vt_data_read(p, &t, &got, &stats) != 0) fail_msg("%s: %s", kinds[k].name, vt_error());
        assert_same_stream(&got, &expect);
        assert_int_equal(stats.files, 3);
        assert_int_equal(stats.text.documents, 3);
        vt_tokens_free(&got);
    }
    vt_tokens_free(&expect);

    /* Errors inside a member name the archive and the member. */
    const entry bad_text[] = {{"ok.txt", "fine", 0}, {"z/latin1.txt", "line\ncaf\xE9", 0}};
    const char *p = tu_in_dir("bad.tar.gz");
    write_archive(p, 0, 'g', bad_text, 2);
    vt_tokens got;
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error("bad.tar.gz:z/latin1.txt", "line 2");
    vt_tokenizer_free(&t);
}

static void test_archive_without_usable_member(void **state) {
    (void)state;
    vt_tokenizer t;
    load_tok(&t);
    const entry useless[] = {{"docs/", NULL, 0}, {"docs/readme.csv", "a,b\n", 0}, {".hidden.txt", "x", 0}};
    const char *p = tu_in_dir("useless.zip");
    write_archive(p, 1, 0, useless, 3);
    vt_tokens got;
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "no usable member");
    p = tu_in_dir("empty.tar.zst");
    write_archive(p, 0, 'z', useless, 0);
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "no usable member");
    /* Only whitespace inside: empty data. */
    const entry blank[] = {{"blank.txt", "\n\n  \n", 0}};
    p = tu_in_dir("blank.tar");
    write_archive(p, 0, 0, blank, 1);
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, "empty data");
    /* Not an archive at all. */
    p = write_text("garbage.zip", "this is not a zip file, just some text that goes on for a while");
    assert_int_equal(vt_data_tokens(p, &t, &got), -1);
    expect_error(p, NULL);
    vt_tokenizer_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_rules),
        cmocka_unit_test(test_utf8_check),
        cmocka_unit_test(test_text_file),
        cmocka_unit_test(test_unk_counted),
        cmocka_unit_test(test_jsonl_same_as_text),
        cmocka_unit_test(test_jsonl_errors),
        cmocka_unit_test(test_text_errors),
        cmocka_unit_test(test_shard_round_trip),
        cmocka_unit_test(test_u32_and_token_errors),
        cmocka_unit_test(test_archives),
        cmocka_unit_test(test_archive_without_usable_member),
    };
    return cmocka_run_group_tests(tests, tu_group_setup, tu_group_teardown);
}
