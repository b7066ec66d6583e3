/* train: set-up, the data-parallel step loop and evaluation.
 *
 * One optimizer step on rank r of R, with global batch G = batch_size and A = grad_accum:
 *   for each of A micro-steps: the loader hands this rank its B = G/(A*R) samples of the next
 *   global micro-batch; forward; loss gradient scaled by 1/(B*A); backward accumulates into
 *   grads; on the last micro-step each finished layer starts its bucket all-reduces.
 *   Then wait for the averaged gradients, clip by global norm, optimizer update.
 * Start-up errors are agreed on by all ranks (comm_agree) so exactly one prints and every rank
 * exits 1; errors in the middle of a run end the job through comm_abort. */
#define _GNU_SOURCE   /* sched_getaffinity */
#include "train.h"
#include <sched.h>

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "data.h"
#include "fsutil.h"
#include "gpu_peak.h"
#include "kernels.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "plot.h"
#include "straggler.h"
#include "trace.h"

#define ERRLEN 1024

typedef struct {
    const config *cfg;
    comm *c;
    int rank, world;
    kern_ctx *k;
    data_loader *train, *test;
    const data_info *info;
    model m;
    optim opt;
    metrics met;
    int64_t G, B, accum;      /* global micro-batch, per-rank micro-batch, micro-steps */
    int64_t rank_base;        /* this rank's first sample within each global micro-batch */
    float in_scale, mean, std;
    int32_t *labels_dev;      /* [B] labels (language models: [B, context] targets) on the backend */
    double *acc_dev;          /* [4] loss sum and correct predictions, on the backend:
                               * [0,2) training (read at log intervals), [2,4) evaluation */
    double peak_flops;        /* the device's dense bf16 peak (MFU); 0 = unknown */
    int64_t estimated_bytes;  /* the start-up memory estimate: model, scratch, optimizer state */
    int lm;                   /* a token dataset: language modelling */
    int64_t context;          /* language models: tokens per sample */
    model_input_desc in_desc;
    void *x_dev;              /* [B, sample] raw batch on the device (NULL on the CPU backend) */
    int device;               /* CUDA device of this rank (CUDA backend) */
    int64_t total_steps;
    int64_t start_step;       /* > 0 when resumed */
    char ckpt_dir[CFG_PATH_MAX + 16];
    char *config_yaml;        /* the resolved config, stored in checkpoints */
    double last_eval_accuracy, last_eval_loss;
    const char *resume_what;  /* --resume */
    int zero;                 /* train.zero_stage=1: optimizer state sharded over the ranks */
    int64_t shard_lo, shard_hi;   /* this rank's shard of the flat parameter buffer */
    trace *tr;                /* log.trace: NULL when off */
    straggler strag;          /* step-time spread across ranks at log intervals */
} run;

/* Set by SIGUSR1 / SIGTERM; read at step boundaries only. */
static volatile sig_atomic_t stop_signal = 0;
static void on_stop_signal(int sig) { stop_signal = sig; }
/* Why the ranks stop, agreed with an all-reduce MAX: the signal number, or STOP_AFTER. */
#define STOP_AFTER 1000

/* BLAS threads per rank when run.threads is 0: a process bound to a set of cores (by Slurm
 * or mpirun) uses them all; an unbound one shares the node's cores with the other local ranks. */
static int default_threads(int local_ranks) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0 &&
        CPU_COUNT(&set) < online)
        return CPU_COUNT(&set);
    int t = (int)(online / (local_ranks > 0 ? local_ranks : 1));
    return t > 0 ? t : 1;
}

/* Agreement point: returns 0 when every rank is fine; otherwise rank 0 prints the first
 * failing rank's message and every rank gets -1. */
static int agree(run *r, int status, char *err) {
    int who = comm_agree(r->c, status, err, ERRLEN);
    if (who == 0) return 0;
    if (r->rank == 0) {
        if (who - 1 == 0 || r->world == 1) fprintf(stderr, "harness: error: %s\n", err);
        else fprintf(stderr, "harness: error on rank %d: %s\n", who - 1, err);
    }
    return -1;
}

static int open_backend(run *r, char *err) {
    const config *cfg = r->cfg;
    kern_options ko = {0};
    ko.backend = KERN_CPU;
    ko.threads = cfg->threads > 0 ? cfg->threads : default_threads(comm_local_size(r->c));
    ko.device = comm_local_rank(r->c);
    ko.precision = cfg->precision == PRECISION_BF16 ? KERN_BF16
                   : cfg->precision == PRECISION_TF32 ? KERN_TF32 : KERN_FP32;
    ko.separate_epilogues = cfg->gemm_epilogues == 1;
    int gpus = kern_cuda_device_count();
    if (cfg->device == DEVICE_CUDA) {
        if (gpus <= 0) {
            snprintf(err, ERRLEN, "run.device: cuda was asked for, but %s",
                     gpus < 0 ? "this build has no CUDA backend" : "no CUDA device is visible");
            return -1;
        }
        ko.backend = KERN_CUDA;
    } else if (cfg->device == DEVICE_AUTO) {
        if (gpus > 0) ko.backend = KERN_CUDA;
        else if (r->rank == 0)
            fprintf(stderr, "harness: no GPU found, training on the CPU backend "
                            "(%d rank%s x %d thread%s)\n", r->world, r->world > 1 ? "s" : "",
                    ko.threads, ko.threads > 1 ? "s" : "");
    }
    if (ko.backend == KERN_CUDA && gpus > 0) ko.device = comm_local_rank(r->c) % gpus;
    r->device = ko.device;
    if (ko.backend == KERN_CPU && cfg->precision != PRECISION_FP32 && r->rank == 0)
        fprintf(stderr, "harness: run.precision=%s applies to the CUDA backend; the CPU backend "
                "computes in fp32\n", cfg->precision == PRECISION_BF16 ? "bf16" : "tf32");
    if (kern_create(&ko, &r->k, err, ERRLEN) != 0) return -1;
    char name[256];
    if (kern_device_name(r->k, name, sizeof name) == 0) r->peak_flops = gpu_peak_bf16_flops(name);
    return 0;
}

/* Collective.  With several ranks on the CUDA backend, gradients are averaged on the devices,
 * overlapped with backward: NCCL on comm's own stream ordered after the compute stream, or MPI
 * through pinned host memory where ranks share a GPU (NCCL needs one GPU per rank).  Every rank
 * must then be on the CUDA backend. */
static int open_comm_gpu(run *r, char *err) {
    int on_gpu = kern_get_backend(r->k) == KERN_CUDA;
    if (r->world == 1) return 0;   /* nothing to average */
    int32_t backends[2] = {on_gpu, !on_gpu};
    if (comm_allreduce_max_i32(r->c, backends, 2, err, ERRLEN) != 0) return -1;
    if (backends[0] && backends[1]) {
        snprintf(err, ERRLEN, "run.device: some ranks found a GPU and others did not, so they "
                 "would train on different backends; set run.device=cuda or run.device=cpu");
        return -1;
    }
    if (!on_gpu) return 0;
    /* comm decides by GPU UUID: NCCL unless two ranks drive the same GPU (counting visible
     * devices cannot tell: under --gpus-per-task=1 every rank sees one, each its own) */
    /* ncclCommInitRank blocks until every rank has joined: a rank stuck before it must end
     * the job with a report, not hang it, so the watchdog covers the set-up (and stops
     * again: the one-rank phases of start-up that follow may take long) */
    double timeout = r->cfg->comm_timeout_s;
    if (timeout > 0 && comm_watchdog_start(r->c, timeout, err, ERRLEN) != 0) return -1;
    int st = comm_gpu_init(r->c, r->device, kern_native_stream(r->k), COMM_GPU_AUTO, err, ERRLEN);
    if (timeout > 0) comm_watchdog_stop(r->c);
    if (st != 0) return -1;
    if (r->rank == 0)
        fprintf(stderr, "harness: gradient all-reduce on the GPUs: %s\n",
                comm_gpu_backend_in_use(r->c) == COMM_GPU_NCCL
                    ? "NCCL" : comm_gpu_built(COMM_GPU_NCCL)
                    ? "MPI through pinned host memory (ranks share GPUs)"
                    : "MPI through pinned host memory (this build has no NCCL)");
    return 0;
}

/* Tokens per sample of a language model: the preset's context, or the explicit list's
 * first embedding's. */
static int64_t model_context(const config *cfg) {
    if (cfg->gpt_layers > 0) return cfg->gpt_context;
    if (cfg->n_layers > 0 && cfg->layers[0].type == LAYER_EMBEDDING) return cfg->layers[0].context;
    return 0;
}

/* What the model is built for: the dataset's samples (or token windows) and classes. */
static void input_desc(run *r) {
    model_input_desc *d = &r->in_desc;
    memset(d, 0, sizeof *d);
    d->tokens = r->info->kind == DATA_TOKENS;
    d->sample_ndim = r->info->sample_ndim;
    for (int i = 0; i < r->info->sample_ndim && i < 3; i++) d->sample_shape[i] = r->info->sample_shape[i];
    d->n_classes = d->tokens ? r->info->vocab_size : r->info->num_classes;
    r->lm = d->tokens;
    r->context = d->tokens ? r->info->context : 0;
}

static void *alloc_batch_host(size_t bytes, void *user) { return kern_alloc_host(user, bytes); }
static void free_batch_host(void *p, void *user) { kern_free_host(user, p); }

static int open_data(run *r, int need_train, char *err) {
    const config *cfg = r->cfg;
    data_config dc = {0};
    dc.alloc_host = alloc_batch_host;   /* pinned on GPU runs: fast, async copies */
    dc.free_host = free_batch_host;
    dc.alloc_user = r->k;
    dc.context = model_context(cfg);
    if (!need_train) {
        if (!cfg->test_path[0]) {
            snprintf(err, ERRLEN, "data.test: evaluation needs a test set");
            return -1;
        }
        dc.path = cfg->test_path;
        dc.mode = DATA_EVAL;
        dc.rank = r->rank;
        dc.world = r->world;
        dc.global_batch = r->G;
        dc.cache_bytes = cfg->cache_mb * 1024 * 1024;
        if (data_loader_open(&dc, &r->test, err, ERRLEN) != 0) return -1;
        r->info = data_loader_info(r->test);
        goto normalisation;
    }
    dc.path = cfg->train_path;
    dc.mode = DATA_TRAIN;
    dc.augment_pad = cfg->augment_pad;
    dc.augment_hflip = cfg->augment_hflip;
    dc.rank = r->rank;
    dc.world = r->world;
    dc.global_batch = r->G;
    dc.seed = cfg->seed;
    dc.shuffle = cfg->shuffle;
    dc.cache_bytes = cfg->cache_mb * 1024 * 1024;
    if (data_loader_open(&dc, &r->train, err, ERRLEN) != 0) return -1;
    r->info = data_loader_info(r->train);
    if (r->info->n < cfg->batch_size) {
        snprintf(err, ERRLEN, "train.batch_size: %lld is larger than the training set %s (%lld samples)",
                 (long long)cfg->batch_size, cfg->train_path, (long long)r->info->n);
        return -1;
    }
    if (cfg->test_path[0]) {
        dc.path = cfg->test_path;
        dc.mode = DATA_EVAL;
        dc.augment_pad = dc.augment_hflip = 0;
        if (data_loader_open(&dc, &r->test, err, ERRLEN) != 0) return -1;
        const data_info *ti = data_loader_info(r->test);
        if (ti->kind == DATA_TOKENS || r->info->kind == DATA_TOKENS) {
            if (ti->kind != r->info->kind || ti->vocab_size != r->info->vocab_size) {
                snprintf(err, ERRLEN, "%s: %s does not match the training set %s (%s, "
                         "vocab_size %lld)", cfg->test_path, ti->kind == DATA_TOKENS
                         ? "a token dataset with another vocab_size" : "an image dataset",
                         cfg->train_path, r->info->kind == DATA_TOKENS ? "tokens" : "images",
                         (long long)r->info->vocab_size);
                return -1;
            }
        } else if (ti->sample_elems != r->info->sample_elems || ti->dtype != r->info->dtype ||
            ti->num_classes != r->info->num_classes) {
            snprintf(err, ERRLEN, "%s: samples of %lld %s values in %d classes do not match the "
                     "training set %s (%lld %s values, %d classes)", cfg->test_path,
                     (long long)ti->sample_elems, ti->dtype == DATA_U8 ? "uint8" : "float32",
                     ti->num_classes, cfg->train_path, (long long)r->info->sample_elems,
                     r->info->dtype == DATA_U8 ? "uint8" : "float32", r->info->num_classes);
            return -1;
        }
    }
normalisation:
    input_desc(r);
    /* input normalisation: uint8 pixels are scaled to [0,1] first */
    r->in_scale = r->info->dtype == DATA_U8 ? 1.0f / 255.0f : 1.0f;
    r->mean = 0.0f;
    r->std = 1.0f;
    if (cfg->normalize && r->info->has_mean_std) {
        if (!(r->info->std > 0.0f) || !isfinite(r->info->mean)) {
            snprintf(err, ERRLEN, "%s: attributes mean=%g std=%g are not usable (std must be > 0)",
                     need_train ? cfg->train_path : cfg->test_path, r->info->mean, r->info->std);
            return -1;
        }
        r->mean = r->info->mean;
        r->std = r->info->std;
    }
    return 0;
}

/* The next batch of a loader; the previous one's pinned slot goes back to the loader inside,
 * so its transfer to the device must have ended (kern_upload_settle; no wait on the CPU). */
static int next_batch(run *r, data_loader *l, data_batch *b, char *err, size_t errlen) {
    kern_upload_settle(r->k);
    return data_loader_next(l, b, err, errlen);
}

/* Copies a host batch read from `path` into the model's input buffer, converting and
 * normalising. */
static void load_batch(run *r, const data_batch *b, const char *path) {
    if (r->lm) {   /* token ids [count, context] and the targets, shifted by one */
        size_t n = (size_t)(b->count * r->context) * sizeof(int32_t);
        void *dst[2] = {model_input_tokens(&r->m), r->labels_dev};
        const void *host[2] = {b->x, b->y};
        size_t bytes[2] = {n, n};
        kern_upload(r->k, 2, dst, host, bytes);   /* the slot is reusable after next_batch's settle */
        return;
    }
    int64_t n = b->count * r->info->sample_elems;
    /* GPU: the raw batch goes to the device first (from pinned memory), then is converted
     * there; CPU: converted straight from the host batch */
    const void *src = b->x;
    if (r->x_dev) {
        /* pixels and labels on the backend's copy stream (kern_upload): the compute stream
         * waits for the copy; the host waits for the transfer from the pinned slot only in
         * next_batch, before the slot goes back to the loader */
        void *dst[2] = {r->x_dev, r->labels_dev};
        const void *host[2] = {b->x, b->y};
        size_t bytes[2] = {(size_t)n * (r->info->dtype == DATA_U8 ? 1 : 4),
                           (size_t)b->count * sizeof(int32_t)};
        kern_upload(r->k, 2, dst, host, bytes);
        src = r->x_dev;
    }
    if (r->info->dtype == DATA_U8) {
        kern_u8_to_f32(r->k, model_input(&r->m), (const uint8_t *)src, n, r->in_scale, r->mean,
                       r->std);
    } else {
        kern_f32_normalize(r->k, model_input(&r->m), (const float *)src, n, r->mean, r->std);
        /* float inputs can hold NaN or Inf: one cheap pass names the file and position */
        if (kern_has_nonfinite(r->k, model_input(&r->m), n)) {
            char err[ERRLEN];
            snprintf(err, sizeof err, "%s: non-finite value (NaN or Inf) in /images among the "
                     "samples of this batch (epoch %lld, cursor %lld)",
                     path, (long long)b->epoch, (long long)b->cursor);
            comm_abort(r->c, 1, err);
        }
    }
    if (!r->x_dev) kern_to_device(r->k, r->labels_dev, b->y, (size_t)b->count * sizeof(int32_t));
}

/* Broadcast of backend memory from rank 0 (staged through the host on GPUs). */
static int broadcast_floats(run *r, float *buf, int64_t n, char *err) {
    size_t bytes = (size_t)n * sizeof(float);
    if (r->world == 1 || !buf) return 0;
    if (kern_get_backend(r->k) == KERN_CPU) return comm_broadcast(r->c, buf, bytes, 0, err, ERRLEN);
    float *host = malloc(bytes);
    if (!host) return snprintf(err, ERRLEN, "out of memory staging a broadcast"), -1;
    kern_to_host(r->k, host, buf, bytes);
    int st = comm_broadcast(r->c, host, bytes, 0, err, ERRLEN);
    if (st == 0) kern_to_device(r->k, buf, host, bytes);
    free(host);
    return st;
}

/* Synchronised batch norm: sums over all ranks (host doubles). */
static int allreduce_for_model(void *user, double *x, int n) {
    run *r = user;
    char err[ERRLEN];
    if (comm_allreduce_sum_f64(r->c, x, n, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    return 0;
}

/* zero_stage 1: the global gradient norm's sum of squares over the shards (one scalar). */
static void sum_across_ranks(void *user, double *x) {
    run *r = user;
    char err[ERRLEN];
    if (r->world == 1) return;
    /* on a GPU x is device memory: NCCL sums it on the stream (no host wait), MPI staged
     * through pinned memory */
    int st = kern_get_backend(r->k) == KERN_CPU ? comm_allreduce_sum_f64(r->c, x, 1, err, sizeof err)
                                                : comm_allreduce_sum_f64_device(r->c, x, 1, err, sizeof err);
    if (st != 0) comm_abort(r->c, 1, err);
}

/* zero_stage 1, checkpoints: ckpt_write on rank 0 asks for one tensor of one optimizer state
 * at a time; every other rank serves the same sequence (serve_optim_shards), so each
 * request is one comm_shard_gather.  If rank 0's write stops early (a full disk), rank 0
 * finishes the sequence with drain_optim_shards so that no rank is left waiting. */
typedef struct {
    run *r;
    int64_t served;           /* (tensor, state) requests answered so far */
    float *host[2];           /* GPU backends: host copies of this rank's m and v shards */
} shard_fetch;

static int n_optim_states(const optim *o) {
    return o->type == OPT_ADAMW ? 2 : o->m ? 1 : 0;
}

/* GPU backends: comm's gather and scatter work on host memory, so a checkpoint copies this
 * rank's state shards to the host first (one shard per state: n_params / world floats each). */
static int stage_optim_shards(run *r, shard_fetch *f) {
    if (kern_get_backend(r->k) == KERN_CPU) return 0;
    int ns = n_optim_states(&r->opt);
    size_t bytes = (size_t)r->opt.n * sizeof(float);
    float *dev[2] = {r->opt.m, r->opt.v};
    for (int s = 0; s < ns; s++) {
        if (!(f->host[s] = malloc(bytes + sizeof(float)))) return -1;
        if (bytes) kern_to_host(r->k, f->host[s], dev[s], bytes);
    }
    return 0;
}

static void free_staged_shards(shard_fetch *f) {
    free(f->host[0]);
    free(f->host[1]);
    f->host[0] = f->host[1] = NULL;
}

static int fetch_optim_shard(void *user, int state, int64_t offset, int64_t count, float *out) {
    shard_fetch *f = user;
    char err[ERRLEN];
    float *shard = f->host[state] ? f->host[state] : state == 0 ? f->r->opt.m : f->r->opt.v;
    f->served++;
    if (comm_shard_gather(f->r->c, shard, offset, count, out, err, sizeof err) != 0)
        comm_abort(f->r->c, 1, err);
    return 0;
}

/* Every rank but 0 (and rank 0 to drain): requests `from` onwards, in ckpt_write's order. */
static void serve_optim_shards(run *r, const shard_fetch *staged, int64_t from, float *scratch) {
    int ns = n_optim_states(&r->opt);
    int64_t k = 0;
    shard_fetch f = {r, 0, {staged->host[0], staged->host[1]}};
    for (int i = 0; i < r->m.n_tensors; i++) {
        const model_tensor *t = &r->m.tensors[i];
        if (t->is_buffer) continue;
        for (int s = 0; s < ns; s++, k++)
            if (k >= from) fetch_optim_shard(&f, s, t->offset, t->count, scratch);
    }
}

/* Batch-norm running statistics are per rank unless synchronised; like DDP, rank 0's are
 * the model's: broadcast before they are used for evaluation or saved. */
static void sync_buffers(run *r) {
    char err[ERRLEN];
    if (r->m.n_buffers && broadcast_floats(r, r->m.buffers, r->m.n_buffers, err) != 0)
        comm_abort(r->c, 1, err);
}

/* Allocates the per-rank batch buffers on the backend. */
static int alloc_batch_buffers(run *r, char *err) {
    int64_t rows = r->B * (r->lm ? r->context : 1);
    if (!(r->labels_dev = kern_alloc(r->k, (size_t)rows * sizeof(int32_t)))) goto oom;
    if (!(r->acc_dev = kern_alloc(r->k, 4 * sizeof(double)))) goto oom;
    size_t x_bytes = r->lm ? (size_t)rows * sizeof(int32_t)
                           : (size_t)(r->B * r->info->sample_elems) * (r->info->dtype == DATA_U8 ? 1 : 4);
    if (kern_get_backend(r->k) != KERN_CPU && !r->lm && !(r->x_dev = kern_alloc(r->k, x_bytes)))
        goto oom;
    /* the upload staging of the largest batch, so that no step allocates */
    if (kern_upload_reserve(r->k, (x_bytes + 255) / 256 * 256 + ((size_t)rows * 4 + 255) / 256 * 256,
                            err, ERRLEN) != 0)
        return -1;
    return 0;
oom:
    snprintf(err, ERRLEN, "out of memory for batch buffers (%lld samples per rank)",
             (long long)r->B);
    return -1;
}

static void grads_ready_cb(void *user, int64_t offset) {
    run *r = user;
    char err[ERRLEN];
    /* starting buckets also progresses the ones in flight (MPI_Test), which can take a while */
    int span = trace_host_begin(r->tr, TRACE_HOST, "all-reduce start", -1);
    if (comm_grads_ready(r->c, offset, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    trace_host_end(r->tr, span);
}

/* Loss and accuracy over the whole test set, every sample exactly once across ranks. */
/* The device-side loss / correct accumulators back to zero. */
static void reset_acc(run *r, double *acc) {
    static const double zero[2] = {0, 0};
    kern_to_device(r->k, acc, zero, sizeof zero);
}

static void evaluate(run *r, int64_t step, int64_t epoch) {
    char err[ERRLEN];
    sync_buffers(r);
    double sums[2] = {0, 0};       /* loss sum, correct */
    int64_t count = 0;
    data_batch b;
    double *acc = r->acc_dev + 2;
    reset_acc(r, acc);
    for (;;) {
        int rc = next_batch(r, r->test, &b, err, sizeof err);
        if (rc < 0) comm_abort(r->c, 1, err);
        if (rc == 1) break;
        if (b.count == 0) continue;
        load_batch(r, &b, r->cfg->test_path);
        const float *logits = model_forward(&r->m, b.count, 0, 0, 0, 0);
        int64_t rows = b.count * r->m.rows_per_sample;
        kern_softmax_xent_acc(r->k, r->m.losses, NULL, acc, logits, r->labels_dev,
                              (int)rows, (int)r->m.n_classes, (int)r->m.out_ld, 1.0f);
        count += rows;
    }
    kern_to_host(r->k, sums, acc, sizeof sums);
    /* a failed backend call would make these numbers wrong: say so instead */
    if (kern_check(r->k, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    if (comm_allreduce_sum_f64(r->c, sums, 2, err, sizeof err) != 0 ||
        comm_allreduce_sum_i64(r->c, &count, 1, err, sizeof err) != 0)
        comm_abort(r->c, 1, err);
    r->last_eval_accuracy = count > 0 ? sums[1] / (double)count : 0.0;
    r->last_eval_loss = count > 0 ? sums[0] / (double)count : 0.0;
    if (r->rank == 0 && count > 0 && r->met.jsonl)
        metrics_log_eval(&r->met, step, epoch, sums[0] / (double)count, sums[1] / (double)count,
                         count);
    else if (r->rank == 0 && count > 0 && r->lm)
        printf("val loss %.6f, val perplexity %.4f, next-token accuracy %.4f (%lld tokens)\n",
               sums[0] / (double)count, exp(sums[0] / (double)count), sums[1] / (double)count,
               (long long)count);
    else if (r->rank == 0 && count > 0)
        printf("test loss %.6f, test accuracy %.4f (%lld samples)\n", sums[0] / (double)count,
               sums[1] / (double)count, (long long)count);
}

/* Rank 0 picks and verifies the checkpoint, then every rank receives its contents.
 * Returns 0 (resumed, or nothing to resume with "auto") or -1 (reported). */
static int resume(run *r, const char *what, char *err) {
    int st = 0, found = 0;
    ckpt_state s = {0};
    char path[1200] = "";
    /* zero_stage 1: rank 0 reads the full state into host buffers, then scatters the shards */
    optim full = r->opt, *into = &r->opt;
    int ns = n_optim_states(&r->opt);
    if (r->zero && r->rank == 0) {
        size_t bytes = (size_t)r->m.n_params * sizeof(float) + sizeof(float);
        full.m = ns >= 1 ? malloc(bytes) : NULL;
        full.v = ns >= 2 ? malloc(bytes) : NULL;
        full.state_on_host = 1;
        if ((ns >= 1 && !full.m) || (ns >= 2 && !full.v)) {
            snprintf(err, ERRLEN, "out of memory reading the optimizer state to shard it");
            st = -1;
        }
        into = &full;
    }
    if (r->rank == 0 && st == 0) {
        if (strcmp(what, "auto") == 0) {
            static char paths[256][1200];
            int n = ckpt_list(r->ckpt_dir, paths, 256);
            for (int i = 0; i < n && !found && st == 0; i++) {
                int rc = ckpt_read(paths[i], &r->m, into, &s, err, ERRLEN);
                if (rc == CKPT_OK) {
                    found = 1;
                    snprintf(path, sizeof path, "%s", paths[i]);
                } else if (rc == CKPT_MISMATCH) {
                    st = -1;
                } else {
                    fprintf(stderr, "harness: skipping checkpoint that does not verify: %s\n", err);
                }
            }
            if (st == 0 && !found && n > 0) {
                snprintf(err, ERRLEN, "--resume auto: none of the %d checkpoints in %s verifies; "
                         "refusing to start over (use --resume none to do that)", n, r->ckpt_dir);
                st = -1;
            } else if (st == 0 && !found) {
                fprintf(stderr, "harness: no checkpoint in %s, starting from scratch\n", r->ckpt_dir);
            }
        } else {
            int rc = ckpt_read(what, &r->m, into, &s, err, ERRLEN);
            if (rc == CKPT_OK) {
                found = 1;
                snprintf(path, sizeof path, "%s", what);
            } else {
                st = -1;
            }
        }
    }
    if (agree(r, st, err)) {
        if (into != &r->opt) free(full.m), free(full.v);
        return -1;
    }
    /* hand the checkpoint to every rank */
    int64_t hdr[6] = {found, s.step, s.epoch, s.cursor, s.optimizer_steps, s.world_size};
    st = comm_broadcast(r->c, hdr, sizeof hdr, 0, err, ERRLEN);
    if (st == 0 && hdr[0] && r->zero) {
        st = broadcast_floats(r, r->m.params, r->m.n_params, err);
        /* GPU backends: each shard lands in host memory first, then goes to the device */
        int on_cpu = kern_get_backend(r->k) == KERN_CPU;
        size_t bytes = (size_t)r->opt.n * sizeof(float);
        float *host = on_cpu ? NULL : malloc(bytes + sizeof(float));
        if (!on_cpu && !host) {
            snprintf(err, ERRLEN, "out of memory staging the optimizer state shards");
            st = -1;
        }
        float *dev[2] = {r->opt.m, r->opt.v}, *src[2] = {full.m, full.v};
        for (int k = 0; k < ns && k < 2 && st == 0; k++) {
            st = comm_shard_scatter(r->c, src[k], on_cpu ? dev[k] : host, err, ERRLEN);
            if (st == 0 && !on_cpu && bytes) kern_to_device(r->k, dev[k], host, bytes);
        }
        free(host);
    } else if (st == 0 && hdr[0]) {
        float *bufs[3] = {r->m.params, r->opt.m, r->opt.v};
        for (int i = 0; i < 3 && st == 0; i++) st = broadcast_floats(r, bufs[i], r->m.n_params, err);
    }
    if (into != &r->opt) free(full.m), free(full.v);
    if (st == 0 && hdr[0]) st = broadcast_floats(r, r->m.buffers, r->m.n_buffers, err);
    if (agree(r, st, err)) return -1;
    if (!hdr[0]) return 0;
    r->opt.t = hdr[4];
    r->start_step = hdr[1];
    if (r->start_step > r->total_steps) {
        snprintf(err, ERRLEN, "%s: checkpoint of step %lld is past this run's %lld steps "
                 "(train.steps / train.epochs)", path, (long long)hdr[1], (long long)r->total_steps);
        st = -1;
    }
    if (st == 0) st = data_loader_seek(r->train, hdr[2], hdr[3], err, ERRLEN);
    if (agree(r, st, err)) return -1;
    if (r->rank == 0)
        fprintf(stderr, "harness: resumed from %s: step %lld, epoch %lld, cursor %lld "
                "(written by %lld rank%s, now %d)\n", path, (long long)hdr[1], (long long)hdr[2],
                (long long)hdr[3], (long long)hdr[5], hdr[5] == 1 ? "" : "s", r->world);
    return 0;
}

/* Every rank calls this at the same step; rank 0 writes.  0, or -1 (reported). */
static int checkpoint(run *r, int64_t step, char *path, size_t path_len) {
    char err[ERRLEN];
    int st = 0;
    sync_buffers(r);
    optim_verdict v;
    optim_read(&r->opt, &v);   /* brings opt.t up to date (skipped steps excluded) */
    shard_fetch fetch = {r, 0, {NULL, NULL}};
    if (r->zero && stage_optim_shards(r, &fetch) != 0)   /* GPU: the shards to the host */
        comm_abort(r->c, 1, "out of memory copying the optimizer state shards to the host");
    if (r->rank == 0) {
        ckpt_state s = {0};
        s.step = step;
        data_loader_position(r->train, &s.epoch, &s.cursor);
        s.optimizer_steps = r->opt.t;
        s.seed = r->cfg->seed;
        s.world_size = r->world;
        st = ckpt_write(r->ckpt_dir, &r->m, &r->opt, &s, r->config_yaml, r->cfg->ckpt_keep,
                        r->zero ? fetch_optim_shard : NULL, &fetch, path, path_len, err, ERRLEN);
    }
    if (r->zero && r->world > 1) {
        /* the shards travel one tensor at a time: rank 0 holds at most one extra tensor */
        /* rank 0 drains (after ckpt_write has freed its own buffer) only when the write
         * stopped early; its scratch is then the one extra tensor */
        int64_t largest = 1, requests = 0;
        for (int i = 0; i < r->m.n_tensors; i++) {
            if (r->m.tensors[i].is_buffer) continue;
            if (r->m.tensors[i].count > largest) largest = r->m.tensors[i].count;
            requests += n_optim_states(&r->opt);
        }
        if (r->rank != 0 || fetch.served < requests) {
            float *scratch = r->rank == 0 ? malloc((size_t)largest * sizeof(float)) : NULL;
            if (r->rank == 0 && !scratch) comm_abort(r->c, 1, "out of memory draining a checkpoint");
            serve_optim_shards(r, &fetch, r->rank == 0 ? fetch.served : 0, scratch);
            free(scratch);
        }
    }
    free_staged_shards(&fetch);
    return agree(r, st, err);
}

/* Memory this process may use: MemAvailable, and the cgroup's limit when there is one (a
 * Slurm job or container), shared by the ranks on this node.  -1 when unknown. */
static int64_t memory_available(int64_t *node_total) {
    int64_t avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) avail = (int64_t)kb * 1024;
        fclose(f);
    }
    static const char *limits[2][2] = {
        {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
        {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"}};
    for (int i = 0; i < 2; i++) {
        long long lim = -1, used = 0;
        FILE *fl = fopen(limits[i][0], "r"), *fu = fopen(limits[i][1], "r");
        if (fl && fscanf(fl, "%lld", &lim) == 1 && fu && fscanf(fu, "%lld", &used) == 1 &&
            lim > 0 && lim < (1LL << 60)) {
            int64_t room = (int64_t)(lim - used);
            if (avail < 0 || room < avail) avail = room;
        }
        if (fl) fclose(fl);
        if (fu) fclose(fu);
    }
    *node_total = avail;
    return avail;
}

/* Refuses, before anything big is allocated, a run that cannot fit in this node's memory. */
static int check_memory(run *r, char *err) {
    const config *cfg = r->cfg;
    int64_t n_params = 0;
    int64_t model = model_estimate_bytes(cfg, &r->in_desc, r->B, &n_params);
    if (model < 0) return 0;   /* model_build explains */
    /* zero_stage 1: the state of this rank's shard only, plus the shard's averaged gradients */
    int states = optim_state_count(cfg);
    int64_t shard = cfg->zero_stage == 1 ? (n_params + r->world - 1) / r->world : n_params;
    int64_t optim_bytes = (int64_t)states * shard * (int64_t)sizeof(float);
    if (cfg->zero_stage == 1 && r->world > 1) optim_bytes += shard * (int64_t)sizeof(float);
    r->estimated_bytes = model + optim_bytes;
    int64_t cache = cfg->cache_mb * 1024 * 1024, data = 0;
    const data_info *infos[2] = {r->info, r->test ? data_loader_info(r->test) : NULL};
    for (int i = 0; i < 2; i++) {
        if (!infos[i]) continue;
        int64_t bytes = infos[i]->kind == DATA_TOKENS
                            ? infos[i]->n_tokens * (infos[i]->token_bits / 8)
                            : infos[i]->n * (infos[i]->sample_elems *
                                             (infos[i]->dtype == DATA_U8 ? 1 : 4) + 4);
        data += bytes <= cache ? bytes : 0;
    }
    /* GPU: the model, its optimizer state and scratch live in device memory */
    size_t dev_free = 0, dev_total = 0;
    if (kern_memory_info(r->k, &dev_free, &dev_total) == 0 &&
        (size_t)(model + optim_bytes) > dev_free) {
        double g = 1024.0 * 1024.0 * 1024.0;
        snprintf(err, ERRLEN, "this run needs about %.2f GiB of GPU memory per rank (%lld "
                 "parameters with gradients and optimizer state, activations, scratch), but the "
                 "GPU has %.2f GiB free of %.2f GiB; reduce the model or train.batch_size",
                 (double)(model + optim_bytes) / g, (long long)n_params, (double)dev_free / g,
                 (double)dev_total / g);
        return -1;
    }
    /* host memory: everything on the CPU backend; only the cached datasets on a GPU */
    int on_gpu = dev_total > 0;
    int64_t param_bytes = on_gpu ? 0 : 2 * n_params * (int64_t)sizeof(float);
    int64_t act_bytes = on_gpu ? 0 : model - param_bytes;
    if (on_gpu) optim_bytes = 0;
    int64_t need = param_bytes + act_bytes + optim_bytes + data, node = 0;
    int64_t avail = memory_available(&node);
    int local = comm_local_size(r->c);
    if (avail < 0 || need * local <= avail) return 0;
    double g = 1024.0 * 1024.0 * 1024.0;
    snprintf(err, ERRLEN, "this run needs about %.2f GiB of host memory per rank (parameters "
             "and gradients %.2f GiB for %lld parameters, optimizer state %.2f GiB, activations "
             "%.2f GiB, cached datasets %.2f GiB) x %d rank%s on this node = %.2f GiB, but only "
             "%.2f GiB is available; reduce the model, train.batch_size or data.cache_mb, or use "
             "more nodes", (double)need / g, (double)param_bytes / g, (long long)n_params,
             (double)optim_bytes / g, (double)act_bytes / g, (double)data / g, local,
             local == 1 ? "" : "s", (double)(need * local) / g, (double)avail / g);
    return -1;
}

/* Weight decay on the tensors the model says (presets: matrices and embeddings only). */
static int set_weight_decay(run *r, char *err) {
    int n = 0;
    int64_t *off = malloc((size_t)r->m.n_tensors * 2 * sizeof(int64_t) + 1);
    int *decay = malloc((size_t)r->m.n_tensors * sizeof(int) + 1);
    int st = off && decay ? 0 : -1;
    for (int i = 0; st == 0 && i < r->m.n_tensors; i++) {
        const model_tensor *t = &r->m.tensors[i];
        if (t->is_buffer) continue;
        off[n] = t->offset;
        off[r->m.n_tensors + n] = t->count;
        decay[n++] = t->decay;
    }
    if (st == 0) st = optim_set_decay(&r->opt, off, off + r->m.n_tensors, decay, n);
    free(off);
    free(decay);
    if (st != 0) snprintf(err, ERRLEN, "out of memory");
    return st;
}

static int setup(run *r, char *err) {
    const config *cfg = r->cfg;
    int st = 0;

    r->accum = cfg->grad_accum;
    r->G = cfg->batch_size / r->accum;
    if (cfg->batch_size % ((int64_t)r->accum * r->world) != 0) {
        snprintf(err, ERRLEN, "train.batch_size: %lld is not divisible by grad_accum (%lld) x "
                 "ranks (%d); each rank needs an equal share of every micro-batch",
                 (long long)cfg->batch_size, (long long)r->accum, r->world);
        st = -1;
    }
    if (agree(r, st, err)) return -1;
    r->B = r->G / r->world;
    int64_t end;
    data_rank_slice(r->G, r->rank, r->world, &r->rank_base, &end);

    if (agree(r, open_backend(r, err), err)) return -1;
    r->zero = cfg->zero_stage == 1;
    /* train.zero_stage=1 runs on GPUs too (NCCL and MPI staged, comm.h); bf16 gradients on
     * the wire are host memory only so far. */
    if (cfg->grad_dtype != GRAD_DTYPE_FP32 && kern_get_backend(r->k) != KERN_CPU) {
        snprintf(err, ERRLEN, "comm.grad_dtype=bf16: implemented on the CPU backend (MPI on host "
                 "memory) only so far; use train.device=cpu, or comm.grad_dtype=fp32 on GPUs");
        st = -1;
    }
    if (agree(r, st, err)) return -1;
    if (agree(r, open_comm_gpu(r, err), err)) return -1;
    if (agree(r, open_data(r, 1, err), err)) return -1;
    if (agree(r, check_memory(r, err), err)) return -1;

    st = model_build(&r->m, cfg, &r->in_desc, r->B, 0, r->k, err, ERRLEN);
    if (st == 0) st = alloc_batch_buffers(r, err);
    if (agree(r, st, err)) return -1;

    int64_t per_epoch = r->info->n / cfg->batch_size;
    r->total_steps = cfg->steps > 0 ? cfg->steps : cfg->epochs * per_epoch;
    size_t bucket_bytes = (size_t)cfg->bucket_kb * 1024;
    st = comm_grads_set_exchange(r->c, r->zero, cfg->grad_dtype == GRAD_DTYPE_BF16
                                 ? COMM_GRAD_BF16 : COMM_GRAD_FP32, err, ERRLEN);
    if (st == 0 && comm_gpu_backend_in_use(r->c) != COMM_GPU_NONE)
        st = comm_grads_register_device(r->c, r->m.grads, r->m.n_params, bucket_bytes, err, ERRLEN);
    else if (st == 0)
        st = comm_grads_register(r->c, r->m.grads, r->m.n_params, bucket_bytes, err, ERRLEN);
    comm_grads_shard_range(r->c, &r->shard_lo, &r->shard_hi);
    if (st == 0)
        st = optim_create_shard(&r->opt, cfg, r->m.n_params, r->shard_lo,
                                r->shard_hi - r->shard_lo, r->total_steps, r->k, err, ERRLEN);
    if (st == 0 && r->zero) {
        r->opt.sum_across_ranks = sum_across_ranks;
        r->opt.sum_user = r;
    }
    if (st == 0) st = set_weight_decay(r, err);
    if (agree(r, st, err)) return -1;
    /* ranks of one node average host gradients through shared memory, not MPI messages */
    if (cfg->shared_memory && comm_gpu_backend_in_use(r->c) == COMM_GPU_NONE && !r->zero &&
        cfg->grad_dtype == GRAD_DTYPE_FP32 &&
        agree(r, comm_grads_use_node_memory(r->c, (size_t)1 << 30, err, ERRLEN) < 0 ? -1 : 0, err))
        return -1;

    /* Every rank draws the same weights from the seed; rank 0's are broadcast anyway so that
     * the ranks provably start from identical parameters. */
    model_init_params(&r->m, cfg->init, cfg->seed);
    st = broadcast_floats(r, r->m.params, r->m.n_params, err);
    if (st == 0) st = broadcast_floats(r, r->m.buffers, r->m.n_buffers, err);
    if (r->world > 1) {
        r->m.allreduce = allreduce_for_model;
        r->m.allreduce_user = r;
    }
    if (agree(r, st, err)) return -1;

    if (r->rank == 0) {
        char path[CFG_PATH_MAX + 32];
        if (make_dirs(cfg->run_dir) != 0) {
            snprintf(err, ERRLEN, "run.dir: cannot create %s: %s", cfg->run_dir, strerror(errno));
            st = -1;
        }
        if (st == 0) {
            snprintf(path, sizeof path, "%s/config.yaml", cfg->run_dir);
            st = config_write(cfg, path, err, ERRLEN);
        }
    }
    if (agree(r, st, err)) return -1;

    if (cfg->ckpt_dir[0]) snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s", cfg->ckpt_dir);
    else snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s/checkpoints", cfg->run_dir);
    r->config_yaml = config_to_yaml(cfg);
    if (!r->config_yaml) {
        snprintf(err, ERRLEN, "out of memory");
        st = -1;
    }
    if (agree(r, st, err)) return -1;
    if (r->resume_what && strcmp(r->resume_what, "none") != 0 && resume(r, r->resume_what, err))
        return -1;
    if (r->rank == 0)
        st = metrics_open(&r->met, cfg->run_dir, cfg->progress, r->start_step > 0, err, ERRLEN);
    r->met.lm = r->lm;
    if (agree(r, st, err)) return -1;
    return 0;
}

static void teardown(run *r) {
    if (r->rank == 0) metrics_close(&r->met);
    trace_free(r->tr);
    r->m.trace = r->tr = NULL;
    straggler_close(&r->strag);
    optim_free(&r->opt);
    if (r->k) {
        kern_free(r->k, r->labels_dev);
        kern_free(r->k, r->acc_dev);
        kern_free(r->k, r->x_dev);
    }
    model_free(&r->m);
    if (r->test) data_loader_close(r->test);
    if (r->train) data_loader_close(r->train);
    if (r->k) kern_destroy(r->k);
    free(r->config_yaml);
}

/* The straggler report, and the trace when log.trace asks for one (collective). */
static int open_observers(run *r, char *err) {
    const config *cfg = r->cfg;
    if (straggler_open(&r->strag, r->world, r->rank, cfg->straggler_pct, cfg->straggler_intervals,
                       err, ERRLEN) != 0)
        return -1;
    if (!cfg->trace) return 0;
    /* per micro-step: data, copy, loss and a forward and backward span per layer; per step:
     * zeroing, the all-reduce wait, each bucket, the optimizer */
    int per_step = (int)(r->accum * (2 * r->m.n_layers + 4) + 8 + comm_grads_buckets(r->c));
    if (trace_open(&r->tr, r->k, r->c, cfg->trace_start, cfg->trace_steps, per_step, err,
                   ERRLEN) != 0)
        return -1;
    r->m.trace = r->tr;
    return r->world > 1 ? comm_grads_time_buckets(r->c, err, ERRLEN) : 0;
}

/* The all-reduce of each gradient bucket of this step, as comm timed it. */
static void trace_buckets(run *r) {
    const double *t0, *t1;
    int64_t n = trace_on(r->tr) ? comm_grads_bucket_times(r->c, &t0, &t1) : 0;
    for (int64_t i = 0; i < n; i++)
        trace_host_span(r->tr, TRACE_COMM, "all-reduce bucket", (int)i, t0[i], t1[i]);
}

/* train.nonfinite=skip gives up after this many skipped steps in a row. */
#define MAX_CONSECUTIVE_SKIPS 20

/* Collective: finds where non-finite values first appeared in this step - the input, a
 * layer's output (lowest layer, then lowest rank), or only the gradients - and reports it
 * once, from rank 0. */
static void report_nonfinite(run *r, int64_t step, int64_t skipped) {
    char err[ERRLEN];
    int layer = model_first_nonfinite_layer(&r->m, r->B);   /* -1 input .. n_layers none */
    /* lowest (layer, rank) wins: all-reduce MAX of its complement */
    int32_t key = layer < r->m.n_layers ? (int32_t)((layer + 1) * 65536 + r->rank) : INT32_MAX;
    int32_t inv = INT32_MAX - key;
    if (comm_allreduce_max_i32(r->c, &inv, 1, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    key = INT32_MAX - inv;
    if (r->rank != 0) return;
    char where[512];
    if (key != INT32_MAX) {
        int l = key / 65536 - 1, rank = key % 65536;
        if (l < 0)
            snprintf(where, sizeof where, "first in the input batch on rank %d (data %s)", rank,
                     r->cfg->train_path);
        else
            snprintf(where, sizeof where, "first in the output of layer %d (%s) on rank %d%s", l,
                     layer_type_name(r->m.layers[l].type), rank,
                     model_first_nonfinite_tensor(&r->m, 0) >= 0 ? "; the parameters themselves "
                     "are already non-finite" : "");
    } else {
        const model_tensor *t = r->m.tensors;
        int ti = model_first_nonfinite_tensor(&r->m, 1);
        snprintf(where, sizeof where, "the forward pass is finite on every rank; the first "
                 "non-finite gradient is %s's (backward overflow)", ti >= 0 ? t[ti].name : "?");
    }
    fprintf(stderr, "%sharness: error: non-finite loss or gradients at step %lld%s: %s; "
            "try a lower train.lr or train.clip_grad_norm, or train.nonfinite=skip\n",
            r->met.line_open ? "\n" : "", (long long)step,
            skipped ? " (after the maximum of consecutive skipped steps)" : "", where);
    r->met.line_open = 0;
}

/* One micro-step's work with no host reads in it (one rank, no gradient accumulation): what a
 * CUDA graph records.  t_plus from optim_count_step. */
static void graph_step_body(run *r, const config *cfg, int64_t step, float lr, int64_t t_plus,
                            int64_t rows, float inv_scale) {
    model_zero_grads(&r->m);
    const float *logits = model_forward(&r->m, r->B, 1, cfg->seed, (uint64_t)step, r->rank_base);
    kern_softmax_xent_acc(r->k, r->m.losses, model_dlogits(&r->m), r->acc_dev, logits,
                          r->labels_dev, (int)rows, (int)r->m.n_classes, (int)r->m.out_ld,
                          inv_scale);
    model_backward(&r->m, r->B, NULL, r);
    optim_queue_update(&r->opt, r->m.params, r->m.grads, lr,
                       cfg->nonfinite == NONFINITE_SKIP ? MAX_CONSECUTIVE_SKIPS : 0, step, t_plus);
}

/* Whether steps run from a CUDA graph (run.cuda_graph), and why not; NULL reason: yes. */
static const char *graph_refusal(const run *r, const config *cfg, int *emulate) {
    *emulate = 0;
    if (!cfg->cuda_graph) return "off (run.cuda_graph: false)";
    if (!kern_graph_available(r->k)) {
        /* Test hook: on the CPU, take the graph path's step (graph_step_body, the host's
         * step count and values) without recording, so that it can be checked against the
         * ordinary step (tests/trainer/grad_zeroing.sh) where no GPU is. */
        if (getenv("HARNESS_TEST_GRAPH_BODY") && r->world == 1 && r->accum == 1) {
            *emulate = 1;
            return NULL;
        }
        return "not on the CPU backend";
    }
    if (r->world > 1)
        return "not with several ranks (the gradient buckets' collectives and their watchdog "
               "records are issued by the host during backward)";
    if (r->accum > 1) return "not with train.grad_accum > 1 (a batch upload between micro-steps)";
    if (r->zero) return "not with train.zero_stage=1";
    if (r->tr) return "not while tracing (log.trace: the trace marks each layer from the host)";
    return NULL;
}

/* Rank 0: one rank has been slower than the others for log.straggler_intervals intervals. */
static void report_straggler(run *r, int64_t step, const straggler_report *sr) {
    double others = sr->max_s / (1.0 + sr->excess);
    metrics_notice(&r->met, "harness: warning: straggler: rank %d's steps took %.0f%% longer "
                   "than the other ranks' median (%.3f ms vs %.3f ms, busy time per step) for "
                   "the last %d log intervals (up to step %lld)", sr->slowest, 100.0 * sr->excess,
                   sr->max_s * 1e3, others * 1e3, sr->streak, (long long)step);
    char fields[256];
    snprintf(fields, sizeof fields, "\"step\":%lld,\"rank\":%d,\"excess\":%.4f,"
             "\"rank_step_s\":%.6g,\"others_median_s\":%.6g,\"intervals\":%d",
             (long long)step, sr->slowest, sr->excess, sr->max_s, others, sr->streak);
    metrics_log_event(&r->met, "straggler", fields);
}

static void run_init(run *r, const config *cfg, comm *c) {
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->c = c;
    r->rank = comm_rank(c);
    r->world = comm_world(c);
}

int train_run(const config *cfg, const train_options *opt, comm *c) {
    char err[ERRLEN];
    run r;
    run_init(&r, cfg, c);
    r.resume_what = opt->resume;

    /* SIGUSR1 (Slurm's warning before the time limit) and SIGTERM (preemption) only set a
     * flag; the ranks agree at the next step boundary and checkpoint the same step. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* Debug: every collective's fingerprint compared across ranks (a collective call). */
    if (cfg->check_fingerprints && comm_check_fingerprints(c, 1, err, sizeof err) != 0) {
        if (r.rank == 0) fprintf(stderr, "harness: error: %s\n", err);
        return HARNESS_EXIT_ERROR;
    }
    if (setup(&r, err) != 0) {
        teardown(&r);
        return HARNESS_EXIT_ERROR;
    }
    /* From here on a stalled collective or a lost rank ends the job with a report (the
     * one-rank phases of start-up - reading data, resuming - are over). */
    int wd = cfg->comm_timeout_s > 0 ? comm_watchdog_start(c, cfg->comm_timeout_s, err, sizeof err) : 0;
    if (agree(&r, wd, err) || agree(&r, open_observers(&r, err), err)) {
        teardown(&r);
        return HARNESS_EXIT_ERROR;
    }
    /* optimizer state this rank holds: state tensors x its shard (all of it at stage 0) */
    int64_t optim_state_bytes = (int64_t)n_optim_states(&r.opt) * r.opt.n * (int64_t)sizeof(float);
    if (r.rank == 0) {
        fprintf(stderr, "harness: %lld parameters, %d rank%s, global batch %lld (%lld per rank x %lld "
                "micro-steps), %lld steps, %.1f MFLOP per sample\n", (long long)r.m.n_params,
                r.world, r.world > 1 ? "s" : "", (long long)cfg->batch_size, (long long)r.B,
                (long long)r.accum, (long long)r.total_steps, r.m.flops_per_sample * 1e-6);
        int64_t allocated = r.m.allocated_bytes + optim_state_bytes;
        double mib = 1024.0 * 1024.0;
        fprintf(stderr, "harness: memory per rank: estimated %.1f MiB at start, allocated %.1f MiB "
                "(model %.1f MiB: parameters, gradients, activations, scratch; optimizer state "
                "%.1f MiB)\n", (double)r.estimated_bytes / mib, (double)allocated / mib,
                (double)r.m.allocated_bytes / mib, (double)optim_state_bytes / mib);
        fprintf(stderr, "harness: optimizer state per rank: %lld bytes (%lld of %lld parameters, "
                "train.zero_stage=%d%s)\n", (long long)optim_state_bytes,
                (long long)(r.shard_hi - r.shard_lo), (long long)r.m.n_params, cfg->zero_stage,
                r.zero ? ", sharded over the ranks" : "");
        char fields[640];
        snprintf(fields, sizeof fields, "\"params\":%lld,\"world\":%d,\"batch_size\":%lld,"
                 "\"total_steps\":%lld,\"start_step\":%lld,\"flops_per_sample\":%.6g,"
                 "\"zero_stage\":%d,\"optim_state_bytes_per_rank\":%lld",
                 (long long)r.m.n_params, r.world, (long long)cfg->batch_size,
                 (long long)r.total_steps, (long long)r.start_step, r.m.flops_per_sample,
                 cfg->zero_stage, (long long)optim_state_bytes);
        metrics_log_event(&r.met, "start", fields);
    }

    /* interval accumulators: loss sum, correct, samples (this rank), timings */
    double iv_compute = 0, iv_comm = 0, iv_data = 0, gnorm = 0;
    int64_t iv_samples = 0, iv_steps = 0, epoch = 0, steps_run = 0;
    int64_t skipped_steps = 0, consecutive_skips = 0;
    double t_interval = metrics_now(), t_train = t_interval, t_excluded = 0;
    /* the loss is the mean over the global batch's samples (language models: tokens) */
    int64_t rows = r.B * r.m.rows_per_sample;
    float inv_scale = 1.0f / (float)(rows * r.accum);
    reset_acc(&r, r.acc_dev);
    int exit_code = HARNESS_EXIT_OK;
    char ckpt_path[1200] = "";
    /* Fault-injection hook for tests: a pause after each micro-step, so that a signal can be
     * delivered reliably in the middle of gradient accumulation. */
    const char *sleep_env = getenv("HARNESS_FAULT_STEP_SLEEP_MS");
    long step_sleep_ms = sleep_env ? strtol(sleep_env, NULL, 10) : 0;
    /* Test hook: NaN in every gradient after each update, so that a gradient the next step
     * neither zeroes (model_zero_grads) nor overwrites (its first writer) shows up as a
     * non-finite step (tests/trainer/grad_zeroing.sh). */
    int poison_grads = getenv("HARNESS_FAULT_POISON_GRADS") != NULL;
    /* ... and HARNESS_FAULT_SLOW_RANK=R:MS, a pause in rank R's steps only (a straggler) */
    const char *slow_env = getenv("HARNESS_FAULT_SLOW_RANK");
    if (slow_env && strtol(slow_env, NULL, 10) == r.rank && strchr(slow_env, ':'))
        step_sleep_ms += strtol(strchr(slow_env, ':') + 1, NULL, 10);
    data_batch b;

    /* device work queued by the step body (not log reads, evaluation or checkpoints), from
     * the second step on (the first builds GEMM and convolution plans) */
    kern_counters kc_sum = {0}, kc0, kc1;
    int64_t kc_steps = 0;
    /* CUDA graph: the first step of this process runs as it is (it builds the GEMM and
     * convolution plans, which cannot be made while recording), the second is recorded and
     * every later one replays it */
    int graph_emulate = 0;
    const char *graph_why_not = graph_refusal(&r, cfg, &graph_emulate);
    int graph_on = graph_why_not == NULL, graph_ready = 0;
    if (kern_get_backend(r.k) != KERN_CPU && r.rank == 0)
        metrics_notice(&r.met, "harness: CUDA graph of the training step: %s",
                       graph_on ? "recorded at the second step, replayed after it "
                                  "(run.cuda_graph: false turns it off)" : graph_why_not);
    for (int64_t step = r.start_step; step < r.total_steps; step++) {
        comm_set_step(c, step + 1);   /* 1-based, as in the logs and checkpoint names */
        double t0 = metrics_now();
        kern_get_counters(r.k, &kc0);
        trace_step_begin(r.tr, step + 1);
        double data_before = data_loader_wait_seconds(r.train);
        int graphed = graph_on && step > r.start_step;
        if (graphed) {
            if (next_batch(&r, r.train, &b, err, sizeof err) != 0) comm_abort(c, 1, err);
            epoch = b.epoch;
            load_batch(&r, &b, cfg->train_path);
            float glr = optim_lr(&r.opt, step);
            int64_t t_plus = optim_count_step(&r.opt);
            kern_step_values sv = {glr, t_plus, step, (uint64_t)step};
            kern_graph_set_values(r.k, &sv);
            if (graph_emulate) graph_step_body(&r, cfg, step, glr, t_plus, rows, inv_scale);
            else if (!graph_ready) {
                char gerr[512] = "";
                int ok = kern_graph_begin(r.k, gerr, sizeof gerr) == 0;
                if (ok) {
                    graph_step_body(&r, cfg, step, glr, t_plus, rows, inv_scale);
                    ok = kern_graph_end(r.k, gerr, sizeof gerr) == 0;
                }
                if (ok) {
                    graph_ready = 1;
                } else {
                    /* nothing recorded has run: this step, and the rest, without a graph */
                    if (r.rank == 0)
                        metrics_notice(&r.met, "harness: warning: recording the step as a CUDA "
                                       "graph failed (%s); training without one", gerr);
                    graph_on = 0;
                    graph_step_body(&r, cfg, step, glr, t_plus, rows, inv_scale);
                }
            }
            if (graph_ready) kern_graph_launch(r.k);
            iv_samples += rows;
        }
        int span = -1;
        if (!graphed) {
            span = trace_compute_begin(r.tr, "zero gradients", NULL, -1);
            model_zero_grads(&r.m);   /* the first writer of most gradients overwrites them */
            trace_compute_end(r.tr, span);
        }
        for (int64_t micro = 0; !graphed && micro < r.accum; micro++) {
            span = trace_host_begin(r.tr, TRACE_HOST, "data wait", -1);
            if (next_batch(&r, r.train, &b, err, sizeof err) != 0) comm_abort(c, 1, err);
            trace_host_end(r.tr, span);
            if (micro == 0) epoch = b.epoch;
            span = trace_compute_begin(r.tr, "copy to device", NULL, -1);
            load_batch(&r, &b, cfg->train_path);
            trace_compute_end(r.tr, span);
            uint64_t step_id = (uint64_t)(step * r.accum + micro);
            const float *logits = model_forward(&r.m, r.B, 1, cfg->seed, step_id, r.rank_base);
            /* loss sum and correct count stay on the backend until the log interval; the
             * gradient of the logits is written over them (model_dlogits) */
            span = trace_compute_begin(r.tr, "loss", NULL, -1);
            kern_softmax_xent_acc(r.k, r.m.losses, model_dlogits(&r.m), r.acc_dev, logits,
                                  r.labels_dev, (int)rows, (int)r.m.n_classes, (int)r.m.out_ld,
                                  inv_scale);
            trace_compute_end(r.tr, span);
            iv_samples += rows;
            int last = micro == r.accum - 1;
            model_backward(&r.m, r.B, last && r.world > 1 ? grads_ready_cb : NULL, &r);
            if (step_sleep_ms > 0) {
                struct timespec ts = {step_sleep_ms / 1000, (step_sleep_ms % 1000) * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        if (r.world > 1) {
            /* On GPUs the wait queues the compute stream behind the all-reduces (NCCL) or the
             * copies back (MPI staged); what follows runs on that stream. */
            span = trace_host_begin(r.tr, TRACE_HOST, "all-reduce wait", -1);
            if (comm_grads_ready(c, 0, err, sizeof err) != 0 ||
                comm_grads_wait(c, err, sizeof err) != 0)
                comm_abort(c, 1, err);
            trace_host_end(r.tr, span);
            trace_buckets(&r);
            iv_comm += comm_grads_wait_seconds(c);
        }
        /* The averaged gradients are identical on every rank, so every rank reaches the same
         * verdict here without communicating. */
        /* Norm, clip factor and the finite check are computed and used on the backend: the
         * update is skipped there when the gradients are non-finite (train.nonfinite=skip
         * allows MAX_CONSECUTIVE_SKIPS in a row; error: none), and the host does not wait.
         * It reads the verdict every step on the CPU backend (free there), else at the steps
         * every rank agrees on - log intervals, checkpoints, --stop-after, the last step -
         * and, for the step count alone, when a stop signal came.  The averaged gradients
         * are identical on every rank, so every rank reaches the same verdict. */
        /* zero_stage 1: each rank updates its shard with its shard's state (the norm adds the
         * shards' sums of squares: one scalar all-reduce), then the shards are all-gathered so
         * every rank holds all updated parameters for the next forward. */
        float lr = optim_lr(&r.opt, step);
        const float *step_grads = r.zero ? comm_grads_shard(c) : r.m.grads;
        span = trace_compute_begin(r.tr, "optimizer", NULL, -1);
        if (!graphed)
            optim_device_step(&r.opt, r.m.params + r.shard_lo, step_grads, lr,
                              cfg->nonfinite == NONFINITE_SKIP ? MAX_CONSECUTIVE_SKIPS : 0, step);
        trace_compute_end(r.tr, span);
        if (r.zero && r.world > 1) {
            double tg = metrics_now();
            if (comm_shards_allgather(c, r.m.params, err, sizeof err) != 0) comm_abort(c, 1, err);
            iv_comm += metrics_now() - tg;
        }
        if (poison_grads) kern_fill(r.k, r.m.grads, NAN, r.m.n_params);
        /* a failed cuBLAS/cuDNN call or kernel leaves wrong numbers behind: once per step */
        if (kern_check(r.k, err, sizeof err) != 0) comm_abort(c, 1, err);
        {
            int64_t n_done = step + 1;
            int agreed = kern_get_backend(r.k) == KERN_CPU || n_done % cfg->log_every == 0 ||
                         n_done == r.total_steps ||
                         (cfg->ckpt_every > 0 && n_done % cfg->ckpt_every == 0) ||
                         (opt->stop_after > 0 && n_done == opt->stop_after);
            if (agreed || stop_signal) {
                optim_verdict v;
                optim_read(&r.opt, &v);
                gnorm = v.norm;
                consecutive_skips = v.run;
                skipped_steps = v.skipped_total;
                if (v.new_skips > 0 && r.rank == 0) {
                    if (v.new_skips == 1 && v.skipped && !v.stop)
                        metrics_notice(&r.met, "harness: warning: step %lld: non-finite "
                                       "gradients; step skipped (train.nonfinite=skip; %lld "
                                       "skipped so far)", (long long)n_done,
                                       (long long)skipped_steps);
                    else
                        metrics_notice(&r.met, "harness: warning: steps up to %lld: %lld more "
                                       "steps with non-finite gradients skipped "
                                       "(train.nonfinite=skip; %lld skipped so far)",
                                       (long long)n_done, (long long)v.new_skips,
                                       (long long)skipped_steps);
                }
                if (v.stop && agreed) {
                    report_nonfinite(&r, v.stop_step + 1,
                                     consecutive_skips > 1 ? consecutive_skips - 1 : 0);
                    exit_code = HARNESS_EXIT_ERROR;
                    break;
                }
            }
        }
        double t1 = metrics_now();
        kern_get_counters(r.k, &kc1);
        if (step > r.start_step) {
            kc_sum.launches += kc1.launches - kc0.launches;
            kc_sum.host_syncs += kc1.host_syncs - kc0.host_syncs;
            kc_sum.fused_gemms += kc1.fused_gemms - kc0.fused_gemms;
            kc_sum.epilogue_fallbacks += kc1.epilogue_fallbacks - kc0.epilogue_fallbacks;
            kc_steps++;
        }
        trace_step_end(r.tr);
        iv_data += data_loader_wait_seconds(r.train) - data_before;
        iv_compute += t1 - t0;
        iv_steps++;
        steps_run++;

        int64_t done = step + 1;
        int last_step = done == r.total_steps;
        if (done % cfg->log_every == 0 || last_step) {
            double sums[3] = {0, 0, (double)iv_samples};
            kern_to_host(r.k, sums, r.acc_dev, 2 * sizeof(double));
            reset_acc(&r, r.acc_dev);
            if (comm_allreduce_sum_f64(c, sums, 3, err, sizeof err) != 0) comm_abort(c, 1, err);
            double now = metrics_now(), dt = now - t_interval;
            straggler_report sr;
            if (straggler_interval(&r.strag, c, (iv_compute - iv_comm) / (double)iv_steps, &sr,
                                   err, sizeof err) != 0)
                comm_abort(c, 1, err);
            if (r.rank == 0) {
                metrics_train t = {0};
                t.spread = r.world > 1;
                t.step_min_s = sr.min_s;
                t.step_median_s = sr.median_s;
                t.step_max_s = sr.max_s;
                t.slowest_rank = sr.slowest;
                t.step = done;
                t.total_steps = r.total_steps;
                t.epoch = epoch;
                t.loss = sums[0] / sums[2];
                t.accuracy = sums[1] / sums[2];
                t.lr = lr;
                t.grad_norm = gnorm;
                t.samples_per_s = (double)iv_steps * (double)cfg->batch_size / dt;
                t.flops_per_s = t.samples_per_s * r.m.flops_per_sample;
                t.tokens_per_s = t.samples_per_s * (double)r.context;
                t.mfu = r.peak_flops > 0 ? t.flops_per_s / (double)r.world / r.peak_flops : -1.0;
                t.elapsed_s = now - t_train - t_excluded;
                t.eta_s = t.elapsed_s / (double)steps_run * (double)(r.total_steps - done);
                t.comm_wait_s = iv_comm / (double)iv_steps;
                t.data_wait_s = iv_data / (double)iv_steps;
                t.compute_s = (iv_compute - iv_comm - iv_data) / (double)iv_steps;
                metrics_log_train(&r.met, &t);
                if (sr.warn) report_straggler(&r, done, &sr);
            }
            iv_compute = iv_comm = iv_data = 0;
            iv_samples = iv_steps = 0;
            t_interval = metrics_now();
        }
        if (last_step) break;

        /* Evaluation and checkpoints do not count as training time. */
        double te = metrics_now();
        if (r.test && cfg->eval_every > 0 && done % cfg->eval_every == 0) {
            /* one span for the whole evaluation, not one per layer per batch */
            span = trace_host_begin(r.tr, TRACE_HOST, "evaluation", -1);
            r.m.trace = NULL;
            evaluate(&r, done, epoch);
            r.m.trace = r.tr;
            trace_host_end(r.tr, span);
        }
        /* One small all-reduce per step: every rank learns of a signal any rank received,
         * so they all stop after the same step. */
        int32_t stop = stop_signal ? stop_signal
                       : (opt->stop_after > 0 && done == opt->stop_after) ? STOP_AFTER : 0;
        if (r.world > 1 && comm_allreduce_max_i32(c, &stop, 1, err, sizeof err) != 0)
            comm_abort(c, 1, err);
        if (stop || (cfg->ckpt_every > 0 && done % cfg->ckpt_every == 0)) {
            comm_watchdog_allow(c, cfg->ckpt_timeout_s);   /* the others wait for rank 0's write */
            span = trace_host_begin(r.tr, TRACE_HOST, "checkpoint write", -1);
            int ck = checkpoint(&r, done, ckpt_path, sizeof ckpt_path);
            trace_host_end(r.tr, span);
            if (ck != 0) {
                exit_code = HARNESS_EXIT_ERROR;
                break;
            }
        }
        if (stop) {
            if (r.rank == 0)
                metrics_notice(&r.met, "harness: %s: checkpointed step %lld to %s; exiting with "
                               "status %d (resume with --resume auto)",
                               stop == SIGTERM ? "SIGTERM" : stop == SIGUSR1 ? "SIGUSR1"
                               : "--stop-after", (long long)done, ckpt_path,
                               HARNESS_EXIT_RESUBMIT);
            exit_code = HARNESS_EXIT_RESUBMIT;
            break;
        }
        double spent = metrics_now() - te;
        t_interval += spent;
        t_excluded += spent;
    }
    double train_s = metrics_now() - t_train - t_excluded;
    if (kc_steps > 0 && kern_get_backend(r.k) != KERN_CPU && r.rank == 0) {
        double n = (double)kc_steps;
        metrics_notice(&r.met, "harness: device work per step (rank 0, %lld steps): %.1f "
                       "launches, %.2f host waits, %.1f GEMMs with fused epilogues, %.1f "
                       "epilogue fallbacks", (long long)kc_steps, (double)kc_sum.launches / n,
                       (double)kc_sum.host_syncs / n, (double)kc_sum.fused_gemms / n,
                       (double)kc_sum.epilogue_fallbacks / n);
    }

    if (exit_code == HARNESS_EXIT_OK && skipped_steps > 0 && r.rank == 0)
        metrics_notice(&r.met, "harness: %lld step%s skipped for non-finite gradients",
                       (long long)skipped_steps, skipped_steps == 1 ? "" : "s");
    if (exit_code == HARNESS_EXIT_OK) {
        comm_watchdog_allow(c, cfg->ckpt_timeout_s);
        int span = trace_host_begin(r.tr, TRACE_HOST, "checkpoint write", -1);
        if (checkpoint(&r, r.total_steps, ckpt_path, sizeof ckpt_path) != 0)
            exit_code = HARNESS_EXIT_ERROR;
        trace_host_end(r.tr, span);
    }
    /* every rank reaches here (errors in the loop are agreed on, or abort the job) */
    if (r.tr && trace_write(r.tr, c, cfg->run_dir, err, sizeof err) != 0 && r.rank == 0)
        metrics_notice(&r.met, "harness: warning: trace: %s", err);
    else if (r.tr && r.rank == 0)
        metrics_notice(&r.met, "harness: trace of steps %lld-%lld written to %s/trace.json",
                       (long long)cfg->trace_start,
                       (long long)(cfg->trace_start + cfg->trace_steps - 1), cfg->run_dir);
    if (exit_code == HARNESS_EXIT_OK) {
        r.m.trace = NULL;
        if (r.test) evaluate(&r, r.total_steps, epoch);
        /* peak resident memory (VmHWM) of every rank, for the memory figures of zero_stage */
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        int32_t rss_kib[2] = {(int32_t)(ru.ru_maxrss > INT32_MAX ? INT32_MAX : ru.ru_maxrss), 0};
        int32_t rank0_kib = rss_kib[0];
        if (comm_allreduce_max_i32(c, rss_kib, 1, err, sizeof err) != 0) comm_abort(c, 1, err);
        if (r.rank == 0)
            metrics_notice(&r.met, "harness: peak resident memory per rank: max %.1f MiB (rank 0 "
                           "%.1f MiB); optimizer state per rank %.1f MiB (train.zero_stage=%d)",
                           rss_kib[0] / 1024.0, rank0_kib / 1024.0,
                           (double)optim_state_bytes / (1024.0 * 1024.0), cfg->zero_stage);
        if (r.rank == 0) {
            double sps = steps_run > 0 ? (double)steps_run * (double)cfg->batch_size / train_s : 0;
            char acc[96] = "", rate[64];
            if (r.test && r.lm)
                snprintf(acc, sizeof acc, ", val loss %.4f, val perplexity %.3f",
                         r.last_eval_loss, exp(r.last_eval_loss));
            else if (r.test)
                snprintf(acc, sizeof acc, ", test accuracy %.4f", r.last_eval_accuracy);
            if (r.lm) snprintf(rate, sizeof rate, "%.0f tokens/s", sps * (double)r.context);
            else snprintf(rate, sizeof rate, "%.0f samples/s", sps);
            metrics_notice(&r.met, "harness: done: %lld steps in %.1f s, %s "
                           "(%.2f GFLOP/s) on %d rank%s%s; checkpoint %s",
                           (long long)steps_run, train_s, rate, sps * r.m.flops_per_sample * 1e-9,
                           r.world, r.world > 1 ? "s" : "", acc, ckpt_path);
            char fields[2048];
            snprintf(fields, sizeof fields, "\"steps\":%lld,\"train_seconds\":%.3f,"
                     "\"samples_per_s\":%.1f,\"flops_per_s\":%.6g,\"test_accuracy\":%.6f,"
                     "\"test_loss\":%.9g,\"tokens_per_s\":%.1f,\"checkpoint\":\"%s\","
                     "\"optim_state_bytes_per_rank\":%lld,\"peak_rss_kib_max\":%d",
                     (long long)steps_run, train_s, sps, sps * r.m.flops_per_sample,
                     r.test ? r.last_eval_accuracy : -1.0, r.test ? r.last_eval_loss : -1.0,
                     sps * (double)r.context, ckpt_path, (long long)optim_state_bytes,
                     (int)rss_kib[0]);
            metrics_log_event(&r.met, "summary", fields);
        }
    }
    if (cfg->plot && r.rank == 0 && exit_code != HARNESS_EXIT_ERROR) {
        char png[CFG_PATH_MAX + 32];
        snprintf(png, sizeof png, "%s/metrics.png", cfg->run_dir);
        fflush(r.met.jsonl);
        const char *dirs[1] = {cfg->run_dir};
        if (plot_runs(dirs, 1, png, PLOT_DEFAULT_WIDTH, PLOT_DEFAULT_HEIGHT, NULL, err,
                      sizeof err) != 0)
            metrics_notice(&r.met, "harness: warning: log.plot: %s", err);
        else
            metrics_notice(&r.met, "harness: plot written to %s", png);
    }
    teardown(&r);
    return exit_code;
}

int eval_run(const config *cfg, const char *ckpt, comm *c) {
    char err[ERRLEN];
    run r;
    run_init(&r, cfg, c);
    /* evaluation batches: up to batch_size / grad_accum samples per rank */
    r.B = cfg->batch_size / cfg->grad_accum;
    if (r.B < 1) r.B = 1;
    r.G = r.B * r.world;
    int st = 0;
    if (agree(&r, open_backend(&r, err), err) || agree(&r, open_data(&r, 0, err), err))
        goto out;
    st = model_build(&r.m, cfg, &r.in_desc, r.B, 0, r.k, err, ERRLEN);
    if (st == 0) st = alloc_batch_buffers(&r, err);
    if (agree(&r, st, err)) goto out;
    ckpt_state s;
    if (r.rank == 0) st = ckpt_read(ckpt, &r.m, NULL, &s, err, ERRLEN) == CKPT_OK ? 0 : -1;
    if (agree(&r, st, err)) goto out;
    st = broadcast_floats(&r, r.m.params, r.m.n_params, err);
    if (agree(&r, st, err)) goto out;
    evaluate(&r, 0, 0);   /* broadcasts the running statistics too */
    teardown(&r);
    return HARNESS_EXIT_OK;
out:
    teardown(&r);
    return HARNESS_EXIT_ERROR;
}
