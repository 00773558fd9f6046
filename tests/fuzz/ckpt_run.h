/* ckpt_run.h — what the two training-checkpoint targets share: a real run directory of the tiny
 * test model (made once per process), one of whose files each input replaces. */
#ifndef VT_FUZZ_CKPT_RUN_H
#define VT_FUZZ_CKPT_RUN_H

#include <stddef.h>
#include <stdint.h>

#include "data/calib.h"
#include "nn/model.h"
#include "train/vib_params.h"

typedef struct {
    vt_config cfg;
    vt_model model;
    vt_calib calib;
    vt_vib_params params; /* set to resume from the run directory without saving */
} fz_ckpt_run;

/* Trains the tiny model 6 steps with checkpoints at 3 and 6 in fz_dir()/run; with
 * VT_FUZZ_WRITE_SEED=dir writes the three seeds (below) into dir and exits. */
fz_ckpt_run *fz_ckpt_setup(void);
/* The run directory restored, then the file data[0] % 3 picks (0 manifest.json, 1 the newest
 * checkpoint's state.bin, 2 its rank-00000.bin) replaced by data[1..size); for the state files
 * the manifest's size and checksum are rewritten to match, so the contents reach the parser
 * instead of stopping at the checksum. -1 for an empty input. */
int fz_ckpt_place(const uint8_t *data, size_t size);

#endif
