/* report.c: what a training run shows (see train_run.h) - the start banner, the line of each
 * log interval, skipped and non-finite steps, stragglers, evaluation results, why the run
 * stopped, and at the end the device work per step, the trace, the summary and the plot.
 * Rank 0 prints and writes metrics.jsonl; the functions marked collective in train_run.h
 * first combine numbers over the ranks, so every rank calls them. */
#include "train_run.h"

void report_start(run *r, int64_t optim_state_bytes) {
    const config *cfg = r->cfg;
    if (r->rank != 0) return;
    fprintf(stderr, "harness: %lld parameters, %d rank%s, global batch %lld (%lld per rank x %lld "
            "micro-steps), %lld steps, %.1f MFLOP per sample\n", (long long)r->m.n_params,
            r->world, r->world > 1 ? "s" : "", (long long)cfg->batch_size, (long long)r->B,
            (long long)r->accum, (long long)r->total_steps, r->m.flops_per_sample * 1e-6);
    int64_t allocated = r->m.allocated_bytes + optim_state_bytes;
    double mib = 1024.0 * 1024.0;
    fprintf(stderr, "harness: memory per rank: estimated %.1f MiB at start, allocated %.1f MiB "
            "(model %.1f MiB: parameters, gradients, activations, scratch; optimizer state "
            "%.1f MiB)\n", (double)r->estimated_bytes / mib, (double)allocated / mib,
            (double)r->m.allocated_bytes / mib, (double)optim_state_bytes / mib);
    fprintf(stderr, "harness: optimizer state per rank: %lld bytes (%lld of %lld parameters, "
            "train.zero_stage=%d%s)\n", (long long)optim_state_bytes,
            (long long)(r->shard_hi - r->shard_lo), (long long)r->m.n_params, cfg->zero_stage,
            r->zero ? ", sharded over the ranks" : "");
    if (r->ck.on && r->ck.every_rank)
        fprintf(stderr, "harness: checkpoint.async: every rank holds a %.1f MiB host snapshot of "
                "its slice and writes its own part (checkpoint.writers 0; in the host memory "
                "check)\n", (double)r->ck.bytes / r->world / mib);
    else if (r->ck.on)
        fprintf(stderr, "harness: checkpoint.async: rank 0 holds a %.1f MiB host snapshot for "
                "background checkpoint writes (in the host memory check)\n",
                (double)r->ck.bytes / mib);
    char fields[640];
    snprintf(fields, sizeof fields, "\"params\":%lld,\"world\":%d,\"batch_size\":%lld,"
             "\"total_steps\":%lld,\"start_step\":%lld,\"flops_per_sample\":%.6g,"
             "\"zero_stage\":%d,\"optim_state_bytes_per_rank\":%lld",
             (long long)r->m.n_params, r->world, (long long)cfg->batch_size,
             (long long)r->total_steps, (long long)r->start_step, r->m.flops_per_sample,
             cfg->zero_stage, (long long)optim_state_bytes);
    metrics_log_event(&r->met, "start", fields);
}

/* why_not: NULL when the step runs from a CUDA graph. */
void report_graph(run *r, const char *why_not) {
    if (kern_get_backend(r->k) != KERN_CPU && r->rank == 0)
        metrics_notice(&r->met, "harness: CUDA graph of the training step: %s",
                       why_not == NULL ? "recorded at the second step, replayed after it "
                                         "(run.cuda_graph: false turns it off)" : why_not);
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

/* Tokens per second of a language model at sps samples per second; 0 for other models. */
static double tokens_per_s(const run *r, double sps) {
    return model_is_lm(&r->m) ? sps * (double)model_rows(&r->m, 1) : 0.0;
}

/* The log interval that ends after step `done` (1-based): loss and accuracy over the global
 * batch's rows, throughput, time split, the ranks' step-time spread; then a new interval. */
void report_interval(run *r, train_loop *L, int64_t done) {
    char err[ERRLEN];
    double sums[3] = {0, 0, (double)L->iv_rows};
    kern_to_host(r->k, sums, r->acc_dev, 2 * sizeof(double));
    run_reset_acc(r, r->acc_dev);
    if (comm_allreduce_sum_f64(r->c, sums, 3, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    double now = metrics_now(), dt = now - L->t_interval;
    double steps = (double)L->iv_steps;
    straggler_report sr;
    if (straggler_interval(&r->strag, r->c, (L->iv_compute - L->iv_comm) / steps, &sr, err,
                           sizeof err) != 0)
        comm_abort(r->c, 1, err);
    double bus_bytes = 0.0, bus_s = 0.0;   /* the gradient exchange over this interval */
    if (r->world > 1) comm_grads_bus_stats(r->c, &bus_bytes, &bus_s);
    if (r->rank == 0) {
        metrics_train t = {0};
        t.bus_gbps = bus_s > 0.0 && bus_bytes > 0.0 ? bus_bytes / bus_s * 1e-9 : -1.0;
        t.lm = model_is_lm(&r->m);
        t.spread = r->world > 1;
        t.step_min_s = sr.min_s;
        t.step_median_s = sr.median_s;
        t.step_max_s = sr.max_s;
        t.slowest_rank = sr.slowest;
        t.step = done;
        t.total_steps = r->total_steps;
        t.epoch = L->epoch;
        t.loss = sums[0] / sums[2];
        t.accuracy = sums[1] / sums[2];
        t.lr = L->lr;
        t.grad_norm = L->grad_norm;
        t.samples_per_s = steps * (double)r->cfg->batch_size / dt;
        t.flops_per_s = t.samples_per_s * r->m.flops_per_sample;
        t.tokens_per_s = tokens_per_s(r, t.samples_per_s);
        t.mfu = r->peak_flops > 0 ? t.flops_per_s / (double)r->world / r->peak_flops : -1.0;
        t.elapsed_s = now - L->t_train - L->t_excluded;
        t.eta_s = t.elapsed_s / (double)L->steps_run * (double)(r->total_steps - done);
        t.comm_wait_s = L->iv_comm / steps;
        t.data_wait_s = L->iv_data / steps;
        t.compute_s = (L->iv_compute - L->iv_comm - L->iv_data) / steps;
        t.ckpt_step = L->iv_ckpt_step;
        t.ckpt_s = L->iv_ckpt_s;
        metrics_log_train(&r->met, &t);
        if (sr.warn) report_straggler(r, done, &sr);
    }
    L->iv_compute = L->iv_comm = L->iv_data = 0;
    L->iv_rows = L->iv_steps = 0;
    L->iv_ckpt_step = 0;
    L->iv_ckpt_s = 0;
    L->t_interval = metrics_now();
}

/* Steps skipped for non-finite gradients since the last verdict read (train.nonfinite=skip). */
void report_skips(run *r, int64_t done, const optim_verdict *v) {
    if (v->new_skips <= 0 || r->rank != 0) return;
    if (v->new_skips == 1 && v->skipped && !v->stop)
        metrics_notice(&r->met, "harness: warning: step %lld: non-finite gradients; step "
                       "skipped (train.nonfinite=skip; %lld skipped so far)", (long long)done,
                       (long long)v->skipped_total);
    else
        metrics_notice(&r->met, "harness: warning: steps up to %lld: %lld more steps with "
                       "non-finite gradients skipped (train.nonfinite=skip; %lld skipped so "
                       "far)", (long long)done, (long long)v->new_skips,
                       (long long)v->skipped_total);
}

/* Collective: finds where non-finite values first appeared in this step - the input, a
 * layer's output (lowest layer, then lowest rank), or only the gradients - and reports it
 * once, from rank 0. */
void report_nonfinite(run *r, int64_t step, int64_t skipped) {
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
                     model_first_nonfinite_tensor(&r->m, r->m.params) >= 0
                         ? "; the parameters themselves are already non-finite" : "");
    } else {
        const model_tensor *t = r->m.tensors;
        /* the averaged gradients: in the model's buffer, or kept in the node's window (stage
         * 0: comm_grads_averaged); sharded, this rank's own gradients, as before */
        const float *kept = comm_grads_averaged(r->c);
        int ti = model_first_nonfinite_tensor(&r->m, kept ? kept : r->m.grads);
        snprintf(where, sizeof where, "the forward pass is finite on every rank; the first "
                 "non-finite gradient is %s's (backward overflow)", ti >= 0 ? t[ti].name : "?");
    }
    fprintf(stderr, "%sharness: error: non-finite loss or gradients at step %lld%s: %s; "
            "try a lower train.lr or train.clip_grad_norm, or train.nonfinite=skip\n",
            r->met.line_open ? "\n" : "", (long long)step,
            skipped ? " (after the maximum of consecutive skipped steps)" : "", where);
    r->met.line_open = 0;
}

/* sums: loss sum and correct predictions over count rows (all ranks). */
void report_eval(run *r, int64_t step, int64_t epoch, const double sums[2], int64_t count) {
    if (r->rank != 0 || count <= 0) return;
    double loss = sums[0] / (double)count, accuracy = sums[1] / (double)count;
    int lm = model_is_lm(&r->m);
    if (r->met.jsonl)   /* training: the progress output and metrics.jsonl */
        metrics_log_eval(&r->met, lm, step, epoch, loss, accuracy, count);
    else if (lm)        /* harness eval */
        printf("val loss %.6f, val perplexity %.4f, next-token accuracy %.4f (%lld tokens)\n",
               loss, exp(loss), accuracy, (long long)count);
    else
        printf("test loss %.6f, test accuracy %.4f (%lld samples)\n", loss, accuracy,
               (long long)count);
}

/* stop: the signal number, or RUN_STOP_AFTER (--stop-after). */
void report_stop(run *r, int stop, int64_t done, const char *ckpt_path) {
    if (r->rank != 0) return;
    metrics_notice(&r->met, "harness: %s: checkpointed step %lld to %s; exiting with status %d "
                   "(resume with --resume auto)", stop == SIGTERM ? "SIGTERM"
                   : stop == SIGUSR1 ? "SIGUSR1" : "--stop-after", (long long)done, ckpt_path,
                   HARNESS_EXIT_RESUBMIT);
}

/* After the last step: device work per step (GPUs) and the steps skipped (a finished run). */
void report_device_work(run *r, const train_loop *L, int exit_code) {
    if (r->rank != 0) return;
    if (L->kc_steps > 0 && kern_get_backend(r->k) != KERN_CPU) {
        double n = (double)L->kc_steps;
        const kern_counters *s = &L->kc_sum;
        metrics_notice(&r->met, "harness: device work per step (rank 0, %lld steps): %.1f "
                       "launches, %.2f host waits, %.1f GEMMs with fused epilogues, %.1f "
                       "epilogue fallbacks", (long long)L->kc_steps, (double)s->launches / n,
                       (double)s->host_syncs / n, (double)s->fused_gemms / n,
                       (double)s->epilogue_fallbacks / n);
    }
    if (exit_code == HARNESS_EXIT_OK && L->skipped_steps > 0)
        metrics_notice(&r->met, "harness: %lld step%s skipped for non-finite gradients",
                       (long long)L->skipped_steps, L->skipped_steps == 1 ? "" : "s");
}

/* Collective (log.trace): every rank's spans into run_dir/trace.json. */
void report_trace(run *r) {
    char err[ERRLEN];
    const config *cfg = r->cfg;
    if (!r->tr) return;
    if (trace_write(r->tr, r->c, cfg->run_dir, err, sizeof err) != 0) {
        if (r->rank == 0) metrics_notice(&r->met, "harness: warning: trace: %s", err);
    } else if (r->rank == 0) {
        metrics_notice(&r->met, "harness: trace of steps %lld-%lld written to %s/trace.json",
                       (long long)cfg->trace_start,
                       (long long)(cfg->trace_start + cfg->trace_steps - 1), cfg->run_dir);
    }
}

/* Collective: a finished run's peak memory per rank, throughput and final evaluation. */
void report_summary(run *r, const train_loop *L, double train_s, const char *ckpt_path,
                    int64_t optim_state_bytes) {
    char err[ERRLEN];
    /* peak resident memory (VmHWM) of every rank, for the memory figures of zero_stage */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    int32_t rss_kib[2] = {(int32_t)(ru.ru_maxrss > INT32_MAX ? INT32_MAX : ru.ru_maxrss), 0};
    int32_t rank0_kib = rss_kib[0];
    if (comm_allreduce_max_i32(r->c, rss_kib, 1, err, sizeof err) != 0) comm_abort(r->c, 1, err);
    if (r->rank != 0) return;
    metrics_notice(&r->met, "harness: peak resident memory per rank: max %.1f MiB (rank 0 "
                   "%.1f MiB); optimizer state per rank %.1f MiB (train.zero_stage=%d)",
                   rss_kib[0] / 1024.0, rank0_kib / 1024.0,
                   (double)optim_state_bytes / (1024.0 * 1024.0), r->cfg->zero_stage);
    int lm = model_is_lm(&r->m);
    double sps = L->steps_run > 0 ? (double)L->steps_run * (double)r->cfg->batch_size / train_s : 0;
    char acc[96] = "", rate[64];
    if (r->test && lm)
        snprintf(acc, sizeof acc, ", val loss %.4f, val perplexity %.3f", r->last_eval_loss,
                 exp(r->last_eval_loss));
    else if (r->test)
        snprintf(acc, sizeof acc, ", test accuracy %.4f", r->last_eval_accuracy);
    if (lm) snprintf(rate, sizeof rate, "%.0f tokens/s", tokens_per_s(r, sps));
    else snprintf(rate, sizeof rate, "%.0f samples/s", sps);
    metrics_notice(&r->met, "harness: done: %lld steps in %.1f s, %s (%.2f GFLOP/s) on %d "
                   "rank%s%s; checkpoint %s", (long long)L->steps_run, train_s, rate,
                   sps * r->m.flops_per_sample * 1e-9, r->world, r->world > 1 ? "s" : "", acc,
                   ckpt_path);
    char fields[2048];
    snprintf(fields, sizeof fields, "\"steps\":%lld,\"train_seconds\":%.3f,"
             "\"samples_per_s\":%.1f,\"flops_per_s\":%.6g,\"test_accuracy\":%.6f,"
             "\"test_loss\":%.9g,\"tokens_per_s\":%.1f,\"checkpoint\":\"%s\","
             "\"optim_state_bytes_per_rank\":%lld,\"peak_rss_kib_max\":%d",
             (long long)L->steps_run, train_s, sps, sps * r->m.flops_per_sample,
             r->test ? r->last_eval_accuracy : -1.0, r->test ? r->last_eval_loss : -1.0,
             tokens_per_s(r, sps), ckpt_path, (long long)optim_state_bytes, (int)rss_kib[0]);
    metrics_log_event(&r->met, "summary", fields);
}

/* log.plot: run_dir/metrics.png from this run's metrics.jsonl (rank 0). */
void report_plot(run *r) {
    char err[ERRLEN];
    const config *cfg = r->cfg;
    if (!cfg->plot || r->rank != 0) return;
    char png[CFG_PATH_MAX + 32];
    snprintf(png, sizeof png, "%s/metrics.png", cfg->run_dir);
    fflush(r->met.jsonl);
    const char *dirs[1] = {cfg->run_dir};
    if (plot_runs(dirs, 1, png, PLOT_DEFAULT_WIDTH, PLOT_DEFAULT_HEIGHT, NULL, err,
                  sizeof err) != 0)
        metrics_notice(&r->met, "harness: warning: log.plot: %s", err);
    else
        metrics_notice(&r->met, "harness: plot written to %s", png);
}
