/* cmd_plan.c — `vtrans-dist plan`: size a cluster run before submitting it: topology, layer
 * partition, per-rank memory and FLOPs, from the run config and the model's config alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util/args.h"
#include "io/checkpoint_config.h"
#include "cli/commands.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_config.h"
#include "nn/lora.h"
#include "nn/matmul.h"
#include "dist/partition.h"
#include "run/plan.h"
#include "run/run_config.h"

static const char *synopsis =
    "--config FILE (--ranks P [--stages S] | --cores-per-node C --memory-per-node SIZE [--nodes N])\n"
    "                        [--model-config config.json] [--memory-per-rank SIZE] [--calib-sequences N]\n"
    "                        [--gflops-per-rank R | --gflops-per-core R [--thread-efficiency E]] [--json]\n"
    "                        [--set section.key=value ...]";

/* The per-core rate plan assumes unless told: the Faster-VTrans step at -n 1, one thread, on
 * LLaMA-2-7B-shaped layers (packed path), docs/PERFORMANCE.md's latest full run. */
#define MEASURED_GFLOPS_CORE 87.9
#define MEASURED_WHERE                                                                                          \
    "the Faster-VTrans step at -n 1 on one thread, LLaMA-2-7B-shaped layers on the packed path, measured in " \
    "docs/PERFORMANCE.md (2026-12-03, commit d11ff04, AMD EPYC)"
/* Assumed, not measured at more than 2 threads: P2's floor for 2 threads in a rank is 1.8x of one
 * (BLIS sgemm alone measured 1.97x at 2 threads, docs/PERFORMANCE.md). */
#define ASSUMED_THREAD_EFFICIENCY 0.9
/* Assumed: fp64 FMA units do half the lanes of fp32 ones (the re-fit's G, C sums and solves). */
#define ASSUMED_DOUBLE_RATIO 0.5

/* The model's architecture without reading its weights: --model-config, else model.path's
 * (vt_checkpoint_config: an HF directory's config.json, whose weight files must be there, or a
 * llama2.c .bin's header). */
static int read_model_config(const vt_run_config *rc, const char *model_config, vt_config *c, char *source,
                             size_t cap) {
    if (model_config) {
        snprintf(source, cap, "%s", model_config);
        return vt_hf_config_read(model_config, c, NULL);
    }
    const char *path = rc->model.path;
    if (!path[0])
        return vt_fail("%s: model.path is not set; set it or pass --model-config config.json", rc->source);
    if (!vt_path_exists(path))
        return vt_fail("model.path '%s' does not exist here; to plan without the checkpoint pass --model-config "
                       "with its config.json (configs/shapes/ has LLaMA-2-7B and 13B)",
                       path);
    if (vt_is_dir(path)) {
        if (vt_path_join(source, cap, path, "config.json")) return -1;
    } else {
        snprintf(source, cap, "%s", path);
    }
    if (vt_checkpoint_config(path, c))
        return vt_fail_context("model.path (--model-config config.json plans without the checkpoint)");
    return 0;
}

/* The checkpoint's 16-bit type from its config.json's torch_dtype, else VT_F32 (a llama2.c .bin is
 * fp32; GGUF is counted as fp32 too: an upper bound). */
static vt_dtype checkpoint_16bit_type(const char *source) {
    size_t n = strlen(source);
    int declared = -1;
    vt_config tmp;
    memset(&tmp, 0, sizeof tmp);
    if (n >= 5 && strcmp(source + n - 5, ".json") == 0 && vt_hf_config_read(source, &tmp, &declared) == 0)
        vt_config_free(&tmp);
    return declared == VT_F16 || declared == VT_BF16 ? (vt_dtype)declared : VT_F32;
}

static void format_count(double x, char *buf, size_t cap) {
    if (x >= 1e9) snprintf(buf, cap, "%.2f B", x / 1e9);
    else if (x >= 1e6) snprintf(buf, cap, "%.2f M", x / 1e6);
    else if (x >= 1e3) snprintf(buf, cap, "%.2f K", x / 1e3);
    else snprintf(buf, cap, "%.0f", x);
}

static void format_flops(double x, char *buf, size_t cap) {
    static const char *units[] = {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP", "EFLOP", "ZFLOP"};
    int u = 0;
    while (x >= 1000.0 && u < 7) {
        x /= 1000.0;
        u++;
    }
    snprintf(buf, cap, "%.3g %s", x, units[u]);
}

static void format_bytes(double x, char *buf, size_t cap) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (x >= 1024.0 && u < 4) {
        x /= 1024.0;
        u++;
    }
    snprintf(buf, cap, u ? "%.2f %s" : "%.0f %s", x, units[u]);
}

static double largest_rank(const vt_plan *p, int *stage) {
    double m = 0.0;
    for (int s = 0; s < p->stages; s++)
        if (p->stage[s].total > m) {
            m = p->stage[s].total;
            *stage = s;
        }
    return m;
}

static void print_stages(const vt_plan *p) {
    double unit = 1024.0 * 1024.0 * 1024.0;
    const char *uname = "GiB";
    int top_stage = 0;
    double top = largest_rank(p, &top_stage);
    if (top < unit) {
        unit = 1024.0 * 1024.0;
        uname = "MiB";
    }
    double total_flops = 0.0;
    for (int s = 0; s < p->stages; s++) total_flops += p->stage[s].flops_token;
    printf("\nstage  layers    params   FLOPs  | per rank (%s): weights  activations  optimizer  teacher    total\n",
           uname);
    for (int s = 0; s < p->stages; s++) {
        const vt_stage_plan *st = &p->stage[s];
        char layers[32], params[32];
        snprintf(layers, sizeof layers, "%d-%d", st->layer_begin, st->layer_end - 1);
        format_count((double)st->params, params, sizeof params);
        printf("%5d  %-7s %9s  %5.1f%%  | %21.2f  %11.2f  %9.2f  %7.2f  %7.2f\n", s, layers, params,
               100.0 * st->flops_token / total_flops, st->weights / unit, st->activations / unit,
               st->optimizer / unit, st->teacher_cache / unit, st->total / unit);
    }
}

/* The largest rank of every other layout of the same ranks, to compare, with its bubble and the
 * micro-batches (x chunks per sequence) that make it. A layout the configured micro-batch count
 * or chunk count cannot split is shown with automatic ones instead. */
static void print_alternatives(const vt_plan_input *in, const vt_plan *chosen, double memory) {
    printf("\nlayouts      stages x replicas   largest rank   bubble   micro-batches\n");
    for (int S = 1; S <= in->ranks && S <= in->cfg->n_layers; S++) {
        if (in->ranks % S) continue;
        vt_plan_input alt = *in;
        alt.stages = S;
        vt_plan p;
        char size[32], mb[32];
        const char *automatic = "";
        int s = 0, rc = vt_plan_make(&alt, &p);
        if (rc && in->micro_batches > 0) {
            vt_error_clear();
            alt.micro_batches = 0;
            automatic = "   (automatic micro-batches)";
            rc = vt_plan_make(&alt, &p);
        }
        if (rc && in->seq_chunks > 0) {
            vt_error_clear();
            alt.seq_chunks = 0;
            automatic = alt.micro_batches == in->micro_batches ? "   (automatic chunks)"
                                                                : "   (automatic micro-batches and chunks)";
            rc = vt_plan_make(&alt, &p);
        }
        if (rc) {
            printf("             %3d x %-3d           not possible: %s\n", S, in->ranks / S, vt_error());
            vt_error_clear();
            continue;
        }
        (void)largest_rank(&p, &s);
        double top = p.peak;
        format_bytes(top, size, sizeof size);
        if (p.seq_chunks > 1) snprintf(mb, sizeof mb, "%d x %d chunks", p.micro_batches, p.seq_chunks);
        else snprintf(mb, sizeof mb, "%d", p.micro_batches);
        char row[256];
        snprintf(row, sizeof row, "             %3d x %-3d           %12s   %5.1f%%   %-15s%s%s%s", S, p.replicas, size,
                 100.0 * p.bubble, mb, S == chosen->stages ? "   <- this plan" : "", automatic,
                 memory > 0 && top > memory ? "   over --memory-per-rank" : "");
        size_t len = strlen(row);
        while (len && row[len - 1] == ' ') row[--len] = '\0';
        printf("%s\n", row);
        vt_plan_free(&p);
    }
}

/* Compute-bound times (vt_plan_times): per step of each phase, and hours per phase. */
static void print_times(const vt_plan_input *in, const vt_plan *p, const vt_plan_time *t) {
    printf("time         at %.0f GFLOP/s per rank (%d thread%s): %.1f s per mask step", t->rank_gflops, in->threads,
           in->threads == 1 ? "" : "s", t->mask_step_s);
    if (p->stages > 1)
        printf(" (forward %.1f, classifier %.1f, backward %.1f; the busiest stage idle %.0f%%)", t->mask_phase_s[0],
               t->mask_phase_s[1], t->mask_phase_s[2], 100.0 * t->mask_idle);
    if (t->finetune_step_s > 0) printf(", %.1f s per fine-tuning step", t->finetune_step_s);
    if (in->recover_method > 0) printf(", %.1f s per recovery step", t->recover_step_s);
    printf("\n             hours: teacher pass %.2f, mask phase %.2f", t->teacher_h, t->masks_h);
    if (t->finetune_step_s > 0) printf(", fine-tuning %.2f", t->finetune_h);
    if (in->refit_sequences > 0) printf(", re-fit %.2f", t->refit_h);
    if (in->recover_method > 0) printf(", recovery %.2f", t->recover_h);
    printf("; %.2f hours for the run%s\n", t->hours, in->calib_sequences > 0 ? "" : " (without the teacher pass)");
}

/* The pipeline line: micro-batches and sequence chunks, where each count came from (its setting,
 * else "automatic") or why sequences are not cut, and the bubble. */
static void print_pipeline(const vt_plan_input *in, const vt_plan *p) {
    char chunks[96] = "", why[160];
    const char *mb = in->micro_batches > 0 ? "parallel.micro_batches" : "automatic";
    if (p->seq_chunks > 1) {
        snprintf(chunks, sizeof chunks, " in %d chunks of %d tokens", p->seq_chunks, p->chunk_tokens);
        if (in->seq_chunks > 0)
            snprintf(why, sizeof why, "%s", in->micro_batches > 0 ? "parallel.micro_batches, parallel.seq_chunks"
                                                                   : "automatic micro-batches; parallel.seq_chunks");
        else
            snprintf(why, sizeof why, "%s", in->micro_batches > 0 ? "parallel.micro_batches; automatic chunks"
                                                                   : "automatic");
    } else if (p->stages == 1) { /* no pipeline: nothing to say of chunks */
        snprintf(why, sizeof why, "%s", mb);
    } else if (in->seq_chunks == 1) {
        snprintf(why, sizeof why, "%s; no chunks: parallel.seq_chunks = 1", mb);
    } else if (p->micro_batch > 1) {
        snprintf(why, sizeof why, "%s; no chunks: they need micro-batches of one sequence", mb);
    } else if (vt_pipeline_bubble_small(p->stages, p->micro_batches)) { /* vt_seq_chunks_choose's rule */
        snprintf(why, sizeof why, "%s; no chunks: the micro-batches bring the bubble to 10%% or less", mb);
    } else {
        snprintf(why, sizeof why, "%s; no chunks: none of %d tokens or more divides a sequence", mb,
                 VT_CHUNK_MIN_TOKENS);
    }
    printf("pipeline     GPipe, %d micro-batch%s of %d sequence%s%s per replica and step (%s); bubble %.0f%% of the layers' "
           "forward and backward\n",
           p->micro_batches, p->micro_batches == 1 ? "" : "es", p->micro_batch, p->micro_batch == 1 ? "" : "s",
           chunks, why, 100.0 * p->bubble);
}

/* What is planned: the model, the run, the topology, the pipeline and the stages. */
static void print_run(const char *config, const char *model_source, const vt_run_config *rc,
                      const vt_plan_input *in, const vt_plan *p, int stages_from_option) {
    const vt_config *c = in->cfg;
    char buf[64], buf2[64];
    size_t params = vt_params_total(c);
    format_count((double)params, buf, sizeof buf);
    format_bytes((double)params * sizeof(float), buf2, sizeof buf2);
    printf("plan         %s on %d rank%s x %d thread%s\n", config, p->ranks, p->ranks == 1 ? "" : "s", in->threads,
           in->threads == 1 ? "" : "s");
    printf("model        %s: %d layers, hidden %d, %d heads (%d KV), FFN %d, vocab %d\n", model_source, c->n_layers,
           c->dim, c->n_heads, c->n_kv_heads, c->ffn_dim, c->vocab);
    printf("             %s parameters, %s in fp32\n", buf, buf2);
    if (rc->method.name == VT_METHOD_VIB)
        printf("run          VTrans (%s): %d mask steps%s; %d sequences x %d tokens per step\n",
               vt_variant_name(rc->vib.variant), rc->schedule.steps,
               in->finetune_steps > 0 ? "" : ", weights frozen", rc->schedule.batch_size, in->seq_len);
    else
        printf("run          method %s: estimated as a VTrans masks-only run (an upper bound)\n",
               vt_method_name(rc->method.name));
    if (in->finetune_steps > 0) printf("             then %ld joint fine-tuning steps\n", in->finetune_steps);
    const char *why = stages_from_option == 2 ? "the fastest that fits the machine"
                      : in->stages == 0       ? "automatic"
                      : stages_from_option    ? "--stages"
                                              : "parallel.stages";
    printf("topology     %d stage%s x %d replica%s (%s); rank = replica * %d + stage\n", p->stages,
           p->stages == 1 ? "" : "s", p->replicas, p->replicas == 1 ? "" : "s", why, p->stages);
    print_pipeline(in, p);
    print_stages(p);
}

/* What packing the frozen weights costs (or would cost) per rank. */
static void print_packs(const vt_run_config *rc, const vt_plan_input *in, const vt_plan *p) {
    char buf[64];
    double packs = 0.0;
    for (int s = 0; s < p->stages; s++) packs = p->stage[s].packs > packs ? p->stage[s].packs : packs;
    format_bytes(packs, buf, sizeof buf);
    if (in->pack_weights)
        printf("packs        weights include up to %s per rank: the frozen weights packed once for BLIS's\n"
               "             micro-kernel (parallel.pack_weights; docs/PERFORMANCE.md)\n",
               buf);
    else if (rc->method.name == VT_METHOD_VIB)
        printf("packs        parallel.pack_weights = true would add up to %s per rank for faster mask steps\n"
               "             (the frozen weights packed once for BLIS's micro-kernel; docs/PERFORMANCE.md)\n",
               buf);
}

/* FLOPs per token, per step and for the run. */
static void print_flops(const vt_plan_input *in, const vt_plan *p) {
    char buf[64], buf2[64];
    format_flops(p->flops_token, buf, sizeof buf);
    printf("\nFLOPs        %s per token forward (mean context %.1f)\n", buf, p->ctx);
    format_flops(p->flops_step_masks, buf, sizeof buf);
    printf("             %s per mask step (2 forward passes: activation gradients only)\n", buf);
    if (p->flops_step_finetune > 0) {
        format_flops(p->flops_step_finetune, buf, sizeof buf);
        printf("             %s per fine-tuning step (3 forward passes: weight gradients too)\n", buf);
    }
    double busiest = 0.0;
    for (int s = 0; s < p->stages; s++)
        busiest = p->stage[s].flops_rank_step > busiest ? p->stage[s].flops_rank_step : busiest;
    format_flops(busiest, buf, sizeof buf);
    printf("             %s per mask step on the busiest rank\n", buf);
    format_flops(p->flops_run, buf, sizeof buf);
    if (in->calib_sequences > 0) {
        format_flops(p->flops_teacher, buf2, sizeof buf2);
        printf("             %s for the whole run, of which %s for the teacher cache pass\n", buf, buf2);
    } else {
        printf("             %s for the whole run, without the teacher cache pass\n", buf);
    }
}

/* The teacher cache, the largest rank, a warning for stages over memory, the other layouts. */
static void print_memory(const vt_plan_input *in, const vt_plan *p, double memory) {
    char buf[64], buf2[64], buf3[64];
    format_bytes(p->cache_per_sequence, buf, sizeof buf);
    if (in->calib_sequences > 0) {
        format_bytes(p->cache_per_sequence * (double)in->calib_sequences, buf2, sizeof buf2);
        printf("\nteacher      %ld calibration sequences x %s = %s cached, sharded over the %d replicas' "
               "last-stage ranks\n",
               in->calib_sequences, buf, buf2, p->replicas);
    } else {
        printf("\nteacher      %s per calibration sequence on each last-stage rank, not in the totals: pass "
               "--calib-sequences N or set data.max_sequences\n",
               buf);
    }
    int top_stage = 0;
    double top = largest_rank(p, &top_stage);
    format_bytes(top, buf, sizeof buf);
    printf("memory       largest rank: %s (stage %d)\n", buf, top_stage);
    if (p->peak > top) {
        format_bytes(p->peak, buf2, sizeof buf2);
        printf("             with the re-fit and the recovery: %s at most per rank\n", buf2);
    }
    if (memory > 0 && p->peak > memory) {
        format_bytes(memory, buf3, sizeof buf3);
        printf("warning: a rank needs up to %s, more than --memory-per-rank %s\n", buf2, buf3);
    }
    int over = 0;
    for (int s = 0; s < p->stages; s++) over += memory > 0 && p->stage[s].total > memory;
    if (over) {
        format_bytes(memory, buf3, sizeof buf3);
        printf("warning: %d of %d stages need more than --memory-per-rank %s per rank (stage %d: %s); see the "
               "layouts below\n",
               over, p->stages, buf3, top_stage, buf);
    }
    print_alternatives(in, p, memory);
}

/* The re-fit after training: its own peak per rank and FLOPs. */
static void print_refit(const vt_plan_input *in, const vt_plan *p) {
    const vt_refit_plan *r = &p->refit;
    if (in->refit_sequences <= 0) return;
    char total[64], streams[64], work[64], solver[64], models[64], flops[64], flops2[64];
    format_bytes(r->total, total, sizeof total);
    format_bytes(r->streams, streams, sizeof streams);
    format_bytes(r->work, work, sizeof work);
    format_bytes(r->solver, solver, sizeof solver);
    format_bytes(r->models, models, sizeof models);
    format_flops(r->flops, flops, sizeof flops);
    format_flops(r->flops_double, flops2, sizeof flops2);
    printf("re-fit       reconstruct.method = lsq on %d sequences (batches of %d) after training: up to %s per rank "
           "besides both models' %s (streams %s, batch and systems %s, ScaLAPACK share %s; widest system %d x %d, %d "
           "outputs); %s in fp32 passes, %s in fp64 sums and solves\n",
           in->refit_sequences, in->refit_batch, total, models, streams, work, solver, r->widest_in, r->widest_in,
           r->widest_out, flops, flops2);
}

/* The recovery: what it trains and holds per rank, and lora's optimizer state against full's. */
static void print_recover(const vt_run_config *rc, const vt_plan_input *in, const vt_plan *p) {
    const vt_recover_plan *r = &p->recover;
    if (in->recover_method <= 0) return;
    char total[64], wts[64], trained[64], act[64], lora[64], full[64], n_lora[32], n_full[32], flops[64];
    format_bytes(r->total, total, sizeof total);
    format_bytes(r->weights, wts, sizeof wts);
    format_bytes(r->trained, trained, sizeof trained);
    format_bytes(r->activations, act, sizeof act);
    format_bytes(r->adam_lora, lora, sizeof lora);
    format_bytes(r->adam_full, full, sizeof full);
    format_count((double)r->lora_params, n_lora, sizeof n_lora);
    format_count((double)r->full_params, n_full, sizeof n_full);
    format_flops(r->flops_step, flops, sizeof flops);
    printf("recovery     recover.method = %s, %ld steps of %d sequences: %s per rank (teacher and student %s, "
           "trained state %s, activations %s); %s per step\n",
           vt_recover_method_name(rc->recover.method), in->recover_steps, in->recover_batch, total, wts, trained, act,
           flops);
    printf("             Adam moments: lora rank %d on %s, %s adapter parameters: %s; full fine-tuning, %s kept "
           "weights: %s; lora's %.2f%% of full's\n",
           in->recover_rank, rc->recover_targets, n_lora, lora, n_full, full, 100.0 * r->adam_lora / r->adam_full);
}

static void print_plan(const char *config, const char *model_source, const vt_run_config *rc,
                       const vt_plan_input *in, const vt_plan *p, int stages_from_option, double memory,
                       const vt_plan_time *t) {
    print_run(config, model_source, rc, in, p, stages_from_option);
    print_packs(rc, in, p);
    print_flops(in, p);
    if (t) print_times(in, p, t);
    print_refit(in, p);
    print_recover(rc, in, p);
    print_memory(in, p, memory);
}

/* The numbers the options give; unset: ranks 0 (a machine instead), stages -1 (the config's),
 * calib 0 (data.max_sequences), memory 0 (no warning), gflops 0 (no times unless a machine or
 * --json asks: then the measured per-core rate). */
typedef struct {
    long ranks, stages, calib, nodes, cores;
    double memory, node_memory, gflops_rank, gflops_core, thread_eff;
    int json;
} plan_options;

/* A positive real option into *x (left as is when absent). */
static int positive_option(vt_opt *opts, int n, const char *name, double *x) {
    if (!vt_args_find(opts, n, name)->seen) return 0;
    if (vt_args_double(opts, n, name, x)) return -1;
    if (*x <= 0) return vt_fail("--%s must be positive, not %g", name, *x);
    return 0;
}

static int size_option(vt_opt *opts, int n, const char *name, double *x) {
    if (vt_args_find(opts, n, name)->seen && vt_parse_size_real(vt_args_get(opts, n, name), x))
        return vt_fail("--%s: '%s' is not a positive size (a number with an optional K, M, G or T, e.g. 24G)", name,
                       vt_args_get(opts, n, name));
    return 0;
}

static int parse_numbers(vt_opt *opts, int n, plan_options *o) {
    *o = (plan_options){.stages = -1, .nodes = 1, .gflops_core = MEASURED_GFLOPS_CORE,
                        .thread_eff = ASSUMED_THREAD_EFFICIENCY};
    o->json = vt_args_find(opts, n, "json")->seen > 0;
    int machine = vt_args_find(opts, n, "cores-per-node")->seen || vt_args_find(opts, n, "nodes")->seen ||
                  vt_args_find(opts, n, "memory-per-node")->seen;
    if (vt_args_require(opts, n, "config")) return -1;
    if (machine == (vt_args_find(opts, n, "ranks")->seen > 0))
        return vt_fail("give either --ranks P or the machine (--cores-per-node C --memory-per-node SIZE [--nodes N])");
    if (!machine && vt_args_int(opts, n, "ranks", 1, 1 << 20, &o->ranks)) return -1;
    if (machine && (vt_args_require(opts, n, "cores-per-node") || vt_args_require(opts, n, "memory-per-node") ||
                    vt_args_int(opts, n, "cores-per-node", 1, 1 << 16, &o->cores) ||
                    (vt_args_find(opts, n, "nodes")->seen && vt_args_int(opts, n, "nodes", 1, 1 << 16, &o->nodes))))
        return -1;
    if (vt_args_find(opts, n, "stages")->seen && vt_args_int(opts, n, "stages", 0, 1 << 20, &o->stages)) return -1;
    if (vt_args_find(opts, n, "calib-sequences")->seen &&
        vt_args_int(opts, n, "calib-sequences", 1, 1L << 40, &o->calib))
        return -1;
    if (positive_option(opts, n, "gflops-per-rank", &o->gflops_rank) ||
        positive_option(opts, n, "gflops-per-core", &o->gflops_core) ||
        positive_option(opts, n, "thread-efficiency", &o->thread_eff))
        return -1;
    if (o->thread_eff > 1) return vt_fail("--thread-efficiency must be at most 1, not %g", o->thread_eff);
    return size_option(opts, n, "memory-per-rank", &o->memory) || size_option(opts, n, "memory-per-node", &o->node_memory);
}

/* The run configuration with every --set applied, without vt_run_config_validate: the model and
 * data need not be here; recover.targets is parsed here for the same reason. */
static int load_run_config(const char *config, vt_opt *opts, int n, int argc, char **argv, vt_run_config *rc) {
    if (vt_run_config_load(rc, config)) return -1;
    for (int k = 0; k < vt_args_find(opts, n, "set")->seen; k++)
        if (vt_run_config_set(rc, vt_args_nth(opts, n, argc, argv, 1, "set", k))) return -1;
    if (vt_lora_parse_targets(rc->recover_targets, &rc->recover.targets))
        return vt_fail_context("%s: recover.targets", config);
    return 0;
}

static vt_plan_input plan_input(const vt_run_config *rc, const vt_config *c, const plan_options *o, vt_dtype dtype) {
    int vib = rc->method.name == VT_METHOD_VIB;
    return (vt_plan_input){
        .cfg = c,
        .ranks = (int)o->ranks,
        .stages = o->stages >= 0 ? (int)o->stages : rc->pipeline.stages,
        .micro_batches = rc->pipeline.micro_batches,
        .seq_chunks = rc->pipeline.seq_chunks,
        .batch_size = rc->schedule.batch_size,
        .seq_len = rc->data.seq_len,
        .steps = rc->schedule.steps,
        .finetune_steps = vib && rc->vib.variant != VT_VARIANT_FASTER ? rc->schedule.finetune_steps : 0,
        .prune_interval = vib ? rc->vib.prune_interval : 0,
        .keep_fraction = rc->budget.params > 0 ? rc->budget.params : (rc->budget.flops > 0 ? rc->budget.flops : 1.0),
        .calib_sequences = o->calib > 0 ? o->calib : rc->data.max_sequences,
        .pack_weights = vib && rc->pipeline.pack_weights,
        .refit_sequences = rc->reconstruct.method == VT_RECONSTRUCT_LSQ ? rc->reconstruct.sequences : 0,
        .refit_batch = rc->reconstruct.fit.batch,
        .refit_seq_len = rc->reconstruct.seq_len,
        .refit_inputs = rc->reconstruct.fit.inputs,
        .threads = rc->pipeline.threads > 0 ? rc->pipeline.threads : vt_threads_default(),
        /* VTrans holds a 16-bit checkpoint's frozen matrices as stored (run/prune_run.c) */
        .checkpoint_16bit = dtype != VT_F32 && rc->model.hold == VT_HOLD_AUTO && rc->method.name == VT_METHOD_VIB,
        .hold = rc->model.hold == VT_HOLD_AUTO ? dtype : VT_F32, /* the type packs are held in (vt_model.hold) */
        .recover_method = (int)rc->recover.method,
        .recover_steps = rc->recover.steps,
        .recover_batch = rc->recover.batch_size,
        .recover_micro = rc->recover.micro_batch,
        .recover_rank = rc->recover.rank,
        .recover_targets = rc->recover.targets,
    };
}

/* The rates: --gflops-per-rank is a whole rank's; else the per-core figure and thread efficiency. */
static vt_speed plan_speed(const plan_options *o) {
    if (o->gflops_rank > 0) return (vt_speed){o->gflops_rank, 0.0, ASSUMED_DOUBLE_RATIO};
    return (vt_speed){o->gflops_core, o->thread_eff, ASSUMED_DOUBLE_RATIO};
}

/* Where the rates come from, said once above the plan. */
static void print_assumptions(const plan_options *o, const vt_speed *sp) {
    if (o->gflops_rank > 0) printf("speed        %g GFLOP/s per rank (--gflops-per-rank)", o->gflops_rank);
    else if (o->gflops_core != MEASURED_GFLOPS_CORE) printf("speed        %g GFLOP/s per core (--gflops-per-core)", sp->gflops_core);
    else printf("speed        %g GFLOP/s per core: %s", sp->gflops_core, MEASURED_WHERE);
    if (o->gflops_rank <= 0)
        printf("\n             each thread past the first adds %.0f%% of a core (%s)", 100.0 * sp->thread_eff,
               o->thread_eff != ASSUMED_THREAD_EFFICIENCY ? "--thread-efficiency"
                                                           : "assumed: P2's floor of 1.8x at 2 threads; BLIS sgemm "
                                                             "measured 1.97x; more threads unmeasured");
    printf("\n             fp64 (the re-fit's sums and solves) at %.0f%% of the fp32 rate (assumed: half the SIMD "
           "lanes); messages and memory bandwidth not counted\n",
           100.0 * sp->double_ratio);
}

static void print_machine(const plan_options *o, const vt_plan_input *in, const vt_plan *p, int fits) {
    char node[32], rank[32], need[32];
    format_bytes(o->node_memory, node, sizeof node);
    format_bytes(p->peak, rank, sizeof rank);
    format_bytes(p->peak * (double)(in->ranks / o->nodes), need, sizeof need);
    printf("machine      %ld node%s x %ld cores, %s per node\n", o->nodes, o->nodes == 1 ? "" : "s", o->cores, node);
    printf("layout       %d ranks x %d thread%s (%d stage%s x %d replica%s): %s; up to %s per rank, %s of %s per "
           "node\n",
           in->ranks, in->threads, in->threads == 1 ? "" : "s", p->stages, p->stages == 1 ? "" : "s", p->replicas,
           p->replicas == 1 ? "" : "s", fits ? "the fastest that fits" : "NOTHING FITS; the smallest shown", rank,
           need, node);
}

/* One JSON object: the layout, its memory, the times. fits is null without a memory limit. */
static int print_json(const vt_plan_input *in, const vt_plan *p, const vt_plan_time *t, int fits) {
    double gib = 1024.0 * 1024.0 * 1024.0;
    json_t *o = json_object();
    json_object_set_new(o, "hours", json_real(t->hours));
    json_object_set_new(o, "fits", fits < 0 ? json_null() : json_boolean(fits));
    json_object_set_new(o, "max_rank_gib", json_real(p->peak / gib));
    json_object_set_new(o, "ranks", json_integer(p->ranks));
    json_object_set_new(o, "threads_per_rank", json_integer(in->threads));
    json_object_set_new(o, "stages", json_integer(p->stages));
    json_object_set_new(o, "replicas", json_integer(p->replicas));
    json_object_set_new(o, "micro_batches", json_integer(p->micro_batches));
    json_object_set_new(o, "seq_chunks", json_integer(p->seq_chunks));
    json_object_set_new(o, "rank_gflops", json_real(t->rank_gflops));
    json_object_set_new(o, "mask_step_seconds", json_real(t->mask_step_s));
    json_object_set_new(o, "mask_step_idle", json_real(t->mask_idle));
    json_object_set_new(o, "finetune_step_seconds", json_real(t->finetune_step_s));
    json_object_set_new(o, "recover_step_seconds", json_real(t->recover_step_s));
    json_t *h = json_object();
    json_object_set_new(h, "teacher", json_real(t->teacher_h));
    json_object_set_new(h, "masks", json_real(t->masks_h));
    json_object_set_new(h, "finetune", json_real(t->finetune_h));
    json_object_set_new(h, "refit", json_real(t->refit_h));
    json_object_set_new(h, "recover", json_real(t->recover_h));
    json_object_set_new(o, "phase_hours", h);
    json_object_set_new(o, "refit_rank_gib", json_real((p->refit.models + p->refit.total) / gib));
    json_object_set_new(o, "recover_rank_gib", json_real(p->recover.total / gib));
    json_object_set_new(o, "lora_adam_bytes", json_real(p->recover.adam_lora));
    json_object_set_new(o, "full_adam_bytes", json_real(p->recover.adam_full));
    int rc = json_dumpf(o, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    printf("\n");
    json_decref(o);
    return rc ? vt_fail("plan: could not write the JSON") : 0;
}

/* The plan: the given ranks (--ranks), or the fastest layout of the machine that fits. */
static int make_plan(const plan_options *o, vt_plan_input *in, vt_plan *p, int *fits) {
    *fits = -1;
    if (o->ranks > 0) {
        if (vt_plan_make(in, p)) return -1;
        if (o->memory > 0) *fits = p->peak <= o->memory;
        return 0;
    }
    vt_machine m = {(int)o->nodes, (int)o->cores, o->node_memory};
    vt_speed sp = plan_speed(o);
    vt_plan_input base = *in;
    return vt_plan_search(&base, &m, &sp, in, p, fits);
}

int vt_cmd_plan(int argc, char **argv) {
    vt_opt opts[] = {
        {"config", 1, "the run configuration (INI)", NULL, 0},
        {"ranks", 1, "MPI ranks P of the job (P = stages x replicas)", NULL, 0},
        {"stages", 1, "pipeline stages S (overrides parallel.stages; 0 = automatic)", NULL, 0},
        {"nodes", 1, "nodes of the machine to plan for (default 1)", NULL, 0},
        {"cores-per-node", 1, "cores per node: plan chooses ranks x threads per rank", NULL, 0},
        {"memory-per-node", 1, "memory per node (e.g. 256G): the layout must fit", NULL, 0},
        {"model-config", 1, "an HF config.json to plan from instead of model.path (see configs/shapes/)", NULL, 0},
        {"memory-per-rank", 1, "warn when a rank needs more than this (e.g. 24G)", NULL, 0},
        {"calib-sequences", 1, "calibration sequences the teacher cache holds (default data.max_sequences)", NULL, 0},
        {"gflops-per-rank", 1, "estimate times at this sustained rate per rank", NULL, 0},
        {"gflops-per-core", 1, "estimate times at this rate per core (default: measured, see the output)", NULL, 0},
        {"thread-efficiency", 1, "fraction of a core each thread past the first adds (default 0.9)", NULL, 0},
        {"json", 0, "print one JSON object (hours, fits, max_rank_gib, ranks, threads_per_rank, ...)", NULL, 0},
        {"set", 1, "section.key=value: override a config key (repeatable)", NULL, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), help = 0;
    if (vt_args_parse(opts, n, argc, argv, 1, &help)) return vt_cmd_fail("plan");
    if (help) {
        vt_args_usage("plan", synopsis, opts, n);
        printf("\nPrints the topology, each stage's layers, per-rank memory, FLOPs and times of a run without\n"
               "loading weights; given a machine, the fastest layout that fits. How to read it: docs/CLUSTER.md.\n");
        return 0;
    }
    plan_options o;
    const char *config = vt_args_get(opts, n, "config");
    vt_run_config rc;
    if (parse_numbers(opts, n, &o) || load_run_config(config, opts, n, argc, argv, &rc)) return vt_cmd_fail("plan");
    vt_config c;
    char source[VT_PATH_MAX + 16];
    int fits;
    memset(&c, 0, sizeof c);
    if (read_model_config(&rc, vt_args_get(opts, n, "model-config"), &c, source, sizeof source)) {
        vt_config_free(&c);
        return vt_cmd_fail("plan");
    }
    vt_plan_input in = plan_input(&rc, &c, &o, checkpoint_16bit_type(source));
    vt_plan p;
    if (make_plan(&o, &in, &p, &fits)) {
        vt_fail_context("%s on %s", config, o.ranks > 0 ? "the given ranks" : "the given machine");
        vt_config_free(&c);
        return vt_cmd_fail("plan");
    }
    vt_speed sp = plan_speed(&o);
    vt_plan_time t;
    vt_plan_times(&in, &p, &sp, &t);
    int rc_out = 0;
    if (o.json) {
        rc_out = print_json(&in, &p, &t, fits);
    } else {
        int timed = o.ranks == 0 || vt_args_find(opts, n, "gflops-per-rank")->seen ||
                    vt_args_find(opts, n, "gflops-per-core")->seen;
        if (timed) print_assumptions(&o, &sp);
        if (o.ranks == 0) print_machine(&o, &in, &p, fits);
        print_plan(config, source, &rc, &in, &p, o.ranks == 0 ? 2 : o.stages >= 0, o.memory, timed ? &t : NULL);
    }
    vt_plan_free(&p);
    vt_config_free(&c);
    return rc_out ? vt_cmd_fail("plan") : 0;
}
