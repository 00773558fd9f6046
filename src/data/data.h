/* data.h — calibration and evaluation data as one token stream: plain text, JSON Lines,
 * pre-tokenized files, and any of them inside tar, tar.gz, tar.zst or zip archives.
 *
 * The format comes from the file name (case-insensitive):
 *   .txt .text .md            UTF-8 text, split into documents (documents.h)
 *   .jsonl .ndjson .json      JSON Lines, one object per line with a string "text"
 *   .bin .tok                 llm.c token shard (recognised by its magic number)
 *   .u32                      raw little-endian uint32 token ids
 *   .tar .tar.gz .tgz .tar.zst .tzst .tar.xz .txz .tar.bz2 .tbz2 .zip
 *                             archive: its regular files, in name order, each by its own name;
 *                             directories, nested archives, hidden files (".name") and other
 *                             names are skipped; at least one member must be usable.
 * Any other name is an error. Text is encoded document by document, BOS before each, no EOS. */
#ifndef VT_DATA_H
#define VT_DATA_H

#include <stddef.h>
#include <stdio.h>

#include "data/token_file.h"
#include "data/documents.h"
#include "io/tokenizer.h"

typedef enum { VT_DATA_UNKNOWN, VT_DATA_TEXT, VT_DATA_JSONL, VT_DATA_SHARD, VT_DATA_U32, VT_DATA_ARCHIVE } vt_data_kind;

vt_data_kind vt_data_kind_of(const char *name);

typedef struct {
    vt_doc_counts text; /* text documents encoded and characters become unk (0 for pre-tokenized data) */
    size_t files;       /* files read: 1, or the archive members used */
} vt_data_stats;

/* Reads path into *out (overwritten; free with vt_tokens_free). tok encodes text and bounds
 * pre-tokenized ids (ids >= tok->vocab_size are errors); it may be NULL for pre-tokenized data
 * only. Empty data (zero tokens) is an error. stats may be NULL. */
int vt_data_read(const char *path, const vt_tokenizer *tok, vt_tokens *out, vt_data_stats *stats);
int vt_data_tokens(const char *path, const vt_tokenizer *tok, vt_tokens *out);
/* vt_data_tokens for a command: when note is not NULL and characters became the unk token, says
 * how many there (unknown characters are not an error, as in HF, but a wrong tokenizer shows). */
int vt_data_tokens_note(const char *path, const vt_tokenizer *tok, vt_tokens *out, FILE *note);
/* The note itself: "note: PATH: N characters ... became <unk> (id U)". */
void vt_data_note_unk(FILE *note, const char *path, const vt_data_stats *stats, const vt_tokenizer *tok);

#endif
