/* train_run.h: what the files of a training run share (internal to trainer/run/).
 *   train.c        train_run and eval_run: the loop read top to bottom
 *   stop_signals.c SIGUSR1/SIGTERM taken by a sigwait thread (never a handler on a computing
 *                  thread), the stop flag the loop reads
 *   step.c         the batch path and one optimizer step: micro-steps, the CUDA-graph step,
 *                  the gradient exchange, the optimizer, its verdict; the evaluation pass
 *   report.c       what rank 0 shows: the start banner, log intervals, non-finite steps,
 *                  stragglers, evaluation results, the closing summary and plot
 *   hooks.c        test and fault-injection hooks, read once from the environment
 *   train_setup.c  opening the backend, comm, data, model and optimizer; memory checks;
 *                  the observers (trace, straggler report); teardown
 *   train_state.c  checkpoints and resume (optimizer shards gathered and scattered)
 *   ckpt_async.c   checkpoints written by a background thread (checkpoint.async)
 *   ckpt_parts.c   checkpoints written by every rank: its part file, and rank 0's file of
 *                  virtual datasets over them (checkpoint.writers 0); ckpt_hdf5.c the HDF5
 *                  helpers it shares with checkpoint.c
 *   train_sync.c   the collectives all of them use (error agreement, broadcasts)
 * The arrows: train.c -> {step.c, report.c, train_setup.c} -> train_state.c -> train_sync.c
 * (setup resumes; every file may use train_sync.c). */
#ifndef HARNESS_TRAIN_RUN_H
#define HARNESS_TRAIN_RUN_H

#include "train.h"

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
#include "ckpt_async.h"
#include "ckpt_parts.h"
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

/* Why the ranks stop early, agreed with an all-reduce MAX: the signal number, or this
 * (--stop-after). */
#define RUN_STOP_AFTER 1000

/* Test and fault-injection hooks (hooks.c), read once from the environment when a run starts;
 * nothing else in the trainer, checkpoint.c or the kernels reads them. */
typedef struct {
    long step_sleep_ms;       /* HARNESS_FAULT_STEP_SLEEP_MS: pause after each micro-step, so a
                               * signal lands in the middle of gradient accumulation; plus
                               * HARNESS_FAULT_SLOW_RANK=R:MS on rank R (a straggler) */
    int poison_grads;         /* HARNESS_FAULT_POISON_GRADS: NaN in every gradient after each
                               * update (a gradient the next step neither zeroes nor overwrites
                               * shows up as a non-finite step) */
    int poison_gather;        /* HARNESS_FAULT_POISON_GATHER (zero_stage 1): NaN outside this
                               * rank's shard before the all-gather (a layer that reads its
                               * parameters before they arrive makes the loss non-finite) */
    int graph_body;           /* HARNESS_TEST_GRAPH_BODY: on the CPU, the CUDA-graph path's
                               * step without recording (checked against the ordinary step) */
    long ckpt_sleep_ms;       /* HARNESS_FAULT_CKPT_SLEEP_MS: checkpoint.c pauses before the
                               * rename (ckpt_set_test_pause) */
    int upload_delay_ms;      /* HARNESS_FAULT_UPLOAD_DELAY_MS: the CUDA copy stream starts
                               * each upload late (kern_options.upload_delay_ms) */
    int download_delay_ms;    /* HARNESS_FAULT_DOWNLOAD_DELAY_MS: a checkpoint's snapshot
                               * copy completes this late (kern_options.download_delay_ms) */
    const char *params_out;   /* HARNESS_TEST_PARAMS_OUT=PREFIX: each rank writes its final
                               * parameters to PREFIX.rankR (raw float32): the tests compare
                               * the ranks' copies bit for bit */
} run_hooks;

/* One process's training run: its config, backend, comm, data, model, optimizer, metrics. */
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
    float in_scale, mean, std;
    int32_t *labels_dev;      /* [B] labels (language models: [B, context] targets) on the backend */
    double *acc_dev;          /* [4] loss sum and correct predictions, on the backend:
                               * [0,2) training (read at log intervals), [2,4) evaluation */
    double peak_flops;        /* the device's dense bf16 peak (MFU); 0 = unknown */
    int64_t estimated_bytes;  /* the start-up memory estimate: model, scratch, optimizer state */
    model_input_desc in_desc; /* what the model is built for (language model or not: ask the
                               * model, model_is_lm, once it is built) */
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
    run_hooks hooks;
    ckpt_async ck;            /* checkpoint.async: the snapshot and the save in flight */
} run;

/* What the step loop carries from one step to the next (train.c, step.c, report.c). */
typedef struct {
    /* the log interval so far, this rank: busy time, of which waiting for the gradients'
     * exchange and for data; loss rows (samples, or tokens) and steps */
    double iv_compute, iv_comm, iv_data;
    int64_t iv_rows, iv_steps;
    /* checkpoints since the last log line: the newest one's step (0: none), and the seconds
     * the step loop lost to them (copies and waits, or whole synchronous writes) */
    int64_t iv_ckpt_step;
    double iv_ckpt_s;
    double t_interval;        /* the interval's start (moved on by the time evaluation and
                               * checkpoints took) */
    double t_train, t_excluded;   /* training's start; time since spent evaluating and
                                   * checkpointing, which does not count as training */
    int64_t epoch, steps_run;
    float lr;                 /* the last step's learning rate */
    double grad_norm;         /* from the last verdict read */
    int64_t skipped_steps;    /* non-finite steps skipped so far (the last verdict read) */
    /* device work queued by the step body from the second step on (the first builds GEMM
     * and convolution plans): sums over kc_steps steps */
    kern_counters kc_sum;
    int64_t kc_steps;
    /* the loss is the mean over the global batch's rows: each micro-step's rows count
     * 1 / (rows * accum) */
    int64_t rows;
    float inv_scale;
    /* CUDA graph (run.cuda_graph): the first step of this process runs as it is (it builds
     * the plans, which cannot be made while recording), the second is recorded and every
     * later one replays it.  emulate: the CPU test path (run_hooks.graph_body). */
    int graph_on, graph_ready, graph_emulate;
    data_batch batch;
} train_loop;

/* hooks.c */
void run_hooks_read(run_hooks *h, int rank);
void run_hooks_write_params(run *r);   /* HARNESS_TEST_PARAMS_OUT; a warning on failure */
/* step.c */
/* Before the first step: the loop's state, the parameters' all-gather hook (zero_stage 1)
 * and whether the step runs from a CUDA graph (said once). */
void step_loop_init(run *r, train_loop *L);
/* One optimizer step (0-based step).  The verdict (optim_read) is read when read_verdict (the
 * ranks' agreed steps: every rank reads at the same steps) or, for the counts alone, when
 * signalled.  1: training must stop for non-finite gradients (reported); else 0. */
int step_run(run *r, train_loop *L, int64_t step, int read_verdict, int signalled);
/* Loss and accuracy over the whole test set, every sample exactly once across ranks. */
void run_evaluate(run *r, int64_t step, int64_t epoch);
void run_reset_acc(run *r, double *acc);
/* report.c (rank 0 prints; the functions marked collective are called on every rank) */
void report_start(run *r, int64_t optim_state_bytes);
void report_graph(run *r, const char *why_not);
void report_interval(run *r, train_loop *L, int64_t done);   /* collective */
void report_skips(run *r, int64_t done, const optim_verdict *v);
void report_nonfinite(run *r, int64_t step, int64_t skipped);   /* collective */
void report_eval(run *r, int64_t step, int64_t epoch, const double sums[2], int64_t count);
void report_stop(run *r, int stop, int64_t done, const char *ckpt_path);
void report_device_work(run *r, const train_loop *L, int exit_code);
void report_trace(run *r);   /* collective: writes the trace */
void report_summary(run *r, const train_loop *L, double train_s, const char *ckpt_path,
                    int64_t optim_state_bytes);   /* collective */
void report_plot(run *r);
/* train_setup.c */
int run_alloc_batch_buffers(run *r, char *err);
int run_open_backend(run *r, char *err);
int run_open_data(run *r, int need_train, char *err);
int run_open_observers(run *r, char *err);
/* The network check at start (collective; several ranks only): rank 0 prints it and writes a
 * "network" record to metrics.jsonl. */
int run_network_check(run *r, char *err);
int run_setup(run *r, char *err);
void run_teardown(run *r);
/* train_state.c */
int run_checkpoint(run *r, int64_t step, char *path, size_t path_len);
int run_n_optim_states(const optim *o);
int run_resume(run *r, const char *what, char *err);
/* ckpt_async.c (see ckpt_async.h) */
int64_t run_checkpoint_bytes(const run *r);
int64_t run_checkpoint_snapshot_bytes(const config *cfg, int world, int local, int64_t n_params,
                                      int optim_states);
void run_checkpoint_state(run *r, int64_t step, ckpt_state *s);
int run_checkpoint_part_pending(const run *r);
void run_checkpoint_parts_agreed(run *r, int any_pending);
int run_checkpoint_async_open(run *r, char *err);
int run_checkpoint_async(run *r, int64_t step);             /* collective */
int run_checkpoint_poll(run *r, int64_t done);
int run_checkpoint_drain(run *r, int64_t done, char *err);
void run_checkpoint_async_close(run *r);
void report_checkpoint(run *r, int64_t step, int async, double copy_s, double wait_s,
                       double write_s, int64_t done_at, double t_write);
/* train_sync.c */
int run_agree(run *r, int status, char *err);
int run_broadcast_floats(run *r, float *buf, int64_t n, char *err);
void run_sync_buffers(run *r);
/* train.zero_stage=1: the parameters' all-gather still in flight completes (every rank). */
void run_settle_params(run *r);

#endif
