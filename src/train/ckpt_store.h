/* ckpt_store.h — what every kind of training checkpoint shares: files written and read with their
 * FNV-1a 64 checksums (one routine describing a layout serves both directions), a run directory's
 * manifest.json listing the complete checkpoints (ckpt-NNNNNNNN/ folders, the newest kept and the
 * rest deleted once the new manifest is in place), and the recorded settings a resume must keep.
 * Used by the mask phase (train_ckpt.c) and by the arena checkpoints of recovery and plugin
 * training (arena_ckpt.c). */
#ifndef VT_CKPT_STORE_H
#define VT_CKPT_STORE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A file written or read in blocks, with its checksum. */
typedef struct {
    FILE *f;
    const char *path;
    uint64_t hash;
    uint64_t bytes;
    uint64_t size; /* reading: the file's size, as the manifest records it */
    int writing;   /* opened for writing: vt_blob_io() writes, else it reads */
    int failed;
    char why[256]; /* reading: the first thing wrong with the contents */
} vt_blob;

int vt_blob_create(vt_blob *b, const char *path);
/* Flushed to the disk before it is closed: the manifest that will list it must not outlive it. */
int vt_blob_close_written(vt_blob *b);
/* Opens a checkpoint file for reading, checked first against the size its manifest entry records. */
int vt_blob_open_read(vt_blob *b, const char *path, json_t *entry);
/* Ends reading: every byte read and the checksum the manifest's (a damaged file is reported as
 * such, naming it, even when its contents went wrong earlier); then the first content error. */
int vt_blob_finish_read(vt_blob *b, json_t *entry);
/* Marks the blob failed, keeping the first reason. */
void vt_blob_bad(vt_blob *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes the n bytes at p when the blob is being written, fills them when it is being read. */
void vt_blob_io(vt_blob *b, void *p, size_t n);
#define VT_BLOB_IO(b, x) vt_blob_io(b, &(x), sizeof(x))

/* {"size", "fnv1a64"} of a file: the manifest's entry for it. */
json_t *vt_ckpt_file_entry(double bytes, uint64_t hash);

/* dir/manifest.json parsed, or NULL with an error naming it. */
json_t *vt_ckpt_manifest_read(const char *dir);

/* The run's settings ("section.key = value" lines) as {"section.key": "value", ...}. */
json_t *vt_ckpt_settings_json(const char *settings);

/* Compares the settings a manifest (at path mp) recorded with this run's: every difference not
 * named in accept (comma-separated keys) is refused in one message naming each key with both
 * values; accepted ones are noted on stderr when note. A manifest without settings is noted and
 * passes. */
int vt_ckpt_settings_check(const char *mp, json_t *manifest, const char *settings, const char *accept, int note);

/* The coordinator, once every file of a checkpoint is complete in tmp: tmp synced and renamed to
 * ck (dir/ckpt-NNNNNNNN), then dir/manifest.json replaced atomically by head (format, layout; this
 * takes it) plus "settings" (when given) and "checkpoints": the newest keep - 1 earlier ones and
 * entry (this takes it too); checkpoints no longer listed (older ones, and after resuming from an
 * older checkpoint those of later steps) are deleted last. */
int vt_ckpt_publish(const char *dir, const char *ck, const char *tmp, long step, json_t *entry, json_t *head,
                    const char *settings, int keep);

#endif
