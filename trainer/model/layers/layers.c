/* The layer table: one entry per layer type, each defined in its own file. */
#include "layer.h"

extern const layer_ops layer_flatten, layer_linear, layer_relu, layer_gelu, layer_dropout,
    layer_conv2d, layer_maxpool2d, layer_avgpool2d, layer_global_avgpool, layer_batchnorm2d,
    layer_residual_start, layer_residual_end, layer_embedding, layer_layernorm,
    layer_attention, layer_lm_head;

const layer_ops *const layer_table[LAYER_TYPE_COUNT] = {
    [LAYER_FLATTEN] = &layer_flatten,
    [LAYER_LINEAR] = &layer_linear,
    [LAYER_RELU] = &layer_relu,
    [LAYER_GELU] = &layer_gelu,
    [LAYER_DROPOUT] = &layer_dropout,
    [LAYER_CONV2D] = &layer_conv2d,
    [LAYER_MAXPOOL2D] = &layer_maxpool2d,
    [LAYER_AVGPOOL2D] = &layer_avgpool2d,
    [LAYER_GLOBAL_AVGPOOL] = &layer_global_avgpool,
    [LAYER_BATCHNORM2D] = &layer_batchnorm2d,
    [LAYER_RESIDUAL_START] = &layer_residual_start,
    [LAYER_RESIDUAL_END] = &layer_residual_end,
    [LAYER_EMBEDDING] = &layer_embedding,
    [LAYER_LAYERNORM] = &layer_layernorm,
    [LAYER_ATTENTION] = &layer_attention,
    [LAYER_LM_HEAD] = &layer_lm_head,
};
