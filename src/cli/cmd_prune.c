/* cmd_prune.c — `vtrans-dist prune --config FILE [--set section.key=value ...]`, in one process or
 * on every rank of a world laid out as stages x replicas (the same driver, vt_prune_run_comm). */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "dist/pipeline.h"
#include "util/args.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "run/prune_run.h"
#include "run/run_config.h"

int vt_prune_args(int argc, char **argv, vt_run_config *rc, int *print_only, int *help) {
    const char *config = NULL;
    *print_only = *help = 0;
    vt_run_config_defaults(rc);
    /* Options by hand: --set may repeat, and applies after the file whatever the order. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = 1;
            return 0;
        }
        if (strcmp(a, "--print-config") == 0) {
            *print_only = 1;
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0 || strcmp(a, "--resume") == 0 ||
                    strcmp(a, "--accept-changed") == 0) &&
                   i + 1 < argc) {
            i++;
        } else if (strncmp(a, "--config=", 9) != 0 && strncmp(a, "--set=", 6) != 0) {
            return vt_fail("unknown option or missing value: '%s' (see --help)", a);
        }
        if (strcmp(a, "--config") == 0) config = argv[i];
        if (strncmp(a, "--config=", 9) == 0) config = a + 9;
    }
    if (!config) return vt_fail("missing --config FILE");
    if (vt_run_config_load(rc, config)) return -1;
    for (int i = 1; i < argc; i++) {
        const char *set = NULL;
        if (strcmp(argv[i], "--set") == 0) set = argv[++i];
        else if (strncmp(argv[i], "--set=", 6) == 0) set = argv[i] + 6;
        else if (strcmp(argv[i], "--config") == 0) i++;
        else if (strcmp(argv[i], "--resume") == 0) snprintf(rc->resume, sizeof rc->resume, "%s", argv[++i]);
        else if (strcmp(argv[i], "--accept-changed") == 0) {
            if (strlen(argv[++i]) >= sizeof rc->resume_accept) return vt_fail("--accept-changed: list too long");
            snprintf(rc->resume_accept, sizeof rc->resume_accept, "%s", argv[i]);
        }
        if (set && vt_run_config_set(rc, set)) return -1;
    }
    if (rc->resume[0] && !vt_is_dir(rc->resume)) return vt_fail("--resume %s: no such run directory", rc->resume);
    if (rc->resume_accept[0] && !rc->resume[0]) return vt_fail("--accept-changed applies to --resume only");
    if (vt_run_config_check_accept(rc->resume_accept)) return -1;
    return vt_run_config_validate(rc);
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
    /* The architecture and the split only: each rank opens just its own shards later. One
     * process holds the whole model whatever parallel.stages says. */
    vt_pipeline p;
    if (vt_pipeline_layout(&p, w, rc.model_path, w->size > 1 ? rc.parallel_stages : 1, VT_PARTITION_TRAIN, "prune"))
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
