/* plugin_file.h — a Variator plugin's own file (DESIGN.md 1.2): one small safetensors file of the
 * plugin tensors with metadata naming its shape and the fingerprint of the base model's weights,
 * written atomically and refused on load when made for another model. */
#ifndef VT_PLUGIN_FILE_H
#define VT_PLUGIN_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "nn/model.h"
#include "nn/plugin.h"

#define VT_PLUGIN_FORMAT "vtrans-plugin"
#define VT_PLUGIN_VERSION 3 /* 2: no plugin in the model's last layer (nn/plugin.h); 3: exact_tail recorded */
#define VT_PLUGIN_ACTIVATION "silu"

/* The fingerprint of a model's weights: XXH64 of the fp32 bytes (little-endian) of every weight
 * tensor, as loaded (a pruned checkpoint has its own), combined with the shape. Its pieces can be
 * computed apart, each by the pipeline stage that holds the weights, and combined in order. */
uint64_t vt_xxh64(const void *data, size_t len, uint64_t seed);
uint64_t vt_fingerprint_embed(const vt_model *m);       /* needs has_embed */
uint64_t vt_fingerprint_layer(const vt_model *m, int l); /* layer l held by m */
uint64_t vt_fingerprint_head(const vt_model *m);         /* needs has_head: final norm, untied classifier */
uint64_t vt_fingerprint_combine(const vt_config *c, uint64_t embed, const uint64_t *layers, uint64_t head);
/* The whole model's (every layer, the embedding and the head held); fails naming what is missing. */
int vt_model_fingerprint(const vt_model *m, uint64_t *fingerprint);

/* What a plugin file's metadata says. */
typedef struct {
    int version, k, r, dim, n_layers;
    int exact_tail;          /* the prompt's last positions always run exactly (version 2: 1) */
    int *ffn;                /* [n_layers] the base model's FFN sizes, owned */
    uint64_t fingerprint;    /* of the base model */
    char base_model[1024];   /* the base model's path when the plugin was saved (informative) */
} vt_plugin_meta;

void vt_plugin_meta_free(vt_plugin_meta *meta);
/* Reads and checks the metadata of a plugin file (format, version, values well formed). */
int vt_plugin_file_meta(const char *path, vt_plugin_meta *meta);

/* Writes p, made for the model of config c and fingerprint fp (base_model: its path, recorded),
 * as path: F32 tensors layers.{l}.plugin.{score,w1,b1,w2,b2} for each layer with an FFN, written
 * under a temporary name next to path, synced, then renamed over it. */
int vt_plugin_save(const char *path, const vt_plugin *p, const vt_config *c, uint64_t fp, const char *base_model);
/* Loads the plugin at path for the model of config c and fingerprint fp (model_path names it in
 * errors) into p (allocated here). Refuses a plugin of another shape or another model's weights,
 * and files with missing, extra or misshapen tensors or bad metadata. */
int vt_plugin_load(const char *path, const vt_config *c, uint64_t fp, const char *model_path, vt_plugin *p);

#endif
