/* cmd_plug.c — `vtrans-dist plug --config FILE [--set section.key=value ...]`: trains Variator
 * plugins (docs/PLUGINS.md) for a frozen model on every rank of a world of data-parallel replicas
 * (the driver: run/plug_run.c). */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dist/pipeline.h"
#include "nn/matmul.h"
#include "run/plug_run.h"
#include "run/run_config.h"
#include "util/args.h"
#include "util/error.h"

enum { O_CONFIG, O_SET, O_PRINT, N_OPTS };

/* The file, then every --set in order; validated for plug. */
static int plug_args(int argc, char **argv, vt_run_config *rc, int *print_only, int *help) {
    vt_opt opts[N_OPTS] = {
        [O_CONFIG] = {"config", 1, "the run configuration (INI; its [plugin] section)", NULL, 0},
        [O_SET] = {"set", 1, "section.key=value: override a config key (repeatable)", NULL, 0},
        [O_PRINT] = {"print-config", 0, "print the effective configuration and exit", NULL, 0},
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
    if (rc->pipeline.stages > 1)
        return vt_fail("parallel.stages = %d: plug trains on data-parallel replicas only (every rank holds the "
                       "whole model); set parallel.stages = 1",
                       rc->pipeline.stages);
    return 0;
}

static void plug_usage(void) {
    printf("usage: vtrans-dist plug --config FILE [--set section.key=value ...] [--print-config]\n\n"
           "Trains Variator plugins (docs/PLUGINS.md) for the frozen model.path: windows of data.eval_window\n"
           "tokens of data.calib, the first plugin.prompt_fraction of each a prompt whose FFNs run on merged\n"
           "groups of plugin.k positions, distilled from the dense model on the rest. Writes\n"
           "output.dir/plugin-k{K}.safetensors and plugin-k{K}.json (continuation perplexity dense vs\n"
           "plugged on data.eval, prefill FLOPs saved). Under mpirun every rank is a data-parallel replica\n"
           "taking its share of each batch (plugin.batch_size a multiple of the ranks). Keys: docs/CONFIG.md.\n");
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
    if (vt_pipeline_layout(&p, w, rc.model.path, 1, VT_PARTITION_TRAIN, "plug")) return vt_cmd_fail_world("plug");
    int status = vt_pipeline_load(&p, rc.model.path);
    if (!status) status = vt_plug_run(&rc, p.comm, &p.part);
    vt_pipeline_close(&p);
    if (status == 0) return 0;
    if (w->size > 1 && !vt_error_reported()) {
        fprintf(stderr, "vtrans-dist plug: rank %d: error: %s\n", w->rank, vt_error());
        return 1;
    }
    return vt_cmd_fail_world("plug");
}
