/* fuzz_hf_index.c — an HF checkpoint directory's model.safetensors.index.json (with a valid
 * config.json beside it): opened, and every tensor of the model looked up through the index. */
#include <stdio.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/hf_checkpoint.h"

static const char CONFIG[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 8, \"intermediate_size\": 16,"
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 2, \"num_hidden_layers\": 1,"
    " \"vocab_size\": 32, \"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-5, \"torch_dtype\": \"float32\"}";

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fz_write("config.json", (const uint8_t *)CONFIG, sizeof CONFIG - 1); /* once: no input changes it */
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_write("model.safetensors.index.json", data, size);
    vt_hf_checkpoint ck;
    if (vt_hf_open(&ck, fz_dir()) == 0) {
        for (size_t i = 0; i < ck.n_map; i++) vt_hf_file_of(&ck, ck.map[i].name);
        vt_hf_file_of(&ck, "model.embed_tokens.weight");
        vt_hf_close(&ck);
    }
    return 0;
}
