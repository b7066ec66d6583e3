/* config_keys: the key table and the text <-> field conversions behind it. */
#include "config_keys.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Enum fields are written and read as int. */
_Static_assert(sizeof(device_type) == sizeof(int), "enum fields must be int-sized");
_Static_assert(sizeof(optimizer_type) == sizeof(int), "enum fields must be int-sized");
_Static_assert(sizeof(schedule_type) == sizeof(int), "enum fields must be int-sized");
_Static_assert(sizeof(layer_type) == sizeof(int), "enum fields must be int-sized");
_Static_assert(sizeof(grad_dtype_type) == sizeof(int), "enum fields must be int-sized");

static const char *const device_names[] = {"auto", "cpu", "cuda", NULL};
static const char *const optimizer_names[] = {"sgd", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "cosine", "linear", NULL};
static const char *const precision_names[] = {"fp32", "tf32", "bf16", NULL};
static const char *const epilogue_names[] = {"fused", "separate", NULL};
static const char *const nonfinite_names[] = {"stop", "skip", NULL};
static const char *const grad_dtype_names[] = {"fp32", "bf16", NULL};
static const char *const init_names[] = {"kaiming_uniform", "normal", NULL};
const char *const config_layer_names[] = {"flatten", "linear", "relu", "gelu", "dropout",
                                          "conv2d", "maxpool2d", "avgpool2d", "global_avgpool",
                                          "batchnorm2d", "residual_start", "residual_end",
                                          "embedding", "layernorm", "attention", "lm_head", NULL};
_Static_assert(sizeof config_layer_names / sizeof config_layer_names[0] == LAYER_TYPE_COUNT + 1,
               "a name for every layer type");

const char *const config_sections[] = {"run", "data", "model", "train", "log", "comm",
                                       "checkpoint", NULL};
const size_t config_n_sections = sizeof config_sections / sizeof config_sections[0] - 1;

#define FIELD(f) .offset = offsetof(config, f), .size = sizeof(((config *)0)->f)
#define LAYER_FIELD(f) .offset = offsetof(layer_config, f), .size = sizeof(((layer_config *)0)->f)

/* Upper bounds keep the trainer's obvious arithmetic (cache_mb << 20, batch_size * sample
 * bytes, bucket_kb * 1024, out * in) far from overflow. */
const config_key config_keys[] = {
    {.name = "run.dir", .kind = CK_STRING, FIELD(run_dir),
     .def = "runs/default", .help = "where config.yaml, metrics.jsonl and checkpoints go"},
    {.name = "run.seed", .kind = CK_U64, FIELD(seed),
     .def = "42", .help = "seeds the initial weights, the data order and dropout"},
    {.name = "run.device", .kind = CK_ENUM, FIELD(device), .names = device_names,
     .def = "auto", .help = "compute backend; auto = cuda when a GPU is visible"},
    {.name = "run.threads", .kind = CK_INT, FIELD(threads), .imin = 0, .imax = INT_MAX,
     .def = "0", .help = "BLAS threads per rank; 0 = its bound cores, else cores / ranks"},
    {.name = "run.precision", .kind = CK_ENUM, FIELD(precision), .names = precision_names,
     .def = "fp32", .help = "GEMM inputs: GPUs; bf16 also on CPUs with AMX (master weights fp32)"},
    {.name = "run.gemm_epilogues", .kind = CK_ENUM, FIELD(gemm_epilogues), .names = epilogue_names,
     .def = "fused", .help = "bias, relu/gelu, bias gradient in cuBLASLt GEMMs or separate"},
    {.name = "run.cuda_graph", .kind = CK_BOOL, FIELD(cuda_graph),
     .def = "true", .help = "record one GPU's step once and replay it"},

    {.name = "data.train", .kind = CK_STRING, FIELD(train_path),
     .def = "datasets/fashion-mnist/train.h5",
     .help = "the training set (HDF5: images and labels, or tokens)"},
    {.name = "data.test", .kind = CK_STRING, FIELD(test_path),
     .def = "datasets/fashion-mnist/test.h5", .help = "the evaluation set; empty = no evaluation"},
    {.name = "data.cache_mb", .kind = CK_I64, FIELD(cache_mb), .imin = 0, .imax = INT64_C(1) << 30,
     .def = "2048", .help = "keep a dataset in memory when it fits in this many MiB"},
    {.name = "data.shuffle", .kind = CK_BOOL, FIELD(shuffle),
     .def = "true", .help = "a new permutation of the samples every epoch"},
    {.name = "data.normalize", .kind = CK_BOOL, FIELD(normalize),
     .def = "true", .help = "use the file's mean/std attributes (or the data's own)"},
    {.name = "data.augment_pad", .kind = CK_INT, FIELD(augment_pad), .imin = 0, .imax = 1024,
     .def = "0", .help = "random crop after this much zero padding (0 = off)"},
    {.name = "data.augment_hflip", .kind = CK_BOOL, FIELD(augment_hflip),
     .def = "false", .help = "random horizontal flips"},

    {.name = "model.layers", .kind = CK_LAYERS, FIELD(layers),
     /* an MLP: [B,28,28] -> flatten [B,784] -> 256 -> 128 -> 10 logits */
     .def = "[{type: flatten}, {type: linear, out: 256}, {type: relu},"
            " {type: linear, out: 128}, {type: relu}, {type: linear, out: 10}]",
     .help = "the model as a list of layers (types and their keys below)"},
    {.name = "model.init", .kind = CK_NAME, FIELD(init), .names = init_names,
     .def = "kaiming_uniform", .help = "weight initialisation (kaiming_uniform: PyTorch's nn.Linear)"},
    {.name = "model.init_from", .kind = CK_STRING, FIELD(init_from),
     .def = "", .help = "a checkpoint whose parameters the run starts from (fresh optimizer, step 0)"},
    {.name = "model.gpt", .kind = CK_GROUP,
     .help = "a GPT-2 style transformer that replaces model.layers when model.gpt.layers > 0"},
    {.name = "model.gpt.layers", .kind = CK_INT, FIELD(gpt_layers), .imin = 0, .imax = 4096,
     .def = "0", .help = "transformer blocks; 0 = off (model.layers is the model)"},
    {.name = "model.gpt.heads", .kind = CK_INT, FIELD(gpt_heads), .imin = 1, .imax = 4096,
     .def = "12", .help = "attention heads (divide model.gpt.dim)"},
    {.name = "model.gpt.dim", .kind = CK_INT, FIELD(gpt_dim), .imin = 1, .imax = 1 << 16,
     .def = "768", .help = "embedding width"},
    {.name = "model.gpt.context", .kind = CK_INT, FIELD(gpt_context), .imin = 1, .imax = 1 << 20,
     .def = "1024", .help = "sequence length (positions)"},
    {.name = "model.gpt.dropout", .kind = CK_FLOAT, FIELD(gpt_dropout), .fmin = 0, .fmax = 1, .fmax_open = 1,
     .def = "0", .help = "dropout on the embeddings and the residual branches"},
    {.name = "model.gpt.bias", .kind = CK_BOOL, FIELD(gpt_bias),
     .def = "true", .help = "biases in the linear layers and layer norms"},
    {.name = "model.gpt.tie_embeddings", .kind = CK_BOOL, FIELD(gpt_tie),
     .def = "true", .help = "the language-model head reuses the token embedding"},

    {.name = "train.epochs", .kind = CK_I64, FIELD(epochs), .imin = 0, .imax = INT64_MAX,
     .def = "10", .help = "passes over the training set (when train.steps is 0)"},
    {.name = "train.steps", .kind = CK_I64, FIELD(steps), .imin = 0, .imax = INT64_MAX,
     .def = "0", .help = "optimizer steps; 0 = from train.epochs"},
    {.name = "train.batch_size", .kind = CK_I64, FIELD(batch_size), .imin = 1, .imax = INT32_MAX,
     .def = "128", .help = "GLOBAL samples per step, split over ranks and micro-steps"},
    {.name = "train.grad_accum", .kind = CK_INT, FIELD(grad_accum), .imin = 1, .imax = INT_MAX,
     .def = "1", .help = "micro-steps per optimizer step"},
    {.name = "train.optimizer", .kind = CK_ENUM, FIELD(optimizer), .names = optimizer_names,
     .def = "adamw", .help = "the optimizer"},
    {.name = "train.lr", .kind = CK_FLOAT, FIELD(lr), .fmin = 0, .fmin_open = 1, .fmax = INFINITY,
     .def = "0.001", .help = "peak learning rate"},
    {.name = "train.momentum", .kind = CK_FLOAT, FIELD(momentum), .fmin = 0, .fmax = 1, .fmax_open = 1,
     .def = "0.9", .help = "sgd: momentum"},
    {.name = "train.nesterov", .kind = CK_BOOL, FIELD(nesterov),
     .def = "false", .help = "sgd: Nesterov momentum"},
    {.name = "train.beta1", .kind = CK_FLOAT, FIELD(beta1), .fmin = 0, .fmax = 1, .fmax_open = 1,
     .def = "0.9", .help = "adamw: first-moment decay"},
    {.name = "train.beta2", .kind = CK_FLOAT, FIELD(beta2), .fmin = 0, .fmax = 1, .fmax_open = 1,
     .def = "0.999", .help = "adamw: second-moment decay"},
    {.name = "train.eps", .kind = CK_FLOAT, FIELD(eps), .fmin = 0, .fmin_open = 1, .fmax = INFINITY,
     .def = "1e-8", .help = "adamw: added to the denominator"},
    {.name = "train.weight_decay", .kind = CK_FLOAT, FIELD(weight_decay), .fmin = 0, .fmax = INFINITY,
     .def = "0", .help = "weight decay, as PyTorch's AdamW and SGD apply it"},
    {.name = "train.clip_grad_norm", .kind = CK_FLOAT, FIELD(clip_grad_norm), .fmin = 0, .fmax = INFINITY,
     .def = "0", .help = "clip the global gradient norm to this; 0 = off"},
    {.name = "train.schedule", .kind = CK_ENUM, FIELD(schedule), .names = schedule_names,
     .def = "cosine", .help = "learning-rate decay after the warm-up"},
    {.name = "train.warmup_steps", .kind = CK_I64, FIELD(warmup_steps), .imin = 0, .imax = INT64_MAX,
     .def = "0", .help = "linear warm-up from 0 to train.lr over this many steps"},
    {.name = "train.min_lr", .kind = CK_FLOAT, FIELD(min_lr), .fmin = 0, .fmax = INFINITY,
     .def = "0", .help = "floor of the decay"},
    {.name = "train.nonfinite", .kind = CK_ENUM, FIELD(nonfinite), .names = nonfinite_names,
     .def = "stop", .help = "NaN/Inf gradients: stop (naming step, layer, rank) or skip the step"},
    {.name = "train.zero_stage", .kind = CK_INT, FIELD(zero_stage), .imin = 0, .imax = 1,
     .def = "0", .help = "0: every rank holds all optimizer state; 1: sharded (ZeRO-1)"},

    {.name = "log.every", .kind = CK_I64, FIELD(log_every), .imin = 1, .imax = INT64_MAX,
     .def = "100", .help = "steps between progress lines and metrics records"},
    {.name = "log.eval_every", .kind = CK_I64, FIELD(eval_every), .imin = 0, .imax = INT64_MAX,
     .def = "0", .help = "steps between evaluations; 0 = at the end only"},
    {.name = "log.progress", .kind = CK_TRISTATE, FIELD(progress),
     .def = "auto", .help = "redraw the progress line in place (auto: on a terminal)"},
    {.name = "log.plot", .kind = CK_BOOL, FIELD(plot),
     .def = "false", .help = "write RUN_DIR/metrics.png at the end"},
    {.name = "log.tensorboard", .kind = CK_BOOL, FIELD(tensorboard),
     .def = "false", .help = "write RUN_DIR/events.out.tfevents.* (TensorBoard scalars)"},
    {.name = "log.trace", .kind = CK_BOOL, FIELD(trace),
     .def = "false", .help = "write RUN_DIR/trace.json of some steps"},
    {.name = "log.trace_start", .kind = CK_I64, FIELD(trace_start), .imin = 1, .imax = INT64_MAX,
     .def = "11", .help = "the first traced step (1-based; past the warm-up)"},
    {.name = "log.trace_steps", .kind = CK_I64, FIELD(trace_steps), .imin = 1, .imax = 10000,
     .def = "5", .help = "how many steps are traced"},
    {.name = "log.straggler_pct", .kind = CK_FLOAT, FIELD(straggler_pct), .fmin = 0, .fmin_open = 1, .fmax = 1e6,
     .def = "20", .help = "name a rank this many % slower than the median of the others..."},
    {.name = "log.straggler_intervals", .kind = CK_INT, FIELD(straggler_intervals), .imin = 1, .imax = 1000000,
     .def = "3", .help = "...for this many log intervals in a row"},

    {.name = "comm.bucket_kb", .kind = CK_I64, FIELD(bucket_kb), .imin = 1, .imax = INT64_C(1) << 22,
     .def = "1024", .help = "gradient all-reduce bucket size in KiB"},
    {.name = "comm.shared_memory", .kind = CK_BOOL, FIELD(shared_memory),
     .def = "true", .help = "ranks all on one node average host gradients through shared memory"},
    {.name = "comm.window_mb", .kind = CK_I64, FIELD(window_mb), .imin = 1, .imax = INT64_C(1) << 30,
     .def = "1024", .help = "that window's memory beyond the gradients, per node (MiB); else rounds"},
    {.name = "comm.hierarchical", .kind = CK_BOOL, FIELD(hierarchical),
     .def = "true", .help = "across nodes: node shared memory, then MPI between the nodes"},
    {.name = "comm.timeout_s", .kind = CK_FLOAT, FIELD(comm_timeout_s), .fmin = 0, .fmax = 1e6,
     .def = "30", .help = "watchdog: a collective waiting longer ends the job; 0 = off"},
    {.name = "comm.heartbeat_s", .kind = CK_FLOAT, FIELD(comm_heartbeat_s), .fmin = 0, .fmax = 1e6,
     .def = "5", .help = "across nodes: a node silent this long is lost (exit 76); 0 = off"},
    {.name = "comm.check_fingerprints", .kind = CK_BOOL, FIELD(check_fingerprints),
     .def = "false", .help = "debug: compare every collective across ranks"},
    {.name = "comm.grad_dtype", .kind = CK_ENUM, FIELD(grad_dtype), .names = grad_dtype_names,
     .def = "fp32", .help = "gradients on the wire (bf16: half the bytes)"},

    {.name = "checkpoint.dir", .kind = CK_STRING, FIELD(ckpt_dir),
     .def = "", .help = "where checkpoints go; empty = RUN_DIR/checkpoints"},
    {.name = "checkpoint.every", .kind = CK_I64, FIELD(ckpt_every), .imin = 0, .imax = INT64_MAX,
     .def = "0", .help = "steps between checkpoints; 0 = at the end only"},
    {.name = "checkpoint.keep", .kind = CK_INT, FIELD(ckpt_keep), .imin = 1, .imax = 1000000,
     .def = "3", .help = "the newest this many checkpoints are kept"},
    {.name = "checkpoint.timeout_s", .kind = CK_FLOAT, FIELD(ckpt_timeout_s), .fmin = 0, .fmax = 1e6,
     .def = "600", .help = "how long the other ranks wait for rank 0's write"},
    {.name = "checkpoint.async", .kind = CK_BOOL, FIELD(ckpt_async),
     .def = "true", .help = "periodic saves copied to host memory and written by a background "
                            "thread while training goes on; false: the step loop waits for the write"},
    {.name = "checkpoint.writers", .kind = CK_INT, FIELD(ckpt_writers), .imin = 0, .imax = 1,
     .def = "0", .help = "0: every rank writes its slice into a part file of its own and rank 0 "
                         "a file that maps them (HDF5 virtual datasets; one rank: one plain file); "
                         "1: rank 0 writes the whole file"},
};
const size_t config_n_keys = sizeof config_keys / sizeof config_keys[0];
_Static_assert(sizeof config_keys / sizeof config_keys[0] <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

const config_key config_layer_keys[] = {
    {.name = "type", .kind = CK_ENUM, LAYER_FIELD(type), .names = config_layer_names,
     .help = "the layer's type (above)"},
    {.name = "out", .kind = CK_INT, LAYER_FIELD(out), .imin = 1, .imax = 1 << 24,
     .help = "linear: output features; conv2d: output channels; embedding: width"},
    {.name = "bias", .kind = CK_BOOL, LAYER_FIELD(bias),
     .def = "true", .help = "linear, conv2d, layernorm: an additive bias"},
    {.name = "p", .kind = CK_FLOAT, LAYER_FIELD(p), .fmin = 0, .fmax = 1, .fmax_open = 1,
     .def = "0.5", .help = "dropout: probability of zeroing an element"},
    {.name = "kernel", .kind = CK_INT, LAYER_FIELD(kernel), .imin = 1, .imax = 1024,
     .help = "conv2d, pools: square window size"},
    {.name = "stride", .kind = CK_INT, LAYER_FIELD(stride), .imin = 1, .imax = 1024,
     .def = "1", .help = "conv2d: step of the window; pools: default = kernel"},
    {.name = "padding", .kind = CK_INT, LAYER_FIELD(padding), .imin = 0, .imax = 1024,
     .def = "0", .help = "conv2d, pools: zeros added on each side"},
    {.name = "dilation", .kind = CK_INT, LAYER_FIELD(dilation), .imin = 1, .imax = 1024,
     .def = "1", .help = "conv2d: spacing of the window's taps"},
    {.name = "groups", .kind = CK_INT, LAYER_FIELD(groups), .imin = 1, .imax = 1 << 16,
     .def = "1", .help = "conv2d: channels split into this many independent groups"},
    {.name = "eps", .kind = CK_FLOAT, LAYER_FIELD(eps), .fmin = 0, .fmin_open = 1, .fmax = 1,
     .def = "1e-5", .help = "batchnorm2d, layernorm: added to the variance"},
    {.name = "momentum", .kind = CK_FLOAT, LAYER_FIELD(momentum), .fmin = 0, .fmax = 1,
     .def = "0.1", .help = "batchnorm2d: update rate of the running statistics"},
    {.name = "sync", .kind = CK_BOOL, LAYER_FIELD(sync),
     .def = "false", .help = "batchnorm2d: statistics over the global batch (all ranks), not per rank"},
    {.name = "project", .kind = CK_BOOL, LAYER_FIELD(project),
     .def = "false", .help = "residual_end: a strided 1x1 convolution on the shortcut (shape changes)"},
    {.name = "heads", .kind = CK_INT, LAYER_FIELD(heads), .imin = 1, .imax = 4096,
     .help = "attention: number of heads (divides the features)"},
    {.name = "context", .kind = CK_INT, LAYER_FIELD(context), .imin = 0, .imax = 1 << 20,
     .def = "0", .help = "embedding: positions of a learned position embedding; 0 = none"},
    {.name = "tie", .kind = CK_BOOL, LAYER_FIELD(tie),
     .def = "true", .help = "lm_head: reuse the token embedding's weight"},
};
const size_t config_n_layer_keys = sizeof config_layer_keys / sizeof config_layer_keys[0];
_Static_assert(sizeof config_layer_keys / sizeof config_layer_keys[0] == LAYER_KEY_COUNT,
               "config_layer_keys follows the LAYER_KEY_* order");

#define K(key) (1u << LAYER_KEY_##key)
const layer_key_rule config_layer_rules[LAYER_TYPE_COUNT] = {
    [LAYER_FLATTEN] = {K(TYPE), K(TYPE)},
    [LAYER_LINEAR] = {K(TYPE) | K(OUT) | K(BIAS), K(TYPE) | K(OUT)},
    [LAYER_RELU] = {K(TYPE), K(TYPE)},
    [LAYER_GELU] = {K(TYPE), K(TYPE)},
    [LAYER_DROPOUT] = {K(TYPE) | K(P), K(TYPE)},
    [LAYER_CONV2D] = {K(TYPE) | K(OUT) | K(BIAS) | K(KERNEL) | K(STRIDE) | K(PADDING) |
                      K(DILATION) | K(GROUPS), K(TYPE) | K(OUT) | K(KERNEL)},
    [LAYER_MAXPOOL2D] = {K(TYPE) | K(KERNEL) | K(STRIDE) | K(PADDING), K(TYPE) | K(KERNEL)},
    [LAYER_AVGPOOL2D] = {K(TYPE) | K(KERNEL) | K(STRIDE) | K(PADDING), K(TYPE) | K(KERNEL)},
    [LAYER_GLOBAL_AVGPOOL] = {K(TYPE), K(TYPE)},
    [LAYER_BATCHNORM2D] = {K(TYPE) | K(EPS) | K(MOMENTUM) | K(SYNC), K(TYPE)},
    [LAYER_RESIDUAL_START] = {K(TYPE), K(TYPE)},
    [LAYER_RESIDUAL_END] = {K(TYPE) | K(PROJECT), K(TYPE)},
    [LAYER_EMBEDDING] = {K(TYPE) | K(OUT) | K(CONTEXT), K(TYPE) | K(OUT)},
    [LAYER_LAYERNORM] = {K(TYPE) | K(EPS) | K(BIAS), K(TYPE)},
    [LAYER_ATTENTION] = {K(TYPE) | K(HEADS), K(TYPE) | K(HEADS)},
    [LAYER_LM_HEAD] = {K(TYPE) | K(TIE), K(TYPE)},
};
#undef K

const char *const config_layer_help[LAYER_TYPE_COUNT] = {
    [LAYER_FLATTEN] = "[B, ...] -> [B, features]",
    [LAYER_LINEAR] = "y = x W^T + b; takes any input as a vector",
    [LAYER_RELU] = "max(x, 0)",
    [LAYER_GELU] = "GELU, tanh approximation",
    [LAYER_DROPOUT] = "zeroes elements with probability p in training, scales the rest",
    [LAYER_CONV2D] = "2-D convolution over [B,C,H,W] ([B,H,W] is one channel)",
    [LAYER_MAXPOOL2D] = "maximum over each window",
    [LAYER_AVGPOOL2D] = "mean over each window (padding counted)",
    [LAYER_GLOBAL_AVGPOOL] = "[B,C,H,W] -> [B,C]: mean over each channel",
    [LAYER_BATCHNORM2D] = "per-channel batch normalisation with running statistics",
    [LAYER_RESIDUAL_START] = "remembers its input for the next residual_end",
    [LAYER_RESIDUAL_END] = "adds the input remembered by residual_start (blocks do not nest)",
    [LAYER_EMBEDDING] = "token ids [B,T] -> [B,T,out]; learned positions when context > 0",
    [LAYER_LAYERNORM] = "normalises the last dimension",
    [LAYER_ATTENTION] = "causal self-attention over a fused [B,T,3C] q/k/v projection",
    [LAYER_LM_HEAD] = "[B,T,C] -> logits over the vocabulary",
};

void config_key_set_default(const config_key *k, void *base) {
    char err[512];
    if (k->def == NULL ||
        config_key_parse(k, base, k->name, k->def, strlen(k->def), 1, err, sizeof err) != 0) {
        fprintf(stderr, "harness: bug in config_keys.c: the default of '%s' does not parse: %s\n",
                k->name, k->def ? err : "no default");
        abort();
    }
}

void config_layer_fill_defaults(layer_config *l, unsigned given) {
    int pool = l->type == LAYER_MAXPOOL2D || l->type == LAYER_AVGPOOL2D;
    unsigned takes = (int)l->type >= 0 && l->type < LAYER_TYPE_COUNT ? config_layer_rules[l->type].takes : 1u;
    for (size_t i = 1; i < config_n_layer_keys; i++) {
        const config_key *k = &config_layer_keys[i];
        char *field = (char *)l + k->offset;
        if (!(takes & (1u << i)) || (!(given & (1u << i)) && k->def == NULL))
            memset(field, 0, k->size);   /* not this type's, or a key it must be given */
        else if (!(given & (1u << i)))
            config_key_set_default(k, l);
    }
    if (pool && !(given & (1u << LAYER_KEY_STRIDE))) l->stride = l->kernel;   /* as PyTorch */
}

void config_layer_describe_keys(layer_type t, char *buf, size_t n) {
    unsigned takes = (int)t >= 0 && t < LAYER_TYPE_COUNT ? config_layer_rules[t].takes : 1u;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < config_n_layer_keys && used < n; i++)
        if (takes & (1u << i))
            used += (size_t)snprintf(buf + used, n - used, "%s%s", used ? ", " : "",
                                     config_layer_keys[i].name);
}

const config_key *config_key_find(const config_key *keys, size_t n, const char *name, size_t len) {
    for (size_t i = 0; i < n; i++)
        if (strlen(keys[i].name) == len && memcmp(keys[i].name, name, len) == 0) return &keys[i];
    return NULL;
}

/* ---- reading scalars ---------------------------------------------------------------------- */

static int equals_nocase(const char *text, size_t len, const char *word) {
    if (strlen(word) != len) return 0;
    for (size_t i = 0; i < len; i++) {
        char a = text[i], b = word[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (a != b) return 0;
    }
    return 1;
}

/* 1 true, 0 false, -1 not a boolean (YAML 1.1 spellings, any case). */
static int parse_bool(const char *text, size_t len) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (equals_nocase(text, len, yes[i])) return 1;
        if (equals_nocase(text, len, no[i])) return 0;
    }
    return -1;
}

enum { PARSED_OK = 0, PARSED_NOT_INTEGER = 1, PARSED_OVERFLOW = 2 };

/* Decimal digits with an optional sign, nothing else (no fractions, exponents, hex, spaces). */
static int parse_integer(const char *text, size_t len, int64_t *out_signed, uint64_t *out_unsigned) {
    size_t i = 0;
    int negative = 0;
    if (i < len && (text[i] == '+' || text[i] == '-')) {
        negative = text[i] == '-';
        i++;
    }
    if (i == len) return PARSED_NOT_INTEGER;
    uint64_t v = 0;
    int overflow = 0;
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9') return PARSED_NOT_INTEGER;
        unsigned d = (unsigned)(text[i] - '0');
        if (v > (UINT64_MAX - d) / 10) overflow = 1;
        else v = v * 10 + d;
    }
    if (overflow) return PARSED_OVERFLOW;
    if (out_unsigned) {  /* CK_U64: "-5" is out of range, "-0" is 0 */
        if (negative && v != 0) return PARSED_OVERFLOW;
        *out_unsigned = v;
        return PARSED_OK;
    }
    if (negative) {
        if (v > (uint64_t)INT64_MAX + 1) return PARSED_OVERFLOW;
        *out_signed = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return PARSED_OVERFLOW;
        *out_signed = (int64_t)v;
    }
    return PARSED_OK;
}

int config_parse_float(const char *text, size_t len, float *out) {
    char buf[128];
    if (len == 0 || len >= sizeof buf) return -1;
    if (memchr(text, '\0', len)) return -1;
    if (text[0] == ' ' || text[0] == '\t' || text[0] == '\n' || text[0] == '\r' ||
        text[0] == '\v' || text[0] == '\f')
        return -1;  /* strtod would skip it */
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end = NULL;
    double d = strtod(buf, &end);  /* ERANGE underflow gives 0 or a subnormal: accepted */
    /* below the midpoint between FLT_MAX and 2^128 the conversion rounds to a finite float */
    if (end != buf + len || !isfinite(d) || fabs(d) >= 0x1.ffffffp+127) return -1;
    *out = (float)d;
    return 0;
}

static int float_in_range(const config_key *k, float f) {
    if (!isfinite(f)) return 0;
    if (k->fmin_open ? !(f > k->fmin) : !(f >= k->fmin)) return 0;
    if (k->fmax_open ? !(f < k->fmax) : !(f <= k->fmax)) return 0;
    return 1;
}

static int name_index(const char *const *names, const char *text, size_t len) {
    for (int i = 0; names[i]; i++)
        if (strlen(names[i]) == len && memcmp(names[i], text, len) == 0) return i;
    return -1;
}

static int is_yaml_null(const char *text, size_t len) {
    return (len == 1 && text[0] == '~') || (len == 4 && (memcmp(text, "null", 4) == 0 ||
                                                         memcmp(text, "Null", 4) == 0 ||
                                                         memcmp(text, "NULL", 4) == 0));
}

static int expected(const config_key *k, const char *display, const char *text, size_t len,
                    const char *extra, char *err, size_t errlen) {
    char what[320], got[64];
    config_key_describe(k, what, sizeof what);
    config_quote_input(text, len, got, sizeof got);
    snprintf(err, errlen, "%s: expected %s, got '%s'%s", display, what, got, extra);
    return -1;
}

int config_key_parse(const config_key *k, void *base, const char *display, const char *text,
                     size_t len, int plain, char *err, size_t errlen) {
    char *field = (char *)base + k->offset;
    switch (k->kind) {
    case CK_STRING:
    case CK_NAME: {
        if (k->kind == CK_STRING && plain && is_yaml_null(text, len)) len = 0;
        if (memchr(text, '\0', len)) return expected(k, display, text, len, " (a NUL byte)", err, errlen);
        if (len >= k->size) {
            char extra[48];
            snprintf(extra, sizeof extra, " (%zu bytes)", len);
            return expected(k, display, text, len, extra, err, errlen);
        }
        if (k->kind == CK_NAME && name_index(k->names, text, len) < 0)
            return expected(k, display, text, len, "", err, errlen);
        memset(field, 0, k->size);
        memcpy(field, text, len);
        return 0;
    }
    case CK_INT:
    case CK_I64: {
        int64_t v = 0;
        int rc = parse_integer(text, len, &v, NULL);
        if (rc == PARSED_NOT_INTEGER) return expected(k, display, text, len, "", err, errlen);
        if (rc == PARSED_OVERFLOW || v < k->imin || v > k->imax)  /* "an integer >= 1" hides the max */
            return expected(k, display, text, len, rc == PARSED_OVERFLOW ? " (out of range)"
                                                   : v > k->imax ? " (too large)" : "", err, errlen);
        if (k->kind == CK_INT) {
            int i = (int)v;
            memcpy(field, &i, sizeof i);
        } else {
            memcpy(field, &v, sizeof v);
        }
        return 0;
    }
    case CK_U64: {
        uint64_t v = 0;
        int rc = parse_integer(text, len, NULL, &v);
        if (rc != PARSED_OK)
            return expected(k, display, text, len, rc == PARSED_OVERFLOW ? " (out of range)" : "",
                            err, errlen);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CK_FLOAT: {
        float f = 0;
        if (config_parse_float(text, len, &f) != 0 || !float_in_range(k, f))
            return expected(k, display, text, len, "", err, errlen);
        memcpy(field, &f, sizeof f);
        return 0;
    }
    case CK_BOOL: {
        int b = parse_bool(text, len);
        if (b < 0) return expected(k, display, text, len, "", err, errlen);
        memcpy(field, &b, sizeof b);
        return 0;
    }
    case CK_ENUM: {
        int i = name_index(k->names, text, len);
        if (i < 0) return expected(k, display, text, len, "", err, errlen);
        memcpy(field, &i, sizeof i);
        return 0;
    }
    case CK_TRISTATE: {
        int is_auto = len == 4 && memcmp(text, "auto", 4) == 0;
        int v = is_auto ? -1 : parse_bool(text, len);
        if (!is_auto && v < 0) return expected(k, display, text, len, "", err, errlen);
        memcpy(field, &v, sizeof v);
        return 0;
    }
    case CK_LAYERS:
    case CK_GROUP:
        return expected(k, display, text, len, "", err, errlen);
    }
    return expected(k, display, text, len, "", err, errlen);
}

/* ---- checking fields (config_validate) ---------------------------------------------------- */

int config_key_check(const config_key *k, const void *base, const char *display, char *err,
                     size_t errlen) {
    const char *field = (const char *)base + k->offset;
    int ok = 1;
    switch (k->kind) {
    case CK_STRING:
        ok = memchr(field, '\0', k->size) != NULL;
        break;
    case CK_NAME:
        ok = memchr(field, '\0', k->size) != NULL && name_index(k->names, field, strlen(field)) >= 0;
        break;
    case CK_INT: {
        int v;
        memcpy(&v, field, sizeof v);
        ok = v >= k->imin && v <= k->imax;
        break;
    }
    case CK_I64: {
        int64_t v;
        memcpy(&v, field, sizeof v);
        ok = v >= k->imin && v <= k->imax;
        break;
    }
    case CK_U64:
    case CK_LAYERS:
    case CK_GROUP:
        break;
    case CK_FLOAT: {
        float f;
        memcpy(&f, field, sizeof f);
        ok = float_in_range(k, f);
        break;
    }
    case CK_BOOL:
    case CK_TRISTATE: {
        int v;
        memcpy(&v, field, sizeof v);
        ok = v == 0 || v == 1 || (k->kind == CK_TRISTATE && v == -1);
        break;
    }
    case CK_ENUM: {
        int v, n = 0;
        memcpy(&v, field, sizeof v);
        while (k->names[n]) n++;
        ok = v >= 0 && v < n;
        break;
    }
    }
    if (ok) return 0;
    char text[64];
    if (k->kind == CK_STRING || k->kind == CK_NAME) {
        size_t len = strnlen(field, k->size);
        return expected(k, display, field, len, len == k->size ? " (not terminated)" : "", err, errlen);
    }
    config_key_format(k, base, text, sizeof text);
    return expected(k, display, text, strlen(text), "", err, errlen);
}

/* ---- describing and writing --------------------------------------------------------------- */

static void describe_names(const char *const *names, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "one of");
    for (int i = 0; names[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s %s", i ? "," : "", names[i]);
}

void config_key_describe(const config_key *k, char *buf, size_t n) {
    switch (k->kind) {
    case CK_STRING:
        snprintf(buf, n, "a string shorter than %zu bytes", k->size);
        return;
    case CK_NAME:
    case CK_ENUM:
        describe_names(k->names, buf, n);
        return;
    case CK_INT:
    case CK_I64:
        if (k->imax == (k->kind == CK_INT ? INT_MAX : INT64_MAX))
            snprintf(buf, n, "an integer >= %" PRId64, k->imin);
        else
            snprintf(buf, n, "an integer in [%" PRId64 ", %" PRId64 "]", k->imin, k->imax);
        return;
    case CK_U64:
        snprintf(buf, n, "an integer in [0, %" PRIu64 "]", UINT64_MAX);
        return;
    case CK_FLOAT:
        if (isinf(k->fmax))
            snprintf(buf, n, "a number %s %g", k->fmin_open ? ">" : ">=", k->fmin);
        else
            snprintf(buf, n, "a number in %c%g, %g%c", k->fmin_open ? '(' : '[', k->fmin, k->fmax,
                     k->fmax_open ? ')' : ']');
        return;
    case CK_BOOL:
        snprintf(buf, n, "true or false");
        return;
    case CK_TRISTATE:
        snprintf(buf, n, "one of auto, true, false");
        return;
    case CK_LAYERS:
        snprintf(buf, n, "a sequence of layers like [{type: linear, out: 10}]");
        return;
    case CK_GROUP:
        snprintf(buf, n, "a mapping like {layers: 12, heads: 12, dim: 768, context: 1024}");
        return;
    }
    snprintf(buf, n, "a value");
}

void config_format_float(float f, char *buf, size_t n) {
    if (!isfinite(f)) {
        snprintf(buf, n, "%g", (double)f);
        return;
    }
    char try[32];
    int precision = 1;
    for (; precision <= 9; precision++) {
        float back;
        snprintf(buf, n, "%.*g", precision, (double)f);
        if (config_parse_float(buf, strlen(buf), &back) == 0 && memcmp(&back, &f, sizeof f) == 0)
            break;
    }
    /* "1e+02" round-trips with one digit; "100" reads better when it is as exact. */
    for (int p = precision + 1; strchr(buf, 'e') && p <= 9; p++) {
        float back;
        snprintf(try, sizeof try, "%.*g", p, (double)f);
        if (!strchr(try, 'e') && config_parse_float(try, strlen(try), &back) == 0 &&
            memcmp(&back, &f, sizeof f) == 0)
            snprintf(buf, n, "%s", try);
    }
    /* "1e-08" -> "1.0e-08": YAML 1.1 readers (PyYAML) take an exponent without a dot for a
     * string, and the checkpoint's config text should load as numbers there too. */
    char *e = strchr(buf, 'e');
    if (e && !strchr(buf, '.') && strlen(buf) + 3 <= n) {
        snprintf(try, sizeof try, "%.*s.0%s", (int)(e - buf), buf, e);
        snprintf(buf, n, "%s", try);
    }
}

void config_key_format(const config_key *k, const void *base, char *buf, size_t n) {
    const char *field = (const char *)base + k->offset;
    int v = 0;
    switch (k->kind) {
    case CK_STRING:
    case CK_NAME:
        snprintf(buf, n, "%.*s", (int)strnlen(field, k->size), field);
        return;
    case CK_INT:
        memcpy(&v, field, sizeof v);
        snprintf(buf, n, "%d", v);
        return;
    case CK_I64: {
        int64_t i;
        memcpy(&i, field, sizeof i);
        snprintf(buf, n, "%" PRId64, i);
        return;
    }
    case CK_U64: {
        uint64_t u;
        memcpy(&u, field, sizeof u);
        snprintf(buf, n, "%" PRIu64, u);
        return;
    }
    case CK_FLOAT: {
        float f;
        memcpy(&f, field, sizeof f);
        config_format_float(f, buf, n);
        return;
    }
    case CK_BOOL:
    case CK_TRISTATE:
        memcpy(&v, field, sizeof v);
        if (v == 0 || v == 1) snprintf(buf, n, "%s", v ? "true" : "false");
        else if (v == -1 && k->kind == CK_TRISTATE) snprintf(buf, n, "auto");
        else snprintf(buf, n, "%d", v);
        return;
    case CK_ENUM: {
        int count = 0;
        memcpy(&v, field, sizeof v);
        while (k->names[count]) count++;
        if (v >= 0 && v < count) snprintf(buf, n, "%s", k->names[v]);
        else snprintf(buf, n, "%d", v);
        return;
    }
    case CK_LAYERS:
    case CK_GROUP:
        snprintf(buf, n, "[...]");
        return;
    }
}

/* ---- messages ----------------------------------------------------------------------------- */

void config_quote_input(const char *text, size_t len, char *buf, size_t n) {
    const size_t shown_max = 40;
    size_t shown = len < shown_max ? len : shown_max, j = 0;
    if (n == 0) return;
    for (size_t i = 0; i < shown && j + 1 < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        buf[j++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (len > shown)
        for (int d = 0; d < 3 && j + 1 < n; d++) buf[j++] = '.';
    buf[j] = '\0';
}

int config_edit_distance(const char *a, size_t alen, const char *b, int limit) {
    enum { MAX = 64 };
    size_t blen = strlen(b);
    if (alen > MAX || blen > MAX) return limit + 1;
    int prev[MAX + 1], cur[MAX + 1];
    for (size_t j = 0; j <= blen; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= alen; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= blen; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (blen + 1));
    }
    return prev[blen] <= limit ? prev[blen] : limit + 1;
}
