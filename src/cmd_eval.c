/* cmd_eval.c — `vtrans-dist eval`: perplexity of a model on a data file (DESIGN.md section 5). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "data.h"
#include "error.h"
#include "eval.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
    time_t last;
    time_t start;
} progress_state;

/* A line on stderr at most every 10 s, so long evaluations show they are alive. */
static void report_progress(size_t done, size_t total, void *arg) {
    progress_state *p = arg;
    time_t now = time(NULL);
    if (now - p->last < 10 || done == total) return;
    p->last = now;
    double el = difftime(now, p->start), eta = done ? el * (double)(total - done) / (double)done : 0.0;
    fprintf(stderr, "eval: %zu/%zu windows, %.0f s elapsed, ETA %.0f s\n", done, total, el, eta);
}

int vt_cmd_eval(int argc, char **argv) {
    vt_opt opts[] = {
        {"model", 1, "checkpoint: llama2.c .bin or HF directory", NULL, 0},
        {"tokenizer", 1, "llama2.c tokenizer.bin (default: found next to the model)", NULL, 0},
        {"data", 1, "text, .jsonl, token file, or an archive of them", NULL, 0},
        {"window", 1, "tokens per scored window", "256", 0},
        {"batch", 1, "windows per forward pass (0 = automatic)", "0", 0},
        {"json", 0, "print one JSON object", NULL, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), help;
    long window, batch;
    if (vt_args_parse(opts, n, argc, argv, 1, &help)) return vt_cmd_fail("eval");
    if (help) {
        vt_args_usage("eval", "--model PATH [--tokenizer PATH] --data FILE [--window L] [--json]", opts, n);
        return 0;
    }
    if (vt_args_require(opts, n, "model") || vt_args_require(opts, n, "data") ||
        vt_args_int(opts, n, "window", 2, 1L << 24, &window) || vt_args_int(opts, n, "batch", 0, 1 << 16, &batch))
        return vt_cmd_fail("eval");
    const char *model_path = vt_args_get(opts, n, "model"), *data_path = vt_args_get(opts, n, "data");
    char tok_path[4096];
    vt_tokenizer tok;
    vt_tokens ids = {0};
    vt_model m;
    vt_eval_result r;
    /* Pre-tokenized data needs no tokenizer: without --tokenizer and none beside the model, the
     * data reader gets NULL and refuses text itself. */
    const char *tok_given = vt_args_get(opts, n, "tokenizer");
    int have_tok = vt_tokenizer_locate(model_path, tok_given, tok_path, sizeof tok_path) == 0;
    if (!have_tok && tok_given) return vt_cmd_fail("eval");
    if (have_tok && vt_tokenizer_load(&tok, tok_path)) return vt_cmd_fail("eval");
    int rc = 1;
    if (vt_data_tokens(data_path, have_tok ? &tok : NULL, &ids)) goto out_tok;
    if (vt_model_load(&m, model_path, vt_load_all())) goto out_ids;
    progress_state ps = {time(NULL), time(NULL)};
    if (vt_eval_stream(&m, ids.ids, ids.n, (int)window, (int)batch, &r, report_progress, &ps) == 0) {
        rc = 0;
        double tps = r.seconds > 0 ? (double)(r.tokens + r.windows) / r.seconds : 0.0;
        if (vt_args_get(opts, n, "json"))
            printf("{\"ppl\": %.10g, \"tokens\": %zu, \"nll\": %.10g, \"windows\": %zu, \"window\": %ld, "
                   "\"seconds\": %.4f, \"tokens_per_second\": %.1f, \"gflops_per_second\": %.3f}\n",
                   r.ppl, r.tokens, r.nll_sum / (double)r.tokens, r.windows, window, r.seconds, tps,
                   r.seconds > 0 ? r.flops / r.seconds * 1e-9 : 0.0);
        else
            printf("ppl %.6f over %zu scored tokens (%zu windows of %ld; mean NLL %.6f) in %.2f s, %.0f tokens/s\n",
                   r.ppl, r.tokens, r.windows, window, r.nll_sum / (double)r.tokens, r.seconds, tps);
    }
    vt_model_free(&m);
out_ids:
    vt_tokens_free(&ids);
out_tok:
    if (have_tok) vt_tokenizer_free(&tok);
    return rc ? vt_cmd_fail("eval") : 0;
}
