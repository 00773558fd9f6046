/* fuzz_util.c — scratch files and fixture paths for the fuzz targets. */
#include "fuzz_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/fsutil.h"

static char dir[256];

static void remove_dir(void) {
    if (dir[0]) vt_rmtree(dir);
}

const char *fz_dir(void) {
    if (!dir[0]) {
        /* /dev/shm when it exists: millions of small writes stay off the disk */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        snprintf(dir, sizeof dir, "%s/vtfuzz.XXXXXX", base);
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fz_path(int slot, const char *name) {
    static char paths[4][512];
    snprintf(paths[slot & 3], sizeof paths[0], "%s/%s", fz_dir(), name);
    return paths[slot & 3];
}

void fz_put(const char *path, const void *data, size_t size) {
    /* open/write/close: no stdio buffer to allocate and no fsync, millions of times over */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const char *p = data;
    while (fd >= 0 && size > 0) {
        ssize_t w = write(fd, p, size);
        if (w <= 0) break;
        p += w;
        size -= (size_t)w;
    }
    if (fd < 0 || size > 0 || close(fd) != 0) {
        perror(path);
        abort();
    }
}

const char *fz_write(const char *name, const uint8_t *data, size_t size) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", fz_dir(), name);
    fz_put(path, data, size);
    return path;
}

const char *fz_fixture(const char *relative) {
    static char path[1024];
    const char *root = getenv("VT_FIXTURES");
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : VT_FUZZ_FIXTURES, relative);
    return path;
}
