/* fuzz_hf_config.c — an HF config.json read into a model configuration. */
#include <string.h>

#include "fuzz_util.h"
#include "io/hf_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vt_config c;
    int dtype;
    memset(&c, 0, sizeof c);
    if (vt_hf_config_read(fz_write("config.json", data, size), &c, &dtype) == 0) {
        vt_config_is_dense(&c);
        vt_config_free(&c);
    }
    return 0;
}
