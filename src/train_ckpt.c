/* train_ckpt.c — training checkpoints of a VTrans run (see train_ckpt.h). */
#include "train_ckpt.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "fsutil.h"

#define KEEP_CHECKPOINTS 2
static const char MAGIC[8] = "VTCKPT1";

/* ---- a file written or read in blocks, with its FNV-1a 64 checksum ---- */
typedef struct {
    FILE *f;
    const char *path;
    uint64_t hash;
    uint64_t bytes;
    int writing; /* opened for writing: io() writes, else it reads */
    int failed;
} blob;

static void mix(blob *b, const void *p, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) b->hash = (b->hash ^ c[i]) * 0x100000001B3ull;
    b->bytes += n;
}

static void put(blob *b, const void *p, size_t n) {
    if (b->failed || !n) return;
    if (fwrite(p, 1, n, b->f) != n) b->failed = 1;
    mix(b, p, n);
}

static void get(blob *b, void *p, size_t n) {
    if (b->failed || !n) return;
    if (fread(p, 1, n, b->f) != n) b->failed = 1;
    else mix(b, p, n);
}

/* One routine describes a file's layout for both directions: io() writes the bytes at p when the
 * blob is being written, and fills them when it is being read. */
static void io(blob *b, void *p, size_t n) {
    if (b->writing) put(b, p, n);
    else get(b, p, n);
}

#define PUT(b, x) put(b, &(x), sizeof(x))
#define GET(b, x) get(b, &(x), sizeof(x))

static int blob_open(blob *b, const char *path, const char *mode) {
    memset(b, 0, sizeof *b);
    b->path = path;
    b->hash = 0xCBF29CE484222325ull;
    b->writing = mode[0] == 'w';
    b->f = fopen(path, mode);
    return b->f ? 0 : vt_fail("%s: cannot open: %s", path, strerror(errno));
}

static int blob_close(blob *b) {
    int rc = b->failed ? -1 : 0;
    if (b->writing && fflush(b->f) != 0) rc = -1;
    if (fclose(b->f) != 0) rc = -1;
    if (rc) return vt_fail("%s: %s failed (disk full or file truncated?)", b->path, b->writing ? "writing" : "reading");
    return 0;
}

/* ---- what goes into state.bin (the coordinator's) and rank-S.bin (stage S's, from its replica 0) ---- */
static void state_io(blob *b, trainer *t, vt_ckpt_pos *pos, vt_vib_result *out, vt_config *cfg) {
    int writing = b->writing;
    char magic[8];
    memcpy(magic, MAGIC, 8);
    io(b, magic, 8);
    if (!writing && memcmp(magic, MAGIC, 8) != 0) b->failed = 1;
    io(b, &pos->step, sizeof pos->step);
    io(b, &pos->phase, sizeof pos->phase);
    io(b, &pos->phase_step, sizeof pos->phase_step);
    io(b, &t->tokens, sizeof t->tokens);
    io(b, &t->lg, sizeof t->lg);
    io(b, &t->kl_log_scale, sizeof t->kl_log_scale);
    io(b, &out->removed_early, sizeof out->removed_early);
    io(b, &out->final_kd, sizeof out->final_kd);
    io(b, &out->n_records, sizeof out->n_records);
    if (!writing && !b->failed) {
        out->records = calloc(out->n_records ? out->n_records : 1, sizeof *out->records);
        if (!out->records) b->failed = 1;
    }
    if (!b->failed) io(b, out->records, sizeof *out->records * out->n_records);
    /* the student's structure (per-layer sizes, hidden, norm eps after hidden-dim folds) */
    io(b, &cfg->dim, sizeof cfg->dim);
    io(b, &cfg->norm_eps, sizeof cfg->norm_eps);
    if (!b->failed) io(b, cfg->layers, sizeof *cfg->layers * (size_t)cfg->n_layers);
}

static void masks_io(blob *b, vt_masks *mk) {
    size_t n = mk->n;
    io(b, &n, sizeof n);
    if (n != mk->n) {
        b->failed = 1;
        return;
    }
    io(b, mk->mu, sizeof(float) * n);
    io(b, mk->logvar, sizeof(float) * n);
    io(b, mk->unit_id, sizeof(int64_t) * n);
    io(b, mk->group, n);
    io(b, mk->layer, sizeof(int16_t) * n);
}

static void adam_io(blob *b, vt_adam *a) {
    size_t n = a->n;
    io(b, &n, sizeof n);
    if (n != a->n) {
        b->failed = 1;
        return;
    }
    io(b, &a->t, sizeof a->t);
    io(b, a->m, sizeof(float) * n);
    io(b, a->v, sizeof(float) * n);
}

/* ---- the manifest ---- */
static void names(const char *dir, long step, char *ck, size_t cap) { snprintf(ck, cap, "%s/ckpt-%08ld", dir, step); }

static json_t *manifest_read(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    json_error_t e;
    json_t *m = json_load_file(path, 0, &e);
    if (!m) vt_fail("%s: no usable manifest (%s); the run directory has no complete checkpoint", path, e.text);
    return m;
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
    return t->comm->sum_world(t->comm, all, 3 * (size_t)S);
}

static json_t *file_entry(double bytes, uint64_t hash) {
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)hash);
    json_t *o = json_object();
    json_object_set_new(o, "size", json_integer((json_int_t)bytes));
    json_object_set_new(o, "fnv1a64", json_string(hex));
    return o;
}

int vt_ckpt_save(trainer *t, const vt_ckpt_pos *pos_in, const vt_vib_result *out_in) {
    vt_comm *c = t->comm;
    int P = c->stages * c->replicas, coordinator = c->world_rank == 0, rc = 0;
    char ck[4200], tmp[4300], path[4400];
    names(t->p->run_dir, pos_in->step, ck, sizeof ck);
    snprintf(tmp, sizeof tmp, "%s.tmp", ck);
    if (coordinator) {
        vt_rmtree(tmp);
        rc = vt_mkdir_p(tmp);
    }
    if (vt_comm_agree(c, rc)) return -1;
    vt_ckpt_pos pos = *pos_in;
    vt_vib_result out = *out_in;
    vt_config cfg = t->student->cfg;
    blob b, s;
    memset(&b, 0, sizeof b);
    memset(&s, 0, sizeof s);
    /* The stage's file (its student part when it is not the loaded model, fine-tuning moments) is
     * the same on every replica of the stage: replica 0 writes it, named by the stage (which is
     * also replica 0's world rank). */
    if (c->replica == 0) {
        snprintf(path, sizeof path, "%s/rank-%05d.bin", tmp, c->stage);
        rc = blob_open(&b, path, "wb");
    }
    if (rc == 0 && c->replica == 0) {
        int owned = t->student == &t->own;
        PUT(&b, owned);
        if (owned) {
            size_t nf = t->own.arena_floats;
            PUT(&b, nf);
            put(&b, t->own.arena, sizeof(float) * nf);
        }
        PUT(&b, t->train_weights);
        if (t->train_weights) adam_io(&b, &t->adam_w);
        rc = blob_close(&b);
    }
    if (rc == 0 && coordinator) {
        snprintf(path, sizeof path, "%s/state.bin", tmp);
        rc = blob_open(&s, path, "wb");
        if (rc == 0) {
            state_io(&s, t, &pos, &out, &cfg);
            masks_io(&s, &t->mk);
            adam_io(&s, &t->adam_mu);
            adam_io(&s, &t->adam_lv);
            rc = blob_close(&s);
        }
    }
    double *all = malloc(sizeof(double) * 3 * (size_t)c->stages);
    if (!all) rc = vt_fail("out of memory for the checkpoint manifest");
    if (vt_comm_agree(c, rc) || gather_files(t, &b, all, c->stages)) {
        free(all);
        return -1;
    }
    if (coordinator) { /* complete: rename into place, then the manifest, last */
        json_t *m = json_object(), *list = json_array(), *old = NULL;
        char mp[4200], mtmp[4300];
        snprintf(mp, sizeof mp, "%s/manifest.json", t->p->run_dir);
        snprintf(mtmp, sizeof mtmp, "%s.tmp", mp);
        if (vt_path_exists(mp)) old = json_load_file(mp, 0, NULL);
        json_t *old_list = old ? json_object_get(old, "checkpoints") : NULL, *gone = json_array();
        const char *base = strrchr(ck, '/') ? strrchr(ck, '/') + 1 : ck;
        /* Earlier checkpoints stay listed (the newest KEEP - 1 of them), but not one of this name or
         * from a later step (both happen after resuming from an older checkpoint). Folders that
         * leave are deleted only once the new manifest is in place. */
        size_t n_old = json_array_size(old_list), earlier = 0;
        for (size_t i = 0; i < n_old; i++)
            earlier += json_integer_value(json_object_get(json_array_get(old_list, i), "step")) < pos.step;
        for (size_t i = 0, k = 0; i < n_old; i++) {
            json_t *e = json_array_get(old_list, i);
            const char *dir = json_string_value(json_object_get(e, "dir"));
            int is_earlier = json_integer_value(json_object_get(e, "step")) < pos.step;
            if (is_earlier && k++ + KEEP_CHECKPOINTS - 1 >= earlier) json_array_append(list, e);
            else if (dir && strcmp(dir, base) != 0) json_array_append(gone, json_object_get(e, "dir"));
        }
        vt_rmtree(ck);
        rc = rename(tmp, ck) == 0 ? 0 : vt_fail("%s: cannot move the checkpoint into place", ck);
        json_t *e = json_object(), *files = json_object();
        json_object_set_new(e, "dir", json_string(base));
        json_object_set_new(e, "step", json_integer(pos.step));
        json_object_set_new(e, "phase", json_integer(pos.phase));
        json_object_set_new(files, "state.bin", file_entry((double)s.bytes, s.hash));
        for (int st = 0; st < c->stages; st++) {
            char name[64];
            snprintf(name, sizeof name, "rank-%05d.bin", st);
            uint64_t h = ((uint64_t)all[3 * st + 1] << 32) | (uint64_t)all[3 * st + 2];
            json_object_set_new(files, name, file_entry(all[3 * st], h));
        }
        json_object_set_new(e, "files", files);
        json_array_append_new(list, e);
        json_object_set_new(m, "format", json_integer(1));
        json_object_set_new(m, "ranks", json_integer(P));
        json_object_set_new(m, "stages", json_integer(c->stages));
        json_object_set_new(m, "replicas", json_integer(c->replicas));
        json_object_set_new(m, "checkpoints", list);
        if (rc == 0 && (json_dump_file(m, mtmp, JSON_INDENT(2)) != 0 || rename(mtmp, mp) != 0))
            rc = vt_fail("%s: cannot write the manifest", mp);
        for (size_t i = 0; rc == 0 && i < json_array_size(gone); i++) {
            char od[4400];
            snprintf(od, sizeof od, "%s/%s", t->p->run_dir, json_string_value(json_array_get(gone, i)));
            vt_rmtree(od);
        }
        json_decref(gone);
        json_decref(m);
        json_decref(old);
    }
    free(all);
    return vt_comm_agree(c, rc);
}

/* Checks that file has the size and checksum the manifest records. */
static int verify(const char *path, json_t *entry) {
    json_int_t want = json_integer_value(json_object_get(entry, "size"));
    const char *hex = json_string_value(json_object_get(entry, "fnv1a64"));
    struct stat st;
    if (stat(path, &st) != 0) return vt_fail("%s: missing", path);
    if ((json_int_t)st.st_size != want)
        return vt_fail("%s: truncated or changed: %lld bytes, the manifest says %lld", path, (long long)st.st_size,
                       (long long)want);
    blob b;
    if (blob_open(&b, path, "rb")) return -1;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, b.f)) > 0) mix(&b, buf, n);
    fclose(b.f);
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)b.hash);
    if (!hex || strcmp(got, hex) != 0) return vt_fail("%s: checksum %s does not match the manifest's %s", path, got, hex ? hex : "?");
    return 0;
}

int vt_ckpt_load(trainer *t, const char *dir, vt_ckpt_pos *pos, vt_vib_result *out) {
    vt_comm *c = t->comm;
    int P = c->stages * c->replicas, rc = 0;
    json_t *m = manifest_read(dir);
    if (!m) rc = -1;
    if (rc == 0 && (json_integer_value(json_object_get(m, "ranks")) != P ||
                    json_integer_value(json_object_get(m, "stages")) != c->stages))
        rc = vt_fail("%s: made by %lld ranks in %lld stages; this run has %d ranks in %d stages: resume with the same "
                     "layout (mpirun -n %lld, parallel.stages = %lld)",
                     dir, (long long)json_integer_value(json_object_get(m, "ranks")),
                     (long long)json_integer_value(json_object_get(m, "stages")), P, c->stages,
                     (long long)json_integer_value(json_object_get(m, "ranks")),
                     (long long)json_integer_value(json_object_get(m, "stages")));
    if (vt_comm_agree(c, rc)) {
        json_decref(m);
        return -1;
    }
    /* the newest checkpoint every rank finds intact */
    json_t *list = json_object_get(m, "checkpoints");
    json_t *chosen = NULL;
    char ck[4400], path[4600], why[1024] = "";
    for (size_t k = json_array_size(list); k-- > 0 && !chosen;) {
        json_t *e = json_array_get(list, k), *files = json_object_get(e, "files");
        snprintf(ck, sizeof ck, "%s/%s", dir, json_string_value(json_object_get(e, "dir")));
        char mine[64];
        snprintf(mine, sizeof mine, "rank-%05d.bin", c->stage); /* the stage's file, from its replica 0 */
        snprintf(path, sizeof path, "%s/%s", ck, mine);
        int ok = verify(path, json_object_get(files, mine)) == 0;
        snprintf(path, sizeof path, "%s/state.bin", ck);
        ok = ok && verify(path, json_object_get(files, "state.bin")) == 0;
        if (!ok && !why[0]) snprintf(why, sizeof why, "%s", vt_error());
        double bad = !ok;
        if (c->sum_world(c, &bad, 1)) break;
        if (bad == 0) chosen = e;
        else if (c->world_rank == 0)
            fprintf(stderr, "resume: %s is damaged (%s); trying an older checkpoint\n", ck, why[0] ? why : "on another rank");
    }
    if (!chosen) {
        vt_fail("%s: no complete checkpoint%s%s", dir, why[0] ? ": " : "", why);
        json_decref(m);
        return -1;
    }
    /* state.bin: position, gates, moments, curve, the student's structure */
    vt_config cfg;
    rc = vt_config_copy(&cfg, &t->teacher->cfg);
    blob s;
    snprintf(path, sizeof path, "%s/state.bin", ck);
    if (rc == 0) rc = blob_open(&s, path, "rb");
    if (rc == 0) {
        state_io(&s, t, pos, out, &cfg);
        vt_masks_free(&t->mk);
        vt_adam_free(&t->adam_mu);
        vt_adam_free(&t->adam_lv);
        if (vt_masks_init(&t->mk, &cfg, t->p->seed) || vt_adam_init(&t->adam_mu, t->mk.n, 0.0) ||
            vt_adam_init(&t->adam_lv, t->mk.n, 0.0))
            rc = -1;
        if (rc == 0) {
            masks_io(&s, &t->mk);
            adam_io(&s, &t->adam_mu);
            adam_io(&s, &t->adam_lv);
        }
        if (blob_close(&s)) rc = -1;
    }
    /* this rank's part */
    blob b;
    snprintf(path, sizeof path, "%s/rank-%05d.bin", ck, c->stage);
    if (rc == 0) rc = blob_open(&b, path, "rb");
    if (rc == 0) {
        int owned = 0;
        GET(&b, owned);
        vt_trainer_free_student(t);
        if (owned) {
            vt_load_parts parts = {t->teacher->layer_begin, t->teacher->layer_end, t->teacher->has_embed,
                                   t->teacher->has_head};
            size_t nf = 0;
            GET(&b, nf);
            if (vt_model_alloc(&t->own, &cfg, parts)) rc = -1;
            else if (nf != t->own.arena_floats) {
                rc = vt_fail("%s: holds %zu weights, the checkpoint's structure needs %zu", path, nf,
                             t->own.arena_floats);
                vt_model_free(&t->own);
            } else {
                get(&b, t->own.arena, sizeof(float) * nf);
                t->student = &t->own;
            }
        }
        GET(&b, t->train_weights);
        if (rc == 0 && t->train_weights) {
            size_t w0, wn = vt_trainer_layer_region(t->student, &w0);
            vt_load_parts parts = {t->student->layer_begin, t->student->layer_end, t->student->has_embed,
                                   t->student->has_head};
            if (vt_model_alloc(&t->dw, &t->student->cfg, parts) || vt_adam_init(&t->adam_w, wn, t->p->weight_decay))
                rc = -1;
            else adam_io(&b, &t->adam_w);
        }
        if (blob_close(&b)) rc = -1;
        /* the classifier rows of other stages: columns of the kept hidden dims (ids = columns of the
         * dense model, which those rows still have after vt_trainer_head_init) */
        if (rc == 0 && t->mk.dim != t->head.d) vt_trainer_head_columns(t, t->mk.unit_id, t->mk.dim);
        if (rc == 0) rc = vt_trainer_alloc_student(t);
    }
    vt_config_free(&cfg);
    json_decref(m);
    if (vt_comm_agree(c, rc)) return -1;
    if (c->world_rank == 0)
        fprintf(stderr, "resume: %s at step %ld (%s phase)\n", ck, pos->step, pos->phase ? "fine-tuning" : "mask");
    return 0;
}
