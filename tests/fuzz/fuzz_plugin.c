/* fuzz_plugin.c — a plugin file (src/io/plugin_file.c): its metadata read, then the whole plugin
 * loaded for the tiny test model whose fingerprint the seed records. With VT_FUZZ_WRITE_SEED=path
 * it writes a valid plugin for that model as path (the seed corpus) and exits. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "io/plugin_file.h"
#include "testutil.h"

#define FP 0x5EEDF00DCAFEull

static vt_config cfg;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    tu_small_config(&cfg);
    const char *seed = getenv("VT_FUZZ_WRITE_SEED");
    if (seed) {
        vt_plugin p;
        if (vt_plugin_alloc(&p, &cfg, 2, 4) != 0) abort();
        vt_plugin_init(&p, 7);
        int rc = vt_plugin_save(seed, &p, &cfg, FP, "tiny-model");
        vt_plugin_free(&p);
        exit(rc ? 1 : 0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write("plugin.safetensors", data, size);
    vt_plugin_meta meta;
    if (vt_plugin_file_meta(path, &meta) == 0) vt_plugin_meta_free(&meta);
    vt_plugin p;
    if (vt_plugin_load(path, &cfg, FP, "tiny-model", &p) == 0) vt_plugin_free(&p);
    return 0;
}
