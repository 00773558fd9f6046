/* cmd_prune.c — `vtrans-dist prune --config FILE [--set section.key=value ...]` in one process. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "error.h"
#include "prune_run.h"
#include "run_config.h"

int vt_cmd_prune(int argc, char **argv) {
    vt_run_config rc;
    const char *config = NULL;
    int print_only = 0;
    vt_run_config_defaults(&rc);
    /* Options by hand: --set may repeat, and applies after the file whatever the order. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: vtrans-dist prune --config FILE [--set section.key=value ...] [--print-config]\n\n"
                   "Prunes the configured model to the configured budget and writes the smaller checkpoint with\n"
                   "vtrans_report.json. Keys and defaults: docs/CONFIG.md.\n");
            return 0;
        }
        if (strcmp(a, "--print-config") == 0) {
            print_only = 1;
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0) && i + 1 < argc) {
            i++;
        } else if (strncmp(a, "--config=", 9) != 0 && strncmp(a, "--set=", 6) != 0) {
            vt_fail("unknown option or missing value: '%s' (see --help)", a);
            return vt_cmd_fail("prune");
        }
        if (strcmp(a, "--config") == 0) config = argv[i];
        if (strncmp(a, "--config=", 9) == 0) config = a + 9;
    }
    if (!config) {
        vt_fail("missing --config FILE");
        return vt_cmd_fail("prune");
    }
    if (vt_run_config_load(&rc, config)) return vt_cmd_fail("prune");
    for (int i = 1; i < argc; i++) {
        const char *set = NULL;
        if (strcmp(argv[i], "--set") == 0) set = argv[++i];
        else if (strncmp(argv[i], "--set=", 6) == 0) set = argv[i] + 6;
        else if (strcmp(argv[i], "--config") == 0) i++;
        if (set && vt_run_config_set(&rc, set)) return vt_cmd_fail("prune");
    }
    if (vt_run_config_validate(&rc)) return vt_cmd_fail("prune");
    if (print_only) {
        vt_run_config_print(&rc, stdout);
        return 0;
    }
    return vt_prune_run(&rc) ? vt_cmd_fail("prune") : 0;
}
