/* fsutil.h — files and directories: whole-file reads, read-only maps, mkdir -p, copies, and
 * output directories that appear atomically (filled under a temporary name, then renamed). */
#ifndef VT_FSUTIL_H
#define VT_FSUTIL_H

#include <stddef.h>
#include <stdio.h>

/* The longest path (with its NUL) the program keeps in a fixed buffer; a longer one is an error that
 * names it (vt_path_fmt), never cut short. */
#define VT_PATH_MAX 4096

/* Reads a whole file into a NUL-terminated buffer (free() it); *size excludes the NUL. */
int vt_read_file(const char *path, char **data, size_t *size);

/* A regular file mapped read-only. An empty file maps to data == NULL, size == 0. */
typedef struct {
    const unsigned char *data;
    size_t size;
} vt_mapped_file;

int vt_map_file(vt_mapped_file *f, const char *path);
void vt_unmap_file(vt_mapped_file *f);
/* Drops the pages wholly inside [p, p + n) of f from the process's resident memory (they are read
 * from the file again if touched): a loader releases each tensor once copied, so a checkpoint
 * never sits in memory twice. */
void vt_mapped_release(const vt_mapped_file *f, const void *p, size_t n);

/* 1 when path is a directory / exists at all, else 0. */
int vt_is_dir(const char *path);
int vt_path_exists(const char *path);

/* The absolute path of an existing file, symbolic links and "." / ".." resolved (realpath). */
int vt_real_path(const char *path, char *out, size_t cap);

/* out = dir + "/" + name; fails when it does not fit in cap. */
int vt_path_join(char *out, size_t cap, const char *dir, const char *name);

/* snprintf into a path buffer of cap bytes (VT_PATH_MAX, say): -1 with an error naming the start
 * of the path when it does not fit, never a path cut short. */
int vt_path_fmt(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Creates a directory and its missing parents (mode 0777 minus umask). */
int vt_mkdir_p(const char *path);

/* Writes or copies a file and fsyncs it. */
int vt_write_file(const char *path, const void *data, size_t n);
int vt_copy_file(const char *src, const char *dst);

/* Removes a file or a directory tree; a missing path is not an error. */
int vt_rmtree(const char *path);

/* An output directory built under a temporary name next to its target:
 *   vt_outdir_begin(&o, "out/model", 0);   creates out/model.tmp-<host>-<pid>-XXXXXX
 *   ... write files into o.tmp ...
 *   vt_outdir_commit(&o);                  fsyncs everything, renames it to out/model
 * On any failure call vt_outdir_abort(&o), which removes the temporary tree, so a failed run leaves
 * no half-written output. An existing target that is a non-empty directory or a file is refused
 * unless overwrite is set; then it is replaced only at commit. A process killed with -9 cannot
 * remove its temporary: begin removes those of the same target whose process (named in the
 * temporary's name) no longer runs on this host, with a message on stderr. */
typedef struct {
    char target[VT_PATH_MAX];
    char tmp[VT_PATH_MAX]; /* target + ".tmp-<host>-<pid>-XXXXXX" */
    int overwrite;
    int active; /* tmp exists and is ours */
} vt_outdir;

int vt_outdir_begin(vt_outdir *o, const char *target, int overwrite);
int vt_outdir_commit(vt_outdir *o);
void vt_outdir_abort(vt_outdir *o);

/* One file written atomically: a temporary file beside the target (ordinary permissions), then
 * commit syncs it, renames it over the target and syncs the directory, so the target is either
 * what it was or the whole new file; abort removes the temporary. Write through f, or close f
 * (fclose, f = NULL) and write the file at tmp by name before committing. Stale temporaries of
 * path are removed at begin as for vt_outdir. */
typedef struct {
    char tmp[VT_PATH_MAX];
    const char *path;
    FILE *f;
} vt_atomic_file;

int vt_atomic_begin(vt_atomic_file *a, const char *path);
int vt_atomic_commit(vt_atomic_file *a);
void vt_atomic_abort(vt_atomic_file *a);

#endif
