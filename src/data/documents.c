/* documents.c — UTF-8 validation, document splitting and encoding of plain text and JSON Lines. */
#include "data/documents.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/utf8.h"

int vt_utf8_check(const char *name, const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < len;) {
        size_t k = vt_utf8_sequence(s + i, len - i);
        if (k == 0)
            return vt_fail("%s: line %zu, column %zu (byte offset %zu): invalid UTF-8 byte 0x%02X; text data must be UTF-8",
                           name, line, i - line_start + 1, i, s[i]);
        if (s[i] == '\n') {
            line++;
            line_start = i + 1;
        }
        i += k;
    }
    return 0;
}

static int only_whitespace(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\v' && c != '\f') return 0;
    }
    return 1;
}

int vt_documents_split(const char *text, size_t len, vt_span **docs, size_t *n) {
    *docs = NULL;
    *n = 0;
    size_t cap = 0;
    size_t start = 0;
    while (start <= len) {
        /* The piece runs to the next "\n\n" or the end. */
        size_t end = start;
        while (end < len && !(text[end] == '\n' && end + 1 < len && text[end + 1] == '\n')) end++;
        size_t a = start, b = end;
        while (a < b && text[a] == '\n') a++;
        while (b > a && text[b - 1] == '\n') b--;
        if (b > a && !only_whitespace(text + a, b - a)) {
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                vt_span *grown = realloc(*docs, cap * sizeof *grown);
                if (!grown) {
                    free(*docs);
                    *docs = NULL;
                    *n = 0;
                    return vt_fail("out of memory splitting text into documents");
                }
                *docs = grown;
            }
            (*docs)[(*n)++] = (vt_span){text + a, b - a};
        }
        start = end + 2; /* past the "\n\n" (or past the end) */
    }
    return 0;
}

/* Splits text into documents and appends each, encoded with BOS; counts characters become unk. */
static int append_documents(const char *text, size_t len, const vt_tokenizer *tok, vt_tokens *out,
                            vt_doc_counts *counts) {
    vt_span *docs;
    size_t n;
    if (vt_documents_split(text, len, &docs, &n)) return -1;
    for (size_t i = 0; i < n; i++) {
        int *ids;
        size_t n_ids, n_unk;
        if (vt_tokenizer_encode(tok, docs[i].text, docs[i].len, 1, 0, &ids, &n_ids, &n_unk)) {
            free(docs);
            return -1;
        }
        int rc = vt_tokens_append(out, ids, n_ids);
        free(ids);
        counts->unk += n_unk;
        if (rc) {
            free(docs);
            return -1;
        }
    }
    free(docs);
    counts->documents += n;
    return 0;
}

int vt_text_append_tokens(const char *name, const char *text, size_t len, const vt_tokenizer *tok, vt_tokens *out,
                          vt_doc_counts *counts) {
    if (vt_utf8_check(name, text, len)) return -1;
    if (append_documents(text, len, tok, out, counts)) return vt_fail_context("%s", name);
    return 0;
}

int vt_jsonl_append_tokens(const char *name, const char *text, size_t len, const vt_tokenizer *tok, vt_tokens *out,
                           vt_doc_counts *counts) {
    if (vt_utf8_check(name, text, len)) return -1;
    size_t line = 0;
    for (size_t start = 0; start < len;) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        line++;
        const char *s = text + start;
        size_t n = end - start;
        start = end + 1;
        if (only_whitespace(s, n)) continue;

        json_error_t err;
        json_t *record = json_loadb(s, n, 0, &err);
        if (!record) return vt_fail("%s: line %zu: invalid JSON: %s (column %d)", name, line, err.text, err.column);
        json_t *field = json_is_object(record) ? json_object_get(record, "text") : NULL;
        if (!json_is_string(field)) {
            json_decref(record);
            return vt_fail("%s: line %zu: JSON Lines record has no string field \"text\"", name, line);
        }
        int rc = append_documents(json_string_value(field), json_string_length(field), tok, out, counts);
        json_decref(record);
        if (rc) return vt_fail_context("%s: line %zu", name, line);
    }
    return 0;
}
