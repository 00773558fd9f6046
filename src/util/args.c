/* args.c — strict option parsing for the subcommands, with errors that name the option. */
#include "util/args.h"

#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

vt_opt *vt_args_find(vt_opt *opts, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(opts[i].name, name) == 0) return &opts[i];
    return NULL;
}

const char *vt_args_get(vt_opt *opts, int n, const char *name) {
    vt_opt *o = vt_args_find(opts, n, name);
    return o ? o->value : NULL;
}

/* The option at argv[*i] into *o and *value (advancing *i past a separate value); *o NULL for --help. */
static int read_option(vt_opt *opts, int n, int argc, char **argv, int *i, vt_opt **o, const char **value) {
    const char *a = argv[*i];
    *o = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return 0;
    if (strncmp(a, "--", 2) != 0) return vt_fail("unexpected argument '%s' (options start with --)", a);
    char name[128];
    const char *eq = strchr(a + 2, '=');
    size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    if (len >= sizeof name) return vt_fail("option '%s' is too long", a);
    memcpy(name, a + 2, len);
    name[len] = '\0';
    if (!(*o = vt_args_find(opts, n, name))) return vt_fail("unknown option '--%s' (see --help)", name);
    if ((*o)->takes_value) {
        if (eq) *value = eq + 1;
        else if (*i + 1 < argc) *value = argv[++*i];
        else return vt_fail("option '--%s' needs a value", name);
    } else {
        if (eq) return vt_fail("option '--%s' takes no value", name);
        *value = "1";
    }
    return 0;
}

int vt_args_parse(vt_opt *opts, int n, int argc, char **argv, int first, int *help) {
    *help = 0;
    for (int i = first; i < argc; i++) {
        vt_opt *o;
        const char *value = NULL;
        if (read_option(opts, n, argc, argv, &i, &o, &value)) return -1;
        if (!o) {
            *help = 1;
            continue;
        }
        o->value = value;
        o->seen++;
    }
    return 0;
}

const char *vt_args_nth(vt_opt *opts, int n, int argc, char **argv, int first, const char *name, int k) {
    for (int i = first; i < argc; i++) {
        vt_opt *o;
        const char *value = NULL;
        if (read_option(opts, n, argc, argv, &i, &o, &value)) return NULL;
        if (o && strcmp(o->name, name) == 0 && k-- == 0) return value;
    }
    return NULL;
}

int vt_args_require(vt_opt *opts, int n, const char *name) {
    vt_opt *o = vt_args_find(opts, n, name);
    if (!o || !o->value || !o->value[0]) return vt_fail("missing required option --%s", name);
    return 0;
}

int vt_args_int(vt_opt *opts, int n, const char *name, long lo, long hi, long *out) {
    const char *v = vt_args_get(opts, n, name);
    if (!v) return vt_fail("missing value for --%s", name);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end) return vt_fail("--%s: '%s' is not an integer", name, v);
    if (x < lo || x > hi) return vt_fail("--%s: %ld is outside [%ld, %ld]", name, x, lo, hi);
    *out = x;
    return 0;
}

int vt_args_double(vt_opt *opts, int n, const char *name, double *out) {
    const char *v = vt_args_get(opts, n, name);
    if (!v) return vt_fail("missing value for --%s", name);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x)) return vt_fail("--%s: '%s' is not a number", name, v);
    *out = x;
    return 0;
}

void vt_args_usage(const char *cmd, const char *synopsis, const vt_opt *opts, int n) {
    printf("usage: vtrans-dist %s %s\n\noptions:\n", cmd, synopsis);
    for (int i = 0; i < n; i++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", opts[i].name, opts[i].takes_value ? " VALUE" : "");
        printf("  %-24s %s", left, opts[i].help);
        if (opts[i].takes_value && opts[i].value) printf(" (default %s)", opts[i].value);
        printf("\n");
    }
}

int vt_cmd_fail(const char *cmd) {
    fprintf(stderr, "vtrans-dist %s: error: %s\n", cmd, vt_error());
    return 1;
}

/* The binary multiple named after a size's number: K, M, G (and T when `tera`), each optionally
 * followed by "i", then an optional "B" (1 without a suffix); 0 when anything else follows. */
static uint64_t size_multiple(const char *end, int tera) {
    uint64_t mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1ull << 10;
    else if (*end == 'M' || *end == 'm') mult = 1ull << 20;
    else if (*end == 'G' || *end == 'g') mult = 1ull << 30;
    else if (tera && (*end == 'T' || *end == 't')) mult = 1ull << 40;
    if (mult > 1) end++;
    if (mult > 1 && *end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    return *end ? 0 : mult;
}

int vt_parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-' || s[0] == '+') return -1;
    uint64_t mult = size_multiple(end, 0);
    if (!mult || v > (uint64_t)INT64_MAX / mult) return -1;
    *out = v * mult;
    return 0;
}

int vt_parse_size_real(const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || !isfinite(v)) return -1;
    uint64_t mult = size_multiple(end, 1);
    if (!mult) return -1;
    *out = v * (double)mult;
    return 0;
}

int vt_key_listed(const char *list, const char *section_key) {
    size_t n = strlen(section_key);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, section_key, n) == 0 && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}
