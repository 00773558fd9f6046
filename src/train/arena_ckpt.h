/* arena_ckpt.h — checkpoints of a training loop whose state is one flat arena of trained
 * parameters and its Adam moments, the same on every data-parallel replica: the recovery stage
 * (lora adapters, or the kept model's layer weights for full) and plugin training. A checkpoint is
 * dir/ckpt-NNNNNNNN/state.bin (step, the loop's running figures, the parameters, the moments;
 * written by world rank 0), listed with its size and checksum in dir/manifest.json with the run's
 * settings (ckpt_store.h); the batch of a step follows from the step and the seed, so the step is
 * the data position. Saved every policy.steps steps or policy.minutes minutes (save_clock.h), and
 * when asked to stop. */
#ifndef VT_ARENA_CKPT_H
#define VT_ARENA_CKPT_H

#include <signal.h>
#include <stddef.h>
#include <stdio.h>

#include "dist/comm.h"
#include "nn/optim.h"
#include "train/ckpt_policy.h"
#include "train/save_clock.h"

/* Where and when one loop saves, and whether it resumes. */
typedef struct {
    vt_ckpt_policy policy;          /* policy.dir "": no checkpoints */
    int resume;                     /* continue from policy.dir's newest intact checkpoint, if any */
    const char *settings;           /* recorded and checked on resume (vt_run_config_resume_settings) */
    const char *accept;             /* --accept-changed keys */
    volatile sig_atomic_t *stop;    /* set by a signal handler: save after the step and stop */
    long stop_after;                /* testing (VT_STOP_AFTER=what:N): stop as if asked after step N; 0 never */
    const char *what;               /* "recovery", "plug": in messages */
    FILE *log;                      /* the coordinator's messages (NULL: none) */
    /* Optional, collective before every save: brings what other ranks hold of the state to world
     * rank 0 (plugins or the recovery trained over pipeline stages, each stage holding its layers'
     * run). */
    int (*gather)(void *arg, vt_comm *c);
    void *gather_arg;
    /* Optional, world rank 0's: the whole state gather fills, VT_ARENA_GROUPS groups of off 0 and
     * n = total, written in place of the loop's groups (those hold one stage's run); NULL: these. */
    const struct vt_arena_group *whole;
} vt_arena_run;

/* One group of trained parameters with its own Adam moments (n moments each). A checkpoint holds
 * the group's whole layout (total floats; 0: n); the loop's arrays are its run [off, off + n) (a
 * pipeline stage's layers), and a resume reads that run whatever the layout that saved it. */
typedef struct vt_arena_group {
    float *param;
    size_t n;
    vt_adam *adam;
    size_t off, total;
} vt_arena_group;

/* What a checkpoint holds: the step, the loop's figures and up to VT_ARENA_GROUPS parameter groups
 * (recovery: the adapters or weights, then lora's RMSNorm gains; plug: the plugin). The pointers
 * are the loop's own arrays; an unused group has n 0 and NULL pointers. */
#define VT_ARENA_GROUPS 2
typedef struct {
    long step;                      /* steps done */
    double stats[4];                /* the loop's running figures (first loss, last loss, ...) */
    vt_arena_group g[VT_ARENA_GROUPS];
} vt_arena_state;

/* stop_after for what from the environment: VT_STOP_AFTER=what:N (0 when unset or for another loop). */
long vt_arena_stop_after(const char *what);

/* Collective over the world: saves s as checkpoint s->step. */
int vt_arena_ckpt_save(const vt_arena_run *r, vt_comm *c, const vt_arena_state *s);

/* Collective: with r->resume and a manifest in r->policy.dir, the settings checked, then the newest
 * checkpoint every rank reads intact loaded into s (an older one when the newest is damaged, which
 * is said, naming the file). Returns 1 when loaded, 0 when there is nothing to resume (a fresh
 * start), -1 on failure. */
int vt_arena_ckpt_load(const vt_arena_run *r, vt_comm *c, vt_arena_state *s);

/* After a step (s->step done): the ranks vote (stop request, cadence), and save together when a
 * checkpoint is due. Returns 1 when the loop must stop (saved), 0 to go on, -1 on failure. */
int vt_arena_ckpt_tick(const vt_arena_run *r, vt_save_clock *k, vt_comm *c, const vt_arena_state *s);

#endif
