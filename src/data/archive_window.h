/* archive_window.h — an archive's compression, and the memory its decompressors will allocate,
 * read from its headers before libarchive opens it (libarchive passes liblzma, libzstd and its PPMd
 * reader no memory limit: they allocate the window a header declares, up to gigabytes). */
#ifndef VT_ARCHIVE_WINDOW_H
#define VT_ARCHIVE_WINDOW_H

/* The largest decompression window or dictionary read: xz -9's 64 MiB dictionary; zstd up to
 * level 19 uses 8 MiB, --long and --ultra up to 128 MiB (refused when the input was over 64 MiB). */
#define VT_ARCHIVE_WINDOW_MAX (64u << 20)

/* What libarchive is to read: a tar, plain or through one decompressor, or a zip. */
typedef enum {
    VT_ARCHIVE_TAR,
    VT_ARCHIVE_ZIP,
    VT_ARCHIVE_GZIP,
    VT_ARCHIVE_BZIP2,
    VT_ARCHIVE_XZ,
    VT_ARCHIVE_ZSTD
} vt_archive_kind;

/* The kind, from the file's first bytes (a zip starts with a zip signature such as "PK\3\4"), and
 * the declared windows checked against VT_ARCHIVE_WINDOW_MAX: every block of an xz file (found
 * through its index), every zstd frame, and in a zip every local file header's member (LZMA's
 * dictionary, PPMd's memory; XZ members are refused: their blocks cannot be reached without
 * decompressing). 0, or -1 with an error naming the file, the byte offset and the member. */
int vt_archive_inspect(const char *path, vt_archive_kind *kind);

#endif
