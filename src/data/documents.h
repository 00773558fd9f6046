/* documents.h — text data as documents (docs/FORMATS.md, "Data"): UTF-8 validation, the "\n\n" split,
 * and encoding plain text or JSON Lines ("text" field) into a token stream, BOS before each document. */
#ifndef VT_DOCUMENTS_H
#define VT_DOCUMENTS_H

#include <stddef.h>

#include "data/token_file.h"
#include "io/tokenizer.h"

typedef struct {
    const char *text;
    size_t len;
} vt_span;

/* 0 when text[0..len) is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF);
 * otherwise an error naming `name`, the line and the byte offset of the first invalid sequence. */
int vt_utf8_check(const char *name, const char *text, size_t len);

/* Splits at every "\n\n", strips leading and trailing '\n' (only) from each piece and drops pieces
 * that are empty or only whitespace. *docs points into text; free() the array. */
int vt_documents_split(const char *text, size_t len, vt_span **docs, size_t *n);

typedef struct {
    size_t documents; /* documents encoded */
    size_t unk;       /* characters the vocabulary could not encode, encoded as its unk token */
} vt_doc_counts;

/* Appends the documents of a plain text / of JSON Lines records (each record's "text" split the
 * same way; blank lines skipped) to out, each encoded with BOS and no EOS (vt_tokenizer_encode).
 * Adds to *counts. Errors name `name` (and the line for JSON Lines). */
int vt_text_append_tokens(const char *name, const char *text, size_t len, const vt_tokenizer *tok, vt_tokens *out,
                          vt_doc_counts *counts);
int vt_jsonl_append_tokens(const char *name, const char *text, size_t len, const vt_tokenizer *tok, vt_tokens *out,
                           vt_doc_counts *counts);

#endif
