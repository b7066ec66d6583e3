/* ckpt_async.c: checkpoints written by a background thread while training goes on (see
 * ckpt_async.h for the design), and the "checkpoint" record every save leaves in
 * metrics.jsonl, the notices and the trace. */
#include <hdf5.h>

#include "train_run.h"

/* What one checkpoint file holds: parameters, buffers, the optimizer's state tensors. */
int64_t run_checkpoint_bytes(const run *r) {
    int64_t floats = r->m.n_params * (1 + run_n_optim_states(&r->opt)) + r->m.n_buffers;
    return floats * (int64_t)sizeof(float);
}

/* Host memory checkpoint.async adds on one node of `local` ranks out of `world` (the snapshot:
 * rank 0's whole, or with every rank writing each rank's slice; 0 when saves are synchronous
 * or only at the end).  Counted in the start-up estimate (train_setup.c). */
int64_t run_checkpoint_snapshot_bytes(const config *cfg, int world, int local, int64_t n_params,
                                      int optim_states) {
    if (!cfg->ckpt_async || cfg->ckpt_every <= 0) return 0;
    int64_t per = n_params * (1 + optim_states) * (int64_t)sizeof(float);
    if (cfg->ckpt_writers == 0 && world > 1) return (per / world + 64) * local;
    return per;
}

/* What the checkpoint of `step` records (every rank; the data position is the same on all). */
void run_checkpoint_state(run *r, int64_t step, ckpt_state *s) {
    memset(s, 0, sizeof *s);
    s->step = step;
    data_loader_position(r->train, &s->epoch, &s->cursor);
    s->optimizer_steps = r->opt.t;
    s->seed = r->cfg->seed;
    s->world_size = r->world;
    if (r->ck.every_rank) {
        s->parts = r->world;
        /* one id per save: a part left by another save of the same step never passes */
        s->parts_id = r->ck.nonce ^ ((uint64_t)step * 0x9E3779B97F4A7C15ull);
    }
}

/* This rank's slice of the flat buffers: [lo, hi). */
static void my_slice(const run *r, int64_t *lo, int64_t *hi) {
    ckpt_part_bounds(r->m.n_params, r->rank, r->world, lo, hi);
}

/* Allocates the snapshot once (rank 0) and, on GPU backends with zero_stage 1, the host
 * copies of this rank's shards that comm's gather reads.  0 or -1 with err. */
int run_checkpoint_async_open(run *r, char *err) {
    ckpt_async *a = &r->ck;
    memset(a, 0, sizeof *a);
    atomic_init(&a->finished, 0);
    atomic_init(&a->part_done, 0);
    atomic_init(&a->publish, 0);
    const char *lead = getenv("HARNESS_SIGNAL_LEAD_S");   /* set by launch/slurm's recipes */
    a->signal_lead_s = lead ? strtod(lead, NULL) : 0;
    a->every_rank = r->cfg->ckpt_writers == 0 && r->world > 1;
    if (a->every_rank) {   /* collective: every rank calls this at start */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        a->nonce = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
                   ((uint64_t)getpid() << 32);
        if (comm_broadcast(r->c, &a->nonce, sizeof a->nonce, 0, err, ERRLEN) != 0) return -1;
        int64_t lo, hi;
        my_slice(r, &lo, &hi);
        if (r->zero && (r->opt.shard_lo != lo || r->opt.n != hi - lo))   /* the same cut, by design */
            return snprintf(err, ERRLEN, "checkpoint.writers 0: this rank's optimizer shard [%lld, "
                            "%lld) is not its checkpoint slice [%lld, %lld)",
                            (long long)r->opt.shard_lo, (long long)(r->opt.shard_lo + r->opt.n),
                            (long long)lo, (long long)hi), -1;
    }
    if (!r->cfg->ckpt_async || r->cfg->ckpt_every <= 0) return 0;
    a->on = 1;
    a->bytes = run_checkpoint_bytes(r);
    int ns = run_n_optim_states(&r->opt);
    size_t pbytes = (size_t)r->m.n_params * sizeof(float);
    int ok = 1;
    if (a->every_rank) {   /* each rank its slice; rank 0 the buffers too */
        int64_t lo, hi;
        my_slice(r, &lo, &hi);
        pbytes = (size_t)(hi - lo) * sizeof(float);
    }
    if (r->rank == 0 || a->every_rank) {
        ok = (a->params = kern_alloc_host(r->k, pbytes + sizeof(float))) != NULL &&
             (a->buffers = kern_alloc_host(r->k, (size_t)r->m.n_buffers * sizeof(float) + sizeof(float))) != NULL;
        for (int s = 0; s < ns && ok; s++)
            ok = (a->state[s] = kern_alloc_host(r->k, pbytes + sizeof(float))) != NULL;
    }
    if (!ok)
        return snprintf(err, ERRLEN, "checkpoint.async: out of host memory for the %.1f MiB "
                        "snapshot (checkpoint.async: false writes without one)",
                        (double)a->bytes / (1024.0 * 1024.0)), -1;
    return 0;
}

/* The thread: waits for the snapshot's copy (on GPUs still crossing to the host while the
 * step loop goes on), then writes and publishes it.  Its one backend call is
 * kern_download_wait; it touches only what the step loop does not change (the tensor table,
 * the optimizer's type, the paths). */
static void *writer_main(void *arg) {
    run *r = arg;
    ckpt_async *a = &r->ck;
    double t0 = metrics_now();
    int copied = kern_download_wait(r->k, a->err, sizeof a->err) == 0;
    hbool_t threadsafe = 0;
    H5is_library_threadsafe(&threadsafe);
    if (!threadsafe) data_hdf5_lock();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   /* this thread's errors go into a->err */
    if (a->every_rank) {
        ckpt_part_src part = {a->params, {a->state[0], a->state[1]}, NULL};
        a->status = !copied ? -1
                            : ckpt_part_write(r->ckpt_dir, &r->m, &r->opt, &a->s, r->rank,
                                              &part, a->err, sizeof a->err);
        a->part_ok = a->status == 0;
        atomic_store(&a->part_done, 1);
        /* rank 0: every part durable (the step loop's all-reduce), then the file mapping them */
        while (r->rank == 0 && a->part_ok && atomic_load(&a->publish) == 0) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        if (r->rank == 0 && a->part_ok && atomic_load(&a->publish) > 0)
            a->status = ckpt_parts_publish(r->ckpt_dir, &r->m, &r->opt, &a->s, r->config_yaml,
                                           r->cfg->ckpt_keep, a->buffers, a->path,
                                           sizeof a->path, a->err, sizeof a->err);
    } else {
        ckpt_host_src src = {a->params, a->buffers, {a->state[0], a->state[1]}};
        a->status = !copied ? -1 : ckpt_write_host(r->ckpt_dir, &r->m, &r->opt, &a->s, r->config_yaml,
                                    r->cfg->ckpt_keep, &src, a->path, sizeof a->path, a->err,
                                    sizeof a->err);
    }
    a->write_s = metrics_now() - t0;
    if (!threadsafe) data_hdf5_unlock();
    atomic_store(&a->finished, 1);
    return NULL;
}

/* Rank 0: a stop (SIGUSR1 from Slurm --signal=B:USR1@LEAD) finishes the step, waits for the
 * save in flight and writes its own: warns once when that takes longer than the lead time. */
static void check_signal_lead(run *r, int async, double write_s) {
    ckpt_async *a = &r->ck;
    double need = a->step_s + (async ? 2 : 1) * write_s;
    if (a->signal_lead_s <= 0 || a->lead_warned || need <= a->signal_lead_s) return;
    a->lead_warned = 1;
    metrics_notice(&r->met, "harness: warning: a stop needs about %.1f s (a step of %.1f s%s, "
                   "then a checkpoint write of %.1f s), more than the %.0f s between Slurm's "
                   "SIGUSR1 and the time limit (HARNESS_SIGNAL_LEAD_S): raise --signal=B:USR1@N "
                   "in the recipe, or the last steps are lost", need, a->step_s,
                   async ? ", the save in flight" : "", write_s, a->signal_lead_s);
}

/* Rank 0: the checkpoint record (metrics.jsonl), a notice, and the background write's span in
 * the trace.  async 0: a synchronous save, which the step loop waited for entirely. */
void report_checkpoint(run *r, int64_t step, int async, double copy_s, double wait_s,
                       double write_s, int64_t done_at, double t_write) {
    if (r->rank != 0) return;
    int64_t bytes = run_checkpoint_bytes(r);
    char fields[320];
    snprintf(fields, sizeof fields, "\"step\":%lld,\"async\":%s,\"copy_s\":%.6f,\"wait_s\":%.6f,"
             "\"write_s\":%.6f,\"bytes\":%lld,\"finished_at_step\":%lld", (long long)step,
             async ? "true" : "false", copy_s, wait_s, write_s, (long long)bytes,
             (long long)done_at);
    metrics_log_event(&r->met, "checkpoint", fields);
    double mb = (double)bytes / 1e6;
    check_signal_lead(r, async, write_s);
    if (async) {
        trace_host_span(r->tr, TRACE_HOST, "checkpoint write (background)", -1, t_write,
                        t_write + write_s);
        metrics_notice(&r->met, "harness: checkpoint of step %lld: %.1f MB written in %.2f s in "
                       "the background (finished by step %lld); the step loop waited %.3f s for "
                       "the copy%s", (long long)step, mb, write_s, (long long)done_at, copy_s + wait_s,
                       wait_s > 0.001 ? " and the previous save" : "");
    } else {
        metrics_notice(&r->met, "harness: checkpoint of step %lld: %.1f MB written in %.2f s "
                       "(the step loop waited for it%s)", (long long)step, mb, write_s,
                       wait_s > 0.001 ? ", and before it for the save in flight" : "");
    }
}

/* Rank 0 (every rank with every_rank): joins the finished thread and reports it.  0, or -1
 * with the write's error. */
static int collect(run *r, int64_t done, char *err) {
    ckpt_async *a = &r->ck;
    pthread_join(a->thread, NULL);
    a->running = 0;
    if (a->every_rank && r->rank == 0 && a->part_ok && atomic_load(&a->publish) < 0)
        return 0;   /* another rank's part failed: that rank reports it */
    if (a->status != 0) {
        snprintf(err, ERRLEN, "background checkpoint write of step %lld failed: %s (the previous "
                 "checkpoint is still the newest valid one)", (long long)a->s.step, a->err);
        return -1;
    }
    report_checkpoint(r, a->s.step, 1, a->copy_s, a->wait_s, a->write_s, done, a->t_start);
    return 0;
}

/* Rank 0 (every rank with every_rank), every step: 1 when the save in flight has just finished
 * and failed (reported here); otherwise 0.  Never blocks.  The flag travels in train.c's stop
 * all-reduce. */
int run_checkpoint_poll(run *r, int64_t done) {
    char err[ERRLEN];
    if (r->rank != 0 && !r->ck.every_rank) return 0;
    double now = metrics_now();   /* one step since the last call (the lead-time check) */
    if (r->ck.last_poll_t > 0) r->ck.step_s = now - r->ck.last_poll_t;
    r->ck.last_poll_t = now;
    if (!r->ck.running || !atomic_load(&r->ck.finished)) return 0;
    if (collect(r, done, err) == 0) return 0;
    fprintf(stderr, "harness: error: %s\n", err);
    return 1;
}

/* every_rank, every step: 1 while this rank's part of the save in flight is not written. */
int run_checkpoint_part_pending(const run *r) {
    const ckpt_async *a = &r->ck;
    return a->every_rank && a->running && !atomic_load(&a->part_done);
}

/* every_rank, every step after the all-reduce: no part pending anywhere (any_pending 0) and
 * none failed - rank 0's thread may publish. */
void run_checkpoint_parts_agreed(run *r, int any_pending) {
    ckpt_async *a = &r->ck;
    if (r->rank == 0 && a->every_rank && a->running && !any_pending &&
        atomic_load(&a->part_done) && atomic_load(&a->publish) == 0)
        atomic_store(&a->publish, 1);
}

/* every_rank: the save in flight completed on every rank (collective).  0, or -1 with err. */
static int drain_parts(run *r, int64_t done, char *err) {
    ckpt_async *a = &r->ck;
    int st = 0;
    int32_t bad = 0;
    if (a->running) {
        while (!atomic_load(&a->part_done)) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        bad = !a->part_ok;
        if (r->rank != 0 || bad) st = collect(r, done, err);
    }
    if (comm_allreduce_max_i32(r->c, &bad, 1, err, ERRLEN) != 0) comm_abort(r->c, 1, err);
    if (r->rank == 0 && a->running) {
        atomic_store(&a->publish, bad ? -1 : 1);
        st = collect(r, done, err);
    }
    return st;
}

/* Rank 0 (every rank with every_rank: collective): waits for the save in flight, if any.  0,
 * or -1 with err (the write failed). */
int run_checkpoint_drain(run *r, int64_t done, char *err) {
    r->ck.drain_s = 0;
    if (!r->ck.every_rank && (r->rank != 0 || !r->ck.running)) return 0;
    double t0 = metrics_now();
    int span = trace_host_begin(r->tr, TRACE_HOST, "checkpoint wait (save in flight)", -1);
    int st = r->ck.every_rank ? drain_parts(r, done, err) : collect(r, done, err);
    trace_host_end(r->tr, span);
    r->ck.drain_s = metrics_now() - t0;
    return st;
}

/* Every rank, zero_stage 1: the optimizer state shards gathered into rank 0's snapshot, one
 * tensor at a time (GPU backends: through a host copy of this rank's shard). */
static int gather_state(run *r, char *err) {
    ckpt_async *a = &r->ck;
    int ns = run_n_optim_states(&r->opt);
    float *dev[2] = {r->opt.m, r->opt.v};
    size_t bytes = (size_t)r->opt.n * sizeof(float);
    int on_cpu = kern_get_backend(r->k) == KERN_CPU;
    for (int s = 0; s < ns; s++) {
        float *shard = on_cpu ? dev[s] : malloc(bytes + sizeof(float));
        if (!shard) return snprintf(err, ERRLEN, "out of memory copying a shard"), -1;
        if (!on_cpu && bytes) kern_to_host(r->k, shard, dev[s], bytes);
        int st = 0;
        for (int i = 0; i < r->m.n_tensors && st == 0; i++) {
            const model_tensor *t = &r->m.tensors[i];
            if (t->is_buffer) continue;
            float *out = r->rank == 0 ? a->state[s] + t->offset : NULL;
            st = comm_shard_gather(r->c, shard, t->offset, t->count, out, err, ERRLEN);
        }
        if (!on_cpu) free(shard);
        if (st != 0) return -1;
    }
    return 0;
}

/* Every rank at a periodic checkpoint step with checkpoint.async: the snapshot, then rank 0's
 * thread writes it.  0, or -1 (agreed and reported: the previous save failed, or a gather). */
int run_checkpoint_async(run *r, int64_t step) {
    char err[ERRLEN] = "";
    ckpt_async *a = &r->ck;
    double t0 = metrics_now();
    int st = run_checkpoint_drain(r, step, err);   /* at most one save in flight */
    double t1 = metrics_now();
    if (run_agree(r, st, err)) return -1;
    int span = trace_host_begin(r->tr, TRACE_HOST, "checkpoint copy", -1);
    run_settle_params(r);
    run_sync_buffers(r);
    optim_verdict v;
    optim_read(&r->opt, &v);   /* brings opt.t up to date (skipped steps excluded) */
    if (r->zero && !a->every_rank && gather_state(r, err) != 0) comm_abort(r->c, 1, err);
    /* Parameters and optimizer state: queued to the snapshot (kern_download; on GPUs a stream
     * of its own, the writer thread waits for it, the next update for it on the device).
     * Buffers (batch norm's running statistics, which the next forward updates): copied now. */
    float *full[2] = {r->opt.m, r->opt.v};
    int ns = run_n_optim_states(&r->opt), n = 0;
    void *dst[3];
    const void *src[3];
    size_t nb[3];
    if (a->every_rank) {   /* this rank's slice; with zero_stage 1 its shard is that slice */
        int64_t lo, hi;
        my_slice(r, &lo, &hi);
        size_t bytes = (size_t)(hi - lo) * sizeof(float);
        dst[n] = a->params, src[n] = r->m.params + lo, nb[n++] = bytes;
        for (int s = 0; s < ns; s++)
            dst[n] = a->state[s], src[n] = r->zero ? full[s] : full[s] + lo, nb[n++] = bytes;
        atomic_store(&a->part_done, 0);
        atomic_store(&a->publish, 0);
    } else if (r->rank == 0) {   /* the whole; with zero_stage 1 the state was gathered above */
        size_t pbytes = (size_t)r->m.n_params * sizeof(float);
        dst[n] = a->params, src[n] = r->m.params, nb[n++] = pbytes;
        for (int s = 0; s < ns && !r->zero; s++)
            dst[n] = a->state[s], src[n] = full[s], nb[n++] = pbytes;
    }
    if (n > 0) kern_download(r->k, n, dst, src, nb);
    if (r->rank == 0 || a->every_rank) {
        if (r->m.n_buffers && r->rank == 0)
            kern_to_host(r->k, a->buffers, r->m.buffers, (size_t)r->m.n_buffers * sizeof(float));
        run_checkpoint_state(r, step, &a->s);
        a->wait_s = t1 - t0;
        a->copy_s = metrics_now() - t1;
        a->t_start = metrics_now();
        atomic_store(&a->finished, 0);
        /* the thread takes no signals: SIGTERM/SIGUSR1 reach the training loop */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int rc = pthread_create(&a->thread, NULL, writer_main, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        a->running = rc == 0;
        if (rc != 0) {
            snprintf(err, ERRLEN, "checkpoint.async: cannot start the writer thread: %s", strerror(rc));
            st = -1;
        }
    }
    trace_host_end(r->tr, span);
    return run_agree(r, st, err);
}

/* Teardown: waits for a save still in flight (an error exit), then frees the snapshot. */
void run_checkpoint_async_close(run *r) {
    ckpt_async *a = &r->ck;
    if (a->running) {
        if (atomic_load(&a->publish) == 0) atomic_store(&a->publish, -1);   /* an error exit */
        pthread_join(a->thread, NULL);
        a->running = 0;
    }
    if (r->k) {
        char err[ERRLEN];
        (void)kern_download_wait(r->k, err, sizeof err);   /* a copy whose writer never started */
        kern_free_host(r->k, a->params);
        kern_free_host(r->k, a->buffers);
        kern_free_host(r->k, a->state[0]);
        kern_free_host(r->k, a->state[1]);
    }
    memset(a->state, 0, sizeof a->state);
    a->params = a->buffers = NULL;
}
