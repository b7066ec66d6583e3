/* cmd_train: `harness train` and `harness eval` - their arguments, the config resolved on
 * every rank, then train_run / eval_run.  The keys part of the help is the config table's
 * (config_print_help). */
#include "cli.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "config.h"
#include "train.h"

static const char *const usage_train =
    "usage: harness train [CONFIG] [--set KEY=VALUE]... [--resume auto|none|CKPT]\n"
    "                     [--stop-after STEP]\n"
    "\n"
    "Trains the model described by the YAML file CONFIG (defaults for every key not in it;\n"
    "without CONFIG, the built-in default: an MLP on datasets/fashion-mnist).  Each --set\n"
    "overrides one key after the file is read, e.g. --set train.lr=0.01 --set train.epochs=2.\n"
    "Run several ranks with: mpirun -np 4 harness train CONFIG\n"
    "\n"
    "Writes RUN_DIR/config.yaml (the resolved config) and RUN_DIR/metrics.jsonl, and HDF5\n"
    "checkpoints to RUN_DIR/checkpoints/step_NNNNNNNN.h5 every checkpoint.every steps and at the\n"
    "end (the newest checkpoint.keep are kept).\n"
    "\n"
    "  --resume auto     continue from the newest checkpoint that verifies (a damaged one is\n"
    "                    reported and skipped); start fresh when there is none\n"
    "  --resume CKPT     continue from that checkpoint; --resume none (default): start fresh\n"
    "  --stop-after N    checkpoint after step N and exit with status 75\n"
    "  --trace STEPS     write RUN_DIR/trace.json of STEPS steps from log.trace_start (N), or of\n"
    "                    steps A to B (A-B): every rank's data wait, layers, all-reduce buckets,\n"
    "                    optimizer (the same as --set log.trace=true and log.trace_*)\n"
    "SIGUSR1 or SIGTERM: all ranks checkpoint the next step boundary and exit with status 75.\n"
    "A resumed run sees the same global batches in the same order, on any number of ranks.\n";

static const char *const usage_train_end =
    "See launch/*.yaml and README.md.\n"
    "\n"
    "Exit status: 0 done, 1 error (reported once, naming the rank that saw it),\n"
    "75 checkpointed on a signal or --stop-after: resubmit with --resume auto,\n"
    "76 a node was lost (no heartbeat for comm.heartbeat_s seconds; the report names it, its\n"
    "ranks and step): resume with --resume auto on the nodes that remain.\n";

static const char *const usage_eval =
    "usage: harness eval --checkpoint CKPT [--set KEY=VALUE]...\n"
    "\n"
    "Loss and accuracy of the model saved in CKPT on its config's test set (data.test), every\n"
    "sample exactly once, on any number of ranks.  The config stored in the checkpoint is the\n"
    "starting point; --set overrides keys (e.g. --set data.test=other.h5).\n";

void cmd_train_usage(FILE *out, int is_eval) {
    /* The help (about 11 KiB with every key) leaves in one write: a reader that stops at its
     * first match (`harness train --help | grep -q KEY` under pipefail) then cannot cut a
     * later write short with SIGPIPE.  Nothing has been written to stdout yet. */
    static char buffer[1 << 16];
    if (out == stdout) setvbuf(stdout, buffer, _IOFBF, sizeof buffer);
    if (is_eval) {
        fputs(usage_eval, out);
        return;
    }
    fputs(usage_train, out);
    fputc('\n', out);
    config_print_help(out);
    fputc('\n', out);
    fputs(usage_train_end, out);
}

/* Reads the arguments of train / eval after argv[first]: an optional CONFIG file (train), then
 * --set KEY=VALUE, --resume X, --stop-after N, --checkpoint P (each only where allowed).
 * The config file, when given, is read before any --set.  0 or -1 with err. */
typedef struct {
    const char *config_file, *resume, *checkpoint;
    int64_t stop_after;
    const char *sets[256];
    int n_sets;
    char trace_sets[3][64];   /* --trace as --set log.trace* */
} cli_args;

static int parse_args(int argc, char **argv, int first, int is_eval, cli_args *a, char *err,
                      size_t errlen) {
    memset(a, 0, sizeof *a);
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(arg, "--set") || !strncmp(arg, "--set=", 6)) {
            const char *v = arg[5] == '=' ? arg + 6 : val;
            if (!v) return snprintf(err, errlen, "--set needs KEY=VALUE"), -1;
            if (a->n_sets == 256) return snprintf(err, errlen, "too many --set options"), -1;
            a->sets[a->n_sets++] = v;
            if (arg[5] != '=') i++;
        } else if (!is_eval && !strcmp(arg, "--resume")) {
            if (!val) return snprintf(err, errlen, "--resume needs auto, none or a checkpoint path"), -1;
            a->resume = val;
            i++;
        } else if (!is_eval && !strcmp(arg, "--stop-after")) {
            char *end = NULL;
            long long n = val ? strtoll(val, &end, 10) : 0;
            if (!val || *end || n < 1)
                return snprintf(err, errlen, "--stop-after needs a step number >= 1"), -1;
            a->stop_after = n;
            i++;
        } else if (!is_eval && !strcmp(arg, "--trace")) {
            char *end = NULL;
            long long from = val ? strtoll(val, &end, 10) : 0, to = from;
            int range = end && *end == '-';
            if (range) to = strtoll(end + 1, &end, 10);
            if (!val || *end || from < 1 || to < from || a->n_sets > 253)
                return snprintf(err, errlen, "--trace needs a step count N >= 1 or a step range "
                                "A-B (1 <= A <= B)"), -1;
            snprintf(a->trace_sets[0], sizeof a->trace_sets[0], "log.trace=true");
            a->sets[a->n_sets++] = a->trace_sets[0];
            snprintf(a->trace_sets[1], sizeof a->trace_sets[1], "log.trace_steps=%lld",
                     range ? to - from + 1 : from);
            a->sets[a->n_sets++] = a->trace_sets[1];
            if (range) {
                snprintf(a->trace_sets[2], sizeof a->trace_sets[2], "log.trace_start=%lld", from);
                a->sets[a->n_sets++] = a->trace_sets[2];
            }
            i++;
        } else if (is_eval && !strcmp(arg, "--checkpoint")) {
            if (!val) return snprintf(err, errlen, "--checkpoint needs a path"), -1;
            a->checkpoint = val;
            i++;
        } else if (arg[0] == '-') {
            return snprintf(err, errlen, "unknown option '%s' (see harness %s --help)", arg,
                            is_eval ? "eval" : "train"), -1;
        } else if (!is_eval && i == first && !a->config_file) {
            a->config_file = arg;
        } else {
            return snprintf(err, errlen, "unexpected argument '%s': give %s, then options", arg,
                            is_eval ? "--checkpoint CKPT" : "one CONFIG file"), -1;
        }
    }
    if (is_eval && !a->checkpoint)
        return snprintf(err, errlen, "eval needs --checkpoint CKPT"), -1;
    return 0;
}

/* train and eval: MPI up, config resolved on every rank, errors reported by rank 0. */
int cmd_train(int argc, char **argv, int is_eval) {
    if (cli_wants_help(argc, argv)) {
        cmd_train_usage(stdout, is_eval);
        return 0;
    }
    char err[1024];
    comm *c = NULL;
    /* before MPI (and any other thread) starts: SIGUSR1/SIGTERM go to one waiting thread;
     * train stops on them at a step boundary (even when they come during start-up), eval
     * ends at once */
    if (stop_signals_start(!is_eval) != 0) {
        fprintf(stderr, "harness: cannot start the signal thread: %s\n", strerror(errno));
        return 1;
    }
    if (comm_init(&argc, &argv, &c, err, sizeof err) != 0) {
        fprintf(stderr, "harness: %s\n", err);
        stop_signals_end();
        return 1;
    }
    cli_args a;
    config cfg;
    int st = parse_args(argc, argv, 2, is_eval, &a, err, sizeof err);
    /* eval: the model is the checkpoint's, so its stored config is the starting point */
    if (st == 0)
        st = cli_resolve_config(&cfg, a.config_file, is_eval ? a.checkpoint : NULL, a.sets,
                                a.n_sets, err, sizeof err);
    int rc;
    if (st != 0) {
        if (comm_rank(c) == 0) fprintf(stderr, "harness: error: %s\n", err);
        rc = HARNESS_EXIT_ERROR;
    } else if (is_eval) {
        rc = eval_run(&cfg, a.checkpoint, c);
    } else {
        train_options opt = {a.resume, a.stop_after};
        rc = train_run(&cfg, &opt, c);
    }
    comm_finalize(c);
    stop_signals_end();
    return rc;
}
