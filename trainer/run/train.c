/* train: the data-parallel step loop and evaluation (set-up: train_setup.c; checkpoints and
 * resume: train_state.c; what they share: train_run.h).
 *
 * One optimizer step on rank r of R, with global batch G = batch_size and A = grad_accum:
 *   for each of A micro-steps: the loader hands this rank its B = G/(A*R) samples of the next
 *   global micro-batch; forward; loss gradient scaled by 1/(B*A); backward accumulates into
 *   grads; on the last micro-step each finished layer starts its bucket all-reduces.
 *   Then wait for the averaged gradients, clip by global norm, optimizer update.
 * Start-up errors are agreed on by all ranks (comm_agree) so exactly one prints and every rank
 * exits 1; errors in the middle of a run end the job through comm_abort. */
#define _GNU_SOURCE   /* sched_getaffinity */
#include "train_run.h"

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

/* Set by SIGUSR1 / SIGTERM; read at step boundaries only. */
static volatile sig_atomic_t stop_signal = 0;
static void on_stop_signal(int sig) { stop_signal = sig; }
/* Why the ranks stop, agreed with an all-reduce MAX: the signal number, or STOP_AFTER. */
#define STOP_AFTER 1000

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

static void grads_ready_cb(void *user, int64_t offset) {
    run *r = user;
    char err[ERRLEN];
    /* starting buckets also progresses the ones in flight (MPI_Test), which can take a while */
    int span = trace_host_begin(r->tr, TRACE_HOST, "all-reduce start", -1);
    if (comm_grads_ready(r->c, offset, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    trace_host_end(r->tr, span);
}

/* train.zero_stage=1: the updated parameters' all-gather overlaps the next forward; each layer
 * first makes sure its own parameters have arrived (comm_shards_allgather_need). */
static void params_needed_cb(void *user, int64_t offset, int64_t count) {
    run *r = user;
    char err[ERRLEN];
    if (comm_shards_allgather_need(r->c, offset, count, err, sizeof err) != 0)
        comm_abort(r->c, 1, err);
}

/* Loss and accuracy over the whole test set, every sample exactly once across ranks. */
/* The device-side loss / correct accumulators back to zero. */
static void reset_acc(run *r, double *acc) {
    static const double zero[2] = {0, 0};
    kern_to_device(r->k, acc, zero, sizeof zero);
}

static void evaluate(run *r, int64_t step, int64_t epoch) {
    char err[ERRLEN];
    run_sync_buffers(r);
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
    run_settle_params(r);
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
    if (run_setup(&r, err) != 0) {
        run_teardown(&r);
        return HARNESS_EXIT_ERROR;
    }
    /* From here on a stalled collective or a lost rank ends the job with a report (the
     * one-rank phases of start-up - reading data, resuming - are over). */
    int wd = cfg->comm_timeout_s > 0 ? comm_watchdog_start(c, cfg->comm_timeout_s, err, sizeof err) : 0;
    /* across nodes: a lost node named in seconds (collective: every rank calls it) */
    int hb = cfg->comm_heartbeat_s > 0
                 ? comm_heartbeat_start(c, cfg->comm_heartbeat_s, HARNESS_EXIT_NODE_LOST, err, sizeof err) : 0;
    if (wd == 0) wd = hb;
    if (run_agree(&r, wd, err) || run_agree(&r, run_open_observers(&r, err), err)) {
        run_teardown(&r);
        return HARNESS_EXIT_ERROR;
    }
    /* optimizer state this rank holds: state tensors x its shard (all of it at stage 0) */
    int64_t optim_state_bytes = (int64_t)run_n_optim_states(&r.opt) * r.opt.n * (int64_t)sizeof(float);
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
    if (r.zero && r.world > 1) {
        r.m.params_needed = params_needed_cb;
        r.m.params_user = &r;
    }
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
    /* Test hook (zero_stage 1): NaN in every parameter outside this rank's shard just before
     * the all-gather starts, so that a layer whose forward ran before its parameters arrived
     * (comm_shards_allgather_need) makes the loss non-finite.  On the host the buckets are
     * then posted only when needed, since MPI may otherwise deliver them all at the first. */
    int poison_gather = getenv("HARNESS_FAULT_POISON_GATHER") != NULL && r.zero && r.world > 1;
    if (poison_gather) comm_shards_allgather_lazy(c, 1);   /* host: nothing arrives early */
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
        float lr = optim_lr(&r.opt, step);   /* this step's, also for its log line */
        if (graphed) {
            if (next_batch(&r, r.train, &b, err, sizeof err) != 0) comm_abort(c, 1, err);
            epoch = b.epoch;
            load_batch(&r, &b, cfg->train_path);
            int64_t t_plus = optim_count_step(&r.opt);
            kern_step_values sv = {lr, t_plus, step, (uint64_t)step};
            kern_graph_set_values(r.k, &sv);
            if (graph_emulate) graph_step_body(&r, cfg, step, lr, t_plus, rows, inv_scale);
            else if (!graph_ready) {
                char gerr[512] = "";
                int ok = kern_graph_begin(r.k, gerr, sizeof gerr) == 0;
                if (ok) {
                    graph_step_body(&r, cfg, step, lr, t_plus, rows, inv_scale);
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
                    graph_step_body(&r, cfg, step, lr, t_plus, rows, inv_scale);
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
        const float *step_grads = r.zero ? comm_grads_shard(c) : r.m.grads;
        span = trace_compute_begin(r.tr, "optimizer", NULL, -1);
        if (!graphed)
            optim_device_step(&r.opt, r.m.params + r.shard_lo, step_grads, lr,
                              cfg->nonfinite == NONFINITE_SKIP ? MAX_CONSECUTIVE_SKIPS : 0, step);
        trace_compute_end(r.tr, span);
        if (r.zero && r.world > 1) {   /* finished by the next forward, layer by layer */
            double tg = metrics_now();
            if (poison_gather) {
                if (r.shard_lo > 0) kern_fill(r.k, r.m.params, NAN, r.shard_lo);
                if (r.shard_hi < r.m.n_params)
                    kern_fill(r.k, r.m.params + r.shard_hi, NAN, r.m.n_params - r.shard_hi);
            }
            span = trace_host_begin(r.tr, TRACE_HOST, "all-gather start", -1);
            if (comm_shards_allgather_start(c, r.m.params, err, sizeof err) != 0)
                comm_abort(c, 1, err);
            trace_host_end(r.tr, span);
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
            int ck = run_checkpoint(&r, done, ckpt_path, sizeof ckpt_path);
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
    run_settle_params(&r);   /* the last step's all-gather (zero_stage 1) */
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
        if (run_checkpoint(&r, r.total_steps, ckpt_path, sizeof ckpt_path) != 0)
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
    run_teardown(&r);
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
    if (run_agree(&r, run_open_backend(&r, err), err) || run_agree(&r, run_open_data(&r, 0, err), err))
        goto out;
    st = model_build(&r.m, cfg, &r.in_desc, r.B, 0, r.k, err, ERRLEN);
    if (st == 0) st = run_alloc_batch_buffers(&r, err);
    if (run_agree(&r, st, err)) goto out;
    ckpt_state s;
    if (r.rank == 0) st = ckpt_read(ckpt, &r.m, NULL, &s, err, ERRLEN) == CKPT_OK ? 0 : -1;
    if (run_agree(&r, st, err)) goto out;
    st = run_broadcast_floats(&r, r.m.params, r.m.n_params, err);
    if (run_agree(&r, st, err)) goto out;
    evaluate(&r, 0, 0);   /* broadcasts the running statistics too */
    run_teardown(&r);
    return HARNESS_EXIT_OK;
out:
    run_teardown(&r);
    return HARNESS_EXIT_ERROR;
}
