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

#endif
