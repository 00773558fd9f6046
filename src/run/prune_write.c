/* prune_write.c — parallel checkpoint assembly (see prune_write.h). */
#include "run/prune_write.h"

#include <string.h>

#include "util/error.h"
#include "util/fsutil.h"
#include "io/hf_writer.h"
#include "report/report.h"
#include "report/report_svg.h"

int vt_write_pruned(vt_comm *c, const vt_model *part, const char *out_dir, int overwrite, vt_dtype dtype,
                    size_t shard_bytes, const char *tokenizer, const char *source, const vt_run_report *report) {
    vt_outdir o;
    memset(&o, 0, sizeof o);
    int coordinator = c->world_rank == 0, rc = 0;
    if (coordinator) rc = vt_outdir_begin(&o, out_dir, overwrite);
    if (vt_comm_agree(c, rc)) return -1;
    if (vt_comm_bcast(c, o.tmp, sizeof o.tmp)) return -1; /* every stage writes into the same folder */
    /* The stages are the checkpoint's pieces (one stage: the whole model, sharded by size); replica
     * 0 of each writes its own, the other replicas hold the same weights. */
    vt_hf_layout layout = {dtype, shard_bytes, c->stages, c->stages > 1 ? c->stage_begin : NULL};
    if (c->replica == 0) rc = vt_hf_write_piece(part, c->stage, &layout, o.tmp);
    if (rc == 0 && coordinator) rc = vt_hf_write_common(&part->cfg, &layout, tokenizer, source, o.tmp);
    char path[4200];
    if (rc == 0 && coordinator && report)
        rc = vt_path_join(path, sizeof path, o.tmp, "vtrans_report.json") || vt_report_write_json(report, path) ||
             vt_path_join(path, sizeof path, o.tmp, "vtrans_report.svg") || vt_report_svg_write_report(report, path);
    if (vt_comm_agree(c, rc)) rc = -1;
    else if (coordinator) rc = vt_outdir_commit(&o);
    if (coordinator && rc) vt_outdir_abort(&o);
    return vt_comm_agree(c, rc);
}
