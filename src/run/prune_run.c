/* prune_run.c — the pruning driver behind `vtrans-dist prune`, the same on one process and on
 * every rank of a pipeline (the vt_comm says which part this rank holds). */
#include "run/prune_run.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "io/archive_pack.h"
#include "prune/baselines.h"
#include "io/checkpoint_config.h"
#include "dist/comm.h"
#include "run/prune_write.h"
#include "prune/budget.h"
#include "data/calib.h"
#include "data/data.h"
#include "util/clock.h"
#include "util/error.h"
#include "nn/eval.h"
#include "util/fsutil.h"
#include "io/hf_writer.h"
#include "nn/model.h"
#include "report/report.h"
#include "io/tokenizer.h"
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
    int rc = comm->sum_world(comm, all, (size_t)(3 * n));
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

/* The trainer takes the run configuration's own sub-structs; the run directory defaults to
 * "<output.dir>.run". */
static int vib_params(const vt_run_config *rc, vt_vib_params *p) {
    *p = (vt_vib_params){.budget = rc->budget, .vib = rc->vib, .schedule = rc->schedule, .pipeline = rc->pipeline,
                         .ckpt = rc->ckpt};
    p->run = (vt_vib_runtime){.resume_dir = rc->resume[0] ? rc->resume : NULL, .resume_accept = rc->resume_accept,
                              .stop = &stop_requested, .log = stderr};
    if (!p->ckpt.dir[0]) return vt_path_fmt(p->ckpt.dir, sizeof p->ckpt.dir, "%s.run", rc->output.dir);
    return 0;
}

static int evaluate(vt_comm *c, const vt_model *m, const vt_tokens *ids, int window, const char *what, double *ppl) {
    vt_eval_result r;
    if (c->eval(c, m, ids->ids, ids->n, window, &r)) return vt_fail_context("evaluating %s", what);
    if (c->world_rank == 0)
        fprintf(stderr, "eval %s: ppl %.4f over %zu tokens (%.1f s)\n", what, r.ppl, r.tokens, r.seconds);
    *ppl = r.ppl;
    return 0;
}

int vt_prune_run(const vt_run_config *rc) {
    vt_config cfg;
    if (vt_checkpoint_config(rc->model.path, &cfg)) return -1;
    int n_layers = cfg.n_layers;
    vt_config_free(&cfg);
    return vt_prune_run_comm(rc, vt_comm_local(n_layers));
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
    for (size_t i = 0; i < calib_ids->n; i++)
        if (calib_ids->ids[i] < 0 || calib_ids->ids[i] >= cfg->vocab)
            return vt_fail("%s: token %zu has id %d, outside the model's vocabulary of %d", rc->data.calib, i,
                           calib_ids->ids[i], cfg->vocab);
    if (rc->method.name != VT_METHOD_VIB && stages > 1)
        return vt_fail("method.name = %s needs the whole model on every rank: run it with parallel.stages = 1",
                       vt_method_name(rc->method.name));
    return 0;
}
int vt_prune_run_comm(const vt_run_config *rc, vt_comm *comm) {
    int coordinator = comm->world_rank == 0;
    double t0 = vt_seconds();
    int rc_out = -1, have_tok = 0;
    vt_tokenizer tok;
    vt_tokens calib_ids = {0}, eval_ids = {0};
    vt_model model, pruned;
    memset(&model, 0, sizeof model);
    memset(&pruned, 0, sizeof pruned);
    vt_vib_result vib;
    memset(&vib, 0, sizeof vib);
    json_t *report = NULL;
    char tok_path[4096];

    vt_budget_kind kind = rc->budget.params > 0 ? VT_BUDGET_PARAMS : VT_BUDGET_FLOPS;
    double target = rc->budget.params > 0 ? rc->budget.params : rc->budget.flops;
    double ctx = vt_mean_ctx(rc->data.seq_len);

    if (vt_tokenizer_locate(rc->model.path, rc->model.tokenizer[0] ? rc->model.tokenizer : NULL, tok_path,
                            sizeof tok_path) == 0) {
        if (vt_tokenizer_load(&tok, tok_path)) return -1;
        have_tok = 1;
    } else if (rc->model.tokenizer[0]) {
        return -1;
    }
    vt_load_parts parts = {comm->stage_begin[comm->stage], comm->stage_begin[comm->stage + 1], vt_comm_first(comm),
                           vt_comm_last(comm)};
    /* Every rank loads only its own tensors; no rank goes on when another failed. */
    if (vt_comm_agree(comm, vt_model_load(&model, rc->model.path, parts))) goto done;
    double dense = vt_structure_size(&model.cfg, kind, ctx);
    int data_rc = vt_data_tokens(rc->data.calib, have_tok ? &tok : NULL, &calib_ids);
    if (data_rc == 0 && rc->data.eval[0]) data_rc = vt_data_tokens(rc->data.eval, have_tok ? &tok : NULL, &eval_ids);
    vt_calib calib;
    if (data_rc == 0)
        data_rc = vt_calib_init(&calib, calib_ids.ids, calib_ids.n, rc->data.fraction, rc->data.seq_len,
                                (size_t)rc->data.max_sequences);
    if (vt_comm_agree(comm, data_rc)) goto done;
    /* Impossible requests are refused before any work, by every rank together (one message). */
    if (vt_comm_agree(comm, check_request(rc, &model.cfg, &calib_ids, kind, target, ctx, comm->stages))) goto done;
    if (coordinator)
        fprintf(stderr, "prune: %s, %zu parameters, %s %s to %.0f%% of %s; %zu calibration sequences of %d tokens\n",
            rc->model.path, vt_params_total(&model.cfg), vt_method_name(rc->method.name),
            rc->method.name == VT_METHOD_VIB ? vt_variant_name(rc->vib.variant) : "",
            100.0 * target, kind == VT_BUDGET_PARAMS ? "parameters" : "FLOPs", calib.n_seq, calib.seq_len);

    double ppl_before = NAN, ppl_after = NAN;
    if (eval_ids.n && evaluate(comm, &model, &eval_ids, rc->data.eval_window, "before", &ppl_before)) goto done;

    double t_prune = vt_seconds();
    long steps = 0, tokens = 0;
    if (rc->method.name == VT_METHOD_VIB) {
        vt_vib_params p;
        if (vt_comm_agree(comm, vib_params(rc, &p))) goto done;
        const char *run_dir = p.ckpt.dir;
        /* what a resume must keep the same, recorded with the checkpoints and checked on --resume */
        char *settings = vt_run_config_resume_settings(rc);
        if (vt_comm_agree(comm, settings ? 0 : -1)) goto done;
        p.run.settings = settings;
        /* Machine-readable progress next to the checkpoints (appended across resumes). */
        FILE *jsonl = NULL;
        if (coordinator && vt_mkdir_p(run_dir) == 0) {
            char jp[4300];
            snprintf(jp, sizeof jp, "%s/progress.jsonl", run_dir);
            jsonl = fopen(jp, "a");
        }
        p.run.jsonl = jsonl;
        int trained = vt_vib_prune_part(&model, &calib, &p, comm, &vib);
        if (jsonl) fclose(jsonl);
        free(settings);
        if (trained) {
            if (comm->abort_all) comm->abort_all(comm, "training"); /* peers may wait on this rank */
            goto done;
        }
        if (vib.stopped) {
            if (coordinator)
                printf("stopped after step %ld with the training state saved in %s; continue with --resume %s\n",
                       vib.steps, run_dir, run_dir);
            rc_out = VT_EXIT_CHECKPOINTED;
            goto done;
        }
        pruned = vib.pruned;
        memset(&vib.pruned, 0, sizeof vib.pruned);
        steps = vib.steps;
        tokens = vib.tokens;
    } else {
        vt_score_kind sk = rc->method.name == VT_METHOD_MAGNITUDE ? VT_SCORE_MAGNITUDE
                           : rc->method.name == VT_METHOD_RANDOM  ? VT_SCORE_RANDOM
                                                                  : VT_SCORE_TAYLOR;
        int batches = sk == VT_SCORE_TAYLOR ? rc->method.taylor_batches : 0;
        if (vt_baseline_prune(&model, sk, &calib, batches, rc->schedule.batch_size, rc->vib.seed, kind,
                              target * dense, ctx, rc->budget.round_to, &pruned))
            goto done;
        steps = batches;
        tokens = (long)batches * rc->schedule.batch_size * rc->data.seq_len;
    }
    double prune_seconds = vt_seconds() - t_prune;
    if (eval_ids.n && evaluate(comm, &pruned, &eval_ids, rc->data.eval_window, "after", &ppl_after)) goto done;

    /* The report. */
    report = vt_report_structure(&model.cfg, &pruned.cfg, ctx);
    json_object_set_new(report, "method", json_string(vt_method_name(rc->method.name)));
    if (rc->method.name == VT_METHOD_VIB)
        json_object_set_new(report, "variant", json_string(vt_variant_name(rc->vib.variant)));
    json_t *budget = json_object();
    json_object_set_new(budget, "kind", json_string(kind == VT_BUDGET_PARAMS ? "params" : "flops"));
    json_object_set_new(budget, "target", json_real(target));
    json_object_set_new(budget, "achieved", json_real(vt_structure_size(&pruned.cfg, kind, ctx) / dense));
    json_object_set_new(report, "budget", budget);
    json_object_set_new(report, "ppl_before", isnan(ppl_before) ? json_null() : json_real(ppl_before));
    json_object_set_new(report, "ppl_after", isnan(ppl_after) ? json_null() : json_real(ppl_after));
    json_object_set_new(report, "eval_window", json_integer(rc->data.eval_window));
    json_object_set_new(report, "steps", json_integer(steps));
    json_object_set_new(report, "tokens", json_integer(tokens));
    json_object_set_new(report, "prune_seconds", json_real(prune_seconds));
    json_object_set_new(report, "wall_seconds", json_real(vt_seconds() - t0));
    if (vib.n_records) {
        json_t *curve = json_array();
        for (size_t i = 0; i < vib.n_records; i++) {
            const vt_train_record *r = &vib.records[i];
            json_t *e = json_object();
            json_object_set_new(e, "phase", json_string(r->phase ? "finetune" : "masks"));
            json_object_set_new(e, "step", json_integer(r->step + 1));
            json_object_set_new(e, "kd", json_real(r->kd));
            json_object_set_new(e, "kl", json_real(r->kl));
            json_object_set_new(e, "budget", json_real(r->budget));
            json_object_set_new(e, "size", json_real(r->hard_size));
            json_object_set_new(e, "expected_size", json_real(r->size));
            json_object_set_new(e, "beta", json_real(r->beta));
            json_object_set_new(e, "target", json_real(r->target));
            json_object_set_new(e, "seconds", json_real(r->seconds));
            json_array_append_new(curve, e);
        }
        json_object_set_new(report, "losses", curve);
        json_object_set_new(report, "final_kd", json_real(vib.final_kd));
    }
    json_object_set_new(report, "config", vt_run_config_json(rc));

    /* The checkpoint directory appears only when complete. */
    if (vt_write_pruned(comm, &pruned, rc->output.dir, rc->output.overwrite, rc->output.dtype,
                        (size_t)rc->output.shard_size, have_tok ? tok_path : NULL, coordinator ? report : NULL) ||
        report_memory(comm, &vib))
        goto done;
    if (!coordinator) {
        rc_out = 0;
        goto done;
    }
    if (rc->output.archive != VT_ARCHIVE_NONE) { /* one file next to the directory */
        char packed[4200];
        int zst = rc->output.archive == VT_ARCHIVE_TAR_ZST;
        snprintf(packed, sizeof packed, "%s.%s", rc->output.dir, zst ? "tar.zst" : "tar");
        if (vt_pack_directory(rc->output.dir, packed, zst)) goto done;
        printf("packed %s\n", packed);
    }
    rc_out = 0;
    vt_report_print_table(stdout, &model.cfg, &pruned.cfg, ppl_before, ppl_after);
    printf("\nwrote %s (%s, report vtrans_report.json) in %.1f s\n", rc->output.dir, vt_dtype_name(rc->output.dtype),
           vt_seconds() - t0);
done:
    json_decref(report);
    vt_vib_result_free(&vib);
    if (pruned.arena) vt_model_free(&pruned);
    if (model.arena) vt_model_free(&model);
    vt_tokens_free(&calib_ids);
    vt_tokens_free(&eval_ids);
    if (have_tok) vt_tokenizer_free(&tok);
    return rc_out;
}
