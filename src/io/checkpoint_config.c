/* checkpoint_config.c — reads a checkpoint's configuration and nothing else. */
#include "io/checkpoint_config.h"

#include "util/error.h"
#include "util/fsutil.h"
#include "io/gguf_model.h"
#include "io/hf_checkpoint.h"
#include "io/llama2c_bin.h"

int vt_checkpoint_config(const char *path, vt_config *c) {
    if (vt_is_dir(path)) {
        vt_hf_checkpoint ck;
        if (vt_hf_open(&ck, path)) return -1;
        int rc = vt_config_copy(c, &ck.cfg);
        vt_hf_close(&ck);
        return rc;
    }
    if (!vt_path_exists(path)) return vt_fail("%s: no such file or directory", path);
    if (vt_gguf_is_file(path)) return vt_gguf_read_config(path, c);
    return vt_llama2c_read_config(path, c);
}
