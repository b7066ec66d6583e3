/* step.c: one optimizer step of a training run, and the evaluation pass, which shares its
 * batch path (see train_run.h).
 *
 * One optimizer step on rank r of R, with global batch G = batch_size and A = grad_accum:
 *   for each of A micro-steps: the loader hands this rank its B = G/(A*R) samples of the next
 *   global micro-batch; forward; loss gradient scaled by 1/(B*A); backward accumulates into
 *   grads; on the last micro-step each finished layer starts its bucket all-reduces.
 *   Then wait for the averaged gradients, clip by global norm, optimizer update.
 * With run.cuda_graph (one rank, no accumulation) the whole step is recorded once as a CUDA
 * graph and replayed.  Errors in the middle of a run end the job through comm_abort. */
#include "train_run.h"

/* The next batch of a loader; the previous one's pinned slot goes back to the loader inside,
 * so its transfer to the device must have ended (kern_upload_settle; no wait on the CPU). */
static int next_batch(run *r, data_loader *l, data_batch *b, char *err, size_t errlen) {
    kern_upload_settle(r->k);
    return data_loader_next(l, b, err, errlen);
}

/* Copies a host batch read from `path` into the model's input buffer, converting and
 * normalising. */
static void load_batch(run *r, const data_batch *b, const char *path) {
    if (model_is_lm(&r->m)) {   /* token ids [count, context] and the targets, shifted by one */
        size_t n = (size_t)model_rows(&r->m, b->count) * sizeof(int32_t);
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

/* The device-side loss / correct accumulators back to zero. */
void run_reset_acc(run *r, double *acc) {
    static const double zero[2] = {0, 0};
    kern_to_device(r->k, acc, zero, sizeof zero);
}

void run_evaluate(run *r, int64_t step, int64_t epoch) {
    char err[ERRLEN];
    run_sync_buffers(r);
    double sums[2] = {0, 0};       /* loss sum, correct */
    int64_t count = 0;
    data_batch b;
    double *acc = r->acc_dev + 2;
    run_reset_acc(r, acc);
    for (;;) {
        int rc = next_batch(r, r->test, &b, err, sizeof err);
        if (rc < 0) comm_abort(r->c, 1, err);
        if (rc == 1) break;
        if (b.count == 0) continue;
        load_batch(r, &b, r->cfg->test_path);
        const float *logits = model_forward(&r->m, b.count, 0, 0, 0, 0);
        int64_t rows = model_rows(&r->m, b.count);
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
    report_eval(r, step, epoch, sums, count);
}

/* The all-reduce of each gradient bucket of this step, as comm timed it. */
static void trace_buckets(run *r) {
    const double *t0, *t1;
    int64_t n = trace_on(r->tr) ? comm_grads_bucket_times(r->c, &t0, &t1) : 0;
    for (int64_t i = 0; i < n; i++)
        trace_host_span(r->tr, TRACE_COMM, "all-reduce bucket", (int)i, t0[i], t1[i]);
}

/* One micro-step's work with no host reads in it (one rank, no gradient accumulation): what a
 * CUDA graph records.  t_plus from optim_count_step. */
static void graph_step_body(run *r, const train_loop *L, int64_t step, int64_t t_plus) {
    model_zero_grads(&r->m);
    const float *logits = model_forward(&r->m, r->B, 1, r->cfg->seed, (uint64_t)step,
                                        L->batch.rank_offset);
    kern_softmax_xent_acc(r->k, r->m.losses, model_dlogits(&r->m), r->acc_dev, logits,
                          r->labels_dev, (int)L->rows, (int)r->m.n_classes, (int)r->m.out_ld,
                          L->inv_scale);
    model_backward(&r->m, r->B, NULL, r);
    optim_queue_update(&r->opt, r->m.params, r->m.grads, L->lr, step, t_plus);
}

/* Whether steps run from a CUDA graph (run.cuda_graph), and why not; NULL reason: yes. */
static const char *graph_refusal(const run *r, int *emulate) {
    *emulate = 0;
    if (!r->cfg->cuda_graph) return "off (run.cuda_graph: false)";
    if (!kern_graph_available(r->k)) {
        /* Test hook: on the CPU, take the graph path's step (graph_step_body, the host's
         * step count and values, the CPU's emulated recording: kernels.h) so that it can be
         * checked against the ordinary step (tests/trainer/grad_zeroing.sh) where no GPU is. */
        if (r->hooks.graph_body && r->world == 1 && r->accum == 1) {
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

void step_loop_init(run *r, train_loop *L) {
    memset(L, 0, sizeof *L);
    L->t_interval = metrics_now();
    L->t_train = L->t_interval;
    L->rows = model_rows(&r->m, r->B);
    L->inv_scale = 1.0f / (float)(L->rows * r->accum);
    run_reset_acc(r, r->acc_dev);
    if (comm_zero_active(r->c)) {   /* parameters gathered while the forward runs */
        r->m.params_needed = params_needed_cb;
        r->m.params_user = r;
    }
    /* host: nothing of the all-gather arrives early (run_hooks.poison_gather) */
    if (r->hooks.poison_gather && comm_zero_active(r->c)) comm_shards_allgather_lazy(r->c, 1);
    const char *why_not = graph_refusal(r, &L->graph_emulate);
    L->graph_on = why_not == NULL;
    report_graph(r, why_not);
}

/* The step from a CUDA graph: recorded at its first call (the loop's second step), replayed
 * at every later one; on the CPU test path (graph_emulate) every step is recorded and launched
 * once, through the CPU backend's emulation of the graph's contract (kernels.h). */
static void graph_step(run *r, train_loop *L, int64_t step) {
    char err[ERRLEN];
    if (next_batch(r, r->train, &L->batch, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    L->epoch = L->batch.epoch;
    load_batch(r, &L->batch, r->cfg->train_path);
    int64_t t_plus = optim_count_step(&r->opt);
    kern_step_values sv = {L->lr, t_plus, step, (uint64_t)step};
    /* set before kern_graph_begin on the recording step: the kernels layer guarantees that
     * values set before begin reach the first replay */
    kern_graph_set_values(r->k, &sv);
    if (!L->graph_ready) {
        char gerr[512] = "";
        int ok = kern_graph_begin(r->k, gerr, sizeof gerr) == 0;
        if (ok) {
            graph_step_body(r, L, step, t_plus);
            ok = kern_graph_end(r->k, gerr, sizeof gerr) == 0;
        }
        if (ok) {
            L->graph_ready = 1;
        } else {
            /* nothing recorded has run: this step, and the rest, without a graph */
            if (r->rank == 0)
                metrics_notice(&r->met, "harness: warning: recording the step as a CUDA graph "
                               "failed (%s); training without one", gerr);
            L->graph_on = 0;
            graph_step_body(r, L, step, t_plus);
        }
    }
    if (L->graph_ready) kern_graph_launch(r->k);
    if (L->graph_emulate) L->graph_ready = 0;   /* the CPU records every step anew */
    L->iv_rows += L->rows;
}

/* The ordinary step's forward and backward passes: A micro-steps into one gradient. */
static void micro_steps(run *r, train_loop *L, int64_t step) {
    char err[ERRLEN];
    int span = trace_compute_begin(r->tr, "zero gradients", NULL, -1);
    model_zero_grads(&r->m);   /* the first writer of most gradients overwrites them */
    trace_compute_end(r->tr, span);
    for (int64_t micro = 0; micro < r->accum; micro++) {
        data_batch *b = &L->batch;
        span = trace_host_begin(r->tr, TRACE_HOST, "data wait", -1);
        if (next_batch(r, r->train, b, err, sizeof err) != 0) comm_abort(r->c, 1, err);
        trace_host_end(r->tr, span);
        if (micro == 0) L->epoch = b->epoch;
        span = trace_compute_begin(r->tr, "copy to device", NULL, -1);
        load_batch(r, b, r->cfg->train_path);
        trace_compute_end(r->tr, span);
        uint64_t step_id = (uint64_t)(step * r->accum + micro);
        const float *logits = model_forward(&r->m, r->B, 1, r->cfg->seed, step_id,
                                            b->rank_offset);
        /* loss sum and correct count stay on the backend until the log interval; the
         * gradient of the logits is written over them (model_dlogits) */
        span = trace_compute_begin(r->tr, "loss", NULL, -1);
        kern_softmax_xent_acc(r->k, r->m.losses, model_dlogits(&r->m), r->acc_dev, logits,
                              r->labels_dev, (int)L->rows, (int)r->m.n_classes,
                              (int)r->m.out_ld, L->inv_scale);
        trace_compute_end(r->tr, span);
        L->iv_rows += L->rows;
        int last = micro == r->accum - 1;
        model_backward(&r->m, r->B, last && r->world > 1 ? grads_ready_cb : NULL, r);
        long ms = r->hooks.step_sleep_ms;
        if (ms > 0) {
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
}

/* The averaged gradients and the update.  Norm, clip factor and the finite check are
 * computed and used on the backend: the update is skipped there when the gradients are
 * non-finite (train.nonfinite=skip allows OPTIM_MAX_SKIPS in a row; error: none), and the
 * host does not wait.  The averaged gradients are identical on every rank, so every rank
 * reaches the same verdict without communicating.  zero_stage 1: each rank updates its shard
 * with its shard's state (the norm adds the shards' sums of squares: one scalar all-reduce),
 * then the shards are all-gathered so every rank holds all updated parameters for the next
 * forward. */
static void exchange_and_update(run *r, train_loop *L, int64_t step, int graphed) {
    char err[ERRLEN];
    comm *c = r->c;
    int span;
    if (r->world > 1) {
        /* On GPUs the wait queues the compute stream behind the all-reduces (NCCL) or the
         * copies back (MPI staged); what follows runs on that stream. */
        span = trace_host_begin(r->tr, TRACE_HOST, "all-reduce wait", -1);
        if (comm_grads_ready(c, 0, err, sizeof err) != 0 ||
            comm_grads_wait(c, err, sizeof err) != 0)
            comm_abort(c, 1, err);
        trace_host_end(r->tr, span);
        trace_buckets(r);
        L->iv_comm += comm_grads_wait_seconds(c);
    }
    /* stage 0 on the node's window: the averages may stay there (comm_grads_averaged) */
    const float *kept = comm_grads_averaged(c);
    const float *step_grads = r->zero ? comm_grads_shard(c) : kept ? kept : r->m.grads;
    span = trace_compute_begin(r->tr, "optimizer", NULL, -1);
    if (!graphed) {
        kern_download_fence(r->k);   /* a checkpoint's snapshot copy reads what this updates */
        optim_device_step(&r->opt, r->m.params + r->shard_lo, step_grads, L->lr, step);
    }
    trace_compute_end(r->tr, span);
    if (comm_zero_active(c)) {   /* finished by the next forward, layer by layer */
        double tg = metrics_now();
        if (r->hooks.poison_gather) {
            if (r->shard_lo > 0) kern_fill(r->k, r->m.params, NAN, r->shard_lo);
            if (r->shard_hi < r->m.n_params)
                kern_fill(r->k, r->m.params + r->shard_hi, NAN, r->m.n_params - r->shard_hi);
        }
        span = trace_host_begin(r->tr, TRACE_HOST, "all-gather start", -1);
        if (comm_shards_allgather_start(c, r->m.params, err, sizeof err) != 0)
            comm_abort(c, 1, err);
        trace_host_end(r->tr, span);
        L->iv_comm += metrics_now() - tg;
    }
    if (r->hooks.poison_grads) kern_fill(r->k, r->m.grads, NAN, r->m.n_params);
}

/* The host reads the verdict every step on the CPU backend (free there), else at the steps
 * every rank agrees on - log intervals, checkpoints, --stop-after, the last step - and, for
 * the step count alone, when a stop signal came.  1: stop (non-finite beyond the limit). */
static int read_verdict(run *r, train_loop *L, int64_t step, int agreed, int signalled) {
    if (kern_get_backend(r->k) == KERN_CPU) agreed = 1;
    if (!agreed && !signalled) return 0;
    optim_verdict v;
    optim_read(&r->opt, &v);
    L->grad_norm = v.norm;
    L->skipped_steps = v.skipped_total;
    report_skips(r, step + 1, &v);
    if (!v.stop || !agreed) return 0;
    report_nonfinite(r, v.stop_step + 1, v.run > 1 ? v.run - 1 : 0);
    return 1;
}

int step_run(run *r, train_loop *L, int64_t step, int read_verdict_now, int signalled) {
    char err[ERRLEN];
    kern_counters kc0, kc1;
    comm_set_step(r->c, step + 1);   /* 1-based, as in the logs and checkpoint names */
    double t0 = metrics_now();
    kern_get_counters(r->k, &kc0);
    trace_step_begin(r->tr, step + 1);
    double data_before = data_loader_wait_seconds(r->train);
    int graphed = L->graph_on && step > r->start_step;
    L->lr = optim_lr(&r->opt, step);   /* this step's, also for its log line */
    if (graphed) {
        kern_download_fence(r->k);   /* the graph updates what a snapshot copy may still read */
        graph_step(r, L, step);
    }
    else micro_steps(r, L, step);
    exchange_and_update(r, L, step, graphed);
    /* a failed cuBLAS/cuDNN call or kernel leaves wrong numbers behind: once per step */
    if (kern_check(r->k, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    if (read_verdict(r, L, step, read_verdict_now, signalled)) return 1;
    double t1 = metrics_now();
    kern_get_counters(r->k, &kc1);
    if (step > r->start_step) {
        L->kc_sum.launches += kc1.launches - kc0.launches;
        L->kc_sum.host_syncs += kc1.host_syncs - kc0.host_syncs;
        L->kc_sum.fused_gemms += kc1.fused_gemms - kc0.fused_gemms;
        L->kc_sum.epilogue_fallbacks += kc1.epilogue_fallbacks - kc0.epilogue_fallbacks;
        L->kc_steps++;
    }
    trace_step_end(r->tr);
    L->iv_data += data_loader_wait_seconds(r->train) - data_before;
    L->iv_compute += t1 - t0;
    L->iv_steps++;
    L->steps_run++;
    return 0;
}
