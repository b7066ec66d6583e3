/* train_setup.c: a run's start and end (see train_run.h). */
#define _GNU_SOURCE   /* sched_getaffinity */
#include "train_run.h"

#include <sched.h>

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

int run_open_backend(run *r, char *err) {
    const config *cfg = r->cfg;
    kern_options ko = {0};
    ko.backend = KERN_CPU;
    ko.threads = cfg->threads > 0 ? cfg->threads : default_threads(comm_local_size(r->c));
    ko.device = comm_local_rank(r->c);
    ko.precision = cfg->precision == PRECISION_BF16 ? KERN_BF16
                   : cfg->precision == PRECISION_TF32 ? KERN_TF32 : KERN_FP32;
    ko.separate_epilogues = cfg->gemm_epilogues == 1;
    ko.upload_delay_ms = r->hooks.upload_delay_ms;
    ko.download_delay_ms = r->hooks.download_delay_ms;
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
    }
    if (ko.backend == KERN_CPU && r->rank == 0) {
        char cpu[160];
        kern_cpu_describe(cpu, sizeof cpu);
        fprintf(stderr, "harness: %s on the CPU backend (%d rank%s x %d thread%s; cpu: %s)\n",
                cfg->device == DEVICE_AUTO ? "no GPU found, training" : "training", r->world,
                r->world > 1 ? "s" : "", ko.threads, ko.threads > 1 ? "s" : "", cpu);
    }
    /* run.threads beyond the cores this process may run on (mpirun binds each rank to one
     * core by default up to 2 ranks): the threads would share them and gain nothing */
    cpu_set_t allowed;
    if (ko.backend == KERN_CPU && cfg->threads > 1 && r->rank == 0 &&
        sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) > 0 &&
        CPU_COUNT(&allowed) < cfg->threads)
        fprintf(stderr, "harness: warning: run.threads=%d, but this rank may run on %d core%s "
                "(its CPU affinity; mpirun binds each rank to a core by default): the threads "
                "share %s. Launch with mpirun --bind-to none, or --map-by slot:PE=%d\n",
                cfg->threads, CPU_COUNT(&allowed), CPU_COUNT(&allowed) > 1 ? "s" : "",
                CPU_COUNT(&allowed) > 1 ? "them" : "it", cfg->threads);
    if (ko.backend == KERN_CUDA && gpus > 0) ko.device = comm_local_rank(r->c) % gpus;
    r->device = ko.device;
    /* bf16 on the CPU only where it is faster than fp32 (AMX); elsewhere fp32, said once */
    if (ko.backend == KERN_CPU && cfg->precision == PRECISION_TF32 && r->rank == 0)
        fprintf(stderr, "harness: run.precision=tf32 applies to the CUDA backend; the CPU "
                "backend computes in fp32\n");
    if (ko.backend == KERN_CPU && cfg->precision == PRECISION_BF16 && !kern_cpu_bf16_fast() &&
        r->rank == 0)
        fprintf(stderr, "harness: run.precision=bf16: this CPU has no AMX, where bf16 GEMMs "
                "are slower than fp32; computing in fp32\n");
    if (kern_create(&ko, &r->k, err, ERRLEN) != 0) return -1;
    char name[256];
    if (kern_device_name(r->k, name, sizeof name) == 0) r->peak_flops = gpu_peak_bf16_flops(name);
    else if (name[0] && r->rank == 0)   /* the CUDA query failed: say so, MFU goes unreported */
        fprintf(stderr, "harness: warning: the GPU's name is %s; no MFU\n", name);
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
}

static void *alloc_batch_host(size_t bytes, void *user) { return kern_alloc_host(user, bytes); }

static void free_batch_host(void *p, void *user) { kern_free_host(user, p); }

int run_open_data(run *r, int need_train, char *err) {
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

/* The sum of squares of the averaged gradients (the shard's with zero_stage 1), where the
 * gradient exchange took it on the way (comm_grads_sumsq). */
static int known_sumsq(void *user, double *x) {
    run *r = user;
    return comm_grads_sumsq(r->c, x);
}

/* Allocates the per-rank batch buffers on the backend (after model_build). */
int run_alloc_batch_buffers(run *r, char *err) {
    int lm = model_is_lm(&r->m);
    int64_t rows = model_rows(&r->m, r->B);
    if (!(r->labels_dev = kern_alloc(r->k, (size_t)rows * sizeof(int32_t)))) goto oom;
    if (!(r->acc_dev = kern_alloc(r->k, 4 * sizeof(double)))) goto oom;
    size_t x_bytes = lm ? (size_t)rows * sizeof(int32_t)
                        : (size_t)(r->B * r->info->sample_elems) * (r->info->dtype == DATA_U8 ? 1 : 4);
    if (kern_get_backend(r->k) != KERN_CPU && !lm && !(r->x_dev = kern_alloc(r->k, x_bytes)))
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
    /* comm.grad_dtype=bf16: the buckets as sent (2 bytes per gradient) and the bf16 shard;
     * device memory with NCCL, host memory otherwise - counted with the model either way */
    if (cfg->grad_dtype == GRAD_DTYPE_BF16 && r->world > 1)
        model += 2 * n_params + (cfg->zero_stage == 1 ? 2 * shard : 0);
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
    /* checkpoint.async: the host snapshot of parameters and optimizer state (rank 0's alone,
     * counted once on every node, or every rank's slice; report_start shows it) */
    int64_t snap = run_checkpoint_snapshot_bytes(cfg, r->world, local, n_params, states);
    /* the node's shared gradient window (comm_grads_shm.c), host fp32 gradients and 2 or more
     * ranks on the node: (ranks + 1) x parameters floats, where the ranks' gradients then live
     * (counted above), so one more buffer of them; or, where that is over comm.window_mb, at
     * most window_mb besides them (in rounds) */
    int64_t win = 0;
    if (!on_gpu && cfg->shared_memory && cfg->grad_dtype == GRAD_DTYPE_FP32 && local > 1) {
        win = n_params * (int64_t)sizeof(float);
        if (win > (cfg->window_mb << 20)) win = cfg->window_mb << 20;
    }
    if (avail < 0 || need * local + snap + win <= avail) return 0;
    double g = 1024.0 * 1024.0 * 1024.0;
    snprintf(err, ERRLEN, "this run needs about %.2f GiB of host memory per rank (parameters "
             "and gradients %.2f GiB for %lld parameters, optimizer state %.2f GiB, activations "
             "%.2f GiB, cached datasets %.2f GiB) x %d rank%s on this node, plus %.2f GiB for "
             "rank 0's checkpoint.async snapshot and %.2f GiB for the shared gradient window "
             "(comm.window_mb) = %.2f GiB, but only %.2f GiB is available; "
             "reduce the model, train.batch_size or data.cache_mb, or use more nodes",
             (double)need / g, (double)param_bytes / g, (long long)n_params,
             (double)optim_bytes / g, (double)act_bytes / g, (double)data / g, local,
             local == 1 ? "" : "s", (double)snap / g, (double)win / g,
             (double)(need * local + snap + win) / g, (double)avail / g);
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

/* model.init_from (rank 0): the checkpoint's parameters replace the initial ones; the optimizer
 * and the data start fresh.  A resumed run's checkpoint later replaces them again. */
static int load_init_from(run *r, char *err) {
    const char *path = r->cfg->init_from;
    int64_t vocab = 0;
    char e[ERRLEN];
    int has = ckpt_read_vocab_size(path, &vocab, e, sizeof e);
    if (has < 0) return snprintf(err, ERRLEN, "model.init_from: %s", e), -1;
    if (has == 0 && r->m.input_desc.tokens && vocab != r->m.n_classes)
        return snprintf(err, ERRLEN, "model.init_from: %s has a vocabulary of %lld tokens, but "
                        "data.train %s has %lld", path, (long long)vocab, r->cfg->train_path,
                        (long long)r->m.n_classes), -1;
    ckpt_state s;
    if (ckpt_read(path, &r->m, NULL, &s, e, sizeof e) != CKPT_OK)
        return snprintf(err, ERRLEN, "model.init_from: %s", e), -1;
    fprintf(stderr, "harness: parameters from %s (its step %lld); optimizer and data start "
            "fresh\n", path, (long long)s.step);
    return 0;
}

/* Across nodes (comm.hierarchical): each node's ranks sum through shared memory and only
 * slices of the node's sum cross the network (comm_grads_hier.c).  Rank 0 says once which
 * averaging the job uses, and why not hierarchical where it does not apply.  Collective. */
static int use_hierarchy(run *r, char *err) {
    if (r->world < 2 || comm_local_size(r->c) == r->world ||
        comm_gpu_backend_in_use(r->c) != COMM_GPU_NONE)
        return 0;
    char why[256] = "";
    int st = r->cfg->hierarchical ? comm_grads_use_hierarchy(r->c, (size_t)r->cfg->window_mb << 20, why,
                                                             sizeof why, err, ERRLEN) : 0;
    if (st < 0) return -1;
    if (r->rank == 0 && st == 1)
        fprintf(stderr, "harness: gradient averaging across %d nodes: hierarchical (shared memory "
                "inside each node, MPI between the nodes; comm.hierarchical)\n",
                comm_grads_hier_nodes(r->c));
    else if (r->rank == 0)
        fprintf(stderr, "harness: gradient averaging across nodes: plain MPI (%s)\n",
                !r->cfg->hierarchical ? "comm.hierarchical is false" : why[0] ? why : "not applicable");
    return 0;
}

int run_setup(run *r, char *err) {
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
    if (run_agree(r, st, err)) return -1;
    r->B = r->G / r->world;

    if (run_agree(r, run_open_backend(r, err), err)) return -1;
    r->zero = cfg->zero_stage == 1;
    if (run_agree(r, open_comm_gpu(r, err), err)) return -1;
    if (run_agree(r, run_open_data(r, 1, err), err)) return -1;
    if (run_agree(r, check_memory(r, err), err)) return -1;

    st = model_build(&r->m, cfg, &r->in_desc, r->B, 0, r->k, err, ERRLEN);
    if (st == 0) st = run_alloc_batch_buffers(r, err);
    if (run_agree(r, st, err)) return -1;

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
    if (st == 0 && r->world > 1 && kern_get_backend(r->k) == KERN_CPU) {
        r->opt.known_sumsq = known_sumsq;   /* the shared-memory exchange's, when it took it */
        r->opt.sum_user = r;
    }
    if (st == 0) st = set_weight_decay(r, err);
    if (run_agree(r, st, err)) return -1;
    /* ranks of one node average host gradients (ZeRO-1: reduce-scatter them, and all-gather
     * the parameters) through shared memory, not MPI messages */
    if (cfg->shared_memory && comm_gpu_backend_in_use(r->c) == COMM_GPU_NONE &&
        cfg->grad_dtype == GRAD_DTYPE_FP32 &&
        run_agree(r, comm_grads_use_node_memory(r->c, (size_t)cfg->window_mb << 20, err, ERRLEN) < 0 ? -1 : 0, err))
        return -1;
    if (run_agree(r, use_hierarchy(r, err), err)) return -1;
    int64_t rounds = 0;
    size_t window = comm_grads_node_window(r->c, &rounds);
    /* whole buffers: backward writes the gradients straight into this rank's segment */
    /* (and at stage 0 the optimizer reads the averages where they stay: comm_grads_averaged) */
    float *in_window = comm_grads_node_buffer(r->c);
    if (in_window) model_move_grads(&r->m, in_window);
    /* (whole buffers: the window holds every local rank's gradients, and takes only the
     * rest beyond them, the sums, under comm.window_mb) */
    double mib = 1024.0 * 1024.0;
    double beyond = (double)window - (in_window ? (double)comm_local_size(r->c) *
                                                      (double)r->m.n_params * sizeof(float) : 0.0);
    if (window && r->rank == 0 && in_window)
        fprintf(stderr, "harness: gradient averaging through a shared-memory window of %.1f MiB "
                "per node that holds the ranks' gradients (%.1f MiB besides them; comm.window_mb "
                "%lld)\n", (double)window / mib, beyond / mib, (long long)cfg->window_mb);
    else if (window && r->rank == 0)
        fprintf(stderr, "harness: gradient averaging through a shared-memory window of %.1f MiB "
                "per node%s (comm.window_mb %lld)\n", (double)window / mib,
                rounds > 1 ? ", in rounds" : "", (long long)cfg->window_mb);

    /* Every rank draws the same weights from the seed; rank 0's are broadcast anyway so that
     * the ranks provably start from identical parameters. */
    model_init_params(&r->m, cfg->init, cfg->seed);
    if (cfg->init_from[0] && r->rank == 0) st = load_init_from(r, err);
    if (run_agree(r, st, err)) return -1;
    st = run_broadcast_floats(r, r->m.params, r->m.n_params, err);
    if (st == 0) st = run_broadcast_floats(r, r->m.buffers, r->m.n_buffers, err);
    if (r->world > 1) {
        r->m.allreduce = allreduce_for_model;
        r->m.allreduce_user = r;
    }
    if (run_agree(r, st, err)) return -1;

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
    if (run_agree(r, st, err)) return -1;

    if (cfg->ckpt_dir[0]) snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s", cfg->ckpt_dir);
    else snprintf(r->ckpt_dir, sizeof r->ckpt_dir, "%s/checkpoints", cfg->run_dir);
    r->config_yaml = config_to_yaml(cfg);
    if (!r->config_yaml) {
        snprintf(err, ERRLEN, "out of memory");
        st = -1;
    }
    if (run_agree(r, st, err)) return -1;
    if (r->resume_what && strcmp(r->resume_what, "none") != 0 && run_resume(r, r->resume_what, err))
        return -1;
    if (r->rank == 0)
        st = metrics_open(&r->met, cfg->run_dir, cfg->progress, r->start_step > 0, err, ERRLEN);
    if (r->rank == 0 && st == 0 && cfg->tensorboard)
        st = tb_open(&r->met.tb, cfg->run_dir, r->start_step > 0, err, ERRLEN);
    if (run_agree(r, st, err)) return -1;
    return 0;
}

void run_teardown(run *r) {
    run_checkpoint_async_close(r);   /* a save still in flight ends first */
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
int run_open_observers(run *r, char *err) {
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

/* The gradient all-reduce at the bucket size (comm.bucket_kb), timed across the job before the
 * first step, and each node's exchange with rank 0's node: a slow link is named now, not
 * found in the step times later.  5 and 10 rounds: milliseconds on a real network. */
int run_network_check(run *r, char *err) {
    comm_netcheck nc;
    if (comm_netcheck_run(r->c, (size_t)r->cfg->bucket_kb * 1024, 5, &nc, err, ERRLEN) != 0) return -1;
    if (r->rank == 0) {
        char nodes[1024] = "", json[1400];
        size_t n = 0, j = 0;
        for (int k = 1; k < nc.nodes && n < sizeof nodes && j < sizeof json; k++) {
            n += (size_t)snprintf(nodes + n, sizeof nodes - n, "%s%s %.3g GB/s", k > 1 ? ", " : "",
                                  nc.node_host[k], nc.node_gbps[k]);
            j += (size_t)snprintf(json + j, sizeof json - j, "%s{\"host\":\"%s\",\"gb_per_s\":%.6g}",
                                  k > 1 ? "," : "", nc.node_host[k], nc.node_gbps[k]);
        }
        fprintf(stderr, "harness: network check: all-reduce of %zu KiB over %d ranks on %d node%s: "
                "%.3f ms, bus bandwidth %.3g GB/s%s%s%s%s\n", nc.bytes / 1024, r->world, nc.nodes,
                nc.nodes > 1 ? "s" : "", nc.allreduce_s * 1e3, nc.bus_gbps,
                nc.nodes > 1 ? "; each node with rank 0's node " : "", nc.nodes > 1 ? nc.node_host[0] : "",
                nc.nodes > 1 ? ": " : "", nodes);
        if (nc.slowest > 0)
            fprintf(stderr, "harness: warning: network: node %s's link is slow: %.3g GB/s, under "
                    "a tenth of the other nodes' median\n", nc.node_host[nc.slowest], nc.node_gbps[nc.slowest]);
        char fields[1700];
        snprintf(fields, sizeof fields, "\"bytes\":%zu,\"ranks\":%d,\"allreduce_s\":%.6g,"
                 "\"bus_gb_per_s\":%.6g,\"rank0_node\":\"%s\",\"nodes\":[%s],\"slow_node\":\"%s\"",
                 nc.bytes, r->world, nc.allreduce_s, nc.bus_gbps, nc.node_host[0], nc.nodes > 1 ? json : "",
                 nc.slowest > 0 ? nc.node_host[nc.slowest] : "");
        metrics_log_event(&r->met, "network", fields);
    }
    comm_netcheck_free(&nc);
    return 0;
}

