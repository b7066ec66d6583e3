/* train: `harness train` and `harness eval` on every rank - set-up, the step loop,
 * checkpoints, resume, signals, evaluation. */
#ifndef HARNESS_TRAIN_H
#define HARNESS_TRAIN_H

#include <stdint.h>

#include "comm.h"
#include "config.h"

/* Exit codes of the harness process. */
enum {
    HARNESS_EXIT_OK = 0,
    HARNESS_EXIT_ERROR = 1,
    HARNESS_EXIT_RESUBMIT = 75,   /* checkpointed on a signal (or --stop-after): resubmit me */
    HARNESS_EXIT_NODE_LOST = 76,  /* a node of the job was lost: resume from the newest checkpoint elsewhere */
};

typedef struct {
    const char *resume;    /* NULL or "none": fresh start; "auto": newest valid checkpoint in
                            * the checkpoint directory, if any; else a checkpoint path */
    int64_t stop_after;    /* > 0: checkpoint and exit HARNESS_EXIT_RESUBMIT after this step */
} train_options;

/* Runs a resolved, validated config on this rank; returns the process exit code (errors are
 * already reported, once, by the rank that saw them). */
int train_run(const config *cfg, const train_options *opt, comm *c);

/* Evaluates the parameters of checkpoint ckpt on cfg's test set (data.test). */
int eval_run(const config *cfg, const char *ckpt, comm *c);

/* SIGUSR1 and SIGTERM (stop_signals.c).  stop_signals_start, before any other thread of the
 * process starts (before comm_init): blocks both on every thread and takes them on one thread
 * of its own with sigwait, so no handler ever interrupts a compute kernel.  Until armed (arm
 * here, or stop_signals_arm), a signal ends the process as by default; after, it only sets
 * what stop_signals_received returns (the signal number; 0: none yet).  stop_signals_end: the
 * thread joined, before the process exits.  0 or -1. */
int stop_signals_start(int arm);
void stop_signals_arm(void);
int stop_signals_received(void);
void stop_signals_end(void);

#endif
