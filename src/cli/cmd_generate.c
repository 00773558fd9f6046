/* cmd_generate.c — `vtrans-dist generate`: text from a prompt, greedy or sampled, as llama2.c
 * run.c, in one process or token by token through the pipeline stages of a world of ranks (each
 * keeping the key/value cache of its own layers; the last stage chooses the next token). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "cli/generate_cli.h"
#include "dist/pipeline.h"
#include "nn/matmul.h"
#include "io/plugin_file.h"
#include "io/tokenizer.h"
#include "nn/plugin.h"
#include "util/args.h"
#include "util/error.h"
#include "util/fsutil.h"

/* The prompt: world rank 0 alone holds the tokenizer (it alone prints text); every rank holds the
 * prompt ids and the steps. */
typedef struct {
    vt_tokenizer tok;
    int have_tok;
    int *ids;
    size_t n;
    int steps;
    int32_t bos; /* the tokenizer's BOS id (-1: none), where generation stops */
} prompt;

static void prompt_free(prompt *p) {
    if (p->have_tok) vt_tokenizer_free(&p->tok);
    free(p->ids);
}

/* World rank 0 loads the tokenizer, encodes the prompt and caps the steps; the prompt ids and
 * steps go to every rank. Collective over the world; agrees on failure (prompt_free frees what
 * was made). */
static int prepare_prompt(vt_world *w, const vt_generate_options *o, const vt_config *c, prompt *p) {
    int rc = 0;
    if (w->rank == 0) {
        char tok_path[VT_PATH_MAX];
        rc = vt_generate_tokenizer(o, &p->tok, tok_path, sizeof tok_path);
        p->have_tok = rc == 0;
        if (rc == 0) rc = vt_generate_prompt(o, &p->tok, tok_path, c, &p->steps, &p->ids, &p->n);
        if (rc == 0) p->bos = p->tok.bos_id;
    }
    if (vt_comm_agree(w->comm, rc)) return -1;
    if (w->size == 1) return 0;
    int32_t counts[3] = {(int32_t)p->n, p->steps, p->bos}; /* the prompt is at most `steps` <= seq_len tokens */
    if (w->comm->bcast(w->comm, VT_WORLD, VT_INT32, counts, 3, 0)) return -1;
    p->n = (size_t)counts[0];
    p->steps = counts[1];
    p->bos = counts[2];
    if (w->rank != 0) {
        p->ids = vt_malloc(sizeof(int) * p->n, "prompt ids");
        rc = p->ids ? 0 : -1;
    }
    if (vt_comm_agree(w->comm, rc)) return -1;
    return w->comm->bcast(w->comm, VT_WORLD, VT_INT32, p->ids, p->n, 0);
}

/* Position after position from pos (its token `token`) until `steps` or BOS: every replica
 * computes the same tokens (same seed, same positions); world rank 0 prints. */
static int generate_loop(vt_comm *c, const vt_model *m, const vt_generate_options *o, const prompt *pr, vt_fwd *f,
                         float *x, float *logits, float *scratch, int pos, int32_t token, int *positions) {
    int last = vt_comm_last(c);
    while (pos < pr->steps) {
        if (vt_pipeline_step(c, m, f, &token, x, 1, 1, pos, pos)) return -1;
        int32_t next = 0;
        if (last) {
            vt_head_forward(m, f, x, 1, logits);
            next = vt_generate_next(o, logits, m->cfg.vocab, pos, pr->ids, pr->n, scratch);
        }
        if (c->bcast(c, VT_PIPE, VT_INT32, &next, 1, c->stages - 1)) return -1;
        pos++;
        if (next == pr->bos) break;
        if (c->world_rank == 0) vt_generate_print(&pr->tok, token, next);
        token = next;
    }
    *positions = pos;
    return 0;
}

/* --plugin (one process, m whole): the prompt's n positions in one plugged prefill (nn/plugin.h)
 * filling f's cache, the text of the prompt printed, and the token after it chosen from the last
 * position's logits into *next (BOS: nothing follows). */
static int plugged_prefill(const vt_model *m, const vt_generate_options *o, const prompt *pr, vt_fwd *f,
                           float *logits, float *scratch, int32_t *next) {
    vt_plugin plug = {0};
    vt_plugin_work pw = {0};
    uint64_t fp;
    int n = (int)pr->n, d = m->cfg.dim;
    int32_t *ids = vt_malloc(sizeof(int32_t) * (size_t)n, "prompt ids");
    float *xs = vt_malloc(sizeof(float) * (size_t)n * d, "prompt activations");
    int rc = ids && xs ? vt_model_fingerprint(m, &fp) : -1;
    if (!rc) rc = vt_plugin_load(o->plugin, &m->cfg, fp, o->model, &plug);
    if (!rc) rc = vt_plugin_work_init(&pw, m, &plug, 1, n);
    if (!rc) {
        for (int i = 0; i < n; i++) ids[i] = pr->ids[i];
        vt_embed(m, ids, n, xs);
        vt_plugged_forward(m, f, &plug, &pw, 0, m->cfg.n_layers, xs, 1, n, NULL, NULL);
        vt_head_forward(m, f, xs + (size_t)(n - 1) * d, 1, logits);
        *next = vt_generate_next(o, logits, m->cfg.vocab, n - 1, pr->ids, pr->n, scratch);
        for (int i = 0; i + 1 < n; i++) vt_generate_print(&pr->tok, pr->ids[i], pr->ids[i + 1]);
        if (*next != VT_TOKEN_BOS) vt_generate_print(&pr->tok, pr->ids[n - 1], *next);
        vt_plugin_work_free(&pw);
    }
    vt_plugin_free(&plug);
    free(ids), free(xs);
    return rc;
}

/* Generation after the plugged prefill (its next token, or the loop from position 0 without one). */
static int run_loop(vt_comm *c, const vt_model *m, const vt_generate_options *o, const prompt *pr, vt_fwd *f,
                    float *x, float *logits, float *scratch, int *pos) {
    if (!o->plugin) return generate_loop(c, m, o, pr, f, x, logits, scratch, 0, pr->ids[0], pos);
    int32_t next;
    if (plugged_prefill(m, o, pr, f, logits, scratch, &next)) return -1;
    *pos = (int)pr->n;
    if (next == VT_TOKEN_BOS || *pos >= pr->steps) return 0;
    return generate_loop(c, m, o, pr, f, x, logits, scratch, *pos, next, pos);
}

/* The buffers, the loop and its closing lines (the rate, and the layout over several ranks). */
static int generate(vt_world *w, vt_pipeline *p, const vt_generate_options *o, const prompt *pr) {
    const vt_config *cfg = &p->part.cfg;
    vt_comm *c = p->comm;
    int last = vt_comm_last(c), pos = 0;
    vt_fwd f;
    float *x = vt_malloc((size_t)cfg->dim * sizeof(float), "activations");
    float *logits = last ? vt_malloc((size_t)cfg->vocab * sizeof(float), "logits") : NULL;
    float *scratch = last ? vt_malloc((size_t)cfg->vocab * sizeof(float), "sampler") : NULL;
    int rows = o->plugin ? (int)pr->n : 1; /* the plugged prefill runs the prompt in one pass */
    int rc = x && (!last || (logits && scratch)) ? vt_fwd_init(&f, &p->part, 1, rows, pr->steps) : -1;
    if (vt_comm_agree(c, rc) == 0) {
        double t0 = vt_comm_seconds(c);
        rc = run_loop(c, &p->part, o, pr, &f, x, logits, scratch, &pos);
        double dt = vt_comm_seconds(c) - t0;
        if (rc == 0 && w->rank == 0) {
            printf("\n");
            fflush(stdout);
            fprintf(stderr, "generated %d positions in %.2f s (%.1f tokens/s)", pos, dt, dt > 0 ? pos / dt : 0.0);
            if (w->size > 1) fprintf(stderr, " on %d stages x %d replicas", c->stages, c->replicas);
            fprintf(stderr, "\n");
        }
    }
    if (x && (!last || (logits && scratch))) vt_fwd_free(&f);
    free(x);
    free(logits);
    free(scratch);
    return rc ? -1 : 0;
}

int vt_cmd_generate(vt_world *w, int argc, char **argv) {
    vt_generate_options o;
    int help;
    if (vt_comm_agree(w->comm, vt_generate_options_parse(&o, argc, argv, &help))) return vt_cmd_fail_world("generate");
    if (help) {
        if (w->rank == 0) vt_generate_usage();
        return 0;
    }
    if (vt_comm_agree(w->comm, vt_threads_set(o.threads))) return vt_cmd_fail_world("generate");
    prompt pr = {0};
    vt_pipeline p;
    int rc = -1;
    if (o.plugin && w->size > 1) {
        vt_fail("generate --plugin runs in one process (mpirun -n 1 or no mpirun), not on %d ranks", w->size);
        return vt_cmd_fail_world("generate");
    }
    if (vt_pipeline_layout(&p, w, o.model, o.plugin ? 1 : o.stages, VT_PARTITION_INFER, "generate") == 0) {
        if (prepare_prompt(w, &o, &p.cfg, &pr) == 0 && vt_pipeline_load(&p, o.model) == 0)
            rc = generate(w, &p, &o, &pr);
        vt_pipeline_close(&p);
    }
    prompt_free(&pr);
    return rc ? vt_cmd_fail_world("generate") : 0;
}
