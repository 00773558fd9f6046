/* report_svg.h — the run report's picture, vtrans_report.svg: what was kept per layer (query
 * heads, KV heads and FFN neurons as fractions of the original, removed blocks hatched) and, for
 * a trained run, the kept size against the target ramp, the distillation loss and beta over the
 * steps, with the mask phase and the fine-tuning phase told apart. A self-contained SVG (no
 * external fonts, images or scripts), 900 px wide and as tall as the layers need. */
#ifndef VT_REPORT_SVG_H
#define VT_REPORT_SVG_H

#include <stddef.h>

#include "nn/model.h"
#include "report/report.h"
#include "train/vib_train.h"

/* Writes the picture to path, directly (prune writes it into an output directory that appears
 * only when complete; a failed write removes the file). before and after have the same layers (a
 * removed block has 0 units in after). records (n_records of them, in step order; the curve of
 * vt_vib_result) may be NULL/0, as for the baselines: then only the per-layer panel is drawn; of
 * a record it draws step, phase, hard_size, target, kd and beta. title (may be NULL) heads the picture; the line under it
 * gives the hidden dims kept and the totals. Errors name path. */
int vt_report_svg_write(const char *path, const vt_config *before, const vt_config *after,
                        const vt_train_record *records, size_t n_records, const char *title);

/* The same drawn from the run report (what vtrans_report.json says): its configurations and
 * curve, under a title naming the method, the budget and the parameters kept. */
int vt_report_svg_write_report(const vt_run_report *r, const char *path);

#endif
