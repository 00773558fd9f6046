/* cmd_generate.c — `vtrans-dist generate`: text from a prompt, greedy or sampled, as llama2.c run.c. */
#include <stdio.h>
#include <stdlib.h>

#include "util/args.h"
#include "cli/commands.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "nn/forward.h"
#include "cli/generate_cli.h"
#include "nn/model.h"
#include "io/tokenizer.h"


static int generate(const vt_model *m, const vt_tokenizer *tok, const char *tok_path, const vt_generate_options *o) {
    const vt_config *c = &m->cfg;
    int *prompt_ids = NULL, steps, rc = -1;
    size_t n_prompt = 0;
    if (vt_generate_prompt(o, tok, tok_path, c, &steps, &prompt_ids, &n_prompt)) return -1;
    vt_fwd f;
    float *x = vt_malloc((size_t)c->dim * sizeof(float), "activations");
    float *logits = vt_malloc((size_t)c->vocab * sizeof(float), "logits");
    float *scratch = vt_malloc((size_t)c->vocab * sizeof(float), "sampler");
    if (!x || !logits || !scratch || vt_fwd_init(&f, m, 1, 1, steps)) goto out;
    int32_t token = prompt_ids[0];
    int pos = 0;
    double t0 = vt_seconds();
    while (pos < steps) {
        vt_embed(m, &token, 1, x);
        vt_layers_forward(m, &f, 0, c->n_layers, x, 1, 1, pos);
        vt_head_forward(m, &f, x, 1, logits);
        int next = vt_generate_next(o, logits, c->vocab, pos, prompt_ids, n_prompt, scratch);
        pos++;
        if (next == VT_TOKEN_BOS) break;
        vt_generate_print(tok, token, next);
        token = next;
    }
    printf("\n");
    double dt = vt_seconds() - t0;
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
    vt_generate_options o;
    int help;
    if (vt_generate_options_parse(&o, argc, argv, &help)) return vt_cmd_fail("generate");
    if (help) {
        vt_generate_usage();
        return 0;
    }
    if (o.stages > 1) {
        vt_fail("--stages %d needs a multiple of %d ranks (mpirun -n %d or more); this is one process", o.stages,
                o.stages, o.stages);
        return vt_cmd_fail("generate");
    }
    char tok_path[VT_PATH_MAX];
    vt_tokenizer tok;
    vt_model m;
    if (vt_generate_tokenizer(&o, &tok, tok_path, sizeof tok_path)) return vt_cmd_fail("generate");
    int rc = 1;
    if (vt_model_load(&m, o.model, vt_load_all()) == 0) {
        rc = generate(&m, &tok, tok_path, &o) ? 1 : 0;
        vt_model_free(&m);
    }
    vt_tokenizer_free(&tok);
    return rc ? vt_cmd_fail("generate") : 0;
}
