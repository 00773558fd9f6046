/* generate_cli.c — `generate` options, prompt encoding, next-token choice and printing. */
#include "cli/generate_cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf_model.h"
#include "util/args.h"
#include "util/error.h"
#include "util/rng.h"
#include "util/sampler.h"
#include "nn/matmul.h"

enum { OPT_MODEL, OPT_TOKENIZER, OPT_PROMPT, OPT_STEPS, OPT_TEMPERATURE, OPT_SEED, OPT_STAGES, OPT_PLUGIN, OPT_THREADS, N_OPTS };

static void default_opts(vt_opt *opts) {
    const vt_opt table[N_OPTS] = {
        {"model", 1, "checkpoint: llama2.c .bin, HF directory or GGUF file", NULL, 0},
        {"tokenizer", 1, "tokenizer.json or llama2.c tokenizer.bin (default: found next to the model)", NULL, 0},
        {"prompt", 1, "text to continue", "", 0},
        {"steps", 1, "positions to run, prompt included (capped at the model's maximum)", "256", 0},
        {"temperature", 1, "0 = greedy; otherwise softmax sampling temperature", "1.0", 0},
        {"seed", 1, "random seed for sampling", "1", 0},
        {"stages", 1, "pipeline stages under mpirun (0 = automatic; the rest are replicas)", "0", 0},
        {"plugin", 1, "a Variator plugin file: the prompt runs plugged, generation exactly; one process (docs/PLUGINS.md)", NULL, 0},
        {"threads", 1, "threads per process (0 = BLIS_NUM_THREADS, else 1)", "0", 0},
    };
    memcpy(opts, table, sizeof table);
}

void vt_generate_usage(void) {
    vt_opt opts[N_OPTS];
    default_opts(opts);
    vt_args_usage("generate", "--model PATH [--tokenizer PATH] [--prompt TEXT] [--steps N] [--temperature T] [--seed S] [--threads N] [--plugin FILE]",
                  opts, N_OPTS);
}

int vt_generate_options_parse(vt_generate_options *o, int argc, char **argv, int *help) {
    vt_opt opts[N_OPTS];
    default_opts(opts);
    long steps, seed, stages, threads;
    memset(o, 0, sizeof *o);
    if (vt_args_parse(opts, N_OPTS, argc, argv, 1, help)) return -1;
    if (*help) return 0;
    if (vt_args_require(opts, N_OPTS, "model") || vt_args_int(opts, N_OPTS, "steps", 1, 1L << 30, &steps) ||
        vt_args_double(opts, N_OPTS, "temperature", &o->temperature) ||
        vt_args_int(opts, N_OPTS, "seed", 0, 0x7fffffffL, &seed) || vt_args_int(opts, N_OPTS, "stages", 0, 1 << 20, &stages) ||
        vt_args_int(opts, N_OPTS, "threads", 0, VT_MAX_THREADS, &threads))
        return -1;
    o->threads = (int)threads;
    if (o->temperature < 0.0) return vt_fail("--temperature must be 0 or positive, got %g", o->temperature);
    o->model = opts[OPT_MODEL].value;
    o->tokenizer = opts[OPT_TOKENIZER].value;
    o->prompt = opts[OPT_PROMPT].value;
    o->steps = (int)steps;
    o->seed = (uint64_t)seed;
    o->stages = (int)stages;
    o->plugin = opts[OPT_PLUGIN].value;
    return 0;
}

int vt_generate_tokenizer(const vt_generate_options *o, vt_tokenizer *tok, char *path, size_t cap) {
    if (!o->tokenizer && vt_gguf_is_file(o->model)) { /* a GGUF carries its vocabulary */
        snprintf(path, cap, "%s", o->model);
        return vt_gguf_tokenizer_load(tok, o->model);
    }
    if (vt_tokenizer_locate(o->model, o->tokenizer, path, cap)) return -1;
    return vt_tokenizer_load(tok, path);
}

int vt_generate_prompt(const vt_generate_options *o, const vt_tokenizer *tok, const char *tok_path, const vt_config *c,
                       int *steps, int **ids, size_t *n) {
    if (tok->vocab_size > c->vocab)
        return vt_fail("%s has %d tokens but the model %s has a vocabulary of %d", tok_path, tok->vocab_size, o->model,
                       c->vocab);
    size_t n_unk;
    if (vt_tokenizer_encode(tok, o->prompt, strlen(o->prompt), 1, 0, ids, n, &n_unk)) return -1;
    if (n_unk)
        fprintf(stderr, "note: the prompt has %zu character%s not in %s's vocabulary, encoded as <unk> (id %d)\n",
                n_unk, n_unk == 1 ? "" : "s", tok_path, tok->unk_id);
    *steps = o->steps > c->seq_len ? c->seq_len : o->steps;
    if ((size_t)*steps < *n) {
        free(*ids);
        *ids = NULL;
        return vt_fail("the prompt has %zu tokens, more than --steps %d (or the model's %d positions)", *n, *steps,
                       c->seq_len);
    }
    return 0;
}

int vt_generate_next(const vt_generate_options *o, const float *logits, int vocab, int pos, const int *prompt,
                     size_t n_prompt, float *scratch) {
    if ((size_t)pos + 1 < n_prompt) return prompt[pos + 1];
    if (o->temperature == 0.0) return vt_argmax(logits, vocab);
    return vt_sample(logits, vocab, (float)o->temperature, vt_uniform(o->seed, (uint64_t)pos), scratch);
}

void vt_generate_print(const vt_tokenizer *tok, int prev, int token) {
    const char *piece = vt_decode_piece(tok, prev, token);
    if (!piece || !piece[0]) return;
    if (!piece[1]) {
        unsigned char b = (unsigned char)piece[0];
        if (!(isprint(b) || isspace(b))) return;
    }
    fputs(piece, stdout);
    fflush(stdout);
}
