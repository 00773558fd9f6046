/* plug_run.c — plugin training over data-parallel replicas: calibration windows, each replica's
 * share of a batch through vt_plug_loss_grad, gradients summed over the replicas, Adam; then the
 * plugin file, continuation perplexity on data.eval and the JSON report. */
#include "run/plug_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "io/plugin_file.h"
#include "io/tokenizer.h"
#include "run/prune_run.h"
#include "train/arena_ckpt.h"
#include "nn/continuation.h"
#include "train/plug_step.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/rng.h"

int vt_plug_paths(const vt_run_config *rc, char *plugin, char *report, size_t cap) {
    if (vt_path_fmt(plugin, cap, "%s/plugin-k%d.safetensors", rc->output.dir, rc->plugin.k) ||
        vt_path_fmt(report, cap, "%s/plugin-k%d.json", rc->output.dir, rc->plugin.k))
        return vt_fail_context("output.dir");
    return 0;
}

/* The prompt length of windows of L tokens: round(prompt_fraction L), kept within 1..L-2. */
static int prompt_len(const vt_run_config *rc, int L) {
    int P = (int)lround(rc->plugin.prompt_fraction * L);
    return P < 1 ? 1 : P > L - 2 ? L - 2 : P;
}

/* The tokens of a data file with the model's tokenizer (model.tokenizer or the one beside it). */
static int read_tokens(const vt_run_config *rc, const char *path, vt_tokens *ids) {
    char tok_path[VT_PATH_MAX];
    vt_tokenizer tok;
    int have = vt_tokenizer_locate(rc->model.path, rc->model.tokenizer[0] ? rc->model.tokenizer : NULL, tok_path,
                                   sizeof tok_path) == 0;
    if (!have && rc->model.tokenizer[0]) return -1;
    if (have && vt_tokenizer_load(&tok, tok_path)) return -1;
    int r = vt_data_tokens(path, have ? &tok : NULL, ids);
    if (have) vt_tokenizer_free(&tok);
    return r;
}

typedef struct {
    const vt_run_config *rc;
    vt_comm *c;
    const vt_model *m;
    vt_plugin p;
    vt_plug_step st;
    vt_tokens calib;
    int32_t *batch; /* this replica's windows of a step */
    int L, P, share;
    size_t windows;
    double seconds, loss;
    long tokens;
    int stopped; /* stopped on request with a checkpoint saved */
} plug_ctx;

/* Windows of the step: batch_size windows of permutation (epoch) of the calibration windows,
 * replica d taking the d-th share, so the replicas together see what one process sees. */
static void fill_batch(plug_ctx *x, long step) {
    size_t B = (size_t)x->rc->plugin.batch_size;
    for (int i = 0; i < x->share; i++) {
        size_t j = (size_t)step * B + (size_t)x->c->replica * x->share + i, n = x->windows;
        size_t w = vt_permuted(n, x->rc->plugin.seed, j / n, j % n);
        memcpy(x->batch + (size_t)i * x->L, x->calib.ids + w * x->L, sizeof(int32_t) * x->L);
    }
}

/* One step: this replica's loss and gradient, their means over the replicas, Adam. */
static int train_step(plug_ctx *x, long step) {
    fill_batch(x, step);
    double loss = vt_plug_loss_grad(x->m, &x->p, &x->st, x->batch);
    int D = x->c->replicas;
    if (D > 1) { /* equal shares of equal windows: the batch's mean is the mean of the replicas' */
        if (vt_comm_sum_dp(x->c, x->st.grad.arena, x->st.grad.arena_floats) || vt_comm_sum_world(x->c, &loss, 1))
            return -1;
        vt_scale(x->st.grad.arena, x->st.grad.arena_floats, 1.0f / (float)D);
        loss /= D;
    }
    vt_adam_step(&x->st.adam, x->p.arena, x->st.grad.arena, x->rc->plugin.lr);
    x->loss = loss;
    return 0;
}

static void progress(const plug_ctx *x, long step, double t0) {
    int steps = x->rc->plugin.steps, every = x->rc->schedule.log_interval;
    if (x->c->world_rank != 0 || every <= 0 || (step % every != 0 && step != steps)) return;
    double el = vt_seconds() - t0, tps = el > 0 ? (double)step * x->rc->plugin.batch_size * x->L / el : 0;
    fprintf(stderr, "plug: step %ld/%d  KL %.6f  %.0f tokens/s  ETA %.0f s\n", step, steps, x->loss, tps,
            step ? el / step * (steps - step) : 0.0);
}

/* The calibration windows, the plugin at its start, the step's buffers: agreed on over the world. */
static int train_setup(plug_ctx *x) {
    const vt_run_config *rc = x->rc;
    int B = rc->plugin.batch_size, D = x->c->replicas, rcode = 0;
    x->L = rc->data.eval_window;
    x->P = prompt_len(rc, x->L);
    x->share = B / D;
    if (B % D)
        rcode = vt_fail("plug: plugin.batch_size = %d does not split between %d replicas; make it a multiple", B, D);
    else if (x->L > x->m->cfg.seq_len)
        rcode = vt_fail("plug: data.eval_window = %d exceeds the model's %d positions", x->L, x->m->cfg.seq_len);
    if (!rcode) rcode = read_tokens(rc, rc->data.calib, &x->calib);
    if (!rcode && (x->windows = x->calib.n / (size_t)x->L) == 0)
        rcode = vt_fail("plug: %s: %zu tokens make no window of data.eval_window = %d", rc->data.calib, x->calib.n,
                        x->L);
    if (!rcode) rcode = vt_plugin_alloc(&x->p, &x->m->cfg, rc->plugin.k, rc->plugin.r);
    if (!rcode) vt_plugin_init(&x->p, rc->plugin.seed);
    if (!rcode) rcode = vt_plug_step_init(&x->st, x->m, &x->p, x->share, x->L, x->P);
    if (!rcode && !(x->batch = vt_malloc(sizeof(int32_t) * (size_t)x->share * x->L, "plug batch"))) rcode = -1;
    return vt_comm_agree(x->c, rcode);
}

/* Where plugin training saves (<run dir>/plug-k{K}) and whether it resumes; settings are the run's. */
static int plug_ckpt(const plug_ctx *x, vt_arena_run *ck) {
    const vt_run_config *rc = x->rc;
    char sub[32];
    snprintf(sub, sizeof sub, "plug-k%d", rc->plugin.k);
    *ck = (vt_arena_run){.policy = rc->ckpt, .resume = rc->resume[0] != 0, .accept = rc->resume_accept,
                         .stop = vt_prune_stop_flag(), .stop_after = vt_arena_stop_after("plug"), .what = "plug",
                         .log = x->c->world_rank == 0 ? stderr : NULL};
    ck->settings = vt_run_config_plug_settings(rc);
    return ck->settings ? vt_run_ckpt_dir(rc, ck->resume, sub, ck->policy.dir, sizeof ck->policy.dir) : -1;
}

/* The steps from 0 or from the checkpoint a resume finds, to the end or a requested stop. */
static int train_steps(plug_ctx *x, const vt_arena_run *ck) {
    const vt_run_config *rc = x->rc;
    vt_arena_state as = {.param = x->p.arena, .n = x->p.arena_floats, .adam = &x->st.adam};
    int loaded = vt_arena_ckpt_load(ck, x->c, &as);
    if (loaded < 0) return -1;
    if (vt_comm_agree(x->c, as.step > rc->plugin.steps ? vt_fail("%s: the checkpoint is at step %ld, past "
                                                                 "plugin.steps = %d", ck->policy.dir, as.step,
                                                                 rc->plugin.steps) : 0))
        return -1;
    x->loss = as.stats[0];
    vt_save_clock clock = {.last_save = vt_seconds()};
    double t0 = vt_seconds();
    for (long s = as.step; s < rc->plugin.steps; s++) {
        if (train_step(x, s)) return -1;
        progress(x, s + 1, t0);
        as.step = s + 1, as.stats[0] = x->loss;
        int stop = vt_arena_ckpt_tick(ck, &clock, x->c, &as);
        if (stop < 0) return -1;
        if (stop) {
            x->stopped = 1;
            break;
        }
    }
    x->seconds = vt_seconds() - t0;
    return 0;
}

static int train(plug_ctx *x) {
    const vt_run_config *rc = x->rc;
    if (x->c->world_rank == 0)
        fprintf(stderr, "plug: k = %d, r = %d, %zu windows of %d (prompt %d), %d steps of %d windows on %d replicas\n",
                rc->plugin.k, rc->plugin.r, x->windows, x->L, x->P, rc->plugin.steps, rc->plugin.batch_size,
                x->c->replicas);
    vt_arena_run ck;
    int r = vt_comm_agree(x->c, plug_ckpt(x, &ck));
    if (r == 0) r = train_steps(x, &ck);
    free((char *)ck.settings);
    x->tokens = (long)rc->plugin.steps * rc->plugin.batch_size * x->L;
    return r;
}

/* Writes text as path atomically (vt_atomic_file). */
static int write_atomic(const char *path, const char *text) {
    vt_atomic_file a;
    if (vt_atomic_begin(&a, path)) return -1;
    if (fputs(text, a.f) < 0) {
        vt_atomic_abort(&a);
        return vt_fail("%s: write failed", a.tmp);
    }
    return vt_atomic_commit(&a);
}

/* Continuation perplexity of data.eval (its first plugin.eval_windows windows when set). */
static int evaluate(const plug_ctx *x, vt_cont_result *r) {
    const vt_run_config *rc = x->rc;
    vt_tokens ids = {0};
    vt_cont_plan pl;
    if (read_tokens(rc, rc->data.eval, &ids)) return -1;
    size_t n = ids.n, cap = (size_t)rc->plugin.eval_windows * x->L;
    if (cap && n > cap) n = cap;
    int rcode = vt_cont_plan_make(&pl, n, x->L, x->P);
    if (!rcode) rcode = vt_cont_eval(x->m, &x->p, ids.ids, n, &pl, 0, r);
    vt_tokens_free(&ids);
    return rcode;
}

/* World rank 0: the plugin file, the evaluation and the report. */
static int finish(const plug_ctx *x, uint64_t fp) {
    const vt_run_config *rc = x->rc;
    char path[VT_PATH_MAX], report[VT_PATH_MAX], text[VT_PATH_MAX + 1024];
    vt_cont_result r = {0};
    if (vt_plug_paths(rc, path, report, sizeof path) || vt_mkdir_p(rc->output.dir)) return -1;
    if (vt_plugin_save(path, &x->p, &x->m->cfg, fp, rc->model.path)) return -1;
    fprintf(stderr, "plug: wrote %s (%zu parameters)\n", path, vt_plugin_params(&x->m->cfg, rc->plugin.r));
    int have_eval = rc->data.eval[0] != '\0';
    if (have_eval && evaluate(x, &r)) return -1;
    double dense = vt_prefill_flops(&x->m->cfg, x->P, 0, 0), plug = vt_prefill_flops(&x->m->cfg, x->P, rc->plugin.k, rc->plugin.r);
    char ppl[128] = "\"ppl\": null, \"ppl_dense\": null, \"tokens\": 0";
    if (have_eval)
        snprintf(ppl, sizeof ppl, "\"ppl\": %.8g, \"ppl_dense\": %.8g, \"tokens\": %zu", r.ppl, r.ppl_dense, r.tokens);
    snprintf(text, sizeof text,
             "{\"plugin\": \"%s\", %s, \"window\": %d, \"prompt\": %d, \"prefill_flops_saved\": %.6f, \"k\": %d, "
             "\"r\": %d, \"plugin_params\": %zu, \"train_steps\": %d, \"train_tokens\": %ld, \"final_kl\": %.8g, "
             "\"replicas\": %d, \"train_seconds\": %.2f, \"eval_seconds\": %.2f}\n",
             path, ppl, x->L, x->P, 1.0 - plug / dense, rc->plugin.k, rc->plugin.r,
             vt_plugin_params(&x->m->cfg, rc->plugin.r), rc->plugin.steps, x->tokens, x->loss, x->c->replicas,
             x->seconds, r.seconds);
    if (write_atomic(report, text)) return -1;
    if (have_eval)
        printf("continuation ppl: dense %.6f, plugged %.6f (%+.2f%%) over %zu tokens; prefill FLOPs saved %.1f%%\n",
               r.ppl_dense, r.ppl, 100.0 * (r.ppl / r.ppl_dense - 1.0), r.tokens, 100.0 * (1.0 - plug / dense));
    printf("wrote %s and %s\n", path, report);
    fflush(stdout);
    return 0;
}

int vt_plug_run(const vt_run_config *rc, vt_comm *c, const vt_model *m) {
    plug_ctx x = {.rc = rc, .c = c, .m = m};
    uint64_t fp = 0;
    int rcode = vt_comm_agree(c, vt_model_fingerprint(m, &fp));
    if (!rcode) rcode = train_setup(&x);
    if (!rcode) rcode = train(&x);
    if (!rcode && x.stopped) {
        if (c->world_rank == 0) printf("stopped with the plugin's training state saved; continue with --resume\n");
        rcode = VT_EXIT_CHECKPOINTED;
    }
    if (!rcode) rcode = vt_comm_agree(c, c->world_rank == 0 ? finish(&x, fp) : 0);
    vt_plug_step_free(&x.st);
    vt_plugin_free(&x.p);
    vt_tokens_free(&x.calib);
    free(x.batch);
    return rcode;
}
