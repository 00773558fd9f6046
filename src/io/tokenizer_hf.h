/* tokenizer_hf.h — Hugging Face tokenizer.json BPE models behind vt_tokenizer: the parsed model
 * (shared by the loader tokenizer_json.c and the encoder tokenizer_hf.c). */
#ifndef VT_TOKENIZER_HF_H
#define VT_TOKENIZER_HF_H

#include <stddef.h>
#include <stdint.h>

#include "io/tokenizer.h"

typedef struct {
    char *content; /* as matched: normalized first when `normalized` */
    size_t len;
    int id, normalized, lstrip, rstrip, single_word, special;
} vt_added_token;

enum { VT_NORM_PREPEND, VT_NORM_REPLACE };
typedef struct {
    int kind;
    char *a, *b; /* prepend a; or replace a with b */
} vt_norm_op;

enum { VT_PRE_METASPACE, VT_PRE_BYTELEVEL, VT_PRE_SPLIT };
enum { VT_SPLIT_ISOLATED, VT_SPLIT_REMOVED, VT_SPLIT_MERGE_PREV, VT_SPLIT_MERGE_NEXT };
enum { VT_PREPEND_NEVER, VT_PREPEND_ALWAYS, VT_PREPEND_FIRST };
typedef struct {
    int kind;
    char *replacement; /* Metaspace */
    int prepend;       /* Metaspace: VT_PREPEND_*; ByteLevel: add_prefix_space */
    int split;         /* Metaspace: split before each replacement */
    void *re;          /* pcre2_code: ByteLevel's GPT-2 pattern (use_regex) or Split's pattern */
    char *pattern;     /* re's source (GGUF export names it for llama.cpp); NULL without re or for
                        * a Split on a literal string */
    int behavior;      /* Split: VT_SPLIT_* */
} vt_pre_op;

typedef struct {
    uint64_t key; /* (a + 1) << 32 | (b + 1); 0 is an empty slot */
    int rank, id;
} vt_merge_slot;

struct vt_hf_model {
    vt_merge_slot *merges;
    size_t merge_mask; /* slots - 1 (a power of two minus one) */
    vt_added_token *added;
    size_t n_added;
    vt_norm_op *norm;
    size_t n_norm;
    vt_pre_op *pre;
    size_t n_pre;
    int byte_fallback, fuse_unk, ignore_merges, byte_level;
    int byte_id[256];      /* the "<0xXX>" piece of each byte, or -1 */
    int byte_char_id[256]; /* byte-level: the piece of each byte's stand-in character, or -1 */
};

int vt_hf_load(vt_tokenizer *t, const char *path);
void vt_hf_free(vt_tokenizer *t);
int vt_hf_encode(const vt_tokenizer *t, const char *text, size_t len, int bos, int eos, int **ids, size_t *n,
                 size_t *n_unk);

/* Sentencepiece-style scores for t's pieces (a GGUF "llama" vocabulary merges the pair whose
 * result scores highest): -rank of the first merge producing the piece, -1e9 for pieces no merge
 * produces. malloc'ed vocab_size floats, or NULL (error set). */
float *vt_hf_piece_scores(const vt_tokenizer *t);

/* The merge of a then b: 1 with its rank and merged id, else 0. */
int vt_hf_merge_find(const struct vt_hf_model *m, int a, int b, int *rank, int *id);

/* text[0..len) through the normalizer: a new NUL-terminated string of *out_len bytes, or NULL. */
char *vt_hf_normalize(const struct vt_hf_model *m, const char *text, size_t len, size_t *out_len);

/* GPT-2's ByteLevel pre-tokenizer pattern (HF tokenizers' byte_level.rs). */
extern const char VT_GPT2_PATTERN[];

/* GPT-2's stand-in code point for byte b (printable bytes stand for themselves). */
unsigned vt_byte_level_char(unsigned char b);

#endif
