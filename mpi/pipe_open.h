/* pipe_open.h — a model opened as a pipeline on the world: its configuration, the split of its
 * layers into stages x replicas, the communicator over that split and this rank's part; eval and
 * generate open the whole of it, prune the split and communicator. */
#ifndef VT_PIPE_OPEN_H
#define VT_PIPE_OPEN_H

#include "dist/comm.h"
#include "nn/model.h"
#include "dist/partition.h"
#include "topology.h"

typedef struct {
    vt_config cfg;    /* the whole model's architecture */
    vt_topology topo; /* where this rank sits: stage, replica, layers */
    vt_comm comm;     /* over topo, which it points to: a vt_pipe stays where it was opened */
    vt_model part;    /* this rank's tensors (vt_pipe_open) */
    int have_cfg, have_topo, have_part;
} vt_pipe;

/* Reads the configuration of the model at path, splits its layers into `stages` stages
 * (0 = automatic) for `use`, has world rank 0 print the split for `command` (vt_topology_print)
 * and sets up the communicator. Collective, and agreed on: on failure every rank returns -1 with
 * nothing left open and the message printed once. */
int vt_pipe_layout(vt_pipe *p, const char *path, int stages, vt_partition_use use, const char *command);

/* vt_pipe_layout for inference, then `prepare` when not NULL (the command's own inputs, read
 * before the model so that a bad one is refused before the load; collective, agreeing on its
 * failures itself; it gets the model's configuration), then this rank's part of the model.
 * Collective and agreed on as vt_pipe_layout. */
int vt_pipe_open(vt_pipe *p, const char *path, int stages, const char *command,
                 int (*prepare)(const vt_config *c, void *arg), void *arg);

/* Frees what is open; safe after a failed vt_pipe_layout or vt_pipe_open, and twice. */
void vt_pipe_close(vt_pipe *p);

#endif
