/* arena_ckpt.c — checkpoints of a trained arena and its Adam moments (see arena_ckpt.h). */
#include "train/arena_ckpt.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "train/ckpt_store.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/fsutil.h"

#define KEEP_CHECKPOINTS 2
#define MANIFEST_FORMAT 1
static const char MAGIC[8] = "VTARENA";

long vt_arena_stop_after(const char *what) {
    const char *e = getenv("VT_STOP_AFTER");
    size_t n = strlen(what);
    if (!e || strncmp(e, what, n) != 0 || e[n] != ':') return 0;
    return strtol(e + n + 1, NULL, 10);
}

static size_t group_total(const vt_arena_group *g) { return g->total ? g->total : g->n; }

/* An array of the group's whole layout: written whole (world rank 0 holds it); read, only the
 * run [off, off + n) is kept, the rest passed over through a small buffer. */
static void window_io(vt_blob *b, const vt_arena_group *g, float *p) {
    size_t total = group_total(g);
    if (b->writing || (g->off == 0 && g->n == total)) {
        if (b->writing && g->n != total) vt_blob_bad(b, "writes a run of %zu of %zu parameters", g->n, total);
        vt_blob_io(b, p, sizeof(float) * g->n);
        return;
    }
    float skip[4096];
    for (size_t i = 0; i < total && !b->failed;) {
        if (i == g->off && g->n) {
            vt_blob_io(b, p, sizeof(float) * g->n);
            i += g->n;
            continue;
        }
        size_t end = i < g->off ? g->off : total, k = end - i < 4096 ? end - i : 4096;
        vt_blob_io(b, skip, sizeof(float) * k);
        i += k;
    }
}

/* Group k's size, parameters and moments; reading checks the size against the loop's own. */
static void group_io(vt_blob *b, vt_arena_group *g, int k) {
    size_t n = group_total(g);
    VT_BLOB_IO(b, n);
    if (!b->failed && n != group_total(g))
        vt_blob_bad(b, "holds %zu trained parameters in group %d, this run trains %zu (another model, rank, method "
                    "or recover.norms?)", n, k, group_total(g));
    if (b->failed || !n) return;
    window_io(b, g, g->param);
    VT_BLOB_IO(b, g->adam->t);
    window_io(b, g, g->adam->m);
    window_io(b, g, g->adam->v);
}

/* One layout for both directions; reading checks the sizes against s (the loop's own arena). */
static void state_io(vt_blob *b, vt_arena_state *s) {
    char magic[8];
    memcpy(magic, MAGIC, 8);
    vt_blob_io(b, magic, 8);
    if (!b->writing && !b->failed && memcmp(magic, MAGIC, 8) != 0) vt_blob_bad(b, "not an arena checkpoint (bad magic)");
    VT_BLOB_IO(b, s->step);
    vt_blob_io(b, s->stats, sizeof s->stats);
    if (!b->failed && s->step < 0) vt_blob_bad(b, "negative step %ld", s->step);
    for (int k = 0; k < VT_ARENA_GROUPS; k++) group_io(b, &s->g[k], k);
}

/* World rank 0: the checkpoint folder's file, then the manifest. */
static int save_coordinator(const vt_arena_run *r, vt_comm *c, const vt_arena_state *s) {
    const char *dir = r->policy.dir;
    char ck[VT_PATH_MAX], tmp[VT_PATH_MAX], path[VT_PATH_MAX];
    if (vt_path_fmt(ck, sizeof ck, "%s/ckpt-%08ld", dir, s->step) || vt_path_fmt(tmp, sizeof tmp, "%s.tmp", ck) ||
        vt_path_fmt(path, sizeof path, "%s/state.bin", tmp) || vt_mkdir_p(dir))
        return -1;
    vt_rmtree(tmp);
    if (vt_mkdir_p(tmp)) return -1;
    vt_blob b;
    if (vt_blob_create(&b, path)) return -1;
    vt_arena_state w = *s;
    if (r->whole)
        for (int k = 0; k < VT_ARENA_GROUPS; k++) w.g[k] = r->whole[k];
    state_io(&b, &w);
    if (vt_blob_close_written(&b)) return -1;
    json_t *e = json_object(), *files = json_object(), *head = json_object();
    json_object_set_new(e, "dir", json_string(strrchr(ck, '/') + 1));
    json_object_set_new(e, "step", json_integer(s->step));
    json_object_set_new(files, "state.bin", vt_ckpt_file_entry((double)b.bytes, b.hash));
    json_object_set_new(e, "files", files);
    json_object_set_new(head, "format", json_integer(MANIFEST_FORMAT));
    json_object_set_new(head, "kind", json_string(r->what));
    json_object_set_new(head, "replicas", json_integer(c->replicas));
    return vt_ckpt_publish(dir, ck, tmp, s->step, e, head, r->settings, KEEP_CHECKPOINTS);
}

int vt_arena_ckpt_save(const vt_arena_run *r, vt_comm *c, const vt_arena_state *s) {
    if (r->gather && vt_comm_agree(c, r->gather(r->gather_arg, c))) return -1;
    int rc = c->world_rank == 0 ? save_coordinator(r, c, s) : 0;
    return vt_comm_agree(c, rc);
}

/* One checkpoint's state.bin read into scratch copies, checked against the manifest entry. */
static int load_one(const char *ck, json_t *files, vt_arena_state *into) {
    char path[VT_PATH_MAX];
    if (vt_path_fmt(path, sizeof path, "%s/state.bin", ck)) return -1;
    vt_blob b;
    if (vt_blob_open_read(&b, path, json_object_get(files, "state.bin"))) return -1;
    state_io(&b, into);
    return vt_blob_finish_read(&b, json_object_get(files, "state.bin"));
}

/* Scratch arrays the size of s's, so that a damaged file leaves the loop's own untouched
 * (a[k]: group k's moments; a stage may hold an empty run of a group). */
static int scratch_init(vt_arena_state *x, vt_adam *a, const vt_arena_state *s) {
    *x = *s;
    int rc = 0;
    for (int k = 0; k < VT_ARENA_GROUPS; k++) {
        const vt_arena_group *g = &s->g[k];
        if (!group_total(g)) continue;
        a[k] = *g->adam;
        x->g[k].adam = &a[k];
        if (!g->n) continue;
        x->g[k].param = vt_malloc(sizeof(float) * g->n, "checkpoint parameters");
        a[k].m = vt_malloc(sizeof(float) * g->n, "checkpoint moments");
        a[k].v = vt_malloc(sizeof(float) * g->n, "checkpoint moments");
        if (!x->g[k].param || !a[k].m || !a[k].v) rc = -1;
    }
    return rc;
}

static void scratch_free(vt_arena_state *x, const vt_arena_state *s) {
    for (int k = 0; k < VT_ARENA_GROUPS; k++)
        if (s->g[k].n) free(x->g[k].param), free(x->g[k].adam->m), free(x->g[k].adam->v);
}

static void scratch_commit(vt_arena_state *s, const vt_arena_state *x) {
    s->step = x->step;
    memcpy(s->stats, x->stats, sizeof s->stats);
    for (int k = 0; k < VT_ARENA_GROUPS; k++) {
        vt_arena_group *g = &s->g[k];
        if (!group_total(g)) continue;
        g->adam->t = x->g[k].adam->t;
        if (!g->n) continue;
        memcpy(g->param, x->g[k].param, sizeof(float) * g->n);
        memcpy(g->adam->m, x->g[k].adam->m, sizeof(float) * g->n);
        memcpy(g->adam->v, x->g[k].adam->v, sizeof(float) * g->n);
    }
}

/* The newest checkpoint of list every rank reads intact, into s. */
static int load_newest(const vt_arena_run *r, vt_comm *c, json_t *list, vt_arena_state *s) {
    vt_arena_state x;
    vt_adam a[VT_ARENA_GROUPS];
    memset(a, 0, sizeof a);
    int rc = vt_comm_agree(c, scratch_init(&x, a, s));
    char ck[VT_PATH_MAX], why[1024] = "";
    int chosen = 0;
    for (size_t k = json_array_size(list); rc == 0 && k-- > 0 && !chosen;) {
        json_t *e = json_array_get(list, k);
        int ok = vt_path_fmt(ck, sizeof ck, "%s/%s", r->policy.dir, json_string_value(json_object_get(e, "dir"))) == 0 &&
                 load_one(ck, json_object_get(e, "files"), &x) == 0;
        if (!ok && !why[0]) snprintf(why, sizeof why, "%s", vt_error());
        double failed = !ok;
        if ((rc = vt_comm_sum_world(c, &failed, 1))) break;
        if (failed == 0) {
            scratch_commit(s, &x);
            chosen = 1;
        } else if (c->world_rank == 0) {
            fprintf(stderr, "resume: %s cannot be used (%s); trying an older checkpoint\n", ck,
                    ok ? "on another rank" : vt_error());
        }
    }
    scratch_free(&x, s);
    if (rc == 0 && !chosen) rc = vt_fail("%s: no complete %s checkpoint%s%s", r->policy.dir, r->what, why[0] ? ": " : "", why);
    if (rc == 0 && c->world_rank == 0)
        fprintf(stderr, "resume: %s at %s step %ld\n", ck, r->what, s->step);
    return rc ? -1 : 1;
}

int vt_arena_ckpt_load(const vt_arena_run *r, vt_comm *c, vt_arena_state *s) {
    char mp[VT_PATH_MAX];
    if (!r->resume || !r->policy.dir[0]) return 0;
    int rc = vt_path_fmt(mp, sizeof mp, "%s/manifest.json", r->policy.dir);
    if (vt_comm_agree(c, rc)) return -1;
    if (!vt_path_exists(mp)) { /* stopped before this loop saved anything: it starts afresh */
        if (c->world_rank == 0) fprintf(stderr, "resume: no %s checkpoint in %s; %s starts at step 0\n", r->what,
                                        r->policy.dir, r->what);
        return 0;
    }
    json_t *m = vt_ckpt_manifest_read(r->policy.dir);
    rc = m ? 0 : -1;
    if (rc == 0 && json_integer_value(json_object_get(m, "format")) != MANIFEST_FORMAT)
        rc = vt_fail("%s: format %lld, this vtrans-dist reads format %d", mp,
                     (long long)json_integer_value(json_object_get(m, "format")), MANIFEST_FORMAT);
    if (rc == 0) rc = vt_ckpt_settings_check(mp, m, r->settings, r->accept, c->world_rank == 0);
    if (vt_comm_agree(c, rc)) {
        json_decref(m);
        return -1;
    }
    rc = load_newest(r, c, json_object_get(m, "checkpoints"), s);
    json_decref(m);
    return rc;
}

int vt_arena_ckpt_tick(const vt_arena_run *r, vt_save_clock *k, vt_comm *c, const vt_arena_state *s) {
    if (!r->policy.dir[0]) return 0;
    double votes[2];
    vt_save_clock_due(k, &r->policy, r->stop, c->world_rank, s->step, votes);
    if (r->stop_after > 0 && s->step == r->stop_after) votes[0] = 1.0;
    if (vt_comm_sum_world(c, votes, 2)) return -1;
    if (votes[0] == 0 && votes[1] == 0) return 0;
    if (vt_arena_ckpt_save(r, c, s)) return -1;
    k->last_save = vt_seconds();
    if (votes[0] == 0) return 0;
    if (r->log && c->world_rank == 0)
        fprintf(r->log, "stopping on request after %s step %ld: checkpoint saved in %s\n", r->what, s->step,
                r->policy.dir);
    return 1;
}
