/* token_file.h — token streams in memory and pre-tokenized on disk: llm.c token shards (256-int32
 * header, uint16 or uint32 tokens) and raw little-endian uint32 streams. */
#ifndef VT_TOKEN_FILE_H
#define VT_TOKEN_FILE_H

#include <stddef.h>
#include <stdint.h>

#define VT_SHARD_MAGIC_U16 20240520 /* llm.c GPT-2 shards: version 1, uint16 tokens */
#define VT_SHARD_MAGIC_U32 20240801 /* llm.c LLaMA-3 shards: version 7, uint32 tokens */
#define VT_SHARD_HEADER_BYTES (256 * 4)

typedef struct {
    int32_t *ids;
    size_t n, cap;
} vt_tokens;

void vt_tokens_free(vt_tokens *t);
/* Appends n ids (grows the array). */
int vt_tokens_append(vt_tokens *t, const int *ids, size_t n);

/* 1 when data starts with an llm.c shard header (either magic). */
int vt_is_token_shard(const unsigned char *data, size_t size);
/* Appends the tokens of an llm.c shard / a raw uint32 stream held in memory. `name` is used in
 * errors. Ids must be < vocab_size (no check when vocab_size <= 0). */
int vt_tokens_parse_shard(const char *name, const unsigned char *data, size_t size, int vocab_size, vt_tokens *out);
int vt_tokens_parse_u32(const char *name, const unsigned char *data, size_t size, int vocab_size, vt_tokens *out);

/* Writes an llm.c shard: uint16 tokens (magic 20240520, version 1) when vocab_size <= 65536, else
 * uint32 (magic 20240801, version 7). Written to "<path>.tmp.<pid>" and renamed, so a failure
 * leaves no partial file. */
int vt_tokens_write(const char *path, const vt_tokens *t, int vocab_size);

#endif
