/* checkpoint_config.h — a checkpoint's configuration without its weights: what every rank reads
 * first to agree on a topology before each loads only its own part. */
#ifndef VT_CHECKPOINT_CONFIG_H
#define VT_CHECKPOINT_CONFIG_H

#include "nn/model.h"

/* The config of a llama2.c .bin (its header, checked against the file size) or an HF directory
 * (config.json; the weight files are located but not mapped). Free with vt_config_free. */
int vt_checkpoint_config(const char *path, vt_config *c);

#endif
