/* prune_write.c — parallel checkpoint assembly (see prune_write.h). */
#include "run/prune_write.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_config.h"
#include "io/hf_writer.h"
#include "report/report.h"
#include "report/report_svg.h"

static vt_load_parts stage_parts(const vt_comm *c, int s) {
    vt_load_parts p = {c->stage_begin[s], c->stage_begin[s + 1], s == 0, s == c->stages - 1};
    return p;
}

/* Coordinator, several stages: config.json, the index over every stage's shard, the tokenizer. */
static int write_common(const vt_comm *c, const vt_model *part, const char *dir, vt_dtype dtype, const char *tokenizer) {
    char path[4200];
    if (vt_path_join(path, sizeof path, dir, "config.json") || vt_hf_config_write(path, &part->cfg, dtype)) return -1;
    vt_hf_tensor *all = NULL;
    int *shard_of = NULL, n_all = 0, rc = -1;
    for (int s = 0; s < c->stages; s++) {
        vt_hf_tensor *t;
        int n;
        if (vt_hf_tensor_list(&part->cfg, stage_parts(c, s), NULL, &t, &n)) goto out;
        vt_hf_tensor *grown = realloc(all, sizeof *all * (size_t)(n_all + n));
        int *grown_of = realloc(shard_of, sizeof *shard_of * (size_t)(n_all + n));
        if (grown) all = grown;
        if (grown_of) shard_of = grown_of;
        if (!grown || !grown_of) {
            free(t);
            vt_fail("out of memory for the checkpoint index");
            goto out;
        }
        memcpy(all + n_all, t, sizeof *t * (size_t)n);
        for (int i = 0; i < n; i++) shard_of[n_all + i] = s;
        n_all += n;
        free(t);
    }
    if (vt_path_join(path, sizeof path, dir, "model.safetensors.index.json") ||
        vt_hf_write_index(path, all, n_all, shard_of, c->stages, dtype))
        goto out;
    if (tokenizer && (vt_path_join(path, sizeof path, dir, "tokenizer.bin") || vt_copy_file(tokenizer, path))) goto out;
    rc = 0;
out:
    free(all);
    free(shard_of);
    return rc;
}

/* This stage's shard (replica 0 writes; the other replicas hold the same weights). */
static int write_shard(const vt_comm *c, const vt_model *part, const char *dir, vt_dtype dtype) {
    char path[4200], name[64];
    vt_hf_tensor *t;
    int n;
    vt_hf_shard_name(c->stage, c->stages, name, sizeof name);
    if (vt_path_join(path, sizeof path, dir, name)) return -1;
    if (vt_hf_tensor_list(&part->cfg, stage_parts(c, c->stage), part, &t, &n)) return -1;
    int rc = vt_hf_write_shard(path, &part->cfg, t, n, dtype);
    free(t);
    return rc;
}

int vt_write_pruned(vt_comm *c, const vt_model *part, const char *out_dir, int overwrite, vt_dtype dtype,
                    size_t shard_bytes, const char *tokenizer, json_t *report) {
    vt_outdir o;
    memset(&o, 0, sizeof o);
    int coordinator = c->world_rank == 0, rc = 0;
    if (coordinator) rc = vt_outdir_begin(&o, out_dir, overwrite);
    if (vt_comm_agree(c, rc)) return -1;
    if (vt_comm_bcast(c, o.tmp, sizeof o.tmp)) return -1; /* every stage writes into the same folder */
    if (c->stages == 1) {
        if (coordinator) rc = vt_hf_write_files(part, o.tmp, dtype, shard_bytes, tokenizer);
    } else {
        if (c->replica == 0) rc = write_shard(c, part, o.tmp, dtype);
        if (rc == 0 && coordinator) rc = write_common(c, part, o.tmp, dtype, tokenizer);
    }
    char path[4200];
    if (rc == 0 && coordinator && report)
        rc = vt_path_join(path, sizeof path, o.tmp, "vtrans_report.json") || vt_report_write(report, path) ||
             vt_path_join(path, sizeof path, o.tmp, "vtrans_report.svg") || vt_report_svg_write_json(report, path);
    if (vt_comm_agree(c, rc)) rc = -1;
    else if (coordinator) rc = vt_outdir_commit(&o);
    if (coordinator && rc) vt_outdir_abort(&o);
    return vt_comm_agree(c, rc);
}
