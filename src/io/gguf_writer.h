/* gguf_writer.h — a model as one GGUF file that llama.cpp runs: architecture `llama` when every
 * layer has the same sizes, else `deci` with per-layer head, KV-head and FFN arrays; the vocabulary
 * embedded as tokenizer.ggml.* (llama.cpp's "llama" model for sentencepiece-style vocabularies,
 * "gpt2" with a named pre-tokenizer for byte-level ones); weights in F32, F16, BF16 or Q8_0. */
#ifndef VT_GGUF_WRITER_H
#define VT_GGUF_WRITER_H

#include <stdint.h>

#include "io/tokenizer.h"
#include "nn/model.h"

/* Parses "f32", "f16", "bf16", "q8_0" (any case) to a VT_GGML_* type. */
int vt_ggml_type_parse(const char *s, uint32_t *type);

/* Writes the whole model m to path through a temporary file renamed at the end (an existing path
 * is refused unless overwrite). tok must have m's vocabulary size; a byte-level tokenizer whose
 * pre-tokenizer regex llama.cpp does not know by name is refused. q/k rows are stored in
 * interleaved-RoPE order. Norms are stored F32; a Q8_0 tensor whose rows are not whole 32-blocks
 * is stored F16. llama.cpp's deci graph drops the attention output of a layer whose FFN is 0 and
 * reads the head size from layer 0's head count, so such layers get an exactly-zero FFN of width 1
 * / an exactly-zero attention head. */
int vt_gguf_write(const vt_model *m, const vt_tokenizer *tok, uint32_t type, const char *path, int overwrite);

#endif
