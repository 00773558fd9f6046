/* tokenizer.h — one tokenizer over two file formats: llama2.c's tokenizer.bin (dummy prefix, byte
 * fallback, greedy highest-score merges, exactly as llama2.c run.c) and Hugging Face tokenizer.json
 * (BPE by merge rank: sentencepiece-style with byte fallback, or byte-level with a regex
 * pre-tokenizer; added tokens split out first); encoding, decoding pieces, finding it for a model. */
#ifndef VT_TOKENIZER_H
#define VT_TOKENIZER_H

#include <stddef.h>

#define VT_TOKEN_BOS 1
#define VT_TOKEN_EOS 2

typedef struct {
    const char *str;
    unsigned len;
    int id;
} vt_piece_ref;

typedef struct {
    char **vocab;             /* vocab_size NUL-terminated pieces (they share one allocation) */
    unsigned *vocab_len;      /* byte length of each piece */
    float *scores;            /* merge score of each piece; higher merges first */
    int vocab_size;           /* number of records in the file */
    unsigned max_token_length;
    vt_piece_ref *sorted;     /* the pieces sorted by bytes (then id), for lookup */
    int space_id;             /* id of " " (the dummy prefix), or -1 */
    char byte_pieces[512];    /* byte b as the string byte_pieces + 2*b */
    char **text;              /* tokenizer.json: the decoded text of each id; NULL for tokenizer.bin */
    int bos_id, eos_id, unk_id; /* -1 when the tokenizer has none */
    int add_bos;              /* whether encoding "with BOS" adds one (tokenizer_config.json's add_bos_token) */
    int sp_style;             /* decoding drops the space after BOS and turns "<0xXX>" into the byte */
    struct vt_hf_model *hf;   /* the tokenizer.json model, or NULL for tokenizer.bin */
} vt_tokenizer;

/* Loads a tokenizer.json (a path ending in .json or a file starting with '{') or a llama2.c
 * tokenizer.bin: u32 max_token_length, then records {f32 score, i32 len, len bytes} until the end of
 * the file. Errors name the file and what is wrong. */
int vt_tokenizer_load(vt_tokenizer *t, const char *path);
void vt_tokenizer_free(vt_tokenizer *t);

/* Id of the piece with exactly these bytes, or -1. */
int vt_tokenizer_lookup(const vt_tokenizer *t, const char *s, size_t len);

/* Whether path is a tokenizer.json by its name or first byte. */
int vt_tokenizer_is_json(const char *path);

/* Encodes text[0..len): optional BOS (when the tokenizer adds one) and EOS around the text's ids.
 * Characters the vocabulary cannot encode (no piece, no byte pieces) become its unk token, as HF
 * does; *n_unk (when not NULL) counts them. tokenizer.bin: see vt_encode. */
int vt_tokenizer_encode(const vt_tokenizer *t, const char *text, size_t len, int bos, int eos, int **ids, size_t *n,
                        size_t *n_unk);

/* Encodes text[0..len) like llama2.c encode(): optional BOS, a dummy-prefix " " when the text is
 * non-empty, one piece per UTF-8 code point (byte fallback id = byte + 3 when the code point is not
 * a piece), then repeatedly merges the adjacent pair whose concatenation is a piece with the highest
 * score (leftmost on ties), optional EOS. *ids is allocated (free() it), *n its length. */
int vt_encode(const vt_tokenizer *t, const char *text, size_t len, int bos, int eos, int **ids,
              size_t *n);

/* The text of token after prev_token, as llama2.c decode(): after BOS a leading space is dropped,
 * "<0xXX>" pieces become the raw byte (sentencepiece-style vocabularies; byte-level ones decode their
 * byte characters; a tokenizer.json's first piece, prev_token -1, also drops it). NULL when token is
 * out of range. */
const char *vt_decode_piece(const vt_tokenizer *t, int prev_token, int token);

/* Chooses the tokenizer for a model: `given` when not NULL; otherwise for an HF directory
 * <dir>/tokenizer.json, else <dir>/tokenizer.bin, or for a .bin file tokenizer.bin or a single tok*.bin (not the model) beside it,
 * else a tokenizer.json beside it.
 * Writes the path to out[cap]; errors say to pass --tokenizer. */
int vt_tokenizer_locate(const char *model_path, const char *given, char *out, size_t cap);

#endif
