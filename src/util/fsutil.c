/* fsutil.c — file reads, read-only maps, mkdir -p, copies, tree removal and atomic output dirs. */
#define _XOPEN_SOURCE 700 /* realpath (XSI), besides the POSIX.1-2008 the build asks for */
#define _DEFAULT_SOURCE   /* madvise */
#include "util/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

/* A descriptor of the regular file at path and its stat, or -1 with an error naming it. */
static int open_regular(const char *path, struct stat *st) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vt_fail("%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return vt_fail("%s: not a regular file", path);
    }
    return fd;
}

int vt_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    *size = 0;
    struct stat st;
    int fd = open_regular(path, &st);
    if (fd < 0) return -1;
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = vt_malloc(n + 1, path);
    if (!buf) {
        close(fd);
        return -1;
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int err = r < 0 ? errno : 0;
            free(buf);
            close(fd);
            return vt_fail("%s: read failed after %zu of %zu bytes%s%s", path, got, n, err ? ": " : "",
                           err ? strerror(err) : "");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *data = buf;
    *size = n;
    return 0;
}

int vt_map_file(vt_mapped_file *f, const char *path) {
    f->data = NULL;
    f->size = 0;
    struct stat st;
    int fd = open_regular(path, &st);
    if (fd < 0) return -1;
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            close(fd);
            return vt_fail("%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(err));
        }
        f->data = p;
        f->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void vt_unmap_file(vt_mapped_file *f) {
    if (f->data) munmap((void *)f->data, f->size);
    f->data = NULL;
    f->size = 0;
}

void vt_mapped_release(const vt_mapped_file *f, const void *p, size_t n) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p, b = a + n;
    a = (a + page - 1) / page * page;
    b = b / page * page;
    if (!f->data || b <= a) return;
    (void)madvise((void *)a, b - a, MADV_DONTNEED); /* advice: a failure only keeps the pages */
}

int vt_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int vt_path_exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

int vt_real_path(const char *path, char *out, size_t cap) {
    char *r = realpath(path, NULL);
    if (!r) return vt_fail("%s: %s", path, strerror(errno));
    int fits = strlen(r) < cap;
    if (fits) strcpy(out, r);
    free(r);
    return fits ? 0 : vt_fail("%s: the absolute path is too long", path);
}

int vt_path_join(char *out, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    int slash = n > 0 && dir[n - 1] == '/';
    int w = snprintf(out, cap, "%s%s%s", dir, slash ? "" : "/", name);
    if (w < 0 || (size_t)w >= cap) return vt_fail("path %s/%s is too long", dir, name);
    return 0;
}

int vt_mkdir_p(const char *path) {
    char buf[VT_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return vt_fail("cannot create directory '%s': bad path length", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return vt_fail("cannot create directory %s: %s", buf, strerror(errno));
        if (!vt_is_dir(buf)) return vt_fail("cannot create directory %s: a file is in the way", buf);
        buf[i] = c;
    }
    return 0;
}

static int write_all(int fd, const void *data, size_t n, const char *path) {
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return vt_fail("%s: write failed: %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int close_synced(int fd, const char *path) {
    if (fsync(fd) != 0) {
        int err = errno;
        close(fd);
        return vt_fail("%s: fsync failed: %s", path, strerror(err));
    }
    if (close(fd) != 0) return vt_fail("%s: close failed: %s", path, strerror(errno));
    return 0;
}

int vt_write_file(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return vt_fail("%s: cannot create: %s", path, strerror(errno));
    if (write_all(fd, data, n, path)) {
        close(fd);
        return -1;
    }
    return close_synced(fd, path);
}

int vt_copy_file(const char *src, const char *dst) {
    int in = open(src, O_RDONLY);
    if (in < 0) return vt_fail("%s: cannot open: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (out < 0) {
        int err = errno;
        close(in);
        return vt_fail("%s: cannot create: %s", dst, strerror(err));
    }
    enum { CHUNK = 1 << 20 };
    char *buf = vt_malloc(CHUNK, "file copy buffer");
    int rc = buf ? 0 : -1;
    while (rc == 0) {
        ssize_t r = read(in, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rc = vt_fail("%s: read failed: %s", src, strerror(errno));
        if (r <= 0) break;
        rc = write_all(out, buf, (size_t)r, dst);
    }
    free(buf);
    close(in);
    if (rc) {
        close(out);
        return -1;
    }
    return close_synced(out, dst);
}

/* Calls visit on every entry of directory path but "." and "..", stopping at the first failure. */
static int each_child(const char *path, int (*visit)(const char *child)) {
    DIR *d = opendir(path);
    if (!d) return vt_fail("%s: cannot list: %s", path, strerror(errno));
    struct dirent *e;
    char child[VT_PATH_MAX];
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        rc = vt_path_join(child, sizeof child, path, e->d_name);
        if (rc == 0) rc = visit(child);
    }
    closedir(d);
    return rc ? -1 : 0;
}

int vt_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : vt_fail("%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (each_child(path, vt_rmtree)) return -1;
        if (rmdir(path) != 0) return vt_fail("%s: cannot remove: %s", path, strerror(errno));
        return 0;
    }
    if (unlink(path) != 0) return vt_fail("%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

/* fsyncs a file, or a directory and everything below it. */
static int fsync_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return vt_fail("%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (each_child(path, fsync_tree)) return -1;
    } else if (!S_ISREG(st.st_mode)) {
        return 0;
    }
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vt_fail("%s: cannot open to sync: %s", path, strerror(errno));
    return close_synced(fd, path);
}

/* The directory holding path ("." when none), into out. */
static void parent_of(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == path) snprintf(out, cap, "/");
    else snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

/* After a rename into path's directory: the directory synced, so the rename survives a crash. */
static void fsync_parent(const char *path) {
    char parent[VT_PATH_MAX];
    parent_of(path, parent, sizeof parent);
    int fd = open(parent, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* ---- temporaries that say whose they are ---- */
/* This host's name as it goes into temporary names (no '/'; "host" when it has none). */
static const char *host_name(void) {
    static char host[65];
    if (!host[0]) {
        if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "host");
        for (char *c = host; *c; c++)
            if (*c == '/') *c = '_';
    }
    return host;
}

/* "<path>.tmp-<host>-<pid>-XXXXXX" (for mkdtemp/mkstemp): the owner in the name lets a later run
 * tell a temporary left by a killed process from one a running process is writing. */
static int owned_tmp_name(char *out, size_t cap, const char *path) {
    return vt_path_fmt(out, cap, "%s.tmp-%s-%ld-XXXXXX", path, host_name(), (long)getpid());
}

/* The owner of a temporary of path named name (a directory entry beside it): 1 with its pid when
 * name is "<base>.tmp-<this host>-<pid>-XXXXXX", else 0 (another host's, or an older unowned name). */
static int tmp_owner_here(const char *base, const char *name, long *pid) {
    size_t nb = strlen(base), nh = strlen(host_name());
    if (strncmp(name, base, nb) != 0 || strncmp(name + nb, ".tmp-", 5) != 0) return 0;
    const char *host = name + nb + 5;
    if (strncmp(host, host_name(), nh) != 0 || host[nh] != '-') return 0;
    char *end;
    errno = 0;
    *pid = strtol(host + nh + 1, &end, 10);
    return errno == 0 && end != host + nh + 1 && *pid > 0 && end[0] == '-' && strlen(end + 1) == 6;
}

/* Removes the temporaries of path (directories or files) that processes of this host left when
 * they were killed before they could remove them, saying so on stderr. Temporaries of running
 * processes, of other hosts (a shared file system) and unowned ones are left alone. */
static void sweep_stale(const char *path) {
    char parent[VT_PATH_MAX], full[VT_PATH_MAX];
    parent_of(path, parent, sizeof parent);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    DIR *d = opendir(parent);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        if (!tmp_owner_here(base, e->d_name, &pid) || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive (or not ours to ask) */
        if (vt_path_fmt(full, sizeof full, "%s/%s", parent, e->d_name)) {
            vt_error_clear();
            continue;
        }
        if (vt_rmtree(full) == 0)
            fprintf(stderr, "%s: removed %s, left by process %ld of this host, which no longer runs\n", path, full, pid);
        else
            vt_error_clear();
    }
    closedir(d);
}

/* 1 when path is an empty directory or does not exist; 0 when it holds something. */
static int target_is_free(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return 1;
    if (!S_ISDIR(st.st_mode)) return 0;
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
    closedir(d);
    return empty;
}

int vt_outdir_begin(vt_outdir *o, const char *target, int overwrite) {
    memset(o, 0, sizeof *o);
    size_t n = strlen(target);
    while (n > 1 && target[n - 1] == '/') n--; /* "out/" names the same directory as "out" */
    if (n == 0 || n + 16 >= sizeof o->target) return vt_fail("output path '%s' is empty or too long", target);
    memcpy(o->target, target, n);
    o->target[n] = '\0';
    o->overwrite = overwrite;
    if (!overwrite && !target_is_free(o->target))
        return vt_fail("%s already exists and is not empty; refusing to overwrite it", o->target);
    char parent[VT_PATH_MAX];
    parent_of(o->target, parent, sizeof parent);
    if (vt_mkdir_p(parent)) return vt_fail_context("creating the parent of %s", o->target);
    sweep_stale(o->target);
    if (owned_tmp_name(o->tmp, sizeof o->tmp, o->target)) return -1;
    if (!mkdtemp(o->tmp)) return vt_fail("%s: cannot create a temporary directory: %s", o->tmp, strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    chmod(o->tmp, 0777 & ~mask); /* mkdtemp makes it 0700; the output gets ordinary permissions */
    o->active = 1;
    return 0;
}

int vt_outdir_commit(vt_outdir *o) {
    if (!o->active) return vt_fail("%s: output directory was not started", o->target);
    if (fsync_tree(o->tmp)) return vt_fail_context("saving %s", o->target);
    char old[VT_PATH_MAX] = "";
    if (!target_is_free(o->target)) {
        if (!o->overwrite)
            return vt_fail("%s appeared while writing it and is not empty; refusing to overwrite it", o->target);
        /* Move the old target aside (mkdtemp reserves a unique name; rename may replace it when
         * the target is a directory, a file is unlinked first), then put the new one in place. */
        if (vt_path_fmt(old, sizeof old, "%s.old-XXXXXX", o->target)) return -1;
        if (!mkdtemp(old)) return vt_fail("%s: cannot create a temporary directory: %s", old, strerror(errno));
        if (!vt_is_dir(o->target)) rmdir(old);
        if (rename(o->target, old) != 0) {
            int err = errno;
            rmdir(old);
            return vt_fail("%s: cannot move the old output aside: %s", o->target, strerror(err));
        }
    }
    if (rename(o->tmp, o->target) != 0) {
        int err = errno;
        if (old[0]) rename(old, o->target);
        return vt_fail("%s: cannot rename %s into place: %s", o->target, o->tmp, strerror(err));
    }
    o->active = 0;
    if (old[0] && vt_rmtree(old)) return vt_fail_context("removing the replaced output %s", old);
    fsync_parent(o->target);
    return 0;
}

void vt_outdir_abort(vt_outdir *o) {
    if (!o->active) return;
    char pending[2048]; /* the error that made us abort stays the one reported */
    snprintf(pending, sizeof pending, "%s", vt_error());
    vt_rmtree(o->tmp);
    vt_fail("%s", pending);
    o->active = 0;
}

int vt_path_fmt(char *out, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return vt_fail("path '%.200s...' is longer than the %zu characters allowed", cap ? out : "", cap ? cap - 1 : 0);
    return 0;
}

int vt_atomic_begin(vt_atomic_file *a, const char *path) {
    a->path = path;
    a->f = NULL;
    sweep_stale(path);
    if (owned_tmp_name(a->tmp, sizeof a->tmp, path)) return -1;
    int fd = mkstemp(a->tmp);
    if (fd < 0) return vt_fail("%s: cannot create a temporary file %s: %s", path, a->tmp, strerror(errno));
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask); /* mkstemp makes it 0600; the file gets ordinary permissions */
    if (!(a->f = fdopen(fd, "wb"))) {
        int err = errno;
        close(fd);
        unlink(a->tmp);
        return vt_fail("%s: %s", a->tmp, strerror(err));
    }
    return 0;
}

int vt_atomic_commit(vt_atomic_file *a) {
    int rc = 0;
    if (a->f) {
        if (fflush(a->f) || fsync(fileno(a->f))) rc = vt_fail("%s: write failed: %s", a->tmp, strerror(errno));
        if (fclose(a->f) && rc == 0) rc = vt_fail("%s: close failed: %s", a->tmp, strerror(errno));
        a->f = NULL;
    } else {
        int fd = open(a->tmp, O_RDONLY);
        rc = fd < 0 ? vt_fail("%s: %s", a->tmp, strerror(errno)) : close_synced(fd, a->tmp);
    }
    if (rc == 0 && rename(a->tmp, a->path) != 0)
        rc = vt_fail("%s: cannot rename %s into place: %s", a->path, a->tmp, strerror(errno));
    if (rc) {
        unlink(a->tmp);
        return -1;
    }
    fsync_parent(a->path);
    return 0;
}

void vt_atomic_abort(vt_atomic_file *a) {
    if (a->f) fclose(a->f);
    a->f = NULL;
    unlink(a->tmp);
}
