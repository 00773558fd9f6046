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
#include "train/trainer.h"


/* Global gradient-norm clipping over the gate (and weight) gradients. Every rank holds all gate
 * gradients but only its stage's weight gradients (the same on each replica of the stage), so the
 * weights' squares are summed over the world and divided by the replicas. */
static int clip_gradients(trainer *t, size_t w0, size_t wn) {
    if (t->p->schedule.clip <= 0) return 0;
    double ss = vt_sumsq(t->mk.g_mu, t->mk.n) + vt_sumsq(t->mk.g_logvar, t->mk.n);
    if (t->train_weights) {
        double ws = vt_sumsq(t->dw.arena + w0, wn);
        if (t->comm->sum_world(t->comm, &ws, 1)) return -1;
        ss += ws / t->comm->replicas;
    }
    double norm = sqrt(ss);
    if (norm <= t->p->schedule.clip) return 0;
    float s = (float)(t->p->schedule.clip / norm);
    vt_scale(t->mk.g_mu, t->mk.n, s);
    vt_scale(t->mk.g_logvar, t->mk.n, s);
    if (t->train_weights) vt_scale(t->dw.arena + w0, wn, s);
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

void vt_trainer_save_votes(const trainer *t, long done, double votes[2]) {
    const vt_vib_params *p = t->p;
    votes[0] = p->run.stop && *p->run.stop ? 1.0 : 0.0;
    votes[1] = 0.0;
    if (t->comm->world_rank == 0) {
        int by_steps = p->ckpt.steps > 0 && done % p->ckpt.steps == 0;
        int by_time = p->ckpt.minutes > 0 && vt_seconds() - t->last_save >= 60.0 * p->ckpt.minutes;
        votes[1] = by_steps || by_time;
    }
}

/* Saves a checkpoint after the step just done when one is due or asked for (a signal on any
 * rank): the ranks decide together by the votes the step summed. Returns 1 when the run must
 * stop (saved), 0 to go on, -1 on failure. */
static int maybe_checkpoint(trainer *t, int phase, long done_in_phase, long done, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    if (!p->ckpt.dir[0]) return 0;
    if (t->save_votes[0] == 0 && t->save_votes[1] == 0) return 0;
    vt_ckpt_pos pos = {done, phase, done_in_phase};
    if (vt_ckpt_save(t, &pos, out)) return -1;
    t->last_save = vt_seconds();
    if (t->save_votes[0] == 0) return 0;
    if (p->run.log && t->comm->world_rank == 0)
        fprintf(p->run.log, "stopping on request after step %ld: checkpoint saved in %s\n", done, p->ckpt.dir);
    out->stopped = 1;
    out->steps = done;
    return 1;
}

/* Runs `total` steps of one phase. */
static int run_phase(trainer *t, int phase, long start, long total, long *global_step, double t0, vt_vib_result *out) {
    const vt_vib_params *p = t->p;
    double since = vt_seconds();
    long tokens0 = t->tokens;
    for (long s = start; s < total; s++, (*global_step)++) {
        vt_train_record rec = {.step = *global_step, .phase = phase};
        if (vt_trainer_step(t, *global_step, phase, &rec)) return -1;
        size_t w0 = 0, wn = t->train_weights ? vt_trainer_layer_region(t->student, &w0) : 0;
        if (clip_gradients(t, w0, wn)) return -1;
        double lr = vt_lr_at(p->schedule.lr_schedule, p->schedule.lr_mask, s, total, p->schedule.warmup_steps);
        vt_adam_step(&t->adam_mu, t->mk.mu, t->mk.g_mu, lr);
        vt_adam_step(&t->adam_lv, t->mk.logvar, t->mk.g_logvar, lr);
        if (t->train_weights)
            vt_adam_step(&t->adam_w, t->own.arena + w0, t->dw.arena + w0, vt_lr_at(p->schedule.lr_schedule, p->schedule.lr_weight, s, total,
                                                                                    p->schedule.warmup_steps));
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
                        vt_params_total(&t->student->cfg));
        }
        int stop = maybe_checkpoint(t, phase, s + 1, *global_step + 1, out);
        if (stop) return stop;
    }
    return 0;
}

static void trainer_free(trainer *t) {
    vt_trainer_free_student(t);
    if (t->student == &t->own) vt_model_free(&t->own);
    if (t->train_weights) vt_model_free(&t->dw);
    vt_masks_free(&t->mk);
    vt_adam_free(&t->adam_mu);
    vt_adam_free(&t->adam_lv);
    vt_adam_free(&t->adam_w);
    vt_trainer_head_free(t);
    free(t->tok);
    free(t->tgt);
    free(t->ids);
}

/* Batch geometry: B sequences per step over D replicas and M micro-batches each, each sequence
 * cut into C chunks (the rules `plan` uses too: vt_micro_batches_choose, vt_seq_chunks_choose). */
int vt_trainer_geometry(trainer *t) {
    const vt_vib_params *p = t->p;
    int D = t->comm->replicas, M;
    if (p->schedule.batch_size % D)
        return vt_fail("schedule.batch_size = %d is not a multiple of the %d data-parallel replicas", p->schedule.batch_size, D);
    t->B = p->schedule.batch_size;
    t->Bd = p->schedule.batch_size / D;
    if (vt_micro_batches_choose(t->comm->stages, t->Bd, p->pipeline.micro_batches, &M)) return -1;
    t->M = M;
    t->Bm = t->Bd / M;
    if (vt_seq_chunks_choose(t->comm->stages, M, t->Bm, t->T, p->pipeline.seq_chunks, &t->C)) return -1;
    t->Tc = t->T / t->C;
    t->K = M * t->C;
    return 0;
}

int vt_vib_prune_part(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_comm *comm,
                      vt_vib_result *out) {
    memset(out, 0, sizeof *out);
    trainer t;
    memset(&t, 0, sizeof t);
    t.p = p;
    t.comm = comm;
    t.teacher = teacher;
    t.calib = calib;
    t.student = teacher;
    t.T = calib->seq_len;
    t.trace = getenv("VT_TRACE") && *getenv("VT_TRACE") && strcmp(getenv("VT_TRACE"), "0") != 0;
    t.ctx = vt_mean_ctx(t.T);
    t.dense_size = vt_structure_size(&teacher->cfg, vt_budget_spec_kind(&p->budget), t.ctx);
    double t0 = vt_seconds();
    int rc = -1;
    uint8_t *keep = NULL;
    float *z = NULL;
    if (vt_trainer_geometry(&t)) return -1;
    if (p->run.log && comm->world_rank == 0 && comm->stages > 1)
        fprintf(p->run.log,
                "pipeline: %d micro-batches per replica and step (%d of %d sequence(s), each in %d chunk(s) of %d "
                "tokens); bubble %.0f%%\n",
                t.K, t.M, t.Bm, t.C, t.Tc, 100.0 * vt_pipeline_bubble(comm->stages, t.K));
    /* a resume with another layout or changed settings is refused before any work */
    if (p->run.resume_dir && vt_ckpt_check(&t, p->run.resume_dir)) return -1;
    if (vt_masks_init(&t.mk, &teacher->cfg, p->vib.seed) || vt_adam_init(&t.adam_mu, t.mk.n, 0.0) ||
        vt_adam_init(&t.adam_lv, t.mk.n, 0.0) || vt_trainer_head_init(&t) || vt_trainer_alloc_student(&t))
        goto done;
    if (p->run.log && comm->world_rank == 0 && p->pipeline.pack_weights) {
        size_t packed = vt_trainer_pack_bytes(&t);
        if (t.packed)
            fprintf(p->run.log, "weights: packed once for BLIS's micro-kernel, %.0f MiB on rank 0\n", packed / 1048576.0);
        else if (vt_blis_threads() > 1)
            fprintf(p->run.log, "weights: not packed: parallel.pack_weights needs BLIS on one thread per rank (%d now)\n",
                    vt_blis_threads());
        else
            fprintf(p->run.log, "weights: not packed: BLIS's micro-kernel on this CPU does not store by rows\n");
    }
    t.tok = vt_malloc(sizeof(int32_t) * (size_t)t.Bd * t.T, "batch tokens");
    t.tgt = vt_malloc(sizeof(int32_t) * (size_t)t.Bd * t.T, "batch targets");
    t.ids = vt_malloc(sizeof(int64_t) * (size_t)t.B, "batch ids");
    if (!t.tok || !t.tgt || !t.ids) goto done;
    double tc = vt_seconds();
    if (vt_trainer_cache_teacher(&t)) goto done;
    if (p->run.log && comm->world_rank == 0)
        fprintf(p->run.log, "teacher cache: %zu calibration sequences, sharded over %d replica(s), in %.1f s\n",
                calib->n_seq, comm->replicas, vt_seconds() - tc);
    vt_trainer_bytes(&t, &out->weight_bytes, &out->work_bytes);
    t.last_save = vt_seconds();

    vt_ckpt_pos pos = {0, 0, 0};
    if (p->run.resume_dir && vt_ckpt_load(&t, p->run.resume_dir, &pos, out)) goto done;
    if (pos.phase == 1 && vt_vib_finetune_steps(p) <= 0) {
        vt_fail("%s: the checkpoint is in the fine-tuning phase but schedule.finetune_steps = 0; resume with "
                "the run's own configuration", p->run.resume_dir);
        goto done;
    }
    /* the phases may be lengthened on resume, or shortened down to where the checkpoint is */
    long phase_total = pos.phase ? vt_vib_finetune_steps(p) : p->schedule.steps;
    if (pos.phase_step > phase_total) {
        vt_fail("%s: the checkpoint is at %s step %ld, past schedule.%s = %ld; set it to at least %ld to resume",
                p->run.resume_dir, pos.phase ? "fine-tuning" : "mask", pos.phase_step,
                pos.phase ? "finetune_steps" : "steps", phase_total, pos.phase_step);
        goto done;
    }
    long step = pos.step;
    int stop = 0;
    if (pos.phase == 0) {
        stop = run_phase(&t, 0, pos.phase_step, p->schedule.steps, &step, t0, out);
        if (stop < 0 || (stop == 0 && vt_trainer_decide(&t, &keep))) goto done;
        if (stop == 0 && vt_vib_finetune_steps(p) > 0) {
            /* Joint fine-tuning: slice to the decided structure without folding, train weights too. */
            t.train_weights = 1; /* first: the sliced student's weights will change, so no packs */
            if (vt_trainer_slice(&t, keep)) goto done;
            vt_load_parts parts = {t.own.layer_begin, t.own.layer_end, t.own.has_embed, t.own.has_head};
            if (vt_model_alloc(&t.dw, &t.own.cfg, parts)) goto done;
            size_t w0, wn = vt_trainer_layer_region(&t.own, &w0);
            if (vt_adam_init(&t.adam_w, wn, p->schedule.weight_decay)) goto done;
        }
    }
    if (stop == 0 && vt_vib_finetune_steps(p) > 0) {
        out->weight_state_bytes = sizeof(float) * (t.dw.arena_floats + 2 * t.adam_w.n);
        size_t wb, ab;
        vt_trainer_bytes(&t, &wb, &ab);
        out->weight_bytes = wb > out->weight_bytes ? wb : out->weight_bytes;
        out->work_bytes = ab > out->work_bytes ? ab : out->work_bytes;
        stop = run_phase(&t, 1, pos.phase == 1 ? pos.phase_step : 0, vt_vib_finetune_steps(p), &step, t0, out);
        if (stop < 0) goto done;
        if (stop == 0) {
            free(keep);
            keep = vt_malloc(t.mk.n, "keep flags");
            if (!keep) goto done;
            memset(keep, 1, t.mk.n); /* the structure is decided: every remaining unit stays */
        }
    }
    if (stop) { /* saved and asked to stop: no result this time */
        rc = 0;
        goto done;
    }
    /* Export: kept units carry z = mu folded into the weights. Training memory goes first, so the
     * pruned copy does not add to the peak. */
    vt_trainer_free_student(&t);
    vt_trainer_head_free(&t);
    z = vt_malloc(sizeof(float) * t.mk.n, "final gates");
    if (!z) goto done;
    for (size_t i = 0; i < t.mk.n; i++) z[i] = keep[i] ? t.mk.mu[i] : 0.0f;
    if (vt_slice_model(t.student, &t.mk, z, keep, 1, &out->pruned)) goto done;
    out->steps = step;
    out->tokens = t.tokens;
    out->seconds = vt_seconds() - t0;
    rc = 0;
done:
    free(z);
    free(keep);
    trainer_free(&t);
    if (rc) vt_vib_result_free(out);
    return rc;
}

int vt_vib_prune(const vt_model *teacher, const vt_calib *calib, const vt_vib_params *p, vt_vib_result *out) {
    return vt_vib_prune_part(teacher, calib, p, vt_comm_local(teacher->cfg.n_layers), out);
}

void vt_vib_result_free(vt_vib_result *r) {
    if (r->pruned.arena) vt_model_free(&r->pruned);
    free(r->records);
    r->records = NULL;
    r->n_records = 0;
}
