/* fuzz_train_state.c — a training run directory resumed from without training: the manifest
 * checked, the newest usable checkpoint's state.bin and rank file loaded into a fresh trainer,
 * then what reads the loaded gates first (iterative pruning, the budget decision). The inputs of
 * fuzz_train_ckpt (ckpt_run.h), at thousands of executions a second instead of one. */
#include <stdlib.h>

#include "ckpt_run.h"
#include "train/train_ckpt.h"
#include "train/train_prune.h"
#include "train/trainer.h"
#include "train/vib_train.h"

static fz_ckpt_run *run;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    run = fz_ckpt_setup();
    /* Resumed as micro-batches of one sequence (the checkpoint does not depend on them): each
     * activation tape then stays under ASan's 128 kB limit for its size-class allocator, where the
     * one tape of 4 sequences (150 kB) was mapped and unmapped at every execution (with the rest of
     * the trainer's buffers, nearly half the time of an execution). */
    run->params.pipeline.micro_batches = run->params.schedule.batch_size;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fz_ckpt_place(data, size)) return 0;
    const vt_vib_params *p = &run->params;
    trainer t;
    if (vt_trainer_init(&t, &run->model, &run->calib, p, vt_comm_local(run->model.cfg.n_layers)) != 0) return 0;
    vt_ckpt_pos pos;
    vt_vib_result out = {0};
    if (vt_ckpt_check(&t, p->run.resume_dir) == 0 && vt_trainer_alloc(&t) == 0 &&
        vt_ckpt_load(&t, p->run.resume_dir, &pos, &out) == 0 && pos.phase == 0) {
        int removed;
        uint8_t *keep = NULL;
        if (vt_trainer_prune_crossed(&t, &removed) == 0 && vt_trainer_decide(&t, &keep) == 0) free(keep);
    }
    vt_vib_result_free(&out);
    vt_trainer_free(&t);
    return 0;
}
