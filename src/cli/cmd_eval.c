/* cmd_eval.c — `vtrans-dist eval`: perplexity of a model on a data file (README.md, "Evaluation protocol"), in
 * one process or as a pipeline over a world of ranks: world rank 0 reads and tokenizes the data
 * and shares the ids; every rank runs its part of the one eval loop (vt_pipeline_eval). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "cli/eval_cli.h"
#include "dist/pipeline.h"
#include "nn/matmul.h"
#include "io/plugin_file.h"
#include "nn/continuation.h"
#include "util/args.h"
#include "util/error.h"

/* World rank 0 reads and tokenizes the data once; the ids go to every rank (stage 0 embeds them,
 * the last stage scores against them). Collective over the world; agrees on failure. */
static int read_and_share_tokens(vt_world *w, const vt_eval_options *o, vt_tokens *ids) {
    vt_comm *c = w->comm;
    if (vt_comm_agree(c, w->rank == 0 ? vt_eval_read_tokens(o, ids) : 0)) return -1;
    if (w->size == 1) return 0;
    uint64_t n = ids->n;
    if (vt_comm_bcast(c, &n, sizeof n)) return -1;
    int rc = 0;
    if (w->rank != 0) {
        ids->n = ids->cap = (size_t)n;
        ids->ids = vt_malloc((size_t)n * sizeof(int32_t), "token ids");
        rc = ids->ids ? 0 : -1;
    }
    if (vt_comm_agree(c, rc)) return -1;
    return c->bcast(c, VT_WORLD, VT_INT32, ids->ids, (size_t)n, 0);
}

static int run_eval(vt_world *w, const vt_eval_options *o) {
    vt_tokens ids = {0};
    vt_pipeline p;
    int rc = -1;
    if (vt_pipeline_layout(&p, w, o->model, o->stages, VT_PARTITION_INFER, "eval")) return -1;
    if (read_and_share_tokens(w, o, &ids) == 0 && vt_pipeline_load(&p, o->model) == 0) {
        vt_eval_result r;
        vt_eval_progress progress;
        vt_eval_progress_start(&progress);
        rc = vt_pipeline_eval(p.comm, &p.part, ids.ids, ids.n, o->window, o->batch, &r, vt_eval_progress_report,
                              &progress);
        if (rc == 0 && w->rank == 0) vt_eval_print(o, &r);
    }
    vt_pipeline_close(&p);
    vt_tokens_free(&ids);
    return rc;
}

/* --plugin: the whole model in this one process, the plugin checked against its weights, dense and
 * plugged continuation perplexity on the same windows (nn/continuation.h). */
static int run_plugin_eval(vt_world *w, const vt_eval_options *o) {
    vt_tokens ids = {0};
    vt_pipeline p;
    vt_plugin plug = {0};
    uint64_t fp;
    int rc = -1, P = (int)lround(o->prompt_fraction * o->window);
    if (w->size > 1) return vt_fail("eval --plugin runs in one process (mpirun -n 1 or no mpirun), not on %d ranks", w->size);
    if (vt_pipeline_layout(&p, w, o->model, 1, VT_PARTITION_INFER, "eval")) return -1;
    if (vt_eval_read_tokens(o, &ids) == 0 && vt_pipeline_load(&p, o->model) == 0 &&
        vt_model_fingerprint(&p.part, &fp) == 0 && vt_plugin_load(o->plugin, &p.part.cfg, fp, o->model, &plug) == 0) {
        vt_cont_plan pl;
        vt_cont_result r;
        rc = vt_cont_plan_make(&pl, ids.n, o->window, P < 1 ? 1 : P);
        if (rc == 0) rc = vt_cont_eval(&p.part, &plug, ids.ids, ids.n, &pl, o->batch, &r);
        if (rc == 0) vt_eval_print_plugin(o, &r, plug.k, plug.r, plug.tail);
    }
    vt_plugin_free(&plug);
    vt_pipeline_close(&p);
    vt_tokens_free(&ids);
    return rc;
}

int vt_cmd_eval(vt_world *w, int argc, char **argv) {
    vt_eval_options o;
    int help;
    if (vt_comm_agree(w->comm, vt_eval_options_parse(&o, argc, argv, &help))) return vt_cmd_fail_world("eval");
    if (help) {
        if (w->rank == 0) vt_eval_usage();
        return 0;
    }
    if (vt_comm_agree(w->comm, vt_threads_set(o.threads))) return vt_cmd_fail_world("eval");
    if (o.plugin) return run_plugin_eval(w, &o) ? vt_cmd_fail_world("eval") : 0;
    return run_eval(w, &o) ? vt_cmd_fail_world("eval") : 0;
}
