/* ckpt_store.c — checksummed checkpoint files, manifests and rotation (see ckpt_store.h). */
#include "train/ckpt_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/args.h"
#include "util/error.h"
#include "util/fsutil.h"

static void mix(vt_blob *b, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) b->hash = (b->hash ^ c[i]) * 0x100000001B3ull;
    b->bytes += n;
}

void vt_blob_bad(vt_blob *b, const char *fmt, ...) {
    if (!b->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->why, sizeof b->why, fmt, ap);
        va_end(ap);
    }
    b->failed = 1;
}

static void put(vt_blob *b, const void *p, size_t n) {
    if (b->failed || !n) return;
    if (fwrite(p, 1, n, b->f) != n) b->failed = 1;
    mix(b, p, n);
}

static void get(vt_blob *b, void *p, size_t n) {
    if (b->failed || !n) return;
    if (n > b->size - b->bytes)
        vt_blob_bad(b, "ends after %llu bytes, in the middle of a record", (unsigned long long)b->size);
    else if (fread(p, 1, n, b->f) != n) vt_blob_bad(b, "read error after %llu bytes", (unsigned long long)b->bytes);
    else mix(b, p, n);
}

void vt_blob_io(vt_blob *b, void *p, size_t n) {
    if (b->writing) put(b, p, n);
    else get(b, p, n);
}

int vt_blob_create(vt_blob *b, const char *path) {
    memset(b, 0, sizeof *b);
    b->path = path;
    b->hash = 0xCBF29CE484222325ull;
    b->writing = 1;
    b->f = fopen(path, "wb");
    return b->f ? 0 : vt_fail("%s: cannot create: %s", path, strerror(errno));
}

int vt_blob_close_written(vt_blob *b) {
    int rc = b->failed ? -1 : 0;
    if (fflush(b->f) != 0 || fsync(fileno(b->f)) != 0) rc = -1;
    if (fclose(b->f) != 0) rc = -1;
    return rc ? vt_fail("%s: writing failed (disk full?)", b->path) : 0;
}

/* Makes the entries of a directory (files created, renamed into it) durable. */
static int sync_dir(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return vt_fail("%s: cannot open to sync: %s", path, strerror(errno));
    int rc = fsync(fd) == 0 ? 0 : vt_fail("%s: fsync failed: %s", path, strerror(errno));
    close(fd);
    return rc;
}

int vt_blob_open_read(vt_blob *b, const char *path, json_t *entry) {
    memset(b, 0, sizeof *b);
    b->path = path;
    b->hash = 0xCBF29CE484222325ull;
    if (!json_is_integer(json_object_get(entry, "size")) || !json_is_string(json_object_get(entry, "fnv1a64")))
        return vt_fail("%s: the manifest has no size and checksum for it", path);
    json_int_t want = json_integer_value(json_object_get(entry, "size"));
    b->f = fopen(path, "rb");
    if (!b->f) return vt_fail("%s: %s", path, errno == ENOENT ? "missing" : strerror(errno));
    struct stat st;
    if (fstat(fileno(b->f), &st) != 0 || (json_int_t)st.st_size != want) {
        long long have = fstat(fileno(b->f), &st) == 0 ? (long long)st.st_size : -1;
        fclose(b->f);
        b->f = NULL;
        return vt_fail("%s: truncated or changed: %lld bytes, the manifest says %lld", path, have, (long long)want);
    }
    b->size = (uint64_t)want;
    return 0;
}

/* A file whose checksum does not match is reported as damaged even when its contents went wrong
 * earlier (the rest is then read only to be checksummed); an intact file whose contents do not fit
 * the run, by what is wrong. */
int vt_blob_finish_read(vt_blob *b, json_t *entry) {
    if (b->failed) {
        char buf[1 << 16];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, b->f)) > 0) mix(b, buf, n);
    }
    fclose(b->f);
    b->f = NULL;
    const char *want = json_string_value(json_object_get(entry, "fnv1a64"));
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)b->hash);
    if (b->bytes != b->size || strcmp(got, want) != 0)
        return b->bytes == b->size
                   ? vt_fail("%s: checksum %s does not match the manifest's %s", b->path, got, want)
                   : vt_fail("%s: %llu of its %llu bytes are not part of the checkpoint", b->path,
                             (unsigned long long)(b->size - b->bytes), (unsigned long long)b->size);
    if (b->failed) return vt_fail("%s: %s", b->path, b->why);
    return 0;
}

json_t *vt_ckpt_file_entry(double bytes, uint64_t hash) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash);
    json_t *o = json_object();
    json_object_set_new(o, "size", json_integer((json_int_t)bytes));
    json_object_set_new(o, "fnv1a64", json_string(hex));
    return o;
}

json_t *vt_ckpt_manifest_read(const char *dir) {
    char path[VT_PATH_MAX];
    if (vt_path_fmt(path, sizeof path, "%s/manifest.json", dir)) return NULL;
    json_error_t e;
    json_t *m = json_load_file(path, 0, &e);
    if (!m) vt_fail("%s: no usable manifest (%s); the run directory has no complete checkpoint", path, e.text);
    return m;
}

/* A JSON string of text; bytes of text that is not UTF-8 (a path can be anything) become '?', the
 * same on both sides of a comparison. */
static json_t *json_text(char *text) {
    json_t *j = json_string(text);
    if (j) return j;
    for (char *c = text; *c; c++)
        if ((unsigned char)*c >= 0x80) *c = '?';
    return json_string(text);
}

json_t *vt_ckpt_settings_json(const char *text) {
    json_t *o = json_object();
    for (const char *line = text; o && line && *line;) {
        const char *end = strchr(line, '\n'), *eq = strstr(line, " = ");
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (eq && (size_t)(eq - line) < len) {
            char *key = strndup(line, (size_t)(eq - line)), *value = strndup(eq + 3, len - (size_t)(eq - line) - 3);
            if (!key || !value || json_object_set_new(o, key, json_text(value))) {
                json_decref(o);
                o = NULL;
            }
            free(key);
            free(value);
        }
        line = end ? end + 1 : NULL;
    }
    if (!o) vt_fail("out of memory for the run's settings");
    return o;
}

int vt_ckpt_settings_check(const char *mp, json_t *m, const char *settings, const char *accept, int note) {
    json_t *then = json_object_get(m, "settings");
    if (!settings) return 0;
    if (!json_is_object(then)) {
        if (note)
            fprintf(stderr, "resume: %s records no settings (made by an older vtrans-dist): the configuration is not "
                            "checked against the run's\n", mp);
        return 0;
    }
    json_t *now = vt_ckpt_settings_json(settings);
    if (!now) return -1;
    /* every setting both sides know; one only a newer or older vtrans-dist has is not compared */
    char diff[1800] = "";
    size_t n = 0, count = 0;
    const char *key;
    json_t *was;
    json_object_foreach(then, key, was) {
        json_t *is = json_object_get(now, key);
        const char *a = json_string_value(was), *b = json_string_value(is);
        if (!is || (a && b && strcmp(a, b) == 0)) continue;
        if (vt_key_listed(accept, key)) {
            if (note)
                fprintf(stderr, "resume: %s is %.300s now, %.300s then (accepted by --accept-changed)\n", key,
                        b && *b ? b : "\"\"", a && *a ? a : "\"\"");
            continue;
        }
        count++;
        if (n < sizeof diff)
            n += (size_t)snprintf(diff + n, sizeof diff - n, "%s%s is %.300s now, %.300s then", count > 1 ? "; " : "",
                                  key, b && *b ? b : "\"\"", a && *a ? a : "\"\"");
    }
    json_decref(now);
    if (count)
        return vt_fail("%s: %zu setting%s differ%s from the run that saved these checkpoints: %s. Resume with the "
                       "run's own values, or name the keys that must change with --accept-changed "
                       "(docs/CONFIG.md, \"Resuming\")",
                       mp, count, count > 1 ? "s" : "", count > 1 ? "" : "s", diff);
    return 0;
}

/* Earlier checkpoints stay listed (the newest keep - 1 of them), but not one of this name or from
 * a later step (both happen after resuming from an older checkpoint): those go into gone, whose
 * folders are deleted only once the new manifest is in place. */
static void keep_earlier(json_t *old_list, long step, const char *base, int keep, json_t *list, json_t *gone) {
    size_t n_old = json_array_size(old_list), earlier = 0;
    for (size_t i = 0; i < n_old; i++)
        earlier += json_integer_value(json_object_get(json_array_get(old_list, i), "step")) < step;
    for (size_t i = 0, k = 0; i < n_old; i++) {
        json_t *e = json_array_get(old_list, i);
        const char *dir = json_string_value(json_object_get(e, "dir"));
        int is_earlier = json_integer_value(json_object_get(e, "step")) < step;
        if (is_earlier && k++ + (size_t)keep - 1 >= earlier) json_array_append(list, e);
        else if (dir && strcmp(dir, base) != 0) json_array_append(gone, json_object_get(e, "dir"));
    }
}

/* The manifest m written beside its target and renamed over it (vt_atomic_file). */
static int write_manifest(json_t *m, const char *mp) {
    char *text = json_dumps(m, JSON_INDENT(2));
    if (!text) return vt_fail("%s: out of memory for the manifest", mp);
    vt_atomic_file a;
    int rc = vt_atomic_begin(&a, mp);
    if (rc == 0 && fputs(text, a.f) < 0) {
        vt_atomic_abort(&a);
        rc = vt_fail("%s: writing the manifest failed", mp);
    } else if (rc == 0) rc = vt_atomic_commit(&a);
    free(text);
    return rc;
}

int vt_ckpt_publish(const char *dir, const char *ck, const char *tmp, long step, json_t *entry, json_t *head,
                    const char *settings, int keep) {
    json_t *list = json_array(), *old = NULL, *gone = json_array();
    char mp[VT_PATH_MAX];
    int rc = vt_path_fmt(mp, sizeof mp, "%s/manifest.json", dir);
    if (rc == 0 && vt_path_exists(mp)) old = json_load_file(mp, 0, NULL);
    const char *base = strrchr(ck, '/') ? strrchr(ck, '/') + 1 : ck;
    keep_earlier(old ? json_object_get(old, "checkpoints") : NULL, step, base, keep, list, gone);
    vt_rmtree(ck);
    if (rc == 0) rc = sync_dir(tmp);
    if (rc == 0 && rename(tmp, ck) != 0) rc = vt_fail("%s: cannot move the checkpoint into place", ck);
    json_array_append_new(list, entry);
    if (settings) {
        json_t *s = vt_ckpt_settings_json(settings);
        if (!s) rc = -1;
        else json_object_set_new(head, "settings", s);
    }
    json_object_set_new(head, "checkpoints", list);
    if (rc == 0) rc = write_manifest(head, mp);
    for (size_t i = 0; rc == 0 && i < json_array_size(gone); i++) {
        char od[VT_PATH_MAX];
        if (vt_path_fmt(od, sizeof od, "%s/%s", dir, json_string_value(json_array_get(gone, i))) == 0) vt_rmtree(od);
        else vt_error_clear(); /* a folder whose name does not fit was never ours to make */
    }
    json_decref(gone);
    json_decref(head);
    json_decref(old);
    return rc;
}
