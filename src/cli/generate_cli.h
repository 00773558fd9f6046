/* generate_cli.h — the options, prompt, token choice and output of `generate` (its driver:
 * cli/cmd_generate.c). */
#ifndef VT_GENERATE_CLI_H
#define VT_GENERATE_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "nn/model.h"
#include "io/tokenizer.h"

typedef struct {
    const char *model, *tokenizer, *prompt; /* tokenizer: NULL = found next to the model */
    int steps;                              /* positions, prompt included */
    double temperature;                     /* 0 = greedy */
    uint64_t seed;
    int stages; /* pipeline stages under mpirun; 0 = automatic */
    int threads; /* per process (vt_threads_set); 0 = BLIS_NUM_THREADS or 1 */
    const char *plugin; /* --plugin: the prompt's prefill plugged (one process); NULL: none */
} vt_generate_options;

/* Parses argv[1..argc) (argv[0] is the command name). Returns 0, or -1 with vt_error set.
 * *help is set when --help was given (then nothing is checked). */
int vt_generate_options_parse(vt_generate_options *o, int argc, char **argv, int *help);
void vt_generate_usage(void);

/* Loads the tokenizer (given or beside the model); its path goes to path[cap]. */
int vt_generate_tokenizer(const vt_generate_options *o, vt_tokenizer *tok, char *path, size_t cap);

/* Checks the tokenizer fits the model's vocabulary, encodes the prompt with BOS into *ids (free()
 * it) of *n tokens, and sets *steps to o->steps capped at the model's positions; fails when the
 * prompt is longer than that. */
int vt_generate_prompt(const vt_generate_options *o, const vt_tokenizer *tok, const char *tok_path, const vt_config *c,
                       int *steps, int **ids, size_t *n);

/* The token at position pos + 1 given the logits at pos: the prompt's while inside it, else
 * greedy (temperature 0) or sampled with vt_uniform(seed, pos). scratch holds vocab floats. */
int vt_generate_next(const vt_generate_options *o, const float *logits, int vocab, int pos, const int *prompt,
                     size_t n_prompt, float *scratch);

/* Prints the text of token after prev on stdout (skipping a lone unprintable byte, as llama2.c's
 * safe_printstring) and flushes. */
void vt_generate_print(const vt_tokenizer *tok, int prev, int token);

#endif
