/* save_clock.c — the checkpoint votes of a training loop (see save_clock.h). */
#include "train/save_clock.h"

#include "util/clock.h"

void vt_save_clock_due(const vt_save_clock *k, const vt_ckpt_policy *policy, volatile sig_atomic_t *stop,
                       int world_rank, long done, double votes[2]) {
    votes[0] = stop && *stop ? 1.0 : 0.0;
    votes[1] = 0.0;
    if (world_rank == 0) {
        int by_steps = policy->steps > 0 && done % policy->steps == 0;
        int by_time = policy->minutes > 0 && vt_seconds() - k->last_save >= 60.0 * policy->minutes;
        votes[1] = by_steps || by_time;
    }
}

void vt_save_clock_votes(const vt_save_clock *k, const vt_vib_params *p, int world_rank, long done, double votes[2]) {
    vt_save_clock_due(k, &p->ckpt, p->run.stop, world_rank, done, votes);
}
