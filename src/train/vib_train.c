/* vib_train.c — the VTrans loop (see vib_train.h): mask phase, decision, optional joint
 * fine-tuning, export; one process or one rank of a pipeline (the step is in train_step.c). */
#include "train/vib_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/error.h"
#include "dist/partition.h"
#include "prune/slice.h"
#include "train/train_ckpt.h"
#include "train/train_prune.h"
#include "train/train_step.h"
#include "train/trainer.h"


/* Global gradient-norm clipping over the gate (and weight) gradients. Every rank holds all gate
 * gradients but only its stage's weight gradients (the same on each replica of the stage), so the
 * weights' squares are summed over the world and divided by the replicas. */
static int clip_gradients(trainer *t, size_t w0, size_t wn) {
    if (t->p->schedule.clip <= 0) return 0;
    vt_masks *mk = &t->st.mk;
    double ss = vt_sumsq(mk->g_mu, mk->n) + vt_sumsq(mk->g_logvar, mk->n);
    if (t->opt.train_weights) {
        double ws = vt_sumsq(t->opt.dw.arena + w0, wn);
        if (vt_comm_sum_world(t->comm, &ws, 1)) return -1;
        ss += ws / t->comm->replicas;
    }
    double norm = sqrt(ss);
    if (norm <= t->p->schedule.clip) return 0;
    float s = (float)(t->p->schedule.clip / norm);
    vt_scale(mk->g_mu, mk->n, s);
    vt_scale(mk->g_logvar, mk->n, s);
    if (t->opt.train_weights) vt_scale(t->opt.dw.arena + w0, wn, s);
    return 0;
}

/* A progress line (and JSON line); rate and ETA from this phase's steps in this process (a resumed
 * run starts counting again), since = when and tokens0 = at which token count they began. */
static void report(trainer *t, const vt_train_record *r, long step, long total, long start, double since,
                   long tokens0) {
    const vt_vib_params *p = t->p;
    double el = vt_seconds() - since, rate = (double)(t->tokens - tokens0) / (el > 0 ? el : 1e-9);
    double eta = el / (double)(step + 1 - start) * (double)(total - step - 1);
    if (t->comm->world_rank != 0) return; /* the coordinator speaks for the run */
    if (p->run.log)
        fprintf(p->run.log,
                "%s step %ld/%ld | kd %.4f ce %.4f mse %.4f kl %.4f (beta %.2g) budget %+.4f | size %.4f "
                "(expected %.4f) target %.4f | %.0f tok/s | ETA %.0f s\n",
                r->phase ? "finetune" : "masks", step + 1, total, r->kd, r->ce, r->mse, r->kl, r->beta, r->budget,
                r->hard_size, r->size, r->target, rate, eta);
    if (p->run.jsonl)
        fprintf(p->run.jsonl,
                "{\"phase\": \"%s\", \"step\": %ld, \"kd\": %.6g, \"ce\": %.6g, \"mse\": %.6g, \"kl\": %.6g, "
                "\"budget\": %.6g, \"size\": %.6g, \"hard_size\": %.6g, \"target\": %.6g, \"beta\": %.6g, "
                "\"lambda1\": %.6g, \"lambda2\": %.6g, "
                "\"seconds\": %.3f, \"tokens\": %ld}\n",
                r->phase ? "finetune" : "masks", step + 1, r->kd, r->ce, r->mse, r->kl, r->budget, r->size,
                r->hard_size, r->target, r->beta, r->lambda1, r->lambda2, r->seconds, t->tokens);
    if (p->run.log) fflush(p->run.log);
    if (p->run.jsonl) fflush(p->run.jsonl);
}

static int keep_record(vt_vib_result *out, const vt_train_record *r) {
    vt_train_record *nr = realloc(out->records, sizeof *nr * (out->n_records + 1));
    if (!nr) return vt_fail("out of memory for the training log");
    out->records = nr;
    out->records[out->n_records++] = *r;
    return 0;
}

/* Saves a checkpoint after the step just done when one is due or asked for (a signal on any
 * rank): the ranks decide together by the votes the step summed. Returns 1 when the run must
 * stop (saved), 0 to go on, -1 on failure. */
static int maybe_checkpoint(trainer *t, int phase, long done_in_phase, long done, int last, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    if (!p->ckpt.dir[0]) return 0;
    if (t->clock.votes[0] == 0 && t->clock.votes[1] == 0 && !(last && p->run.save_last)) return 0;
    vt_ckpt_pos pos = {done, phase, done_in_phase};
    if (vt_ckpt_save(t, &pos, out)) return -1;
    t->clock.last_save = vt_seconds();
    if (t->clock.votes[0] == 0) return 0;
    if (p->run.log && t->comm->world_rank == 0)
        fprintf(p->run.log, "stopping on request after step %ld: checkpoint saved in %s\n", done, p->ckpt.dir);
    out->stopped = 1;
    out->steps = done;
    return 1;
}

/* The optimizer's step after global step s of total in this phase: gradients clipped, then Adam
 * on the gates (and in fine-tuning on the student's layer weights). */
static int optimizer_step(trainer *t, long s, long total) {
    const vt_vib_params *p = t->p;
    vt_masks *mk = &t->st.mk;
    vt_train_optim *o = &t->opt;
    size_t w0 = 0, wn = o->train_weights ? vt_layer_region(t->st.model, &w0) : 0;
    if (clip_gradients(t, w0, wn)) return -1;
    double lr = vt_lr_at(p->schedule.lr_schedule, p->schedule.lr_mask, s, total, p->schedule.warmup_steps);
    vt_adam_step(&o->adam_mu, mk->mu, mk->g_mu, lr);
    vt_adam_step(&o->adam_lv, mk->logvar, mk->g_logvar, lr);
    if (o->train_weights)
        vt_adam_step(&o->adam_w, t->st.own.arena + w0, o->dw.arena + w0,
                     vt_lr_at(p->schedule.lr_schedule, p->schedule.lr_weight, s, total, p->schedule.warmup_steps));
    return 0;
}

/* Runs `total` steps of one phase. */
static int run_phase(trainer *t, int phase, long start, long total, long *global_step, double t0, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    double since = vt_seconds();
    long tokens0 = t->tokens;
    for (long s = start; s < total; s++, (*global_step)++) {
        vt_train_record rec = {.step = *global_step, .phase = phase};
        if (vt_trainer_step(t, *global_step, phase, &rec)) return -1;
        if (optimizer_step(t, s, total)) return -1;
        rec.seconds = vt_seconds() - t0;
        out->final_kd = rec.kd;
        if (p->schedule.log_interval > 0 && ((s + 1) % p->schedule.log_interval == 0 || s + 1 == total)) {
            report(t, &rec, s, total, start, since, tokens0);
            if (keep_record(out, &rec)) return -1;
        }
        if (phase == 0 && p->vib.prune_interval > 0 && (s + 1) % p->vib.prune_interval == 0 && s + 1 < total) {
            int removed;
            if (vt_trainer_prune_crossed(t, &removed)) return -1;
            out->removed_early += (size_t)removed;
            if (removed && p->run.log && t->comm->world_rank == 0)
                fprintf(p->run.log, "masks step %ld: %d units pruned for good; %zu parameters remain\n", s + 1, removed,
                        vt_params_total(&t->st.model->cfg));
        }
        int last = s + 1 == total && (phase == 1 || vt_vib_finetune_steps(p) <= 0); /* of the whole training */
        int stop = maybe_checkpoint(t, phase, s + 1, *global_step + 1, last, out);
        if (stop) return stop;
    }
    return 0;
}

/* The coordinator's lines on the pipeline's shape and on packing. */
static void log_layout(const trainer *t) {
    const vt_vib_params *p = t->p;
    const vt_train_geom *g = &t->g;
    vt_comm *comm = t->comm;
    if (!p->run.log || comm->world_rank != 0) return;
    if (comm->stages > 1)
        fprintf(p->run.log,
                "pipeline: %d micro-batches per replica and step (%d of %d sequence(s), each in %d chunk(s) of %d "
                "tokens); bubble %.0f%%\n",
                g->K, g->M, g->Bm, g->C, g->Tc, 100.0 * vt_pipeline_bubble(comm->stages, g->K));
}

static void log_packing(const trainer *t) {
    const vt_vib_params *p = t->p;
    if (!p->run.log || t->comm->world_rank != 0 || !p->pipeline.pack_weights) return;
    size_t packed = vt_trainer_pack_bytes(t);
    if (t->st.packed)
        fprintf(p->run.log,
                "weights: packed once for BLIS's micro-kernel, %.0f MiB on rank 0 (%d thread(s) per rank), held in %s "
                "(%zu bytes)\n",
                packed / 1048576.0, vt_threads(), vt_dtype_name(t->st.model->hold), packed);
    else
        fprintf(p->run.log, "weights: not packed: BLIS's micro-kernel on this CPU does not store by rows\n");
}

/* Everything before the first step: the trainer's parts and the teacher cache; a resume with
 * another layout or changed settings is refused before any work. */
static int set_up(trainer *t, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    log_layout(t);
    if (p->run.resume_dir && vt_ckpt_check(t, p->run.resume_dir)) return -1;
    if (vt_trainer_alloc(t)) return -1;
    log_packing(t);
    double tc = vt_seconds();
    if (vt_trainer_cache_teacher(t)) return -1;
    if (p->run.log && t->comm->world_rank == 0)
        fprintf(p->run.log, "teacher cache: %zu calibration sequences, sharded over %d replica(s), in %.1f s\n",
                t->calib->n_seq, t->comm->replicas, vt_seconds() - tc);
    vt_trainer_bytes(t, &out->weight_bytes, &out->work_bytes);
    t->clock.last_save = vt_seconds();
    return 0;
}

/* Where training starts: step 0, or the newest checkpoint of a resume, checked against the
 * phases' lengths (which may grow on resume, or shrink down to where the checkpoint is). */
static int start_position(trainer *t, vt_ckpt_pos *pos, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    *pos = (vt_ckpt_pos){0, 0, 0};
    if (p->run.resume_dir && vt_ckpt_load(t, p->run.resume_dir, pos, out)) return -1;
    if (pos->phase == 1 && vt_vib_finetune_steps(p) <= 0)
        return vt_fail("%s: the checkpoint is in the fine-tuning phase but schedule.finetune_steps = 0; resume with "
                       "the run's own configuration", p->run.resume_dir);
    long phase_total = pos->phase ? vt_vib_finetune_steps(p) : p->schedule.steps;
    if (pos->phase_step > phase_total)
        return vt_fail("%s: the checkpoint is at %s step %ld, past schedule.%s = %ld; set it to at least %ld to resume",
                       p->run.resume_dir, pos->phase ? "fine-tuning" : "mask", pos->phase_step,
                       pos->phase ? "finetune_steps" : "steps", phase_total, pos->phase_step);
    return 0;
}

/* Joint fine-tuning: the student sliced to the decided structure without folding, its weights
 * trained too (no packs: they change). */
static int start_finetune(trainer *t, const uint8_t *keep) {
    t->opt.train_weights = 1; /* first: the sliced student's allocation must not pack */
    if (vt_trainer_slice(t, keep)) return -1;
    return vt_train_optim_weights(&t->opt, &t->st.own, t->p->schedule.weight_decay);
}

/* The fine-tuning phase from step `start`; *keep (the decision) becomes every remaining unit. */
static int run_finetune(trainer *t, long start, long *step, double t0, uint8_t **keep, vt_vib_result *out) {
    const vt_train_optim *o = &t->opt;
    out->weight_state_bytes = sizeof(float) * (o->dw.arena_floats + 2 * o->adam_w.n);
    size_t wb, ab;
    vt_trainer_bytes(t, &wb, &ab);
    out->weight_bytes = wb > out->weight_bytes ? wb : out->weight_bytes;
    out->work_bytes = ab > out->work_bytes ? ab : out->work_bytes;
    int stop = run_phase(t, 1, start, vt_vib_finetune_steps(t->p), step, t0, out);
    if (stop) return stop;
    free(*keep);
    *keep = vt_malloc(t->st.mk.n, "keep flags");
    if (!*keep) return -1;
    memset(*keep, 1, t->st.mk.n); /* the structure is decided: every remaining unit stays */
    return 0;
}

/* The phases from pos: masks, decision, fine-tuning. *keep receives the decision. Returns 1 when
 * stopped on request (saved), 0 when done, -1 on failure. */
static int train(trainer *t, const vt_ckpt_pos *pos, long *step, double t0, uint8_t **keep, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    int stop = 0;
    if (pos->phase == 0) {
        stop = run_phase(t, 0, pos->phase_step, p->schedule.steps, step, t0, out);
        if (stop) return stop;
        if (vt_trainer_decide(t, keep)) return -1;
        if (vt_vib_finetune_steps(p) > 0 && start_finetune(t, *keep)) return -1;
    }
    if (vt_vib_finetune_steps(p) > 0) return run_finetune(t, pos->phase == 1 ? pos->phase_step : 0, step, t0, keep, out);
    return 0;
}

/* Export: kept units carry z = mu folded into the weights. Training memory goes first, so the
 * pruned copy does not add to the peak. The map says where the kept units sit in the dense model
 * (the student may have been sliced by iterative pruning already). */
static int export_pruned(trainer *t, const vt_model *teacher, const uint8_t *keep, vt_vib_result *out) {
    vt_trainer_free_work(t);
    const vt_masks *mk = &t->st.mk;
    float *z = vt_malloc(sizeof(float) * mk->n, "final gates");
    if (!z) return -1;
    for (size_t i = 0; i < mk->n; i++) z[i] = keep[i] ? mk->mu[i] : 0.0f;
    int rc = vt_slice_model(t->st.model, mk, z, keep, 1, &out->pruned);
    if (rc == 0) rc = vt_slice_map_build(&out->map, mk, &t->st.model->cfg, z, keep);
    if (rc == 0) vt_slice_map_to_dense(&out->map, mk, &t->st.model->cfg, &out->pruned.cfg, &teacher->cfg);
    free(z);
    return rc;
}

int vt_vib_prune_part(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_comm *comm,
                      vt_vib_result *out) {
    memset(out, 0, sizeof *out);
    trainer t;
    if (vt_trainer_init(&t, teacher, calib, p, comm)) return -1;
    double t0 = vt_seconds();
    uint8_t *keep = NULL;
    vt_ckpt_pos pos;
    long step = 0;
    int rc = -1, stop = 0;
    if (set_up(&t, out) || start_position(&t, &pos, out)) goto done;
    step = pos.step;
    stop = train(&t, &pos, &step, t0, &keep, out);
    if (stop < 0) goto done;
    if (stop == 0) { /* else saved and asked to stop: no result this time */
        if (export_pruned(&t, teacher, keep, out)) goto done;
        out->steps = step;
        out->tokens = t.tokens;
        out->seconds = vt_seconds() - t0;
    }
    rc = 0;
done:
    free(keep);
    vt_trainer_free(&t);
    if (rc) vt_vib_result_free(out);
    return rc;
}

int vt_vib_prune(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_vib_result *out) {
    return vt_vib_prune_part(teacher, calib, p, vt_comm_local(teacher->cfg.n_layers), out);
}

void vt_vib_result_free(vt_vib_result *r) {
    if (r->pruned.arena) vt_model_free(&r->pruned);
    vt_slice_map_free(&r->map);
    free(r->records);
    r->records = NULL;
    r->n_records = 0;
}
