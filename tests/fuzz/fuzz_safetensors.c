/* fuzz_safetensors.c — a safetensors file: header parsed, every tensor found and read as F32. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vt_safetensors st;
    if (vt_st_open(&st, fz_write("model.safetensors", data, size)) == 0) {
        for (int i = 0; i < st.n_tensors; i++) {
            const vt_st_tensor *t = vt_st_find(&st, st.tensors[i].name);
            if (!t || t->n_elems > (1u << 20)) continue;
            float *dst = malloc(sizeof(float) * (t->n_elems ? t->n_elems : 1));
            if (dst) vt_st_read_f32(&st, t, dst);
            free(dst);
        }
        vt_st_close(&st);
    }
    return 0;
}
