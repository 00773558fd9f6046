/* eval_cli.h — the options, input and output of `eval` (its driver: cli/cmd_eval.c). */
#ifndef VT_EVAL_CLI_H
#define VT_EVAL_CLI_H

#include <stddef.h>

#include "nn/continuation.h"
#include "nn/eval.h"
#include "data/token_file.h"

typedef struct {
    const char *model, *tokenizer, *data; /* tokenizer: NULL = found next to the model */
    int window, batch;                    /* batch 0 = automatic */
    int json;
    int stages; /* pipeline stages under mpirun; 0 = automatic */
    int threads; /* per process (vt_threads_set); 0 = BLIS_NUM_THREADS or 1 */
    const char *plugin;     /* --plugin: continuation perplexity dense vs plugged; NULL: none */
    double prompt_fraction; /* --prompt-fraction: the prompt's share of each window */
} vt_eval_options;

/* Parses argv[1..argc) (argv[0] is the command name). Returns 0, or -1 with vt_error set.
 * *help is set when --help was given (then nothing is checked). */
int vt_eval_options_parse(vt_eval_options *o, int argc, char **argv, int *help);
void vt_eval_usage(void);

/* The evaluation token stream of o->data, encoded with o->tokenizer or the one beside the model;
 * pre-tokenized data needs no tokenizer. */
int vt_eval_read_tokens(const vt_eval_options *o, vt_tokens *ids);

/* Prints the result line (or the JSON object with --json) on stdout. */
void vt_eval_print(const vt_eval_options *o, const vt_eval_result *r);

/* Prints dense vs plugged continuation perplexity (plugin k, r) on stdout, or with --json one object:
 * ppl (plugged), ppl_dense, tokens, prefill_flops_saved (a fraction), windows, window, prompt, k, r. */
void vt_eval_print_plugin(const vt_eval_options *o, const vt_cont_result *r, int k, int rr, int tail);

/* Progress callback for vt_pipeline_eval: a line on stderr at most every 10 s. arg: a
 * vt_eval_progress initialised with vt_eval_progress_start. */
typedef struct {
    double start, last;
} vt_eval_progress;
void vt_eval_progress_start(vt_eval_progress *p);
void vt_eval_progress_report(size_t done, size_t total, void *arg);

#endif
