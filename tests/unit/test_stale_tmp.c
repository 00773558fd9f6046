/* test_stale_tmp.c — temporaries left by a process killed with -9 (an output directory's
 * <out>.tmp-<host>-<pid>-XXXXXX, an atomic file's) are removed by the next writer of the same
 * output, with a message; those of running processes, other hosts and unowned names stay. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "util/error.h"
#include "util/fsutil.h"

/* The pid of a process that has ended (forked, exited, reaped). */
static long dead_pid(void) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    assert_int_equal(waitpid(pid, NULL, 0), pid);
    return (long)pid;
}

static const char *in(const char *dir, const char *name) {
    static char path[4][4400];
    static int slot;
    slot = (slot + 1) & 3;
    snprintf(path[slot], sizeof path[slot], "%.4000s/%.255s", dir, name);
    return path[slot];
}

/* Runs begin with stderr captured into *text (malloc'ed). */
static int captured(int (*begin)(void *, const char *), void *obj, const char *target, const char *dir, char **text) {
    fflush(stderr);
    int saved = dup(fileno(stderr));
    FILE *log = fopen(in(dir, "stderr.txt"), "w");
    assert_non_null(log);
    dup2(fileno(log), fileno(stderr));
    int rc = begin(obj, target);
    fflush(stderr);
    dup2(saved, fileno(stderr));
    close(saved);
    fclose(log);
    size_t n;
    assert_int_equal(vt_read_file(in(dir, "stderr.txt"), text, &n), 0);
    return rc;
}

static int begin_outdir(void *o, const char *target) { return vt_outdir_begin(o, target, 0); }
static int begin_file(void *a, const char *target) { return vt_atomic_begin(a, target); }

static void test_stale_temporaries_removed(void **state) {
    (void)state;
    char *dir = tu_tempdir(), host[65] = "", name[256];
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    long dead = dead_pid(), alive = (long)getppid();
    snprintf(name, sizeof name, "out.tmp-%s-%ld-aaaaaa", host, dead); /* killed: goes */
    char stale[4400];
    snprintf(stale, sizeof stale, "%s", in(dir, name));
    assert_int_equal(mkdir(stale, 0755), 0);
    assert_int_equal(vt_write_file(in(stale, "model.safetensors"), "x", 1), 0);
    snprintf(name, sizeof name, "out.tmp-%s-%ld-bbbbbb", host, alive); /* running: stays */
    assert_int_equal(mkdir(in(dir, name), 0755), 0);
    snprintf(name, sizeof name, "out.tmp-%s-x-%ld-cccccc", host, dead); /* another host: stays */
    assert_int_equal(mkdir(in(dir, name), 0755), 0);
    assert_int_equal(mkdir(in(dir, "out.tmp-dddddd"), 0755), 0); /* unowned (older name): stays */
    snprintf(name, sizeof name, "outer.tmp-%s-%ld-eeeeee", host, dead); /* another output's: stays */
    assert_int_equal(mkdir(in(dir, name), 0755), 0);

    vt_outdir o;
    char *text = NULL;
    assert_int_equal(captured(begin_outdir, &o, in(dir, "out"), dir, &text), 0);
    assert_false(vt_path_exists(stale));
    if (!strstr(text, stale) || !strstr(text, "no longer runs")) fail_msg("message \"%s\" does not name %s", text, stale);
    free(text);
    char mine[128];
    snprintf(mine, sizeof mine, ".tmp-%s-%ld-", host, (long)getpid());
    assert_non_null(strstr(o.tmp, mine)); /* the new temporary names its owner */
    assert_int_equal(vt_outdir_commit(&o), 0);
    snprintf(name, sizeof name, "out.tmp-%s-%ld-bbbbbb", host, alive);
    assert_true(vt_is_dir(in(dir, name)));
    snprintf(name, sizeof name, "out.tmp-%s-x-%ld-cccccc", host, dead);
    assert_true(vt_is_dir(in(dir, name)));
    assert_true(vt_is_dir(in(dir, "out.tmp-dddddd")));
    snprintf(name, sizeof name, "outer.tmp-%s-%ld-eeeeee", host, dead);
    assert_true(vt_is_dir(in(dir, name)));

    /* a file written atomically (a GGUF, a token shard) */
    snprintf(name, sizeof name, "model.gguf.tmp-%s-%ld-ffffff", host, dead);
    snprintf(stale, sizeof stale, "%s", in(dir, name));
    assert_int_equal(vt_write_file(stale, "partial", 7), 0);
    vt_atomic_file a;
    assert_int_equal(captured(begin_file, &a, in(dir, "model.gguf"), dir, &text), 0);
    assert_false(vt_path_exists(stale));
    assert_non_null(strstr(text, stale));
    free(text);
    assert_int_equal(fputs("whole", a.f) >= 0, 1);
    assert_int_equal(vt_atomic_commit(&a), 0);
    assert_true(vt_path_exists(in(dir, "model.gguf")));
    tu_tempdir_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stale_temporaries_removed)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
