/* archive_pack.h — packing a finished checkpoint directory into one archive file (tar or
 * tar.zst, libarchive), written under a temporary name and renamed into place. */
#ifndef VT_ARCHIVE_PACK_H
#define VT_ARCHIVE_PACK_H

/* Packs the regular files of dir (in name order) as "<basename of dir>/<file>" into out_path;
 * zstd = 1 compresses with zstd. A failure leaves no out_path. */
int vt_pack_directory(const char *dir, const char *out_path, int zstd);

#endif
