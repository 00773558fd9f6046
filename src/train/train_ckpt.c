/* train_ckpt.c — training checkpoints of a VTrans run (see train_ckpt.h). */
#include "train/train_ckpt.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hf_tensors.h"
#include "train/ckpt_store.h"
#include "util/error.h"
#include "util/fsutil.h"

#define KEEP_CHECKPOINTS 2
/* manifest.json: 1 had no "settings" and a file per rank; 2 records the settings and a file per stage
 * (whose names are those of format 1's replica-0 files, so format 1 still loads, unchecked). */
#define MANIFEST_FORMAT 2
static const char MAGIC[8] = "VTCKPT1";

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

static void finite_floats(vt_blob *b, const float *x, size_t n, const char *what) {
    if (b->writing || b->failed) return;
    size_t i = first_nonfinite(x, n);
    if (i < n) vt_blob_bad(b, "%s[%zu] is %g, not a finite number", what, i, (double)x[i]);
}

static void finite_double(vt_blob *b, double x, const char *what) {
    if (!b->writing && !b->failed && !isfinite(x)) vt_blob_bad(b, "%s is %g, not a finite number", what, x);
}

/* The student's weights read back: a non-finite value is reported with its tensor's name. */
static void finite_weights(vt_blob *b, const vt_model *m) {
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
    if (name) vt_blob_bad(b, "the student's weight %s[%zu] is %g, not a finite number", name, at, (double)*x);
    else vt_blob_bad(b, "the student's weights: value %zu is %g, not a finite number", i, (double)*x);
    free(list);
}

/* id_end: the dense model's gate ids are below it (vt_masks_init's numbering). */
static void masks_io(vt_blob *b, vt_masks *mk, int64_t id_end) {
    size_t n = mk->n;
    VT_BLOB_IO(b, n);
    if (b->failed) return;
    if (n != mk->n) {
        vt_blob_bad(b, "holds %zu gates, the student's structure has %zu", n, mk->n);
        return;
    }
    vt_blob_io(b, mk->mu, sizeof(float) * n);
    vt_blob_io(b, mk->logvar, sizeof(float) * n);
    finite_floats(b, mk->mu, n, "gate mu");
    finite_floats(b, mk->logvar, n, "gate logvar");
    vt_blob_io(b, mk->unit_id, sizeof(int64_t) * n);
    if (b->writing) {
        vt_blob_io(b, mk->group, n);
        vt_blob_io(b, mk->layer, sizeof(int16_t) * n);
        return;
    }
    /* Reading: the group and layer of each gate follow from the student's structure (mk holds them
     * from vt_masks_init); a file that says otherwise would send the budget decision out of its
     * arrays (found by fuzz_train_ckpt: a state.bin with a valid checksum). */
    void *want = malloc(n ? 3 * n : 1);
    if (!want) {
        vt_blob_bad(b, "out of memory for %zu gates", n);
        return;
    }
    memcpy(want, mk->group, n);
    memcpy((char *)want + n, mk->layer, sizeof(int16_t) * n);
    vt_blob_io(b, mk->group, n);
    vt_blob_io(b, mk->layer, sizeof(int16_t) * n);
    if (!b->failed && (memcmp(want, mk->group, n) || memcmp((char *)want + n, mk->layer, sizeof(int16_t) * n)))
        vt_blob_bad(b, "its gates' groups and layers do not match the student's structure");
    free(want);
    /* ids index the optimizer's remapping tables: in range, or a huge or negative one would
     * allocate or write out of bounds (fuzz_train_ckpt) */
    for (size_t i = 0; !b->failed && i < n; i++)
        if (mk->unit_id[i] < 0 || mk->unit_id[i] >= id_end)
            vt_blob_bad(b, "gate %zu has id %lld, outside the model's 0 to %lld", i, (long long)mk->unit_id[i],
                (long long)id_end - 1);
}

static void adam_io(vt_blob *b, vt_adam *a, const char *what) {
    size_t n = a->n;
    VT_BLOB_IO(b, n);
    if (b->failed) return;
    if (n != a->n) {
        vt_blob_bad(b, "holds optimizer moments of %zu values, %zu expected", n, a->n);
        return;
    }
    VT_BLOB_IO(b, a->t);
    vt_blob_io(b, a->m, sizeof(float) * n);
    vt_blob_io(b, a->v, sizeof(float) * n);
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
static void state_io(vt_blob *b, saved_state *s, const trainer *t) {
    int reading = !b->writing;
    char magic[8];
    memcpy(magic, MAGIC, 8);
    vt_blob_io(b, magic, 8);
    if (reading && !b->failed && memcmp(magic, MAGIC, 8) != 0) vt_blob_bad(b, "not a training checkpoint (bad magic)");
    VT_BLOB_IO(b, s->pos.step);
    VT_BLOB_IO(b, s->pos.phase);
    VT_BLOB_IO(b, s->pos.phase_step);
    VT_BLOB_IO(b, s->tokens);
    VT_BLOB_IO(b, s->lg);
    VT_BLOB_IO(b, s->kl_log_scale);
    VT_BLOB_IO(b, s->removed_early);
    VT_BLOB_IO(b, s->final_kd);
    VT_BLOB_IO(b, s->n_records);
    if (reading && !b->failed) {
        if (s->n_records > b->size / sizeof *s->records)
            vt_blob_bad(b, "lists %zu curve records, more than the file holds", s->n_records);
        else if (!(s->records = calloc(s->n_records ? s->n_records : 1, sizeof *s->records)))
            vt_blob_bad(b, "out of memory for %zu curve records", s->n_records);
    }
    vt_blob_io(b, s->records, sizeof *s->records * s->n_records);
    VT_BLOB_IO(b, s->cfg.dim);
    VT_BLOB_IO(b, s->cfg.norm_eps);
    vt_blob_io(b, s->cfg.layers, sizeof *s->cfg.layers * (size_t)s->cfg.n_layers);
    if (reading && !b->failed) {
        if (s->pos.phase != 0 && s->pos.phase != 1) vt_blob_bad(b, "phase %d is neither 0 (masks) nor 1 (fine-tuning)", s->pos.phase);
        else if (s->pos.phase_step < 0 || s->pos.phase_step > s->pos.step)
            vt_blob_bad(b, "step %ld of the phase does not fit global step %ld", s->pos.phase_step, s->pos.step);
        else if (!structure_fits(&s->cfg, &t->teacher->cfg))
            vt_blob_bad(b, "the student's structure (hidden %d) does not fit the model (hidden %d)", s->cfg.dim,
                t->teacher->cfg.dim);
        else if (vt_masks_init(&s->mk, &s->cfg, t->p->vib.seed) || vt_adam_init(&s->adam_mu, s->mk.n, 0.0) ||
                 vt_adam_init(&s->adam_lv, s->mk.n, 0.0))
            vt_blob_bad(b, "%s", vt_error());
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
static void stage_io(vt_blob *b, saved_stage *g, const trainer *t, const vt_config *cfg) {
    int reading = !b->writing;
    VT_BLOB_IO(b, g->owned);
    if (reading && !b->failed && g->owned != 0 && g->owned != 1) vt_blob_bad(b, "bad student flag %d", g->owned);
    if (g->owned && !b->failed) {
        size_t nf = g->own.arena_floats;
        VT_BLOB_IO(b, nf);
        if (reading && !b->failed) {
            const vt_model *m = t->teacher;
            vt_load_parts parts = {m->layer_begin, m->layer_end, m->has_embed, m->has_head};
            if (vt_model_alloc(&g->own, cfg, parts)) vt_blob_bad(b, "%s", vt_error());
            else if (nf != g->own.arena_floats)
                vt_blob_bad(b, "holds %zu weights, the checkpoint's structure needs %zu", nf, g->own.arena_floats);
        }
        vt_blob_io(b, g->own.arena, sizeof(float) * nf);
        finite_weights(b, &g->own);
    }
    VT_BLOB_IO(b, g->train_weights);
    if (reading && !b->failed && g->train_weights != 0 && g->train_weights != 1)
        vt_blob_bad(b, "bad fine-tuning flag %d", g->train_weights);
    if (g->train_weights && !b->failed) {
        if (reading) {
            const vt_model *m = g->owned ? &g->own : t->teacher;
            vt_load_parts parts = {m->layer_begin, m->layer_end, m->has_embed, m->has_head};
            size_t w0, wn = vt_layer_region(m, &w0);
            if (vt_adam_init(&g->adam_w, wn, t->p->schedule.weight_decay) || vt_model_alloc(&g->dw, &m->cfg, parts))
                vt_blob_bad(b, "%s", vt_error());
        }
        adam_io(b, &g->adam_w, "the weights'");
    }
}

/* A checkpoint of `stages` stages read on another number of stages: only when no stage file holds
 * layout-bound state (the student's own weights after hidden-dim folds or slicing, fine-tuning's
 * moments); the masks and gates in state.bin are the whole model's. 0 when every file is empty. */
static int stage_files_empty(trainer *t, const char *ck, json_t *files, long long stages) {
    for (long long st = 0; st < stages; st++) {
        char path[VT_PATH_MAX], name[64];
        snprintf(name, sizeof name, "rank-%05lld.bin", st);
        vt_blob b;
        saved_stage g;
        memset(&g, 0, sizeof g);
        if (vt_path_fmt(path, VT_PATH_MAX, "%s/%s", ck, name) || vt_blob_open_read(&b, path, json_object_get(files, name)))
            return -1;
        stage_io(&b, &g, t, &t->teacher->cfg); /* the flag comes first: known even when the weights do not fit */
        int rc = vt_blob_finish_read(&b, json_object_get(files, name)), bound = g.owned || g.train_weights;
        saved_stage_free(&g);
        if (rc && !bound) return -1;
        if (bound)
            return vt_fail("%s: made by %lld stages, whose files hold the student's own weights or fine-tuning "
                           "moments, which only that layout reads: resume with parallel.stages = %lld", path, stages,
                           stages);
    }
    return 0;
}

/* The stages of the run that saved manifest m (format 1 did not say: this run's). */
static long long saved_stages(const trainer *t, json_t *m) {
    json_t *s = json_object_get(m, "stages");
    return s ? json_integer_value(s) : t->comm->stages;
}

int vt_ckpt_check(trainer *t, const char *dir) {
    vt_comm *c = t->comm;
    int P = c->stages * c->replicas, rc = 0;
    json_t *m = vt_ckpt_manifest_read(dir);
    if (!m) rc = -1;
    char mp[VT_PATH_MAX] = "";
    if (rc == 0) rc = vt_path_fmt(mp, VT_PATH_MAX, "%s/manifest.json", dir);
    json_int_t format = m ? json_integer_value(json_object_get(m, "format")) : 0;
    if (rc == 0 && (format < 1 || format > MANIFEST_FORMAT))
        rc = vt_fail("%s: format %lld, this vtrans-dist reads formats 1 to %d", mp, (long long)format, MANIFEST_FORMAT);
    /* another layout reads it when its stage files hold nothing bound to their stages (the newest
     * checkpoint's; checked again for the one loaded) */
    json_t *list = m ? json_object_get(m, "checkpoints") : NULL, *newest = json_array_get(list, json_array_size(list) - 1);
    char ck[VT_PATH_MAX];
    if (rc == 0 && saved_stages(t, m) != c->stages && newest &&
        vt_path_fmt(ck, VT_PATH_MAX, "%s/%s", dir, json_string_value(json_object_get(newest, "dir"))) == 0 &&
        stage_files_empty(t, ck, json_object_get(newest, "files"), saved_stages(t, m)))
        rc = vt_fail_context("%s: made by %lld ranks in %lld stages; this run has %d ranks in %d stages", dir,
                             (long long)json_integer_value(json_object_get(m, "ranks")), saved_stages(t, m), P,
                             c->stages);
    if (rc == 0)
        rc = vt_ckpt_settings_check(mp, m, t->p->run.settings, t->p->run.resume_accept, c->world_rank == 0);
    json_decref(m);
    return vt_comm_agree(c, rc);
}

/* Replica 0 of every stage contributes (size, checksum) of the stage's file: summed over the
 * world, rank 0 gets all S of them. */
static int gather_files(trainer *t, const vt_blob *mine, double *all, int S) {
    memset(all, 0, sizeof(double) * 3 * (size_t)S);
    int s = t->comm->stage;
    if (t->comm->replica == 0) {
        all[3 * s] = (double)mine->bytes;
        all[3 * s + 1] = (double)(mine->hash >> 32);
        all[3 * s + 2] = (double)(mine->hash & 0xFFFFFFFFu);
    }
    return vt_comm_sum_world(t->comm, all, 3 * (size_t)S);
}

/* Replica 0 of the stage: the stage's file, the same on every replica of the stage, named by the
 * stage (which is also replica 0's world rank). */
static int write_stage_file(trainer *t, const char *tmp, vt_blob *b) {
    char path[VT_PATH_MAX];
    if (vt_path_fmt(path, VT_PATH_MAX, "%s/rank-%05d.bin", tmp, t->comm->stage)) return -1;
    saved_stage g = {.owned = vt_student_owned(&t->st), .own = t->st.own, .train_weights = t->opt.train_weights,
                     .adam_w = t->opt.adam_w};
    if (vt_blob_create(b, path)) return -1;
    stage_io(b, &g, t, NULL);
    return vt_blob_close_written(b);
}

/* The coordinator: state.bin. */
static int write_state_file(trainer *t, const char *tmp, const vt_ckpt_pos *pos, const vt_vib_result *out, vt_blob *s) {
    char path[VT_PATH_MAX];
    if (vt_path_fmt(path, VT_PATH_MAX, "%s/state.bin", tmp)) return -1;
    saved_state st = {.pos = *pos, .tokens = t->tokens, .lg = t->opt.lg, .kl_log_scale = t->opt.kl_log_scale,
                      .removed_early = out->removed_early, .final_kd = out->final_kd, .n_records = out->n_records,
                      .records = out->records, .cfg = t->st.model->cfg, .mk = t->st.mk, .adam_mu = t->opt.adam_mu,
                      .adam_lv = t->opt.adam_lv};
    if (vt_blob_create(s, path)) return -1;
    state_io(s, &st, t);
    return vt_blob_close_written(s);
}

/* The manifest's entry of the new checkpoint: its files' sizes and checksums (all: the stages'). */
static json_t *ckpt_entry(const char *base, const vt_ckpt_pos *pos, const vt_blob *s, const double *all, int stages) {
    json_t *e = json_object(), *files = json_object();
    json_object_set_new(e, "dir", json_string(base));
    json_object_set_new(e, "step", json_integer(pos->step));
    json_object_set_new(e, "phase", json_integer(pos->phase));
    json_object_set_new(files, "state.bin", vt_ckpt_file_entry((double)s->bytes, s->hash));
    for (int st = 0; st < stages; st++) {
        char name[64];
        snprintf(name, sizeof name, "rank-%05d.bin", st);
        uint64_t h = ((uint64_t)all[3 * st + 1] << 32) | (uint64_t)all[3 * st + 2];
        json_object_set_new(files, name, vt_ckpt_file_entry(all[3 * st], h));
    }
    json_object_set_new(e, "files", files);
    return e;
}

/* The coordinator, once every file is complete: the checkpoint renamed into place, then the
 * manifest with the layout and the settings, last (ckpt_store.h). */
static int publish(trainer *t, const char *ck, const char *tmp, const vt_ckpt_pos *pos, const vt_blob *s,
                   const double *all) {
    vt_comm *c = t->comm;
    json_t *m = json_object();
    json_object_set_new(m, "format", json_integer(MANIFEST_FORMAT));
    json_object_set_new(m, "ranks", json_integer(c->stages * c->replicas));
    json_object_set_new(m, "stages", json_integer(c->stages));
    json_object_set_new(m, "replicas", json_integer(c->replicas));
    const char *base = strrchr(ck, '/') ? strrchr(ck, '/') + 1 : ck;
    return vt_ckpt_publish(t->p->ckpt.dir, ck, tmp, pos->step, ckpt_entry(base, pos, s, all, c->stages), m,
                           t->p->run.settings, KEEP_CHECKPOINTS);
}

int vt_ckpt_save(trainer *t, const vt_ckpt_pos *pos, const vt_vib_result *out) {
    vt_comm *c = t->comm;
    int coordinator = c->world_rank == 0, rc = 0;
    char ck[VT_PATH_MAX], tmp[VT_PATH_MAX];
    rc = vt_path_fmt(ck, VT_PATH_MAX, "%s/ckpt-%08ld", t->p->ckpt.dir, pos->step) || vt_path_fmt(tmp, VT_PATH_MAX, "%s.tmp", ck) ? -1 : 0;
    if (rc == 0 && coordinator) {
        vt_rmtree(tmp);
        rc = vt_mkdir_p(tmp);
    }
    if (vt_comm_agree(c, rc)) return -1;
    vt_blob b, s;
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
static int load_files(trainer *t, const char *ck, json_t *files, long long stages, saved_state *st, saved_stage *g) {
    char path[VT_PATH_MAX], name[64];
    vt_blob b;
    if (vt_path_fmt(path, VT_PATH_MAX, "%s/state.bin", ck)) return -1;
    if (vt_config_copy(&st->cfg, &t->teacher->cfg)) return -1;
    if (vt_blob_open_read(&b, path, json_object_get(files, "state.bin"))) return -1;
    state_io(&b, st, t);
    if (vt_blob_finish_read(&b, json_object_get(files, "state.bin"))) return -1;
    if (stages != t->comm->stages) return stage_files_empty(t, ck, files, stages); /* g stays empty */
    snprintf(name, sizeof name, "rank-%05d.bin", t->comm->stage); /* the stage's file, from its replica 0 */
    if (vt_path_fmt(path, VT_PATH_MAX, "%s/%s", ck, name)) return -1;
    if (vt_blob_open_read(&b, path, json_object_get(files, name))) return -1;
    stage_io(&b, g, t, &st->cfg);
    if (vt_blob_finish_read(&b, json_object_get(files, name))) return -1;
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
    json_t *m = vt_ckpt_manifest_read(dir);
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
        int ok = vt_path_fmt(ck, VT_PATH_MAX, "%s/%s", dir, json_string_value(json_object_get(e, "dir"))) == 0 &&
                 load_files(t, ck, json_object_get(e, "files"), saved_stages(t, m), &st, &g) == 0;
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
