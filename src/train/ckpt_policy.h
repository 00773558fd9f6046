/* ckpt_policy.h — where and how often training saves its checkpoints (section [run]). */
#ifndef VT_CKPT_POLICY_H
#define VT_CKPT_POLICY_H

#include "util/fsutil.h" /* VT_PATH_MAX */

typedef struct {
    char dir[VT_PATH_MAX]; /* the run directory ("" in the run configuration: "<output.dir>.run") */
    int steps;             /* save every N steps (0: by time only) */
    double minutes;        /* save at least this often (0: by steps only) */
} vt_ckpt_policy;

#endif
