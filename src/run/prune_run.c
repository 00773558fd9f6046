/* prune_run.c — the pruning driver behind `vtrans-dist prune`, the same on one process and on
 * every rank of a pipeline (the vt_comm says which part this rank holds). */
#include "run/prune_run.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "io/archive_pack.h"
#include "prune/baselines.h"
#include "dist/comm.h"
#include "dist/pipeline.h"
#include "run/prune_refit.h"
#include "run/prune_write.h"
#include "prune/budget.h"
#include "data/calib.h"
#include "data/data.h"
#include "util/clock.h"
#include "util/error.h"
#include "nn/eval.h"
#include "util/fsutil.h"
#include "nn/model.h"
#include "report/report.h"
#include "io/tokenizer.h"
#include "train/recover.h"
#include "train/vib_train.h"

/* The coordinator prints every rank's peak resident memory so far, and for VTrans what the rank
 * held during training (weights; activations and caches), the figures the peak is measured against
 * and a user sizes the next job by. */
static int report_memory(vt_comm *comm, const vt_vib_result *r) {
    int n = comm->stages * comm->replicas;
    double *all = vt_calloc((size_t)(3 * n), sizeof(double), "memory report");
    if (!all) return -1;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    all[3 * comm->world_rank] = ru.ru_maxrss / 1024.0;
    all[3 * comm->world_rank + 1] = r->weight_bytes / 1048576.0;
    all[3 * comm->world_rank + 2] = r->work_bytes / 1048576.0;
    int rc = vt_comm_sum_world(comm, all, (size_t)(3 * n));
    if (rc == 0 && comm->world_rank == 0) {
        fprintf(stderr, "memory per rank (MiB):");
        for (int i = 0; i < n; i++) {
            fprintf(stderr, " %d: peak RSS %.0f", i, all[3 * i]);
            if (all[3 * i + 1] > 0) fprintf(stderr, " (held %.0f weights + %.0f activations and caches)",
                                            all[3 * i + 1], all[3 * i + 2]);
            fprintf(stderr, i + 1 < n ? ";" : "\n");
        }
    }
    free(all);
    return rc;
}


static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

void vt_prune_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

volatile sig_atomic_t *vt_prune_stop_flag(void) { return &stop_requested; }

int vt_run_ckpt_dir(const vt_run_config *rc, int resuming, const char *sub, char *out, size_t cap) {
    const char *base = resuming && rc->resume[0] ? rc->resume : rc->ckpt.dir;
    int r = base[0] ? vt_path_fmt(out, cap, "%s", base) : vt_path_fmt(out, cap, "%s.run", rc->output.dir);
    if (r == 0 && sub) r = vt_path_fmt(out + strlen(out), cap - strlen(out), "/%s", sub);
    return r ? vt_fail_context("the run directory") : 0;
}

static int vib_params(const vt_run_config *rc, vt_vib_params *p) {
    *p = (vt_vib_params){.budget = rc->budget, .vib = rc->vib, .schedule = rc->schedule, .pipeline = rc->pipeline,
                         .ckpt = rc->ckpt};
    p->run = (vt_vib_runtime){.resume_dir = rc->resume[0] ? rc->resume : NULL, .resume_accept = rc->resume_accept,
                              .stop = &stop_requested, .log = stderr,
                              .save_last = rc->recover.method != VT_RECOVER_NONE};
    return vt_run_ckpt_dir(rc, 0, NULL, p->ckpt.dir, sizeof p->ckpt.dir);
}

static int evaluate(vt_comm *c, const vt_model *m, const vt_tokens *ids, int window, const char *what, double *ppl) {
    vt_eval_result r;
    if (vt_pipeline_eval(c, m, ids->ids, ids->n, window, 0, &r, NULL, NULL))
        return vt_fail_context("evaluating %s", what);
    if (c->world_rank == 0)
        fprintf(stderr, "eval %s: ppl %.4f over %zu tokens (%.1f s)\n", what, r.ppl, r.tokens, r.seconds);
    *ppl = r.ppl;
    return 0;
}

/* What no run can do, known once the model and data are read: a budget below the smallest model
 * the structure allows, token ids outside the vocabulary, a baseline method split over stages. */
static int check_request(const vt_run_config *rc, const vt_config *cfg, const vt_tokens *calib_ids,
                         vt_budget_kind kind, double target, double ctx, int stages) {
    double dense = vt_structure_size(cfg, kind, ctx), min_size = vt_budget_min_size(cfg, kind, ctx, rc->budget.round_to);
    if (target * dense < min_size)
        return vt_fail("%s: budget.%s = %g is below the smallest model the structure allows (%.4g of the dense size)",
                       rc->source[0] ? rc->source : "configuration", kind == VT_BUDGET_PARAMS ? "params" : "flops",
                       target, min_size / dense);
    if (rc->budget.uniform && vt_budget_uniform_check(cfg, kind, ctx, rc->budget.round_to, target * dense))
        return vt_fail_context("%s", rc->source[0] ? rc->source : "configuration");
    for (size_t i = 0; i < calib_ids->n; i++)
        if (calib_ids->ids[i] < 0 || calib_ids->ids[i] >= cfg->vocab)
            return vt_fail("%s: token %zu has id %d, outside the model's vocabulary of %d", rc->data.calib, i,
                           calib_ids->ids[i], cfg->vocab);
    if (rc->method.name != VT_METHOD_VIB && stages > 1)
        return vt_fail("method.name = %s needs the whole model on every rank: run it with parallel.stages = 1",
                       vt_method_name(rc->method.name));
    return 0;
}

/* One run's state, shared by its steps. */
typedef struct {
    const vt_run_config *rc;
    vt_comm *comm; /* in one process NULL until the model says how many layers the run has */
    double t0;
    vt_budget_kind kind;
    double target, ctx, dense; /* the budget as a fraction, the mean context, the dense model's size */
    vt_tokenizer tok;
    int have_tok;
    char tok_path[4096];
    vt_tokens calib_ids, eval_ids;
    vt_calib calib;
    vt_model model, pruned; /* this rank's part before and after */
    vt_vib_result vib;
    vt_slice_map map;      /* where the pruned model's units sit in the dense one (the re-fit's) */
    vt_refit_stat *refit;  /* [n_layers][VT_REFIT_SLOTS] after the re-fit, else NULL */
    double ppl_before, ppl_masks, ppl_refit, ppl_after, prune_seconds, refit_seconds;
    vt_recover_result recovered;
    long steps, tokens;
    char *config_json;
    vt_run_report report;
} prune_ctx;

static int is_coordinator(const prune_ctx *x) { return x->comm->world_rank == 0; }

/* The tokenizer next to the model or named by model.tokenizer; a run without one reads token ids. */
static int load_tokenizer(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    if (vt_tokenizer_locate(rc->model.path, rc->model.tokenizer[0] ? rc->model.tokenizer : NULL, x->tok_path,
                            sizeof x->tok_path) == 0) {
        if (vt_tokenizer_load(&x->tok, x->tok_path)) return -1;
        x->have_tok = 1;
        return 0;
    }
    return rc->model.tokenizer[0] ? -1 : 0;
}

/* This rank's part of the model (the layout came from the checkpoint's config, cli/cmd_prune.c). */
static int load_model(prune_ctx *x) {
    vt_comm *c = x->comm;
    vt_load_parts parts = {c->stage_begin[c->stage], c->stage_begin[c->stage + 1], vt_comm_first(c), vt_comm_last(c)};
    /* 16-bit frozen weights for VTrans, which never trains them (fine-tuning trains a sliced fp32
     * copy); the baselines read them as fp32 */
    int hold16 = x->rc->model.hold == VT_HOLD_AUTO && x->rc->method.name == VT_METHOD_VIB;
    /* Every rank loads only its own tensors; no rank goes on when another failed. */
    if (vt_comm_agree(c, vt_model_load_held(&x->model, x->rc->model.path, parts, hold16))) return -1;
    if (x->rc->model.hold == VT_HOLD_FP32) x->model.hold = VT_F32;
    if (is_coordinator(x) && x->model.raw != VT_F32)
        fprintf(stderr, "model: frozen matrices held in %s as stored, widened in the matmuls (%.0f MiB of weights on rank 0)\n",
                vt_dtype_name(x->model.raw), vt_model_bytes(&x->model) / 1048576.0);
    x->dense = vt_structure_size(&x->model.cfg, x->kind, x->ctx);
    return 0;
}

/* The calibration tokens cut into sequences, and the evaluation tokens when data.eval is set. */
static int load_data(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    vt_tokenizer *tok = x->have_tok ? &x->tok : NULL;
    FILE *note = is_coordinator(x) ? stderr : NULL;
    int data_rc = vt_data_tokens_note(rc->data.calib, tok, &x->calib_ids, note);
    if (data_rc == 0 && rc->data.eval[0]) data_rc = vt_data_tokens_note(rc->data.eval, tok, &x->eval_ids, note);
    if (data_rc == 0)
        data_rc = vt_calib_init(&x->calib, x->calib_ids.ids, x->calib_ids.n, rc->data.fraction, rc->data.seq_len,
                                (size_t)rc->data.max_sequences);
    return vt_comm_agree(x->comm, data_rc);
}

/* Impossible requests are refused before any work, by every rank together (one message); then
 * the coordinator says what the run will do. */
static int check_and_announce(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    if (vt_comm_agree(x->comm, check_request(rc, &x->model.cfg, &x->calib_ids, x->kind, x->target, x->ctx,
                                             x->comm->stages)))
        return -1;
    if (is_coordinator(x))
        fprintf(stderr, "prune: %s, %zu parameters, %s %s to %.0f%% of %s; %zu calibration sequences of %d tokens\n",
                rc->model.path, vt_params_total(&x->model.cfg), vt_method_name(rc->method.name),
                rc->method.name == VT_METHOD_VIB ? vt_variant_name(rc->vib.variant) : "", 100.0 * x->target,
                x->kind == VT_BUDGET_PARAMS ? "parameters" : "FLOPs", x->calib.n_seq, x->calib.seq_len);
    return 0;
}

static int evaluate_before(prune_ctx *x) {
    return x->eval_ids.n ? evaluate(x->comm, &x->model, &x->eval_ids, x->rc->data.eval_window, "before",
                                    &x->ppl_before)
                         : 0;
}

static int evaluate_after(prune_ctx *x) {
    return x->eval_ids.n ? evaluate(x->comm, &x->pruned, &x->eval_ids, x->rc->data.eval_window, "after",
                                    &x->ppl_after)
                         : 0;
}

/* Machine-readable progress next to the checkpoints (appended across resumes; coordinator only). */
static FILE *open_progress(const prune_ctx *x, const char *run_dir) {
    if (!is_coordinator(x) || vt_mkdir_p(run_dir)) return NULL;
    char path[4300];
    snprintf(path, sizeof path, "%s/progress.jsonl", run_dir);
    return fopen(path, "a");
}

/* VTrans: train the masks (and fine-tune) over the calibration data, then slice. A requested stop
 * ends the run with the training state saved (VT_EXIT_CHECKPOINTED). */
static int prune_vib(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    vt_vib_params p;
    if (vt_comm_agree(x->comm, vib_params(rc, &p))) return -1;
    const char *run_dir = p.ckpt.dir;
    /* what a resume must keep the same, recorded with the checkpoints and checked on --resume */
    char *settings = vt_run_config_resume_settings(rc);
    if (vt_comm_agree(x->comm, settings ? 0 : -1)) return -1;
    p.run.settings = settings;
    p.run.jsonl = open_progress(x, run_dir);
    int trained = vt_vib_prune_part(&x->model, &x->calib, &p, x->comm, &x->vib);
    if (p.run.jsonl) fclose(p.run.jsonl);
    free(settings);
    if (trained) {
        vt_comm_abort_all(x->comm, "training"); /* peers may wait on this rank */
        return -1;
    }
    if (x->vib.stopped) {
        if (is_coordinator(x))
            printf("stopped after step %ld with the training state saved in %s; continue with --resume %s\n",
                   x->vib.steps, run_dir, run_dir);
        return VT_EXIT_CHECKPOINTED;
    }
    x->pruned = x->vib.pruned;
    memset(&x->vib.pruned, 0, sizeof x->vib.pruned);
    x->map = x->vib.map;
    memset(&x->vib.map, 0, sizeof x->vib.map);
    x->steps = x->vib.steps;
    x->tokens = x->vib.tokens;
    return 0;
}

/* A baseline: score the units (magnitude, random or Taylor over a few batches), keep the best. */
static int prune_baseline(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    vt_score_kind sk = rc->method.name == VT_METHOD_MAGNITUDE ? VT_SCORE_MAGNITUDE
                       : rc->method.name == VT_METHOD_RANDOM  ? VT_SCORE_RANDOM
                                                              : VT_SCORE_TAYLOR;
    int batches = sk == VT_SCORE_TAYLOR ? rc->method.taylor_batches : 0;
    if (vt_baseline_prune(&x->model, sk, &x->calib, batches, rc->schedule.batch_size, rc->vib.seed, x->kind,
                          x->target * x->dense, x->ctx, rc->budget.round_to, rc->budget.uniform, &x->pruned, &x->map))
        return -1;
    x->steps = batches;
    x->tokens = (long)batches * rc->schedule.batch_size * rc->data.seq_len;
    return 0;
}

static int prune_by_method(prune_ctx *x) {
    double t = vt_seconds();
    int rc = x->rc->method.name == VT_METHOD_VIB ? prune_vib(x) : prune_baseline(x);
    x->prune_seconds = vt_seconds() - t;
    return rc;
}

/* 1 when the weights were trained after the keep decision (VTrans full and fast: joint fine-tuning). */
static int weights_trained(const prune_ctx *x) {
    return x->rc->method.name == VT_METHOD_VIB && x->rc->vib.variant != VT_VARIANT_FASTER &&
           x->rc->schedule.finetune_steps > 0;
}

/* The re-fit runs on what the keep decision left, never after weight training: fitted to the dense
 * outputs it undoes that training (stories260K, VTrans full at 50%: 11.05 -> 44.08 with it). */
static int reconstructs(const prune_ctx *x) {
    return x->rc->reconstruct.method == VT_RECONSTRUCT_LSQ && !weights_trained(x);
}

static int recovers(const prune_ctx *x) { return x->rc->recover.method != VT_RECOVER_NONE; }

/* The pruned model as the keep decision left it, before the re-fit or the recovery changes it. */
static int evaluate_masks(prune_ctx *x) {
    return x->eval_ids.n && (reconstructs(x) || recovers(x)) ? evaluate(x->comm, &x->pruned, &x->eval_ids, x->rc->data.eval_window,
                                                       "masks only", &x->ppl_masks)
                                            : 0;
}

/* reconstruct.method = lsq: the kept weights re-fitted to the dense model's outputs. */
static int reconstruct(prune_ctx *x) {
    if (!reconstructs(x)) {
        if (x->rc->reconstruct.method == VT_RECONSTRUCT_LSQ && is_coordinator(x))
            fprintf(stderr, "re-fit skipped: VTrans %s trained the kept weights after the keep decision, and a re-fit "
                            "after weight training undoes it (docs/TRAINING.md)\n", vt_variant_name(x->rc->vib.variant));
        return 0;
    }
    double t = vt_seconds();
    size_t n = (size_t)x->model.cfg.n_layers * VT_REFIT_SLOTS;
    x->refit = vt_calloc(n, sizeof *x->refit, "re-fit statistics");
    if (vt_comm_agree(x->comm, x->refit ? 0 : -1)) return -1;
    vt_calib seqs; /* the calibration tokens cut to reconstruct.seq_len */
    if (vt_comm_agree(x->comm, vt_prune_refit_sequences(&x->calib, &x->rc->reconstruct, &seqs)) ||
        vt_prune_refit(x->comm, &x->model, &x->pruned, &x->map, &seqs, &x->rc->reconstruct, x->refit))
        return vt_fail_context("re-fitting the pruned model");
    x->refit_seconds = vt_seconds() - t;
    double solves = 0.0;
    for (size_t i = 0; i < n; i++) solves += x->refit[i].solve_seconds;
    if (is_coordinator(x))
        fprintf(stderr, "re-fit (%s target) on %d calibration sequences of %d tokens: %.1f s (solves: %.1f s over all "
                "layers)\n", vt_refit_target_name(x->rc->reconstruct.fit.target),
                x->rc->reconstruct.sequences < (long)seqs.n_seq ? x->rc->reconstruct.sequences : (int)seqs.n_seq,
                seqs.seq_len, x->refit_seconds, solves);
    return 0;
}

/* The re-fitted model before the recovery trains it. */
static int evaluate_refit(prune_ctx *x) {
    return x->eval_ids.n && reconstructs(x) && recovers(x)
               ? evaluate(x->comm, &x->pruned, &x->eval_ids, x->rc->data.eval_window, "re-fitted (before the recovery)",
                          &x->ppl_refit)
               : 0;
}

/* Where the recovery saves (<run dir>/recover) and whether it resumes; its settings are the run's. */
static int recover_ckpt(prune_ctx *x, vt_arena_run *ck) {
    const vt_run_config *rc = x->rc;
    *ck = (vt_arena_run){.policy = rc->ckpt, .resume = rc->resume[0] != 0, .accept = rc->resume_accept,
                         .stop = &stop_requested, .stop_after = vt_arena_stop_after("recover"), .what = "recovery",
                         .log = is_coordinator(x) ? stderr : NULL};
    ck->settings = vt_run_config_resume_settings(rc);
    int r = ck->settings ? vt_run_ckpt_dir(rc, ck->resume, "recover", ck->policy.dir, sizeof ck->policy.dir) : -1;
    return vt_comm_agree(x->comm, r);
}

/* [recover]: the kept model trained by distillation from the dense one (train/recover.h); its
 * tokens count with the run's. A requested stop ends the run with the recovery's state saved. */
static int recover(prune_ctx *x) {
    vt_recover_spec spec = x->rc->recover, *s = &spec;
    if (s->method == VT_RECOVER_NONE) return 0;
    spec.pack = x->rc->pipeline.pack_weights;
    vt_recover_result r;
    vt_arena_run ck;
    if (recover_ckpt(x, &ck)) return -1;
    int failed = vt_recover(&x->pruned, &x->model, &x->calib, s, x->comm, &ck, is_coordinator(x) ? stderr : NULL, &r);
    free((char *)ck.settings);
    if (failed) return -1;
    x->recovered = r;
    if (r.stopped) {
        if (is_coordinator(x))
            printf("stopped after recovery step %ld with its state saved in %s; continue with --resume\n", r.steps,
                   ck.policy.dir);
        return VT_EXIT_CHECKPOINTED;
    }
    if (is_coordinator(x))
        fprintf(stderr, "recover (%s): %ld steps, %ld tokens, %.1f s (%.3f s/step), %zu trained parameters, "
                        "Adam moments %.2f MiB per rank\n", vt_recover_method_name(s->method), r.steps, r.tokens,
                r.seconds, r.seconds / (double)r.steps, r.trained_params, r.adam_bytes / 1048576.0);
    x->tokens += r.tokens;
    return 0;
}

/* The run report (every rank fills it; the coordinator writes it with the checkpoint, and with it
 * the configuration). */
static int build_report(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    int vib = rc->method.name == VT_METHOD_VIB;
    int ok = !is_coordinator(x) || (x->config_json = vt_run_config_json(rc)) != NULL;
    if (vt_comm_agree(x->comm, ok ? 0 : -1)) return -1;
    x->report = (vt_run_report){
        .before = &x->model.cfg,
        .after = &x->pruned.cfg,
        .ctx = x->ctx,
        .method = vt_method_name(rc->method.name),
        .variant = vib ? vt_variant_name(rc->vib.variant) : NULL,
        .budget_kind = x->kind == VT_BUDGET_PARAMS ? "params" : "flops",
        .budget_target = x->target,
        .budget_achieved = vt_structure_size(&x->pruned.cfg, x->kind, x->ctx) / x->dense,
        .ppl_before = x->ppl_before,
        .ppl_masks = x->ppl_masks,
        .ppl_refit = x->ppl_refit,
        .ppl_after = x->ppl_after,
        .eval_window = rc->data.eval_window,
        .steps = x->steps,
        .tokens = x->tokens,
        .train_tokens = x->tokens,
        .reconstruct = reconstructs(x) ? vt_reconstruct_method_name(x->rc->reconstruct.method) : NULL,
        .refit = x->refit,
        .refit_seconds = x->refit_seconds,
        .recover = recovers(x) ? vt_recover_method_name(x->rc->recover.method) : NULL,
        .recover_steps = x->recovered.steps,
        .recover_tokens = x->recovered.tokens,
        .recover_seconds = x->recovered.seconds,
        .recover_loss = {x->recovered.first_loss, x->recovered.last_loss},
        .prune_seconds = x->prune_seconds,
        .wall_seconds = vt_seconds() - x->t0,
        .losses = x->vib.records,
        .n_losses = x->vib.n_records,
        .final_kd = x->vib.final_kd,
        .config_json = x->config_json,
    };
    return 0;
}

/* The checkpoint directory appears only when complete, with the report in it. */
static int write_checkpoint(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    if (rc->output.format == 1) { /* one GGUF file, written by the process that holds the whole model */
        static const uint32_t types[] = {VT_GGML_F32, VT_GGML_F16, VT_GGML_BF16};
        if (!is_coordinator(x)) return 0;
        if (!x->have_tok) return vt_fail("output.format = gguf embeds the tokenizer, and none was found");
        return vt_gguf_write(&x->pruned, &x->tok, rc->output.quantize ? VT_GGML_Q8_0 : types[rc->output.dtype],
                             rc->output.dir, rc->output.overwrite);
    }
    return vt_write_pruned(x->comm, &x->pruned, rc->output.dir, rc->output.overwrite, rc->output.dtype,
                           (size_t)rc->output.shard_size, x->have_tok ? x->tok_path : NULL, rc->model.path,
                           is_coordinator(x) ? &x->report : NULL);
}

static int print_memory(prune_ctx *x) { return report_memory(x->comm, &x->vib); }

/* output.archive: the directory packed into one file next to it. */
static int pack_archive(prune_ctx *x) {
    const vt_run_config *rc = x->rc;
    if (!is_coordinator(x) || rc->output.archive == VT_ARCHIVE_NONE) return 0;
    char packed[4200];
    int zst = rc->output.archive == VT_ARCHIVE_TAR_ZST;
    snprintf(packed, sizeof packed, "%s.%s", rc->output.dir, zst ? "tar.zst" : "tar");
    if (vt_pack_directory(rc->output.dir, packed, zst)) return -1;
    printf("packed %s\n", packed);
    return 0;
}

static int print_summary(prune_ctx *x) {
    if (!is_coordinator(x)) return 0;
    vt_report_print_table(stdout, &x->report);
    printf("\nwrote %s (%s, report vtrans_report.json) in %.1f s\n", x->rc->output.dir,
           vt_dtype_name(x->rc->output.dtype), vt_seconds() - x->t0);
    return 0;
}

/* A run, step by step; the first step that does not return 0 ends it with that return. */
static int (*const run_steps[])(prune_ctx *x) = {
    load_tokenizer,     /* next to the model, or model.tokenizer */
    load_model,         /* this rank's part */
    load_data,          /* calibration sequences, evaluation tokens */
    check_and_announce, /* impossible requests refused before any work */
    evaluate_before,    /* when data.eval is set */
    prune_by_method,    /* VTrans or a baseline */
    evaluate_masks,     /* the pruned model before its re-fit */
    reconstruct,        /* reconstruct.method = lsq */
    evaluate_refit,     /* the re-fitted model before the recovery */
    recover,            /* [recover]: distillation into the kept model */
    evaluate_after,
    build_report,
    write_checkpoint,   /* with the report, atomically */
    print_memory,       /* every rank's peak */
    pack_archive,       /* output.archive */
    print_summary,      /* the before/after table */
};

static void prune_ctx_free(prune_ctx *x) {
    free(x->config_json);
    vt_vib_result_free(&x->vib);
    vt_slice_map_free(&x->map);
    free(x->refit);
    if (x->pruned.arena) vt_model_free(&x->pruned);
    if (x->model.arena) vt_model_free(&x->model);
    vt_tokens_free(&x->calib_ids);
    vt_tokens_free(&x->eval_ids);
    if (x->have_tok) vt_tokenizer_free(&x->tok);
}

/* comm NULL: one process, the local transport once the model is read. */
static int prune_run(const vt_run_config *rc, vt_comm *comm) {
    prune_ctx x;
    memset(&x, 0, sizeof x);
    x.rc = rc;
    x.comm = comm;
    x.t0 = vt_seconds();
    x.kind = rc->budget.params > 0 ? VT_BUDGET_PARAMS : VT_BUDGET_FLOPS;
    x.target = rc->budget.params > 0 ? rc->budget.params : rc->budget.flops;
    x.ctx = vt_mean_ctx(rc->data.seq_len);
    x.ppl_before = x.ppl_masks = x.ppl_refit = x.ppl_after = NAN;
    int status = 0;
    for (size_t i = 0; i < sizeof run_steps / sizeof run_steps[0] && status == 0; i++) status = run_steps[i](&x);
    prune_ctx_free(&x);
    return status;
}

int vt_prune_run_comm(const vt_run_config *rc, vt_comm *comm) { return prune_run(rc, comm); }
