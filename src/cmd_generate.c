/* cmd_generate.c — `vtrans-dist generate`: text from a prompt, greedy or sampled, as llama2.c run.c. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "error.h"
#include "forward.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

/* Prints a piece unless it is a single unprintable byte (as llama2.c safe_printstring). */
static void print_piece(const char *piece) {
    if (!piece || !piece[0]) return;
    if (!piece[1]) {
        unsigned char b = (unsigned char)piece[0];
        if (!(isprint(b) || isspace(b))) return;
    }
    fputs(piece, stdout);
}

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int generate(const vt_model *m, const vt_tokenizer *tok, const char *prompt, int steps, double temperature,
                    uint64_t seed) {
    const vt_config *c = &m->cfg;
    int *prompt_ids = NULL, rc = -1;
    size_t n_prompt = 0;
    if (vt_encode(tok, prompt, strlen(prompt), 1, 0, &prompt_ids, &n_prompt)) return -1;
    if (steps > c->seq_len) steps = c->seq_len;
    if ((size_t)steps < n_prompt) {
        free(prompt_ids);
        return vt_fail("the prompt has %zu tokens, more than --steps %d (or the model's %d positions)", n_prompt, steps,
                       c->seq_len);
    }
    vt_fwd f;
    float *x = vt_malloc((size_t)c->dim * sizeof(float), "activations");
    float *logits = vt_malloc((size_t)c->vocab * sizeof(float), "logits");
    float *scratch = vt_malloc((size_t)c->vocab * sizeof(float), "sampler");
    if (!x || !logits || !scratch || vt_fwd_init(&f, m, 1, 1, steps)) goto out;
    int32_t token = prompt_ids[0];
    int pos = 0;
    double t0 = seconds_now();
    while (pos < steps) {
        vt_embed(m, &token, 1, x);
        vt_layers_forward(m, &f, 0, c->n_layers, x, 1, 1, pos);
        vt_head_forward(m, &f, x, 1, logits);
        int next;
        if ((size_t)pos + 1 < n_prompt) next = prompt_ids[pos + 1];
        else if (temperature == 0.0) next = vt_argmax(logits, c->vocab);
        else next = vt_sample(logits, c->vocab, (float)temperature, vt_uniform(seed, (uint64_t)pos), scratch);
        pos++;
        if (next == VT_TOKEN_BOS) break;
        print_piece(vt_decode_piece(tok, token, next));
        fflush(stdout);
        token = next;
    }
    printf("\n");
    double dt = seconds_now() - t0;
    fprintf(stderr, "generated %d positions in %.2f s (%.1f tokens/s)\n", pos, dt, dt > 0 ? pos / dt : 0.0);
    rc = 0;
    vt_fwd_free(&f);
out:
    free(prompt_ids);
    free(x);
    free(logits);
    free(scratch);
    return rc;
}

int vt_cmd_generate(int argc, char **argv) {
    vt_opt opts[] = {
        {"model", 1, "checkpoint: llama2.c .bin or HF directory", NULL, 0},
        {"tokenizer", 1, "llama2.c tokenizer.bin (default: found next to the model)", NULL, 0},
        {"prompt", 1, "text to continue", "", 0},
        {"steps", 1, "positions to run, prompt included (capped at the model's maximum)", "256", 0},
        {"temperature", 1, "0 = greedy; otherwise softmax sampling temperature", "1.0", 0},
        {"seed", 1, "random seed for sampling", "1", 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), help;
    long steps, seed;
    double temperature;
    if (vt_args_parse(opts, n, argc, argv, 1, &help)) return vt_cmd_fail("generate");
    if (help) {
        vt_args_usage("generate", "--model PATH [--tokenizer PATH] [--prompt TEXT] [--steps N] [--temperature T] [--seed S]",
                      opts, n);
        return 0;
    }
    if (vt_args_require(opts, n, "model") || vt_args_int(opts, n, "steps", 1, 1L << 30, &steps) ||
        vt_args_double(opts, n, "temperature", &temperature) || vt_args_int(opts, n, "seed", 0, 0x7fffffffL, &seed))
        return vt_cmd_fail("generate");
    if (temperature < 0.0) {
        vt_fail("--temperature must be 0 or positive, got %g", temperature);
        return vt_cmd_fail("generate");
    }
    const char *model_path = vt_args_get(opts, n, "model");
    char tok_path[4096];
    vt_tokenizer tok;
    vt_model m;
    if (vt_tokenizer_locate(model_path, vt_args_get(opts, n, "tokenizer"), tok_path, sizeof tok_path) ||
        vt_tokenizer_load(&tok, tok_path))
        return vt_cmd_fail("generate");
    int rc = 1;
    if (vt_model_load(&m, model_path, vt_load_all())) {
        vt_tokenizer_free(&tok);
        return vt_cmd_fail("generate");
    }
    if (tok.vocab_size > m.cfg.vocab)
        vt_fail("%s has %d tokens but the model %s has a vocabulary of %d", tok_path, tok.vocab_size, model_path,
                m.cfg.vocab);
    else if (generate(&m, &tok, vt_args_get(opts, n, "prompt"), (int)steps, temperature, (uint64_t)seed) == 0)
        rc = 0;
    if (rc) vt_cmd_fail("generate");
    vt_model_free(&m);
    vt_tokenizer_free(&tok);
    return rc;
}
