/* pipe_open.c — opening a model as a pipeline (see pipe_open.h): configuration, split,
 * communicator and this rank's part, every step agreed on by all ranks. */
#include "pipe_open.h"

#include <string.h>

#include "io/checkpoint_config.h"
#include "comm_mpi.h"
#include "util/error.h"
#include "mpi_errors.h"

int vt_pipe_layout(vt_pipe *p, const char *path, int stages, vt_partition_use use, const char *command) {
    memset(p, 0, sizeof *p);
    int rc = vt_checkpoint_config(path, &p->cfg);
    p->have_cfg = rc == 0;
    if (vt_mpi_agree(rc, MPI_COMM_WORLD) || vt_topology_init(&p->topo, &p->cfg, stages, use)) {
        vt_pipe_close(p);
        return -1;
    }
    p->have_topo = 1;
    vt_topology_print(&p->topo, command);
    p->comm = vt_comm_mpi(&p->topo);
    return 0;
}

int vt_pipe_open(vt_pipe *p, const char *path, int stages, const char *command,
                 int (*prepare)(const vt_config *c, void *arg), void *arg) {
    if (vt_pipe_layout(p, path, stages, VT_PARTITION_INFER, command)) return -1;
    if (prepare && prepare(&p->cfg, arg)) {
        vt_pipe_close(p);
        return -1;
    }
    const vt_topology *t = &p->topo;
    int rc = vt_model_load(&p->part, path, vt_topology_parts(t));
    p->have_part = rc == 0;
    if (rc) vt_fail_context("stage %d loading layers %d-%d", t->stage, t->layer_begin, t->layer_end - 1);
    if (vt_comm_agree(&p->comm, rc)) {
        vt_pipe_close(p);
        return -1;
    }
    return 0;
}

void vt_pipe_close(vt_pipe *p) {
    if (p->have_part) vt_model_free(&p->part);
    if (p->have_topo) vt_topology_free(&p->topo);
    if (p->have_cfg) vt_config_free(&p->cfg);
    p->have_part = p->have_topo = p->have_cfg = 0;
}
