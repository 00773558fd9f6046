/* eval_cli.c — `eval` options, token input, result output and progress lines. */
#include "cli/eval_cli.h"

#include <stdio.h>
#include <string.h>

#include "util/args.h"
#include "data/data.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "io/gguf_model.h"
#include "io/tokenizer.h"
#include "nn/matmul.h"

enum { OPT_MODEL, OPT_TOKENIZER, OPT_DATA, OPT_WINDOW, OPT_BATCH, OPT_JSON, OPT_STAGES, OPT_PLUGIN, OPT_PROMPT_FRACTION, OPT_THREADS, N_OPTS };

static void default_opts(vt_opt *opts) {
    const vt_opt table[N_OPTS] = {
        {"model", 1, "checkpoint: llama2.c .bin, HF directory or GGUF file", NULL, 0},
        {"tokenizer", 1, "tokenizer.json or llama2.c tokenizer.bin (default: found next to the model)", NULL, 0},
        {"data", 1, "text, .jsonl, token file, or an archive of them", NULL, 0},
        {"window", 1, "tokens per scored window", "256", 0},
        {"batch", 1, "windows per forward pass (0 = automatic)", "0", 0},
        {"json", 0, "print one JSON object", NULL, 0},
        {"stages", 1, "pipeline stages under mpirun (0 = automatic; the rest are replicas)", "0", 0},
        {"plugin", 1, "a Variator plugin file: continuation perplexity dense vs plugged, one process (docs/PLUGINS.md)", NULL, 0},
        {"prompt-fraction", 1, "with --plugin: the share of each window that is prompt", "0.75", 0},
        {"threads", 1, "threads per process (0 = BLIS_NUM_THREADS, else 1)", "0", 0},
    };
    memcpy(opts, table, sizeof table);
}

void vt_eval_usage(void) {
    vt_opt opts[N_OPTS];
    default_opts(opts);
    vt_args_usage("eval", "--model PATH [--tokenizer PATH] --data FILE [--window L] [--batch N] [--json] [--stages S] [--threads N] [--plugin FILE [--prompt-fraction F]]", opts, N_OPTS);
}

int vt_eval_options_parse(vt_eval_options *o, int argc, char **argv, int *help) {
    vt_opt opts[N_OPTS];
    default_opts(opts);
    long window, batch, stages, threads;
    memset(o, 0, sizeof *o);
    if (vt_args_parse(opts, N_OPTS, argc, argv, 1, help)) return -1;
    if (*help) return 0;
    if (vt_args_require(opts, N_OPTS, "model") || vt_args_require(opts, N_OPTS, "data") ||
        vt_args_int(opts, N_OPTS, "window", 2, 1L << 24, &window) ||
        vt_args_int(opts, N_OPTS, "batch", 0, 1 << 16, &batch) || vt_args_int(opts, N_OPTS, "stages", 0, 1 << 20, &stages) ||
        vt_args_int(opts, N_OPTS, "threads", 0, VT_MAX_THREADS, &threads))
        return -1;
    o->threads = (int)threads;
    o->model = opts[OPT_MODEL].value;
    o->tokenizer = opts[OPT_TOKENIZER].value;
    o->data = opts[OPT_DATA].value;
    o->window = (int)window;
    o->batch = (int)batch;
    o->json = opts[OPT_JSON].value != NULL;
    o->stages = (int)stages;
    o->plugin = opts[OPT_PLUGIN].value;
    if (vt_args_double(opts, N_OPTS, "prompt-fraction", &o->prompt_fraction)) return -1;
    if (!(o->prompt_fraction > 0.0 && o->prompt_fraction < 1.0))
        return vt_fail("--prompt-fraction must lie strictly between 0 and 1, got %g", o->prompt_fraction);
    if (opts[OPT_PROMPT_FRACTION].seen && !o->plugin) return vt_fail("--prompt-fraction applies to --plugin only");
    return 0;
}

int vt_eval_read_tokens(const vt_eval_options *o, vt_tokens *ids) {
    char tok_path[VT_PATH_MAX];
    vt_tokenizer tok;
    /* Pre-tokenized data needs no tokenizer: without --tokenizer and none beside the model, the
     * data reader gets NULL and refuses text itself. */
    int embedded = !o->tokenizer && vt_gguf_is_file(o->model); /* a GGUF carries its vocabulary */
    int have_tok = embedded || vt_tokenizer_locate(o->model, o->tokenizer, tok_path, sizeof tok_path) == 0;
    if (!have_tok && o->tokenizer) return -1;
    if (have_tok && (embedded ? vt_gguf_tokenizer_load(&tok, o->model) : vt_tokenizer_load(&tok, tok_path))) return -1;
    int rc = vt_data_tokens_note(o->data, have_tok ? &tok : NULL, ids, stderr);
    if (have_tok) vt_tokenizer_free(&tok);
    return rc;
}

void vt_eval_print(const vt_eval_options *o, const vt_eval_result *r) {
    double tps = r->seconds > 0 ? (double)(r->tokens + r->windows) / r->seconds : 0.0;
    if (o->json)
        printf("{\"ppl\": %.10g, \"tokens\": %zu, \"nll\": %.10g, \"windows\": %zu, \"window\": %d, "
               "\"seconds\": %.4f, \"tokens_per_second\": %.1f, \"gflops_per_second\": %.3f}\n",
               r->ppl, r->tokens, r->nll_sum / (double)r->tokens, r->windows, o->window, r->seconds, tps,
               r->seconds > 0 ? r->flops / r->seconds * 1e-9 : 0.0);
    else
        printf("ppl %.6f over %zu scored tokens (%zu windows of %d; mean NLL %.6f) in %.2f s, %.0f tokens/s\n",
               r->ppl, r->tokens, r->windows, o->window, r->nll_sum / (double)r->tokens, r->seconds, tps);
    fflush(stdout);
}

void vt_eval_print_plugin(const vt_eval_options *o, const vt_cont_result *r, int k, int rr, int tail) {
    if (o->json)
        printf("{\"ppl\": %.10g, \"ppl_dense\": %.10g, \"tokens\": %zu, \"prefill_flops_saved\": %.6f, "
               "\"windows\": %zu, \"window\": %d, \"prompt\": %d, \"k\": %d, \"r\": %d, \"exact_tail\": %d, "
               "\"seconds\": %.4f}\n",
               r->ppl, r->ppl_dense, r->tokens, r->prefill_flops_saved, r->windows, o->window, r->prompt, k, rr,
               tail, r->seconds);
    else
        printf("continuation ppl: dense %.6f, plugged %.6f (%+.2f%%) over %zu scored tokens (%zu windows of %d, "
               "prompt %d); plugin k %d r %d exact tail %d saves %.1f%% of the prefill FLOPs; %.2f s\n",
               r->ppl_dense, r->ppl, 100.0 * (r->ppl / r->ppl_dense - 1.0), r->tokens, r->windows, o->window,
               r->prompt, k, rr, tail, 100.0 * r->prefill_flops_saved, r->seconds);
    fflush(stdout);
}

void vt_eval_progress_start(vt_eval_progress *p) { p->start = p->last = vt_seconds(); }

/* A line on stderr at most every 10 s, so long evaluations show they are alive. */
void vt_eval_progress_report(size_t done, size_t total, void *arg) {
    vt_eval_progress *p = arg;
    double now = vt_seconds();
    if (now - p->last < 10 || done == total) return;
    p->last = now;
    double el = now - p->start, eta = done ? el * (double)(total - done) / (double)done : 0.0;
    fprintf(stderr, "eval: %zu/%zu windows, %.0f s elapsed, ETA %.0f s\n", done, total, el, eta);
}
