/* train_run.h: what the trainer's three files share (internal to trainer/).
 *   train.c        the step loop, evaluation, the CUDA-graph step, train_run and eval_run
 *   train_setup.c  opening the backend, comm, data, model and optimizer; memory checks;
 *                  the observers (trace, straggler report); teardown
 *   train_state.c  checkpoints and resume (optimizer shards gathered and scattered)
 *   train_sync.c   the collectives all of them use (error agreement, broadcasts)
 * The arrows: train.c -> train_setup.c -> train_state.c -> train_sync.c (setup resumes;
 * train.c and train_setup.c use train_sync.c too). */
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
/* train_sync.c */
int run_agree(run *r, int status, char *err);
int run_broadcast_floats(run *r, float *buf, int64_t n, char *err);
void run_sync_buffers(run *r);
/* train.zero_stage=1: the parameters' all-gather still in flight completes (every rank). */
void run_settle_params(run *r);

#endif
