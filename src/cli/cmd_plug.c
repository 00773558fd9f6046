/* cmd_plug.c — `vtrans-dist plug --config FILE [--set section.key=value ...]`: trains Variator
 * plugins (docs/PLUGINS.md) for a frozen model over a world of pipeline stages x data-parallel
 * replicas (the driver: run/plug_run.c). */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dist/pipeline.h"
#include "nn/matmul.h"
#include "run/plug_run.h"
#include "run/prune_run.h"
#include "run/run_config.h"
#include "util/args.h"
#include "util/error.h"
#include "util/fsutil.h"

enum { O_CONFIG, O_SET, O_PRINT, O_RESUME, O_ACCEPT, N_OPTS };

/* The file, then every --set in order; validated for plug. */
static int plug_args(int argc, char **argv, vt_run_config *rc, int *print_only, int *help) {
    vt_opt opts[N_OPTS] = {
        [O_CONFIG] = {"config", 1, "the run configuration (INI; its [plugin] section)", NULL, 0},
        [O_SET] = {"set", 1, "section.key=value: override a config key (repeatable)", NULL, 0},
        [O_PRINT] = {"print-config", 0, "print the effective configuration and exit", NULL, 0},
        [O_RESUME] = {"resume", 1, "continue the training saved in this run directory", NULL, 0},
        [O_ACCEPT] = {"accept-changed", 1, "KEY[,KEY...]: recorded settings a resume may change", NULL, 0},
    };
    vt_run_config_defaults(rc);
    *print_only = 0;
    if (vt_args_parse(opts, N_OPTS, argc, argv, 1, help)) return -1;
    if (*help) return 0;
    *print_only = opts[O_PRINT].seen > 0;
    if (!opts[O_CONFIG].value) return vt_fail("missing --config FILE");
    if (vt_run_config_load(rc, opts[O_CONFIG].value)) return -1;
    for (int k = 0; k < opts[O_SET].seen; k++)
        if (vt_run_config_set(rc, vt_args_nth(opts, N_OPTS, argc, argv, 1, "set", k))) return -1;
    if (vt_run_config_validate_plug(rc)) return -1;
    const char *resume = opts[O_RESUME].value, *accept = opts[O_ACCEPT].value;
    if (resume && vt_path_fmt(rc->resume, sizeof rc->resume, "%s", resume)) return vt_fail_context("--resume");
    if (accept && vt_path_fmt(rc->resume_accept, sizeof rc->resume_accept, "%s", accept))
        return vt_fail_context("--accept-changed");
    if (rc->resume[0] && !vt_is_dir(rc->resume)) return vt_fail("--resume %s: no such run directory", rc->resume);
    if (rc->resume_accept[0] && !rc->resume[0]) return vt_fail("--accept-changed applies to --resume only");
    if (rc->resume_accept[0] && vt_run_config_check_accept(rc->resume_accept)) return -1;
    return 0;
}

static void plug_usage(void) {
    printf("usage: vtrans-dist plug --config FILE [--set section.key=value ...] [--print-config]\n"
           "                        [--resume RUNDIR [--accept-changed KEY,...]]\n\n"
           "Trains Variator plugins (docs/PLUGINS.md) for the frozen model.path: windows of data.eval_window\n"
           "tokens of data.calib, the first plugin.prompt_fraction of each a prompt whose FFNs run on merged\n"
           "groups of plugin.k positions, distilled from the dense model on the rest. Writes\n"
           "output.dir/plugin-k{K}.safetensors and plugin-k{K}.json (continuation perplexity dense vs\n"
           "plugged on data.eval, prefill FLOPs saved). Under mpirun the ranks are parallel.stages pipeline\n"
           "stages (each holding its layers and their plugins; 0 or 1: one) x replicas, each replica taking\n"
           "its share of each batch (plugin.batch_size a multiple of the replicas). Checkpoints go to\n"
           "RUNDIR/plug-k{K} (run.dir, else output.dir.run) every run.checkpoint_steps steps or\n"
           "run.checkpoint_minutes; SIGTERM/SIGUSR1 save and exit with code 75; --resume RUNDIR continues to\n"
           "the same plugin. Keys: docs/CONFIG.md.\n");
}

int vt_cmd_plug(vt_world *w, int argc, char **argv) {
    vt_run_config rc;
    int print_only, help;
    if (vt_comm_agree(w->comm, plug_args(argc, argv, &rc, &print_only, &help))) return vt_cmd_fail_world("plug");
    if (help || print_only) {
        if (w->rank == 0 && help) plug_usage();
        else if (w->rank == 0) vt_run_config_print(&rc, stdout);
        return 0;
    }
    if (vt_comm_agree(w->comm, vt_threads_set(rc.pipeline.threads))) return vt_cmd_fail_world("plug");
    vt_pipeline p;
    /* 0 (automatic) is one stage: the plugins are small and replicas need no pipeline bubble; the
     * classifier sits on the last stage (the KL is there), as for inference */
    int stages = rc.pipeline.stages > 0 ? rc.pipeline.stages : 1;
    if (vt_pipeline_layout(&p, w, rc.model.path, stages, VT_PARTITION_INFER, "plug")) return vt_cmd_fail_world("plug");
    vt_prune_catch_signals();
    int status = vt_pipeline_load(&p, rc.model.path);
    if (!status) status = vt_plug_run(&rc, p.comm, &p.part);
    vt_pipeline_close(&p);
    if (status == 0 || status == VT_EXIT_CHECKPOINTED) return status;
    if (w->size > 1 && !vt_error_reported()) {
        fprintf(stderr, "vtrans-dist plug: rank %d: error: %s\n", w->rank, vt_error());
        return 1;
    }
    return vt_cmd_fail_world("plug");
}
