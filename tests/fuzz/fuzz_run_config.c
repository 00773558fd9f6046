/* fuzz_run_config.c — the run configuration: an INI file (first byte even) or --set assignments,
 * one per line (odd), then validation and both renderings of the result. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "run/run_config.h"

static void render(vt_run_config *rc) {
    vt_run_config_validate(rc);
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        vt_run_config_print(rc, null);
        fclose(null);
    }
    free(vt_run_config_json(rc));
    free(vt_run_config_resume_settings(rc));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static vt_run_config rc; /* large (paths): not on the stack */
    if (size == 0) return 0;
    if ((data[0] & 1) == 0) {
        if (vt_run_config_load(&rc, fz_write("run.ini", data + 1, size - 1)) == 0) render(&rc);
        return 0;
    }
    vt_run_config_defaults(&rc);
    char *text = strndup((const char *)data + 1, size - 1);
    if (!text) return 0;
    int ok = 1;
    for (char *line = strtok(text, "\n"); line && ok; line = strtok(NULL, "\n")) ok = vt_run_config_set(&rc, line) == 0;
    vt_run_config_check_accept(text);
    if (ok) render(&rc);
    free(text);
    return 0;
}
