/* config: the run's YAML configuration, parsed with libyaml, overridden by --set key=value,
 * validated, and written back out resolved (every key with its final value).
 *
 * Keys are dotted paths (train.lr, model.layers).  Unknown keys, wrong types and out-of-range
 * values are errors that name the key (and the file and line when it came from YAML).
 * Every key - its field below, default, range and help line - is one row of the table in
 * config_keys.c; a config file need only name what it changes.  Adding a key: that row plus
 * its field here (see config_keys.h). */
#ifndef HARNESS_CONFIG_H
#define HARNESS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Explicit layer lists (model.layers); presets (model.gpt) expand into lists of any length. */
#define CFG_MAX_LAYERS 256
#define CFG_PATH_MAX 1024

typedef enum {
    LAYER_FLATTEN, LAYER_LINEAR, LAYER_RELU, LAYER_GELU, LAYER_DROPOUT,
    LAYER_CONV2D, LAYER_MAXPOOL2D, LAYER_AVGPOOL2D, LAYER_GLOBAL_AVGPOOL, LAYER_BATCHNORM2D,
    LAYER_RESIDUAL_START, LAYER_RESIDUAL_END,
    LAYER_EMBEDDING, LAYER_LAYERNORM, LAYER_ATTENTION, LAYER_LM_HEAD,
    LAYER_TYPE_COUNT
} layer_type;

/* One layer.  Keys a layer type does not take are zero.  residual_start remembers its input;
 * the next residual_end adds it to its own input (through a 1x1 convolution when project is
 * set, for blocks that change the shape). */
typedef struct {
    layer_type type;
    int out;           /* linear: output features; conv2d: output channels (>= 1) */
    int bias;          /* linear, conv2d: 1 (default) or 0 */
    float p;           /* dropout: probability in [0, 1) (default 0.5) */
    int kernel;        /* conv2d, maxpool2d, avgpool2d: square window */
    int stride;        /* conv2d (default 1); pools (default = kernel) */
    int padding;       /* conv2d, pools: zeros added on each side (default 0) */
    int dilation;      /* conv2d (default 1) */
    int groups;        /* conv2d (default 1) */
    float eps;         /* batchnorm2d (default 1e-5) */
    float momentum;    /* batchnorm2d: running statistics update (default 0.1) */
    int sync;          /* batchnorm2d: statistics over the whole global batch (all ranks) */
    int project;       /* residual_end: 1x1 convolution on the shortcut */
    int heads;         /* attention: number of heads (divides the features) */
    int context;       /* embedding: positions of the learned position embedding (0 = none) */
    int tie;           /* lm_head: reuse the token embedding's weight (default 1) */
    /* Set by presets, not config keys: the parameter name prefix ("" = "layers.I") and the
     * std of the weights' normal init (0 = model.init's rule). */
    char name[48];
    float init_std;
} layer_config;

typedef enum { OPT_SGD, OPT_ADAMW } optimizer_type;
typedef enum { SCHED_CONSTANT, SCHED_COSINE, SCHED_LINEAR } schedule_type;
typedef enum { DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA } device_type;
typedef enum { NONFINITE_STOP, NONFINITE_SKIP } nonfinite_policy;
typedef enum { PRECISION_FP32, PRECISION_TF32, PRECISION_BF16 } precision_type;
typedef enum { GRAD_DTYPE_FP32, GRAD_DTYPE_BF16 } grad_dtype_type;

typedef struct {
    /* run.* */
    char run_dir[CFG_PATH_MAX];    /* run.dir: metrics.jsonl and config.yaml go here */
    uint64_t seed;                 /* run.seed */
    device_type device;            /* run.device: auto | cpu | cuda */
    int threads;                   /* run.threads: BLAS threads per rank; 0 = cores / local ranks */
    precision_type precision;      /* run.precision: fp32 | tf32 | bf16 (GEMM inputs, CUDA) */
    int gemm_epilogues;            /* run.gemm_epilogues: 0 fused (cuBLASLt) | 1 separate kernels */
    int cuda_graph;                /* run.cuda_graph: record the step once, replay it (CUDA) */

    /* data.* */
    char train_path[CFG_PATH_MAX]; /* data.train */
    char test_path[CFG_PATH_MAX];  /* data.test ("" = no evaluation) */
    int64_t cache_mb;              /* data.cache_mb: keep a dataset in memory when it fits */
    int shuffle;                   /* data.shuffle */
    int normalize;                 /* data.normalize: use mean/std attributes (or the data's own) */
    int augment_pad;               /* data.augment_pad: random crop after this much zero padding */
    int augment_hflip;             /* data.augment_hflip: random horizontal flips */

    /* model.* */
    int n_layers;                  /* model.layers: a YAML sequence of maps {type: ..., ...} */
    layer_config layers[CFG_MAX_LAYERS];
    char init[16];                 /* model.init: "kaiming_uniform" (PyTorch nn.Linear default) */
    char init_from[CFG_PATH_MAX];  /* model.init_from: a checkpoint's parameters at step 0 ("" = none) */
    /* model.gpt: a GPT-2 style transformer that replaces model.layers when gpt_layers > 0:
     * token + position embedding, gpt_layers pre-norm blocks (attention, MLP 4x), final
     * layer norm, a language-model head (tied to the token embedding unless told otherwise);
     * the vocabulary comes from the dataset, padded to a multiple of 64. */
    int gpt_layers;                /* model.gpt.layers */
    int gpt_heads;                 /* model.gpt.heads */
    int gpt_dim;                   /* model.gpt.dim */
    int gpt_context;               /* model.gpt.context */
    float gpt_dropout;             /* model.gpt.dropout */
    int gpt_bias;                  /* model.gpt.bias: biases in linear layers and layer norms */
    int gpt_tie;                   /* model.gpt.tie_embeddings */

    /* train.* */
    int64_t epochs;                /* train.epochs (used when train.steps is 0) */
    int64_t steps;                 /* train.steps: optimizer steps; 0 = from epochs */
    int64_t batch_size;            /* train.batch_size: GLOBAL samples per optimizer step */
    int grad_accum;                /* train.grad_accum: micro-steps per optimizer step (>= 1) */
    optimizer_type optimizer;      /* train.optimizer: sgd | adamw */
    float lr;                      /* train.lr (> 0) */
    float momentum;                /* train.momentum (sgd, in [0,1)) */
    int nesterov;                  /* train.nesterov (sgd) */
    float beta1, beta2, eps;       /* train.beta1, train.beta2, train.eps (adamw) */
    float weight_decay;            /* train.weight_decay (>= 0) */
    float clip_grad_norm;          /* train.clip_grad_norm: 0 = off */
    schedule_type schedule;        /* train.schedule: constant | cosine | linear */
    int64_t warmup_steps;          /* train.warmup_steps */
    float min_lr;                  /* train.min_lr: floor of the decay */
    nonfinite_policy nonfinite;    /* train.nonfinite: stop (name step, layer, rank) | skip the step */
    int zero_stage;                /* train.zero_stage: 0 = every rank holds all optimizer state; 1 = sharded */

    /* log.* */
    int64_t log_every;             /* log.every: steps between progress lines / metrics */
    int64_t eval_every;            /* log.eval_every: steps between evaluations; 0 = at end only */
    int progress;                  /* log.progress: auto (-1) | true | false: redraw in place */
    int plot;                      /* log.plot: write RUN_DIR/metrics.png at the end */
    int tensorboard;               /* log.tensorboard: RUN_DIR/events.out.tfevents.* scalars */
    int trace;                     /* log.trace: write RUN_DIR/trace.json of some steps */
    int64_t trace_start;           /* log.trace_start: the first traced step (1-based) */
    int64_t trace_steps;           /* log.trace_steps: how many steps are traced */
    float straggler_pct;           /* log.straggler_pct: a rank this much slower (%) than the median of the others... */
    int straggler_intervals;       /* log.straggler_intervals: ...for this many log intervals in a row is named */

    /* comm.* */
    int64_t bucket_kb;             /* comm.bucket_kb: gradient all-reduce bucket size */
    int shared_memory;             /* comm.shared_memory: average host gradients through node shared memory when every rank is on one node */
    int64_t window_mb;             /* comm.window_mb: the limit of that shared window per node (MiB); larger gradient buffers go through it in rounds */
    int hierarchical;              /* comm.hierarchical: across nodes, average through node shared memory + MPI between nodes */
    float comm_timeout_s;          /* comm.timeout_s: watchdog; a collective waiting longer ends the job; 0 = off */
    float comm_heartbeat_s;        /* comm.heartbeat_s: across nodes, a node silent this long is lost; 0 = off */
    int check_fingerprints;        /* comm.check_fingerprints: debug: compare collectives across ranks */
    grad_dtype_type grad_dtype;    /* comm.grad_dtype: fp32 | bf16 gradients on the wire */

    /* checkpoint.* */
    char ckpt_dir[CFG_PATH_MAX];   /* checkpoint.dir: "" = RUN_DIR/checkpoints */
    int64_t ckpt_every;            /* checkpoint.every: steps between checkpoints; 0 = at the end only */
    int ckpt_keep;                 /* checkpoint.keep: newest checkpoints kept (>= 1) */
    float ckpt_timeout_s;          /* checkpoint.timeout_s: how long the other ranks may wait for rank 0's write */
    int ckpt_async;                /* checkpoint.async: periodic saves written by a background thread */
    int ckpt_writers;              /* checkpoint.writers: 0 = every rank writes its part (with more
                                    * than one rank), 1 = rank 0 writes the whole file */
} config;

void config_defaults(config *c);
/* Reads a YAML file over the defaults.  0 or -1 with err naming file, line and key. */
int config_load_file(config *c, const char *path, char *err, size_t errlen);
/* The same from text in memory (e.g. the config stored in a checkpoint); origin names it in
 * messages. */
int config_load_string(config *c, const char *origin, const char *text, size_t len, char *err,
                       size_t errlen);
/* Applies one "key=value" override (value parsed as YAML scalar; model.layers takes a YAML
 * flow sequence, e.g. "[{type: linear, out: 10}]").  0 or -1 with err naming the key. */
int config_set(config *c, const char *assignment, char *err, size_t errlen);
/* Cross-key checks (e.g. a model with no linear layer, warmup >= steps).  0 or -1. */
int config_validate(const config *c, char *err, size_t errlen);
/* Writes the resolved config as YAML that config_load_file reads back to the same values. */
int config_write(const config *c, const char *path, char *err, size_t errlen);
/* Same, into a malloc'd string (for checkpoints and logs); NULL on out-of-memory. */
char *config_to_yaml(const config *c);

const char *layer_type_name(layer_type t);

/* `harness train --help`'s list of every key (by section, with its default, range and help
 * line), the layer types with the keys each takes, and the layer keys - from the table. */
void config_print_help(FILE *out);

#endif
