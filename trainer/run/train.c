/* train: `harness train` and `harness eval` on every rank - the run from start to end, read
 * top to bottom (see train_run.h for the files it calls: the step, the reports, set-up,
 * checkpoints).  Start-up errors are agreed on by all ranks (comm_agree) so exactly one
 * prints and every rank exits 1; errors in the middle of a run end the job through
 * comm_abort. */
#include "train_run.h"

static void run_init(run *r, const config *cfg, comm *c) {
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->c = c;
    r->rank = comm_rank(c);
    r->world = comm_world(c);
    run_hooks_read(&r->hooks, r->rank);
    ckpt_set_test_pause(r->hooks.ckpt_sleep_ms);
}

/* Set-up on every rank, then the watchdog and the observers; 0 or -1 (reported, torn down). */
static int start_run(run *r, char *err) {
    const config *cfg = r->cfg;
    /* Debug: every collective's fingerprint compared across ranks (a collective call). */
    if (cfg->check_fingerprints && comm_check_fingerprints(r->c, 1, err, ERRLEN) != 0) {
        if (r->rank == 0) fprintf(stderr, "harness: error: %s\n", err);
        return -1;
    }
    if (run_setup(r, err) != 0) {
        run_teardown(r);
        return -1;
    }
    /* From here on a stalled collective or a lost rank ends the job with a report (the
     * one-rank phases of start-up - reading data, resuming - are over). */
    int wd = cfg->comm_timeout_s > 0 ? comm_watchdog_start(r->c, cfg->comm_timeout_s, err, ERRLEN) : 0;
    /* across nodes: a lost node named in seconds (collective: every rank calls it) */
    int hb = cfg->comm_heartbeat_s > 0
                 ? comm_heartbeat_start(r->c, cfg->comm_heartbeat_s, HARNESS_EXIT_NODE_LOST, err, ERRLEN) : 0;
    if (wd == 0) wd = hb;
    if (run_agree(r, wd, err) || run_agree(r, run_open_observers(r, err), err) ||
        run_agree(r, run_checkpoint_async_open(r, err), err)) {
        run_teardown(r);
        return -1;
    }
    return 0;
}

/* The steps at which every rank reads the optimizer's verdict (1-based step `done`): log
 * intervals, checkpoints, --stop-after and the last step. */
static int verdict_step(const run *r, const train_options *opt, int64_t done) {
    const config *cfg = r->cfg;
    return done % cfg->log_every == 0 || done == r->total_steps ||
           (cfg->ckpt_every > 0 && done % cfg->ckpt_every == 0) ||
           (opt->stop_after > 0 && done == opt->stop_after);
}

/* Every rank calls this at the same step.  Periodic saves with checkpoint.async: a snapshot,
 * written in the background (ckpt_async.c).  Otherwise, and for stops and the end of
 * training (after the save in flight): rank 0 writes, the others wait for it. */
static int checkpoint(run *r, int64_t step, int periodic, char *path, size_t path_len) {
    comm_watchdog_allow(r->c, r->cfg->ckpt_timeout_s);
    if (periodic && r->ck.on) return run_checkpoint_async(r, step);
    double t0 = metrics_now();
    int span = trace_host_begin(r->tr, TRACE_HOST, "checkpoint write", -1);
    int st = run_checkpoint(r, step, path, path_len);
    trace_host_end(r->tr, span);
    /* the save in flight that run_checkpoint waited for first is not this write's time */
    double wait = r->ck.drain_s, took = metrics_now() - t0 - wait;
    if (st == 0) report_checkpoint(r, step, 0, took, wait, took, step, t0);
    return st;
}

int train_run(const config *cfg, const train_options *opt, comm *c) {
    char err[ERRLEN];
    run r;
    run_init(&r, cfg, c);
    r.resume_what = opt->resume;
    /* SIGUSR1 (Slurm's warning before the time limit) and SIGTERM (preemption) only set a
     * flag (stop_signals.c, started and armed before MPI by cmd_train); the ranks agree at the
     * next step boundary and checkpoint the same step. */
    stop_signals_arm();
    if (start_run(&r, err) != 0) return HARNESS_EXIT_ERROR;
    /* optimizer state this rank holds: state tensors x its shard (all of it at stage 0) */
    int64_t optim_state_bytes = (int64_t)run_n_optim_states(&r.opt) * r.opt.n * (int64_t)sizeof(float);
    report_start(&r, optim_state_bytes);
    /* the network check at start (collective): bus bandwidth, each node's link */
    if (r.world > 1 && run_network_check(&r, err) != 0) comm_abort(c, 1, err);

    train_loop L;
    step_loop_init(&r, &L);
    int exit_code = HARNESS_EXIT_OK;
    char ckpt_path[1200] = "";
    for (int64_t step = r.start_step; step < r.total_steps; step++) {
        int64_t done = step + 1;
        if (step_run(&r, &L, step, verdict_step(&r, opt, done), stop_signals_received() != 0)) {
            exit_code = HARNESS_EXIT_ERROR;   /* non-finite beyond the limit (reported) */
            break;
        }
        int last_step = done == r.total_steps;
        if (done % cfg->log_every == 0 || last_step) report_interval(&r, &L, done);
        if (last_step) break;

        /* Evaluation and checkpoints do not count as training time. */
        double te = metrics_now();
        if (r.test && cfg->eval_every > 0 && done % cfg->eval_every == 0) {
            /* one span for the whole evaluation, not one per layer per batch */
            int span = trace_host_begin(r.tr, TRACE_HOST, "evaluation", -1);
            r.m.trace = NULL;
            run_evaluate(&r, done, L.epoch);
            r.m.trace = r.tr;
            trace_host_end(r.tr, span);
        }
        /* One small all-reduce per step: every rank learns of a signal any rank received,
         * so they all stop after the same step; and of a background checkpoint write that
         * failed on rank 0 (checkpoint.async: no collective of its own) - or, every rank
         * writing its part, whether a part failed or is still being written. */
        int32_t flags[3] = {stop_signals_received() ? stop_signals_received()
                            : (opt->stop_after > 0 && done == opt->stop_after) ? RUN_STOP_AFTER : 0,
                            run_checkpoint_poll(&r, done), run_checkpoint_part_pending(&r)};
        if (r.world > 1 && comm_allreduce_max_i32(c, flags, 3, err, sizeof err) != 0)
            comm_abort(c, 1, err);
        if (!flags[1]) run_checkpoint_parts_agreed(&r, flags[2]);   /* every rank writing */
        int32_t stop = flags[0];
        if (flags[1]) {   /* reported by rank 0 */
            exit_code = HARNESS_EXIT_ERROR;
            break;
        }
        int periodic = cfg->ckpt_every > 0 && done % cfg->ckpt_every == 0;
        if (stop || periodic) {
            double tc = metrics_now();
            if (checkpoint(&r, done, !stop, ckpt_path, sizeof ckpt_path) != 0) {
                exit_code = HARNESS_EXIT_ERROR;
                break;
            }
            L.iv_ckpt_step = done;
            L.iv_ckpt_s += metrics_now() - tc;
        }
        if (stop) {
            report_stop(&r, stop, done, ckpt_path);
            exit_code = HARNESS_EXIT_RESUBMIT;
            break;
        }
        double spent = metrics_now() - te;
        L.t_interval += spent;
        L.t_excluded += spent;
    }
    double train_s = metrics_now() - L.t_train - L.t_excluded;
    run_settle_params(&r);   /* the last step's all-gather (zero_stage 1) */
    run_hooks_write_params(&r);
    report_device_work(&r, &L, exit_code);
    if (exit_code == HARNESS_EXIT_OK &&
        checkpoint(&r, r.total_steps, 0, ckpt_path, sizeof ckpt_path) != 0)
        exit_code = HARNESS_EXIT_ERROR;
    /* every rank reaches here (errors in the loop are agreed on, or abort the job) */
    report_trace(&r);
    if (exit_code == HARNESS_EXIT_OK) {
        r.m.trace = NULL;
        if (r.test) run_evaluate(&r, r.total_steps, L.epoch);
        report_summary(&r, &L, train_s, ckpt_path, optim_state_bytes);
    }
    if (exit_code != HARNESS_EXIT_ERROR) report_plot(&r);
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
    run_evaluate(&r, 0, 0);   /* broadcasts the running statistics too */
    run_teardown(&r);
    return HARNESS_EXIT_OK;
out:
    run_teardown(&r);
    return HARNESS_EXIT_ERROR;
}
