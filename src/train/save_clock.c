/* save_clock.c — the checkpoint votes of a VTrans run (see save_clock.h). */
#include "train/save_clock.h"

#include "util/clock.h"

void vt_save_clock_votes(const vt_save_clock *k, const vt_vib_params *p, int world_rank, long done, double votes[2]) {
    votes[0] = p->run.stop && *p->run.stop ? 1.0 : 0.0;
    votes[1] = 0.0;
    if (world_rank == 0) {
        int by_steps = p->ckpt.steps > 0 && done % p->ckpt.steps == 0;
        int by_time = p->ckpt.minutes > 0 && vt_seconds() - k->last_save >= 60.0 * p->ckpt.minutes;
        votes[1] = by_steps || by_time;
    }
}
