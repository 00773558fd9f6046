/* cmd_prune.c — `vtrans-dist prune --config FILE [--set section.key=value ...]`, in one process or
 * on every rank of a world laid out as stages x replicas (the same driver, vt_prune_run_comm), and
 * its command line (prune_cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/prune_cli.h"
#include "dist/pipeline.h"
#include "nn/matmul.h"
#include "util/args.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "run/prune_run.h"
#include "run/run_config.h"

enum { O_CONFIG, O_SET, O_RESUME, O_ACCEPT, O_PRINT, N_OPTS };

/* Every value of opts[which] in command-line order, comma-joined, into out (cap bytes). */
static int join_values(vt_opt *opts, int which, int argc, char **argv, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (int k = 0; k < opts[which].seen; k++) {
        const char *v = vt_args_nth(opts, N_OPTS, argc, argv, 1, opts[which].name, k);
        size_t len = strlen(v);
        if (n + (n > 0) + len >= cap) return vt_fail("--%s: list too long", opts[which].name);
        if (n > 0) out[n++] = ',';
        memcpy(out + n, v, len + 1);
        n += len;
    }
    return 0;
}

/* The file, then every --set in order, then the resume options; validated. */
static int apply_options(vt_opt *opts, int argc, char **argv, vt_run_config *rc) {
    const char *resume = opts[O_RESUME].value;
    if (vt_run_config_load(rc, opts[O_CONFIG].value)) return -1;
    for (int k = 0; k < opts[O_SET].seen; k++)
        if (vt_run_config_set(rc, vt_args_nth(opts, N_OPTS, argc, argv, 1, "set", k))) return -1;
    if (resume && vt_path_fmt(rc->resume, sizeof rc->resume, "%s", resume)) return vt_fail_context("--resume");
    if (join_values(opts, O_ACCEPT, argc, argv, rc->resume_accept, sizeof rc->resume_accept)) return -1;
    if (rc->resume[0] && !vt_is_dir(rc->resume)) return vt_fail("--resume %s: no such run directory", rc->resume);
    if (rc->resume_accept[0] && !rc->resume[0]) return vt_fail("--accept-changed applies to --resume only");
    if (vt_run_config_check_accept(rc->resume_accept)) return -1;
    return vt_run_config_validate(rc);
}

int vt_prune_args(int argc, char **argv, vt_run_config *rc, int *print_only, int *help) {
    vt_opt opts[N_OPTS] = {
        [O_CONFIG] = {"config", 1, "the run configuration (INI)", NULL, 0},
        [O_SET] = {"set", 1, "section.key=value: override a config key (repeatable)", NULL, 0},
        [O_RESUME] = {"resume", 1, "continue the run saved in this run directory", NULL, 0},
        [O_ACCEPT] = {"accept-changed", 1, "KEY[,KEY...]: recorded settings a resume may change (repeatable)", NULL, 0},
        [O_PRINT] = {"print-config", 0, "print the effective configuration and exit", NULL, 0},
    };
    vt_run_config_defaults(rc);
    *print_only = 0;
    if (vt_args_parse(opts, N_OPTS, argc, argv, 1, help)) return -1;
    if (*help) return 0;
    *print_only = opts[O_PRINT].seen > 0;
    if (!opts[O_CONFIG].value) return vt_fail("missing --config FILE");
    return apply_options(opts, argc, argv, rc);
}

void vt_prune_usage(void) {
    printf("usage: vtrans-dist prune --config FILE [--set section.key=value ...] [--resume RUNDIR\n"
           "                         [--accept-changed KEY[,KEY...]]] [--print-config]\n\n"
           "Prunes the configured model to the configured budget and writes the smaller checkpoint with\n"
           "vtrans_report.json. Keys and defaults: docs/CONFIG.md. Under mpirun the layers are split into\n"
           "parallel.stages pipeline stages and the rest of the ranks are data-parallel replicas.\n"
           "Training state is saved in run.dir (default <output.dir>.run); SIGTERM or SIGUSR1 saves and exits\n"
           "with code 75; --resume RUNDIR continues from its newest complete checkpoint, refusing settings\n"
           "that differ from the run's except those named by --accept-changed (an input moved to another\n"
           "path, say: --accept-changed model.path,data.calib).\n");
}

int vt_cmd_prune(vt_world *w, int argc, char **argv) {
    vt_run_config rc;
    int print_only, help;
    /* Every rank reads the same files; the configuration is refused everywhere or nowhere. */
    if (vt_comm_agree(w->comm, vt_prune_args(argc, argv, &rc, &print_only, &help))) return vt_cmd_fail_world("prune");
    if (help || print_only) {
        if (w->rank == 0 && help) vt_prune_usage();
        else if (w->rank == 0) vt_run_config_print(&rc, stdout);
        return 0;
    }
    if (vt_comm_agree(w->comm, vt_threads_set(rc.pipeline.threads))) return vt_cmd_fail_world("prune");
    /* The architecture and the split only: each rank opens just its own shards later. One
     * process holds the whole model whatever parallel.stages says. */
    vt_pipeline p;
    if (vt_pipeline_layout(&p, w, rc.model.path, w->size > 1 ? rc.pipeline.stages : 1, VT_PARTITION_TRAIN, "prune"))
        return vt_cmd_fail_world("prune");
    vt_prune_catch_signals();
    int status = vt_prune_run_comm(&rc, p.comm);
    vt_pipeline_close(&p);
    if (status == 0 || status == VT_EXIT_CHECKPOINTED) return status;
    /* A failure the ranks agreed on was printed then, once; one a rank found alone it prints. */
    if (w->size > 1 && !vt_error_reported()) {
        fprintf(stderr, "vtrans-dist prune: rank %d: error: %s\n", w->rank, vt_error());
        return 1;
    }
    return vt_cmd_fail_world("prune");
}
