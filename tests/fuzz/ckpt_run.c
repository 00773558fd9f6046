/* ckpt_run.c — the run directory the training-checkpoint targets resume from (ckpt_run.h). */
#include "ckpt_run.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "testutil.h"
#include "train/vib_train.h"
#include "util/fsutil.h"
#include "util/rng.h"

static fz_ckpt_run R;
static int32_t stream[64 * 16];
static char run[512], newest[600];
static const char *const FILES[3] = {"manifest.json", "state.bin", "rank-00000.bin"};
static char *pristine[3];
static size_t pristine_size[3];
static json_t *manifest, *files, *pristine_entry[3]; /* parsed once; files: the newest entry's */
static int replaced = -1; /* the file the previous input replaced; the others are as made */

static const char *file_path(int which) {
    static char path[700];
    snprintf(path, sizeof path, "%s/%s", which ? newest : run, FILES[which]);
    return path;
}

static void write_or_die(const char *path, const void *data, size_t size) {
    if (vt_write_file(path, data, size) != 0) abort();
}

static void write_seeds(const char *dir) {
    for (int k = 0; k < 3; k++) {
        char path[700];
        snprintf(path, sizeof path, "%s/%s", dir, FILES[k]);
        char *buf = malloc(pristine_size[k] + 1);
        buf[0] = (char)k;
        memcpy(buf + 1, pristine[k], pristine_size[k]);
        write_or_die(path, buf, pristine_size[k] + 1);
        free(buf);
    }
    exit(0);
}

fz_ckpt_run *fz_ckpt_setup(void) {
    vt_config *cfg = &R.cfg; /* kept: the model's layers point into it */
    tu_small_config(cfg);
    tu_random_model(&R.model, cfg, 41);
    unsigned s = 5;
    for (size_t i = 0; i < sizeof stream / sizeof *stream; i++)
        stream[i] = (int32_t)(vt_lcg32(&s) >> 8) % cfg->vocab;
    if (vt_calib_init(&R.calib, stream, sizeof stream / sizeof *stream, 1.0, 16, 0) != 0) abort();
    vt_vib_params *p = &R.params;
    *p = tu_vib_params();
    p->schedule.steps = 6;
    p->schedule.finetune_steps = 2;
    p->vib.prune_interval = 4;
    snprintf(run, sizeof run, "%s/run", fz_dir());
    snprintf(p->ckpt.dir, sizeof p->ckpt.dir, "%s", run);
    p->ckpt.steps = 3; /* checkpoints at 3, 6 (masks); the newest kept are 3 and 6 */
    vt_vib_result r;
    if (vt_vib_prune(&R.model, &R.calib, p, &r) != 0) abort();
    vt_vib_result_free(&r);
    snprintf(newest, sizeof newest, "%s/ckpt-00000006", run);
    for (int k = 0; k < 3; k++)
        if (vt_read_file(file_path(k), &pristine[k], &pristine_size[k]) != 0) abort();
    manifest = json_loadb(pristine[0], pristine_size[0], 0, NULL);
    json_t *list = json_object_get(manifest, "checkpoints");
    files = json_object_get(json_array_get(list, json_array_size(list) - 1), "files");
    for (int k = 1; k < 3; k++)
        if (!files || !(pristine_entry[k] = json_incref(json_object_get(files, FILES[k])))) abort();
    p->ckpt.dir[0] = '\0'; /* resume without saving again */
    p->run.resume_dir = run;
    if (getenv("VT_FUZZ_WRITE_SEED")) write_seeds(getenv("VT_FUZZ_WRITE_SEED"));
    return &R;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001B3ull;
    return h;
}

/* The manifest with the newest checkpoint's entry for FILES[which] recording size and checksum
 * (the parsed manifest is put back as made afterwards). */
static void rewrite_manifest(int which, const uint8_t *data, size_t size) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a64(data, size));
    json_t *entry = json_pack("{s:I, s:s}", "size", (json_int_t)size, "fnv1a64", hex);
    char *text = NULL;
    if (!entry || json_object_set_new(files, FILES[which], entry) || !(text = json_dumps(manifest, JSON_INDENT(1))))
        abort();
    fz_put(file_path(0), text, strlen(text));
    free(text);
    if (json_object_set(files, FILES[which], pristine_entry[which])) abort();
}

int fz_ckpt_place(const uint8_t *data, size_t size) {
    if (size == 0) return -1;
    int which = data[0] % 3;
    /* Only what the previous input changed is restored: the file it replaced, unless this input
     * replaces it again or it is the manifest and this input rewrites the manifest anyway. */
    if (replaced >= 0 && replaced != which && !(replaced == 0 && which != 0))
        fz_put(file_path(replaced), pristine[replaced], pristine_size[replaced]);
    replaced = which;
    fz_put(file_path(which), data + 1, size - 1);
    if (which) rewrite_manifest(which, data + 1, size - 1);
    return 0;
}
