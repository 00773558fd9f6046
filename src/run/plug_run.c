/* plug_run.c — plugin training over pipeline stages x data-parallel replicas: calibration windows,
 * each replica's share of a batch through the stages (vt_plug_stage_loss_grad), each stage's
 * plugin gradients summed over its replicas, Adam; then the plugin assembled from every stage on
 * the coordinator, its file, continuation perplexity on data.eval and the JSON report. */
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
    double seconds, loss, lr; /* lr: the learning rate of the latest step (plugin.lr_schedule) */
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

/* One step: this replica's loss and this stage's plugin gradient, their means over the replicas, Adam. */
static int train_step(plug_ctx *x, long step) {
    fill_batch(x, step);
    double loss;
    if (vt_plug_stage_loss_grad(x->c, x->m, &x->p, &x->st, x->batch, &loss)) return -1;
    int D = x->c->replicas;
    float *g = x->st.grad.arena + x->st.off;
    if (D > 1) { /* equal shares of equal windows: the batch's mean is the mean of the replicas' */
        if (vt_comm_sum_dp(x->c, g, x->st.n)) return -1;
        vt_scale(g, x->st.n, 1.0f / (float)D);
    }
    if (D > 1 || x->c->stages > 1) { /* the last stages hold the losses */
        if (vt_comm_sum_world(x->c, &loss, 1)) return -1;
        loss /= D;
    }
    const vt_plugin_opts *o = &x->rc->plugin;
    x->lr = vt_lr_at(o->lr_schedule, o->lr, step, o->steps, 0);
    vt_plug_step_adam(&x->st, &x->p, x->lr);
    x->loss = loss;
    return 0;
}

/* Stage 0 of replica 0 (world rank 0) receives every other stage's run of a, laid out as p's arena
 * (the plugins, or their Adam moments); the other replicas hold the same values. */
static int gather_runs(plug_ctx *x, float *a) {
    vt_comm *c = x->c;
    if (c->stages == 1 || c->replica != 0) return 0;
    for (int s = 1; s < c->stages; s++) {
        size_t off, n = vt_plugin_region(&x->p, c->stage_begin[s], c->stage_begin[s + 1], &off);
        if (n == 0 || (c->stage != 0 && c->stage != s)) continue;
        if (c->stage == 0 ? vt_comm_recv(c, a + off, n, s, 3) : vt_comm_send(c, a + off, n, 0, 3)) {
            vt_comm_abort_all(c, "plug: gathering the plugins"); /* the peer waits on this one */
            return -1;
        }
    }
    return 0;
}

/* Before a checkpoint: the plugins and their moments to world rank 0 (arena_ckpt's gather). */
static int gather_state(void *arg, vt_comm *c) {
    plug_ctx *x = arg;
    (void)c;
    return gather_runs(x, x->p.arena) || gather_runs(x, x->st.adam.m) || gather_runs(x, x->st.adam.v) ? -1 : 0;
}

/* The base model's fingerprint on world rank 0, its pieces made by the stages holding the weights
 * (vt_fingerprint_combine) and sent to stage 0 of replica 0. */
static int fingerprint(plug_ctx *x, uint64_t *fp) {
    vt_comm *c = x->c;
    const vt_model *m = x->m;
    if (c->stages == 1) return vt_model_fingerprint(m, fp);
    if (c->replica != 0) return 0; /* only world rank 0 writes it */
    int L = m->cfg.n_layers;
    size_t bytes = sizeof(uint64_t) * ((size_t)L + 2);
    uint64_t *h = vt_calloc(2 * ((size_t)L + 2), sizeof *h, "layer fingerprints"), *in = h + L + 2;
    if (!h) return -1;
    if (m->has_embed) h[0] = vt_fingerprint_embed(m); /* h: embedding, layers, head */
    for (int l = m->layer_begin; l < m->layer_end; l++) h[1 + l] = vt_fingerprint_layer(m, l);
    if (m->has_head) h[L + 1] = vt_fingerprint_head(m);
    int rc = 0;
    if (c->stage != 0) rc = c->send(c, h, bytes, VT_BYTE, 0, 4);
    for (int s = 1; rc == 0 && c->stage == 0 && s < c->stages; s++) {
        if ((rc = c->recv(c, in, bytes, VT_BYTE, s, 4))) break;
        for (int i = 0; i < L + 2; i++) h[i] |= in[i]; /* each piece is held by one stage */
    }
    if (rc == 0) *fp = vt_fingerprint_combine(&m->cfg, h[0], h + 1, h[L + 1]);
    free(h);
    return rc;
}

static void progress(const plug_ctx *x, long step, double t0) {
    int steps = x->rc->plugin.steps, every = x->rc->schedule.log_interval;
    if (x->c->world_rank != 0 || every <= 0 || (step % every != 0 && step != steps)) return;
    double el = vt_seconds() - t0, tps = el > 0 ? (double)step * x->rc->plugin.batch_size * x->L / el : 0;
    fprintf(stderr, "plug: step %ld/%d  KL %.6f  lr %.4g  %.0f tokens/s  ETA %.0f s\n", step, steps, x->loss, x->lr, tps,
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
    if (!rcode) x->p.tail = rc->plugin.exact_tail;
    if (!rcode) vt_plugin_init(&x->p, rc->plugin.seed);
    if (!rcode) rcode = vt_plug_step_init(&x->st, x->m, &x->p, x->share, x->L, x->P);
    if (!rcode && !(x->batch = vt_malloc(sizeof(int32_t) * (size_t)x->share * x->L, "plug batch"))) rcode = -1;
    return vt_comm_agree(x->c, rcode);
}

/* Where plugin training saves (<run dir>/plug-k{K}) and whether it resumes; settings are the run's. */
static int plug_ckpt(plug_ctx *x, vt_arena_run *ck) {
    const vt_run_config *rc = x->rc;
    char sub[32];
    snprintf(sub, sizeof sub, "plug-k%d", rc->plugin.k);
    *ck = (vt_arena_run){.policy = rc->ckpt, .resume = rc->resume[0] != 0, .accept = rc->resume_accept,
                         .stop = vt_prune_stop_flag(), .stop_after = vt_arena_stop_after("plug"), .what = "plug",
                         .log = x->c->world_rank == 0 ? stderr : NULL};
    ck->gather = gather_state, ck->gather_arg = x;
    ck->settings = vt_run_config_plug_settings(rc);
    return ck->settings ? vt_run_ckpt_dir(rc, ck->resume, sub, ck->policy.dir, sizeof ck->policy.dir) : -1;
}

/* The steps from 0 or from the checkpoint a resume finds, to the end or a requested stop. */
static int train_steps(plug_ctx *x, const vt_arena_run *ck) {
    const vt_run_config *rc = x->rc;
    vt_arena_state as = {.g = {{.param = x->p.arena, .n = x->p.arena_floats, .adam = &x->st.adam}}};
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
        fprintf(stderr, "plug: k = %d, r = %d, %zu windows of %d (prompt %d), %d steps of %d windows on %d replicas"
                "%s%.0d%s\n", rc->plugin.k, rc->plugin.r, x->windows, x->L, x->P, rc->plugin.steps,
                rc->plugin.batch_size, x->c->replicas, x->c->stages > 1 ? " of " : "",
                x->c->stages > 1 ? x->c->stages : 0, x->c->stages > 1 ? " stages" : "");
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

/* The NLL sums (dense, plugged) of B windows of T tokens through the stages, on the last stage. */
static int stage_score(plug_ctx *x, vt_cont_work *w, const int32_t *ids, int B, int T, double nll[2]) {
    for (int i = 0; i < 2; i++) {
        if (vt_plug_stage_logits(x->c, x->m, i ? &x->p : NULL, w, ids, B, T, 5 + i)) return -1;
        if (vt_comm_last(x->c)) nll[i] += vt_cont_nll_sum(w, x->m->cfg.vocab, ids, B, T);
    }
    return 0;
}

/* vt_cont_eval over the stages (collective): replica d takes every D-th pass of windows, replica 0
 * the last shorter window; the sums are added over the world (only the last stages hold any). */
static int eval_stages(plug_ctx *x, const vt_tokens *ids, size_t n, const vt_cont_plan *pl, vt_cont_result *r) {
    vt_comm *c = x->c;
    int L = x->L, batch = vt_cont_eval_batch(&x->m->cfg, pl, 0), D = c->replicas;
    double t0 = vt_seconds(), nll[2] = {0, 0};
    vt_cont_work w;
    if (vt_comm_agree(c, vt_cont_work_init(&w, x->m, &x->p, batch, L, x->P))) return -1;
    int rc = 0;
    for (size_t w0 = (size_t)c->replica * batch; rc == 0 && w0 < pl->full_windows; w0 += (size_t)batch * D) {
        int B = pl->full_windows - w0 < (size_t)batch ? (int)(pl->full_windows - w0) : batch;
        rc = stage_score(x, &w, ids->ids + w0 * L, B, L, nll);
    }
    if (rc == 0 && c->replica == 0 && pl->scored_windows > pl->full_windows) /* the last, shorter window */
        rc = stage_score(x, &w, ids->ids + vt_cont_window_start(pl, pl->full_windows), 1,
                         (int)vt_cont_window_len(pl, n, pl->full_windows), nll);
    vt_cont_work_free(&w);
    if (rc == 0) rc = vt_comm_sum_world(c, nll, 2);
    memset(r, 0, sizeof *r);
    r->nll_dense = nll[0], r->nll = nll[1];
    vt_cont_result_set(r, &x->m->cfg, &x->p, pl);
    r->seconds = vt_seconds() - t0;
    return rc;
}

/* Continuation perplexity of data.eval (its first plugin.eval_windows windows when set): on world
 * rank 0 with the whole model, or over the stages by every rank (collective) when they hold parts. */
static int evaluate(plug_ctx *x, vt_cont_result *r) {
    const vt_run_config *rc = x->rc;
    vt_tokens ids = {0};
    vt_cont_plan pl;
    int rcode = read_tokens(rc, rc->data.eval, &ids);
    size_t n = ids.n, cap = (size_t)rc->plugin.eval_windows * x->L;
    if (cap && n > cap) n = cap;
    if (!rcode) rcode = vt_cont_plan_make(&pl, n, x->L, x->P);
    for (size_t i = 0; rcode == 0 && i < n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= x->m->cfg.vocab)
            rcode = vt_fail("%s: token %zu is id %d, outside the vocabulary of %d", rc->data.eval, i, ids.ids[i],
                            x->m->cfg.vocab);
    if (x->c->stages > 1) {
        rcode = vt_comm_agree(x->c, rcode);
        if (!rcode) rcode = eval_stages(x, &ids, n, &pl, r);
    } else if (!rcode) {
        rcode = vt_cont_eval(x->m, &x->p, ids.ids, n, &pl, 0, r);
    }
    vt_tokens_free(&ids);
    return rcode;
}

/* World rank 0: the plugin file, the evaluation (done already over the stages) and the report. */
static int finish(plug_ctx *x, uint64_t fp, vt_cont_result r) {
    const vt_run_config *rc = x->rc;
    char path[VT_PATH_MAX], report[VT_PATH_MAX], text[VT_PATH_MAX + 1024];
    if (vt_plug_paths(rc, path, report, sizeof path) || vt_mkdir_p(rc->output.dir)) return -1;
    if (vt_plugin_save(path, &x->p, &x->m->cfg, fp, rc->model.path)) return -1;
    fprintf(stderr, "plug: wrote %s (%zu parameters)\n", path, vt_plugin_params(&x->m->cfg, rc->plugin.r));
    int have_eval = rc->data.eval[0] != '\0';
    if (have_eval && x->c->stages == 1 && evaluate(x, &r)) return -1;
    double dense = vt_prefill_flops(&x->m->cfg, x->P, 0, 0, 1);
    double plug = vt_prefill_flops(&x->m->cfg, x->P, x->p.k, x->p.r, x->p.tail);
    char ppl[128] = "\"ppl\": null, \"ppl_dense\": null, \"tokens\": 0";
    if (have_eval)
        snprintf(ppl, sizeof ppl, "\"ppl\": %.8g, \"ppl_dense\": %.8g, \"tokens\": %zu", r.ppl, r.ppl_dense, r.tokens);
    snprintf(text, sizeof text,
             "{\"plugin\": \"%s\", %s, \"window\": %d, \"prompt\": %d, \"prefill_flops_saved\": %.6f, \"k\": %d, "
             "\"r\": %d, \"exact_tail\": %d, \"plugin_params\": %zu, \"train_steps\": %d, \"train_tokens\": %ld, "
             "\"final_kl\": %.8g, "
             "\"replicas\": %d, \"train_seconds\": %.2f, \"eval_seconds\": %.2f}\n",
             path, ppl, x->L, x->P, 1.0 - plug / dense, rc->plugin.k, rc->plugin.r, x->p.tail,
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
    int rcode = vt_comm_agree(c, fingerprint(&x, &fp));
    if (!rcode) rcode = train_setup(&x);
    if (!rcode) rcode = train(&x);
    if (!rcode && x.stopped) {
        if (c->world_rank == 0) printf("stopped with the plugin's training state saved; continue with --resume\n");
        rcode = VT_EXIT_CHECKPOINTED;
    }
    if (!rcode) rcode = vt_comm_agree(c, gather_runs(&x, x.p.arena));
    vt_cont_result ev = {0}; /* over the stages, evaluated by every rank before the report */
    if (!rcode && c->stages > 1 && rc->data.eval[0]) rcode = vt_comm_agree(c, evaluate(&x, &ev));
    if (!rcode) rcode = vt_comm_agree(c, c->world_rank == 0 ? finish(&x, fp, ev) : 0);
    vt_plug_step_free(&x.st);
    vt_plugin_free(&x.p);
    vt_tokens_free(&x.calib);
    free(x.batch);
    return rcode;
}
