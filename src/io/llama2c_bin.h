/* llama2c_bin.h — llama2.c v0 checkpoints (.bin): 7 int32 header, then fp32 weights in Meta's
 * interleaved-RoPE layout. Rank-local: only the requested parts are copied out of the map. */
#ifndef VT_LLAMA2C_BIN_H
#define VT_LLAMA2C_BIN_H

#include "nn/model.h"

/* Reads and checks the header (and that the file size matches it) into c (layers[] allocated). */
int vt_llama2c_read_config(const char *path, vt_config *c);

/* Loads the parts of the model a rank needs. The classifier of a tied model is the embedding. */
int vt_llama2c_load(vt_model *m, const char *path, vt_load_parts parts);

#endif
