/* metrics: what rank 0 shows and records - the progress line (redrawn in place on a
 * terminal, one line per interval otherwise), metrics.jsonl, and the final summary. */
#ifndef HARNESS_METRICS_H
#define HARNESS_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "tensorboard.h"

typedef struct {
    FILE *jsonl;          /* run_dir/metrics.jsonl, NULL on ranks other than 0 */
    int in_place;         /* redraw the progress line with \r on a terminal */
    int line_open;        /* a progress line is on screen without its newline */
    double t_start;       /* wall clock at the start of training */
    tb_writer *tb;        /* log.tensorboard: the same scalars as TensorBoard events, or NULL */
} metrics;

typedef struct {
    int lm;               /* a language model (the caller asks its model): perplexity and
                           * tokens/s instead of accuracy and samples/s */
    int64_t step, total_steps, epoch;
    double loss, accuracy, lr, grad_norm;
    double samples_per_s, flops_per_s;
    double elapsed_s, eta_s;
    double compute_s, comm_wait_s, data_wait_s;   /* per step, averaged over the interval */
    double tokens_per_s;  /* language models */
    double mfu;           /* model FLOP utilisation against the GPU's dense bf16 peak; < 0: none */
    double bus_gbps;      /* the gradient exchange's achieved bus bandwidth, GB/s; < 0: none */
    int spread;           /* the step-time spread across ranks below is set (straggler.h) */
    double step_min_s, step_median_s, step_max_s;   /* busy seconds per step across ranks */
    int slowest_rank;
    int64_t ckpt_step;    /* the newest checkpoint since the last line (0: none), and the */
    double ckpt_s;        /* seconds the step loop lost to checkpoints meanwhile */
} metrics_train;

double metrics_now(void);   /* monotonic seconds */
/* progress: -1 auto (in place when stderr is a terminal), 0 never, 1 always.  append: keep
 * the records already in run_dir/metrics.jsonl (a resumed run). */
int metrics_open(metrics *m, const char *run_dir, int progress, int append, char *err,
                 size_t errlen);
/* Closes metrics.jsonl and the TensorBoard events file (when tb_open set m->tb). */
void metrics_close(metrics *m);
void metrics_log_train(metrics *m, const metrics_train *t);
/* samples: images, or for language models (lm) the tokens predicted (accuracy = next-token,
 * and the perplexity is shown too). */
void metrics_log_eval(metrics *m, int lm, int64_t step, int64_t epoch, double loss,
                      double accuracy, int64_t samples);
/* A free-form JSON object (already formatted, without braces) with "event":name. */
void metrics_log_event(metrics *m, const char *name, const char *json_fields);
/* Prints a notice on its own line (closing the progress line first). */
void metrics_notice(metrics *m, const char *fmt, ...);

#endif
