/* fuzz_train_ckpt.c — a training run directory resumed from, and the run finished from there
 * (the training that follows a load: slow, about one execution a second; fuzz_train_state reads
 * the same inputs without training). Inputs: ckpt_run.h. */
#include "ckpt_run.h"
#include "train/vib_train.h"

static fz_ckpt_run *run;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    run = fz_ckpt_setup();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fz_ckpt_place(data, size)) return 0;
    vt_vib_result r;
    if (vt_vib_prune(&run->model, &run->calib, &run->params, &r) == 0) vt_vib_result_free(&r);
    return 0;
}
