/* fuzz_llama2c.c — a llama2.c checkpoint's header (its configuration and the size it implies). */
#include <string.h>

#include "fuzz_util.h"
#include "io/llama2c_bin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    vt_config c;
    memset(&c, 0, sizeof c);
    if (vt_llama2c_read_config(fz_write("model.bin", data, size), &c) == 0) vt_config_free(&c);
    return 0;
}
