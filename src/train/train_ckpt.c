/* train_ckpt.c — training checkpoints of a VTrans run (see train_ckpt.h). */
#include "train/train_ckpt.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/hf_tensors.h"
#include "util/error.h"
#include "util/fsutil.h"
#include "util/args.h"

#define KEEP_CHECKPOINTS 2
/* manifest.json: 1 had no "settings" and a file per rank; 2 records the settings and a file per stage
 * (whose names are those of format 1's replica-0 files, so format 1 still loads, unchecked). */
#define MANIFEST_FORMAT 2
static const char MAGIC[8] = "VTCKPT1";

/* snprintf into a VT_PATH_MAX buffer: -1 with an error naming the path when it does not fit. */
static int path_fmt(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int path_fmt(char *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, VT_PATH_MAX, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= VT_PATH_MAX)
        return vt_fail("%.300s...: path of %d bytes, longer than the %d allowed", out, n, VT_PATH_MAX - 1);
    return 0;
}

/* ---- a file written or read in blocks, with its FNV-1a 64 checksum ---- */
typedef struct {
    FILE *f;
    const char *path;
    uint64_t hash;
    uint64_t bytes;
    uint64_t size; /* reading: the file's size, as the manifest records it */
    int writing;   /* opened for writing: io() writes, else it reads */
    int failed;
    char why[256]; /* reading: the first thing wrong with the contents */
} blob;

static void mix(blob *b, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) b->hash = (b->hash ^ c[i]) * 0x100000001B3ull;
    b->bytes += n;
}

/* Marks the blob failed, keeping the first reason. */
static void bad(blob *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(blob *b, const char *fmt, ...) {
    if (!b->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(b->why, sizeof b->why, fmt, ap);
        va_end(ap);
    }
    b->failed = 1;
}

static void put(blob *b, const void *p, size_t n) {
    if (b->failed || !n) return;
    if (fwrite(p, 1, n, b->f) != n) b->failed = 1;
    mix(b, p, n);
}

static void get(blob *b, void *p, size_t n) {
    if (b->failed || !n) return;
    if (n > b->size - b->bytes) bad(b, "ends after %llu bytes, in the middle of a record", (unsigned long long)b->size);
    else if (fread(p, 1, n, b->f) != n) bad(b, "read error after %llu bytes", (unsigned long long)b->bytes);
    else mix(b, p, n);
}

/* One routine describes a file's layout for both directions: io() writes the bytes at p when the
 * blob is being written, and fills them when it is being read. */
static void io(blob *b, void *p, size_t n) {
    if (b->writing) put(b, p, n);
    else get(b, p, n);
}

#define IO(b, x) io(b, &(x), sizeof(x))

static int blob_create(blob *b, const char *path) {
    memset(b, 0, sizeof *b);
    b->path = path;
    b->hash = 0xCBF29CE484222325ull;
    b->writing = 1;
    b->f = fopen(path, "wb");
    return b->f ? 0 : vt_fail("%s: cannot create: %s", path, strerror(errno));
}

/* Flushed to the disk before it is closed: the manifest that will list it must not outlive it. */
static int blob_close_written(blob *b) {
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

/* Opens a checkpoint file for reading, checked first against the size its manifest entry records. */
static int blob_open_read(blob *b, const char *path, json_t *entry) {
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

/* Ends reading: every byte read and the checksum the manifest's. A file whose checksum does not
 * match is reported as damaged even when its contents went wrong earlier (the rest is then read
 * only to be checksummed); an intact file whose contents do not fit the run, by what is wrong. */
static int blob_finish_read(blob *b, json_t *entry) {
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

/* ---- what goes into state.bin (the coordinator's) and rank-S.bin (stage S's, from its replica 0) ---- */

/* state.bin: where training stands, the gates and their moments, the curve, the student's structure. */
typedef struct {
    vt_ckpt_pos pos;
    long tokens;
    vt_lagrangian lg;
    double kl_log_scale;
    size_t removed_early;
    double final_kd;
    size_t n_records;
    vt_train_record *records;
    vt_config cfg; /* the student's structure: per-layer sizes, hidden, norm eps after hidden-dim folds */
    vt_masks mk;
    vt_adam adam_mu, adam_lv;
} saved_state;

/* rank-S.bin: the stage's student part when it is not the loaded model, and in fine-tuning the
 * weights' moments. */
typedef struct {
    int owned;
    vt_model own;
    int train_weights;
    vt_adam adam_w;
    vt_model dw; /* reading: the weight gradients fine-tuning needs (allocated, not stored) */
} saved_stage;

/* Written from the trainer (shallow copies: nothing is freed), or read into fresh allocations
 * that saved_state_free / saved_stage_free release unless they are moved into the trainer. */
static void saved_state_free(saved_state *s) {
    free(s->records);
    vt_config_free(&s->cfg);
    vt_masks_free(&s->mk);
    vt_adam_free(&s->adam_mu);
    vt_adam_free(&s->adam_lv);
    memset(s, 0, sizeof *s);
}

static void saved_stage_free(saved_stage *g) {
    if (g->own.arena) vt_model_free(&g->own);
    if (g->dw.arena) vt_model_free(&g->dw);
    vt_adam_free(&g->adam_w);
    memset(g, 0, sizeof *g);
}

/* ---- reading: values a run holds finite ---- */
/* NaN or Inf read from a file whose checksum matches (a run that diverged before it saved, or a
 * file altered on purpose) would spread through the resumed training (fuzz_train_ckpt, finding
 * 1): the checkpoint counts as damaged, naming the array and the value, and an older one is tried. */
static size_t first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

static void finite_floats(blob *b, const float *x, size_t n, const char *what) {
    if (b->writing || b->failed) return;
    size_t i = first_nonfinite(x, n);
    if (i < n) bad(b, "%s[%zu] is %g, not a finite number", what, i, (double)x[i]);
}

static void finite_double(blob *b, double x, const char *what) {
    if (!b->writing && !b->failed && !isfinite(x)) bad(b, "%s is %g, not a finite number", what, x);
}

/* The student's weights read back: a non-finite value is reported with its tensor's name. */
static void finite_weights(blob *b, const vt_model *m) {
    if (b->writing || b->failed) return;
    size_t i = first_nonfinite(m->arena, m->arena_floats);
    if (i == m->arena_floats) return;
    const float *x = m->arena + i;
    vt_hf_tensor *list = NULL;
    int n = 0;
    vt_load_parts parts = {m->layer_begin, m->layer_end, m->has_embed, m->has_head};
    if (vt_hf_tensor_list(&m->cfg, parts, m, &list, &n)) vt_error_clear();
    const char *name = NULL;
    size_t at = i;
    for (int k = 0; k < n && !name; k++) {
        size_t size = (size_t)list[k].shape[0] * (size_t)(list[k].ndim > 1 ? list[k].shape[1] : 1);
        if (x >= list[k].data && x < list[k].data + size) {
            name = list[k].name;
            at = (size_t)(x - list[k].data);
        }
    }
    if (name) bad(b, "the student's weight %s[%zu] is %g, not a finite number", name, at, (double)*x);
    else bad(b, "the student's weights: value %zu is %g, not a finite number", i, (double)*x);
    free(list);
}

/* id_end: the dense model's gate ids are below it (vt_masks_init's numbering). */
static void masks_io(blob *b, vt_masks *mk, int64_t id_end) {
    size_t n = mk->n;
    IO(b, n);
    if (b->failed) return;
    if (n != mk->n) {
        bad(b, "holds %zu gates, the student's structure has %zu", n, mk->n);
        return;
    }
    io(b, mk->mu, sizeof(float) * n);
    io(b, mk->logvar, sizeof(float) * n);
    finite_floats(b, mk->mu, n, "gate mu");
    finite_floats(b, mk->logvar, n, "gate logvar");
    io(b, mk->unit_id, sizeof(int64_t) * n);
    if (b->writing) {
        io(b, mk->group, n);
        io(b, mk->layer, sizeof(int16_t) * n);
        return;
    }
    /* Reading: the group and layer of each gate follow from the student's structure (mk holds them
     * from vt_masks_init); a file that says otherwise would send the budget decision out of its
     * arrays (found by fuzz_train_ckpt: a state.bin with a valid checksum). */
    void *want = malloc(n ? 3 * n : 1);
    if (!want) {
        bad(b, "out of memory for %zu gates", n);
        return;
    }
    memcpy(want, mk->group, n);
    memcpy((char *)want + n, mk->layer, sizeof(int16_t) * n);
    io(b, mk->group, n);
    io(b, mk->layer, sizeof(int16_t) * n);
    if (!b->failed && (memcmp(want, mk->group, n) || memcmp((char *)want + n, mk->layer, sizeof(int16_t) * n)))
        bad(b, "its gates' groups and layers do not match the student's structure");
    free(want);
    /* ids index the optimizer's remapping tables: in range, or a huge or negative one would
     * allocate or write out of bounds (fuzz_train_ckpt) */
    for (size_t i = 0; !b->failed && i < n; i++)
        if (mk->unit_id[i] < 0 || mk->unit_id[i] >= id_end)
            bad(b, "gate %zu has id %lld, outside the model's 0 to %lld", i, (long long)mk->unit_id[i],
                (long long)id_end - 1);
}

static void adam_io(blob *b, vt_adam *a, const char *what) {
    size_t n = a->n;
    IO(b, n);
    if (b->failed) return;
    if (n != a->n) {
        bad(b, "holds optimizer moments of %zu values, %zu expected", n, a->n);
        return;
    }
    IO(b, a->t);
    io(b, a->m, sizeof(float) * n);
    io(b, a->v, sizeof(float) * n);
    if (!b->writing && !b->failed) {
        char name[96];
        snprintf(name, sizeof name, "%s first moment", what);
        finite_floats(b, a->m, n, name);
        snprintf(name, sizeof name, "%s second moment", what);
        finite_floats(b, a->v, n, name);
    }
}

/* A student structure read back must fit inside the model it was cut from. */
static int structure_fits(const vt_config *s, const vt_config *dense) {
    if (s->dim < 1 || s->dim > dense->dim || !(s->norm_eps > 0)) return 0;
    for (int l = 0; l < s->n_layers; l++) {
        const vt_layer_shape *a = &s->layers[l], *d = &dense->layers[l];
        if (a->n_heads < 0 || a->n_heads > d->n_heads || a->n_kv_heads < 0 || a->n_kv_heads > d->n_kv_heads ||
            (a->n_heads == 0) != (a->n_kv_heads == 0) || (a->n_kv_heads && a->n_heads % a->n_kv_heads) ||
            a->ffn < 0 || a->ffn > d->ffn)
            return 0;
    }
    return 1;
}

/* Reading: s->cfg holds a copy of the dense configuration, whose fields the file overwrites. */
static void state_io(blob *b, saved_state *s, const trainer *t) {
    int reading = !b->writing;
    char magic[8];
    memcpy(magic, MAGIC, 8);
    io(b, magic, 8);
    if (reading && !b->failed && memcmp(magic, MAGIC, 8) != 0) bad(b, "not a training checkpoint (bad magic)");
    IO(b, s->pos.step);
    IO(b, s->pos.phase);
    IO(b, s->pos.phase_step);
    IO(b, s->tokens);
    IO(b, s->lg);
    IO(b, s->kl_log_scale);
    IO(b, s->removed_early);
    IO(b, s->final_kd);
    IO(b, s->n_records);
    if (reading && !b->failed) {
        if (s->n_records > b->size / sizeof *s->records)
            bad(b, "lists %zu curve records, more than the file holds", s->n_records);
        else if (!(s->records = calloc(s->n_records ? s->n_records : 1, sizeof *s->records)))
            bad(b, "out of memory for %zu curve records", s->n_records);
    }
    io(b, s->records, sizeof *s->records * s->n_records);
    IO(b, s->cfg.dim);
    IO(b, s->cfg.norm_eps);
    io(b, s->cfg.layers, sizeof *s->cfg.layers * (size_t)s->cfg.n_layers);
    if (reading && !b->failed) {
        if (s->pos.phase != 0 && s->pos.phase != 1) bad(b, "phase %d is neither 0 (masks) nor 1 (fine-tuning)", s->pos.phase);
        else if (s->pos.phase_step < 0 || s->pos.phase_step > s->pos.step)
            bad(b, "step %ld of the phase does not fit global step %ld", s->pos.phase_step, s->pos.step);
        else if (!structure_fits(&s->cfg, &t->teacher->cfg))
            bad(b, "the student's structure (hidden %d) does not fit the model (hidden %d)", s->cfg.dim,
                t->teacher->cfg.dim);
        else if (vt_masks_init(&s->mk, &s->cfg, t->p->vib.seed) || vt_adam_init(&s->adam_mu, s->mk.n, 0.0) ||
                 vt_adam_init(&s->adam_lv, s->mk.n, 0.0))
            bad(b, "%s", vt_error());
    }
    const vt_config *dc = &t->teacher->cfg;
    masks_io(b, &s->mk, dc->dim + (int64_t)dc->n_layers * ((int64_t)dc->n_heads + dc->ffn_dim + 2));
    adam_io(b, &s->adam_mu, "gate mu's");
    adam_io(b, &s->adam_lv, "gate logvar's");
    finite_double(b, s->lg.lambda1, "the Lagrangian's lambda1");
    finite_double(b, s->lg.lambda2, "the Lagrangian's lambda2");
    finite_double(b, s->kl_log_scale, "kl_log_scale");
}

/* Reading: cfg is the student's structure from state.bin. */
static void stage_io(blob *b, saved_stage *g, const trainer *t, const vt_config *cfg) {
    int reading = !b->writing;
    IO(b, g->owned);
    if (reading && !b->failed && g->owned != 0 && g->owned != 1) bad(b, "bad student flag %d", g->owned);
    if (g->owned && !b->failed) {
        size_t nf = g->own.arena_floats;
        IO(b, nf);
        if (reading && !b->failed) {
            const vt_model *m = t->teacher;
            vt_load_parts parts = {m->layer_begin, m->layer_end, m->has_embed, m->has_head};
            if (vt_model_alloc(&g->own, cfg, parts)) bad(b, "%s", vt_error());
            else if (nf != g->own.arena_floats)
                bad(b, "holds %zu weights, the checkpoint's structure needs %zu", nf, g->own.arena_floats);
        }
        io(b, g->own.arena, sizeof(float) * nf);
        finite_weights(b, &g->own);
    }
    IO(b, g->train_weights);
    if (reading && !b->failed && g->train_weights != 0 && g->train_weights != 1)
        bad(b, "bad fine-tuning flag %d", g->train_weights);
    if (g->train_weights && !b->failed) {
        if (reading) {
            const vt_model *m = g->owned ? &g->own : t->teacher;
            vt_load_parts parts = {m->layer_begin, m->layer_end, m->has_embed, m->has_head};
            size_t w0, wn = vt_layer_region(m, &w0);
            if (vt_adam_init(&g->adam_w, wn, t->p->schedule.weight_decay) || vt_model_alloc(&g->dw, &m->cfg, parts))
                bad(b, "%s", vt_error());
        }
        adam_io(b, &g->adam_w, "the weights'");
    }
}

/* ---- the manifest ---- */
static json_t *manifest_read(const char *dir) {
    char path[VT_PATH_MAX];
    if (path_fmt(path, "%s/manifest.json", dir)) return NULL;
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

/* The run's settings ("section.key = value" lines) as {"section.key": "value", ...}. */
static json_t *settings_json(const char *text) {
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

int vt_ckpt_check(trainer *t, const char *dir) {
    vt_comm *c = t->comm;
    int P = c->stages * c->replicas, rc = 0;
    json_t *m = manifest_read(dir), *now = NULL;
    if (!m) rc = -1;
    char mp[VT_PATH_MAX] = "";
    if (rc == 0) rc = path_fmt(mp, "%s/manifest.json", dir);
    json_int_t format = m ? json_integer_value(json_object_get(m, "format")) : 0;
    if (rc == 0 && (format < 1 || format > MANIFEST_FORMAT))
        rc = vt_fail("%s: format %lld, this vtrans-dist reads formats 1 to %d", mp, (long long)format, MANIFEST_FORMAT);
    if (rc == 0 && (json_integer_value(json_object_get(m, "ranks")) != P ||
                    json_integer_value(json_object_get(m, "stages")) != c->stages))
        rc = vt_fail("%s: made by %lld ranks in %lld stages; this run has %d ranks in %d stages: resume with the same "
                     "layout (mpirun -n %lld, parallel.stages = %lld)",
                     dir, (long long)json_integer_value(json_object_get(m, "ranks")),
                     (long long)json_integer_value(json_object_get(m, "stages")), P, c->stages,
                     (long long)json_integer_value(json_object_get(m, "ranks")),
                     (long long)json_integer_value(json_object_get(m, "stages")));
    json_t *then = m ? json_object_get(m, "settings") : NULL;
    if (rc == 0 && t->p->run.settings && !json_is_object(then) && c->world_rank == 0)
        fprintf(stderr, "resume: %s records no settings (made by an older vtrans-dist): the configuration is not "
                        "checked against the run's\n", mp);
    if (rc == 0 && t->p->run.settings && json_is_object(then)) {
        now = settings_json(t->p->run.settings);
        if (!now) rc = -1;
        /* every setting both sides know; one only a newer or older vtrans-dist has is not compared */
        char diff[1800] = "";
        size_t n = 0, count = 0;
        const char *key;
        json_t *was;
        json_object_foreach(then, key, was) {
            json_t *is = now ? json_object_get(now, key) : NULL;
            const char *a = json_string_value(was), *b = json_string_value(is);
            if (!is || (a && b && strcmp(a, b) == 0)) continue;
            if (vt_key_listed(t->p->run.resume_accept, key)) {
                if (c->world_rank == 0)
                    fprintf(stderr, "resume: %s is %.300s now, %.300s then (accepted by --accept-changed)\n", key,
                            b && *b ? b : "\"\"", a && *a ? a : "\"\"");
                continue;
            }
            count++;
            if (n < sizeof diff)
                n += (size_t)snprintf(diff + n, sizeof diff - n, "%s%s is %.300s now, %.300s then", count > 1 ? "; " : "",
                                      key, b && *b ? b : "\"\"", a && *a ? a : "\"\"");
        }
        if (count)
            rc = vt_fail("%s: %zu setting%s differ%s from the run that saved these checkpoints: %s. Resume with the "
                         "run's own values, or name the keys that must change with --accept-changed "
                         "(docs/CONFIG.md, \"Resuming\")",
                         mp, count, count > 1 ? "s" : "", count > 1 ? "" : "s", diff);
    }
    json_decref(now);
    json_decref(m);
    return vt_comm_agree(c, rc);
}

/* Replica 0 of every stage contributes (size, checksum) of the stage's file: summed over the
 * world, rank 0 gets all S of them. */
static int gather_files(trainer *t, const blob *mine, double *all, int S) {
    memset(all, 0, sizeof(double) * 3 * (size_t)S);
    int s = t->comm->stage;
    if (t->comm->replica == 0) {
        all[3 * s] = (double)mine->bytes;
        all[3 * s + 1] = (double)(mine->hash >> 32);
        all[3 * s + 2] = (double)(mine->hash & 0xFFFFFFFFu);
    }
    return vt_comm_sum_world(t->comm, all, 3 * (size_t)S);
}

static json_t *file_entry(double bytes, uint64_t hash) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash);
    json_t *o = json_object();
    json_object_set_new(o, "size", json_integer((json_int_t)bytes));
    json_object_set_new(o, "fnv1a64", json_string(hex));
    return o;
}

/* Replica 0 of the stage: the stage's file, the same on every replica of the stage, named by the
 * stage (which is also replica 0's world rank). */
static int write_stage_file(trainer *t, const char *tmp, blob *b) {
    char path[VT_PATH_MAX];
    if (path_fmt(path, "%s/rank-%05d.bin", tmp, t->comm->stage)) return -1;
    saved_stage g = {.owned = vt_student_owned(&t->st), .own = t->st.own, .train_weights = t->opt.train_weights,
                     .adam_w = t->opt.adam_w};
    if (blob_create(b, path)) return -1;
    stage_io(b, &g, t, NULL);
    return blob_close_written(b);
}

/* The coordinator: state.bin. */
static int write_state_file(trainer *t, const char *tmp, const vt_ckpt_pos *pos, const vt_vib_result *out, blob *s) {
    char path[VT_PATH_MAX];
    if (path_fmt(path, "%s/state.bin", tmp)) return -1;
    saved_state st = {.pos = *pos, .tokens = t->tokens, .lg = t->opt.lg, .kl_log_scale = t->opt.kl_log_scale,
                      .removed_early = out->removed_early, .final_kd = out->final_kd, .n_records = out->n_records,
                      .records = out->records, .cfg = t->st.model->cfg, .mk = t->st.mk, .adam_mu = t->opt.adam_mu,
                      .adam_lv = t->opt.adam_lv};
    if (blob_create(s, path)) return -1;
    state_io(s, &st, t);
    return blob_close_written(s);
}

/* Earlier checkpoints stay listed (the newest KEEP - 1 of them), but not one of this name or from
 * a later step (both happen after resuming from an older checkpoint): those go into gone, whose
 * folders are deleted only once the new manifest is in place. */
static void keep_earlier(json_t *old_list, long step, const char *base, json_t *list, json_t *gone) {
    size_t n_old = json_array_size(old_list), earlier = 0;
    for (size_t i = 0; i < n_old; i++)
        earlier += json_integer_value(json_object_get(json_array_get(old_list, i), "step")) < step;
    for (size_t i = 0, k = 0; i < n_old; i++) {
        json_t *e = json_array_get(old_list, i);
        const char *dir = json_string_value(json_object_get(e, "dir"));
        int is_earlier = json_integer_value(json_object_get(e, "step")) < step;
        if (is_earlier && k++ + KEEP_CHECKPOINTS - 1 >= earlier) json_array_append(list, e);
        else if (dir && strcmp(dir, base) != 0) json_array_append(gone, json_object_get(e, "dir"));
    }
}

/* The manifest's entry of the new checkpoint: its files' sizes and checksums (all: the stages'). */
static json_t *ckpt_entry(const char *base, const vt_ckpt_pos *pos, const blob *s, const double *all, int stages) {
    json_t *e = json_object(), *files = json_object();
    json_object_set_new(e, "dir", json_string(base));
    json_object_set_new(e, "step", json_integer(pos->step));
    json_object_set_new(e, "phase", json_integer(pos->phase));
    json_object_set_new(files, "state.bin", file_entry((double)s->bytes, s->hash));
    for (int st = 0; st < stages; st++) {
        char name[64];
        snprintf(name, sizeof name, "rank-%05d.bin", st);
        uint64_t h = ((uint64_t)all[3 * st + 1] << 32) | (uint64_t)all[3 * st + 2];
        json_object_set_new(files, name, file_entry(all[3 * st], h));
    }
    json_object_set_new(e, "files", files);
    return e;
}

/* The manifest m (given rc so far), synced, then renamed over the old one mp, and the rename made
 * durable. */
static int write_manifest(trainer *t, json_t *m, json_t *list, const char *mp, int rc) {
    vt_comm *c = t->comm;
    char mtmp[VT_PATH_MAX];
    if (rc == 0) rc = path_fmt(mtmp, "%s.tmp", mp);
    json_object_set_new(m, "format", json_integer(MANIFEST_FORMAT));
    json_object_set_new(m, "ranks", json_integer(c->stages * c->replicas));
    json_object_set_new(m, "stages", json_integer(c->stages));
    json_object_set_new(m, "replicas", json_integer(c->replicas));
    if (t->p->run.settings) {
        json_t *settings = settings_json(t->p->run.settings);
        if (!settings) rc = -1;
        else json_object_set_new(m, "settings", settings);
    }
    json_object_set_new(m, "checkpoints", list);
    char *text = rc == 0 ? json_dumps(m, JSON_INDENT(2)) : NULL;
    if (rc == 0 && !text) rc = vt_fail("%s: out of memory for the manifest", mp);
    if (rc == 0) rc = vt_write_file(mtmp, text, strlen(text));
    if (rc == 0 && rename(mtmp, mp) != 0) rc = vt_fail("%s: cannot replace the manifest: %s", mp, strerror(errno));
    if (rc == 0) rc = sync_dir(t->p->ckpt.dir);
    free(text);
    return rc;
}

/* The coordinator, once every file is complete: the checkpoint renamed into place, then the
 * manifest, last; checkpoints no longer listed are deleted. */
static int publish(trainer *t, const char *ck, const char *tmp, const vt_ckpt_pos *pos, const blob *s,
                   const double *all) {
    const char *run_dir = t->p->ckpt.dir;
    json_t *m = json_object(), *list = json_array(), *old = NULL, *gone = json_array();
    char mp[VT_PATH_MAX];
    int rc = path_fmt(mp, "%s/manifest.json", run_dir);
    if (rc == 0 && vt_path_exists(mp)) old = json_load_file(mp, 0, NULL);
    const char *base = strrchr(ck, '/') ? strrchr(ck, '/') + 1 : ck;
    keep_earlier(old ? json_object_get(old, "checkpoints") : NULL, pos->step, base, list, gone);
    vt_rmtree(ck);
    if (rc == 0) rc = sync_dir(tmp);
    if (rc == 0 && rename(tmp, ck) != 0) rc = vt_fail("%s: cannot move the checkpoint into place", ck);
    json_array_append_new(list, ckpt_entry(base, pos, s, all, t->comm->stages));
    rc = write_manifest(t, m, list, mp, rc);
    for (size_t i = 0; rc == 0 && i < json_array_size(gone); i++) {
        char od[VT_PATH_MAX];
        if (path_fmt(od, "%s/%s", run_dir, json_string_value(json_array_get(gone, i))) == 0) vt_rmtree(od);
        else vt_error_clear(); /* a folder whose name does not fit was never ours to make */
    }
    json_decref(gone);
    json_decref(m);
    json_decref(old);
    return rc;
}

int vt_ckpt_save(trainer *t, const vt_ckpt_pos *pos, const vt_vib_result *out) {
    vt_comm *c = t->comm;
    int coordinator = c->world_rank == 0, rc = 0;
    char ck[VT_PATH_MAX], tmp[VT_PATH_MAX];
    rc = path_fmt(ck, "%s/ckpt-%08ld", t->p->ckpt.dir, pos->step) || path_fmt(tmp, "%s.tmp", ck) ? -1 : 0;
    if (rc == 0 && coordinator) {
        vt_rmtree(tmp);
        rc = vt_mkdir_p(tmp);
    }
    if (vt_comm_agree(c, rc)) return -1;
    blob b, s;
    memset(&b, 0, sizeof b);
    memset(&s, 0, sizeof s);
    if (c->replica == 0) rc = write_stage_file(t, tmp, &b);
    if (rc == 0 && coordinator) rc = write_state_file(t, tmp, pos, out, &s);
    double *all = malloc(sizeof(double) * 3 * (size_t)c->stages);
    if (!all) rc = vt_fail("out of memory for the checkpoint manifest");
    if (vt_comm_agree(c, rc) || gather_files(t, &b, all, c->stages)) {
        free(all);
        return -1;
    }
    if (coordinator) rc = publish(t, ck, tmp, pos, &s, all);
    free(all);
    return vt_comm_agree(c, rc);
}

/* Reads one checkpoint's state.bin and this stage's file into st and g, checked against the
 * manifest's sizes and checksums as they are read; the trainer is not touched. */
static int load_files(trainer *t, const char *ck, json_t *files, saved_state *st, saved_stage *g) {
    char path[VT_PATH_MAX], name[64];
    blob b;
    if (path_fmt(path, "%s/state.bin", ck)) return -1;
    if (vt_config_copy(&st->cfg, &t->teacher->cfg)) return -1;
    if (blob_open_read(&b, path, json_object_get(files, "state.bin"))) return -1;
    state_io(&b, st, t);
    if (blob_finish_read(&b, json_object_get(files, "state.bin"))) return -1;
    snprintf(name, sizeof name, "rank-%05d.bin", t->comm->stage); /* the stage's file, from its replica 0 */
    if (path_fmt(path, "%s/%s", ck, name)) return -1;
    if (blob_open_read(&b, path, json_object_get(files, name))) return -1;
    stage_io(&b, g, t, &st->cfg);
    if (blob_finish_read(&b, json_object_get(files, name))) return -1;
    /* fine-tuning trains the sliced student's weights; the mask phase has no weight moments */
    if (g->train_weights != (st->pos.phase == 1) || (g->train_weights && !g->owned))
        return vt_fail("%s: %s, but state.bin is in the %s phase (files of different checkpoints?)", path,
                       g->train_weights ? "holds fine-tuning moments" : "holds no fine-tuning moments",
                       st->pos.phase ? "fine-tuning" : "mask");
    return 0;
}

/* Moves what was read into the trainer (which holds a fresh run's state: the teacher as the
 * student, no weight training) and empties st and g. */
static void commit(trainer *t, saved_state *st, saved_stage *g, vt_ckpt_pos *pos, vt_vib_result *out) {
    *pos = st->pos;
    t->tokens = st->tokens;
    out->removed_early = st->removed_early;
    out->final_kd = st->final_kd;
    free(out->records);
    out->records = st->records;
    out->n_records = st->n_records;
    vt_train_optim o = {.adam_mu = st->adam_mu, .adam_lv = st->adam_lv, .adam_w = g->adam_w, .dw = g->dw,
                        .train_weights = g->train_weights, .lg = st->lg, .kl_log_scale = st->kl_log_scale};
    vt_train_optim_restore(&t->opt, &o);
    vt_student_restore(&t->st, &t->g, t->teacher, st->mk, g->owned ? &g->own : NULL);
    vt_config_free(&st->cfg);
    memset(st, 0, sizeof *st);
    memset(g, 0, sizeof *g);
}

int vt_ckpt_load(trainer *t, const char *dir, vt_ckpt_pos *pos, vt_vib_result *out) {
    vt_comm *c = t->comm;
    int rc = 0;
    json_t *m = manifest_read(dir);
    if (vt_comm_agree(c, m ? 0 : -1)) {
        json_decref(m);
        return -1;
    }
    /* The newest checkpoint every rank reads intact: each file is read once, checked against the
     * manifest as it is loaded into scratch state, which moves into the trainer only when every
     * rank succeeded (else it is dropped and the next older checkpoint is tried). */
    json_t *list = json_object_get(m, "checkpoints"), *chosen = NULL;
    char ck[VT_PATH_MAX], why[1024] = "";
    for (size_t k = json_array_size(list); k-- > 0 && !chosen;) {
        json_t *e = json_array_get(list, k);
        saved_state st;
        saved_stage g;
        memset(&st, 0, sizeof st);
        memset(&g, 0, sizeof g);
        int ok = path_fmt(ck, "%s/%s", dir, json_string_value(json_object_get(e, "dir"))) == 0 &&
                 load_files(t, ck, json_object_get(e, "files"), &st, &g) == 0;
        if (!ok && !why[0]) snprintf(why, sizeof why, "%s", vt_error());
        double failed = !ok;
        int comm_rc = vt_comm_sum_world(c, &failed, 1);
        if (comm_rc == 0 && failed == 0) {
            commit(t, &st, &g, pos, out);
            chosen = e;
        } else {
            saved_state_free(&st);
            saved_stage_free(&g);
            if (comm_rc) break;
            if (c->world_rank == 0)
                fprintf(stderr, "resume: %s cannot be used (%s); trying an older checkpoint\n", ck,
                        ok ? "on another rank" : vt_error());
        }
    }
    json_decref(m);
    if (!chosen) {
        vt_fail("%s: no complete checkpoint%s%s", dir, why[0] ? ": " : "", why);
        return -1;
    }
    /* the classifier rows of other stages: columns of the kept hidden dims (ids = columns of the
     * dense model, which those rows still have after vt_head_share_init) */
    if (t->st.mk.dim != t->head.part.d) vt_head_share_columns(&t->head, t->st.mk.unit_id, t->st.mk.dim);
    rc = vt_trainer_alloc_student(t);
    if (vt_comm_agree(c, rc)) return -1;
    if (c->world_rank == 0)
        fprintf(stderr, "resume: %s at step %ld (%s phase)\n", ck, pos->step, pos->phase ? "fine-tuning" : "mask");
    return 0;
}
