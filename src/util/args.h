/* args.h — command-line options of the subcommands: --name VALUE / --name=VALUE, flags, errors. */
#ifndef VT_ARGS_H
#define VT_ARGS_H

#include <stdint.h>

typedef struct {
    const char *name;  /* without the leading "--" */
    int takes_value;   /* 0: a flag */
    const char *help;  /* one line for usage */
    const char *value; /* set by vt_args_parse (flags get "1"); may hold a default beforehand */
    int seen;          /* how many times it was given: value is the last, vt_args_nth reads each */
} vt_opt;

/* Parses argv[first..argc) into opts. Unknown options, missing values and stray arguments are
 * errors (vt_error names the option); returns 0 or -1. "--help" sets *help_requested. */
int vt_args_parse(vt_opt *opts, int n_opts, int argc, char **argv, int first, int *help_requested);
/* The k-th value (0-based, k < seen) of option `name` in the argv that vt_args_parse accepted with
 * the same opts and first; NULL when there is none. */
const char *vt_args_nth(vt_opt *opts, int n_opts, int argc, char **argv, int first, const char *name, int k);
vt_opt *vt_args_find(vt_opt *opts, int n_opts, const char *name);
const char *vt_args_get(vt_opt *opts, int n_opts, const char *name);
/* Strict numeric conversions of an option's value; errors name the option. */
int vt_args_int(vt_opt *opts, int n_opts, const char *name, long lo, long hi, long *out);
int vt_args_double(vt_opt *opts, int n_opts, const char *name, double *out);
/* Fails with "missing --name" unless the option was given. */
int vt_args_require(vt_opt *opts, int n_opts, const char *name);
void vt_args_usage(const char *cmd, const char *synopsis, const vt_opt *opts, int n_opts);
/* A size in bytes: "1048576", "512K", "100M", "2G" (binary multiples; a trailing "B" or "iB" is
 * allowed). Returns -1 without a message when s is not one (callers name the option). */
int vt_parse_size(const char *s, uint64_t *out);
/* A positive amount of bytes that may have a fraction and a T suffix too ("1.5G", "1T", "24GiB"):
 * memory to compare against. Returns -1 without a message when s is not one. */
int vt_parse_size_real(const char *s, double *out);
/* Prints "vtrans-dist CMD: error: <vt_error()>" to stderr and returns exit code 1. */
int vt_cmd_fail(const char *cmd);

/* 1 when "section.key" is one of the comma-separated names in list (NULL: none). */
int vt_key_listed(const char *list, const char *section_key);

#endif
