/* archive_pack.c — tar / tar.zst of a checkpoint directory through libarchive. */
#include "io/archive_pack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/fsutil.h"

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int add_file(struct archive *a, const char *path, const char *name, const char *out_path) {
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0) {
        if (f) fclose(f);
        return vt_fail("%s: cannot read %s for the archive", out_path, path);
    }
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, st.st_size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, st.st_mtime, 0);
    int rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : -1;
    char buf[1 << 16];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
        if (archive_write_data(a, buf, n) != (la_ssize_t)n) rc = -1;
    if (rc == 0 && ferror(f)) rc = -1;
    if (rc) vt_fail("%s: writing %s: %s", out_path, name, archive_error_string(a) ? archive_error_string(a) : "read error");
    archive_entry_free(e);
    fclose(f);
    return rc;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* The regular files of dir (not hidden), sorted by name, into *names (*n of them). */
static int list_files(const char *dir, char ***names_out, size_t *n_out) {
    DIR *d = opendir(dir);
    if (!d) return vt_fail("%s: cannot open the directory to archive", dir);
    char **names = NULL, path[VT_PATH_MAX];
    size_t n = 0;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.') continue;
        if ((rc = vt_path_join(path, sizeof path, dir, de->d_name))) break;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        char **grown = realloc(names, sizeof *names * (n + 1));
        if (grown) names = grown;
        if (!grown || !(names[n] = strdup(de->d_name))) rc = vt_fail("out of memory listing %s", dir);
        else n++;
    }
    closedir(d);
    if (rc) {
        free_names(names, n);
        return -1;
    }
    qsort(names, n, sizeof *names, by_name);
    *names_out = names;
    *n_out = n;
    return 0;
}

int vt_pack_directory(const char *dir, const char *out_path, int zstd) {
    char path[VT_PATH_MAX], name[VT_PATH_MAX];
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    char **names = NULL;
    size_t n = 0;
    if (list_files(dir, &names, &n)) return -1;
    vt_atomic_file out;
    if (vt_atomic_begin(&out, out_path)) {
        free_names(names, n);
        return -1;
    }
    fclose(out.f); /* libarchive writes the temporary by name */
    out.f = NULL;
    struct archive *a = archive_write_new();
    int rc = archive_write_set_format_pax_restricted(a) == ARCHIVE_OK &&
                     (!zstd || archive_write_add_filter_zstd(a) == ARCHIVE_OK) &&
                     archive_write_open_filename(a, out.tmp) == ARCHIVE_OK
                 ? 0
                 : vt_fail("%s: cannot create the archive: %s", out_path, archive_error_string(a));
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = vt_path_join(path, sizeof path, dir, names[i]) || vt_path_fmt(name, sizeof name, "%s/%s", base, names[i])
                 ? -1
                 : add_file(a, path, name, out_path);
    }
    if (archive_write_close(a) != ARCHIVE_OK && rc == 0)
        rc = vt_fail("%s: finishing the archive: %s", out_path, archive_error_string(a));
    archive_write_free(a);
    free_names(names, n);
    if (rc) {
        vt_atomic_abort(&out);
        return rc;
    }
    return vt_atomic_commit(&out);
}
