/* harness: command line.  `harness train`, `harness convert`, and help for each. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "fsutil.h"
#include "kernels.h"
#include "train.h"

#define HARNESS_VERSION "0.1.0"

static const char *usage_main =
    "usage: harness COMMAND [ARGS]\n"
    "\n"
    "Data-parallel neural-network training: MPI ranks, HDF5 data, gradients averaged every step.\n"
    "\n"
    "commands:\n"
    "  train [CONFIG] [--set KEY=VALUE]... [--resume auto|none|CKPT] [--stop-after STEP]\n"
    "                                        train a model (run under mpirun for several ranks)\n"
    "  eval --checkpoint CKPT [--set KEY=VALUE]...\n"
    "                                        test loss and accuracy of a saved model\n"
    "  inspect CKPT                          step, config, tensors (shapes, norms) of a checkpoint\n"
    "  devices [--count]                     the compute backends this build and machine offer\n"
    "  convert fashion-mnist [--src DIR] [--out DIR]\n"
    "                                        turn IDX files into HDF5 train.h5 / test.h5\n"
    "  help [COMMAND]                        this text, or a command's\n"
    "\n"
    "`harness COMMAND --help` describes each command.  harness " HARNESS_VERSION "\n";

static const char *usage_train =
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
    "SIGUSR1 or SIGTERM: all ranks checkpoint the next step boundary and exit with status 75.\n"
    "A resumed run sees the same global batches in the same order, on any number of ranks.\n"
    "Keys (section.key): run.{dir,seed,device,threads,precision} data.{train,test,cache_mb,\n"
    "shuffle,normalize,augment_pad,augment_hflip} model.{layers,init} train.{epochs,steps,\n"
    "batch_size,grad_accum,optimizer,lr,momentum,nesterov,beta1,beta2,eps,weight_decay,\n"
    "clip_grad_norm,schedule,warmup_steps,min_lr,nonfinite} log.{every,eval_every,progress}\n"
    "comm.{bucket_kb,timeout_s,check_fingerprints} checkpoint.{dir,every,keep,timeout_s}.\n"
    "Layer types: linear conv2d maxpool2d avgpool2d global_avgpool batchnorm2d relu gelu\n"
    "dropout flatten residual_start residual_end.\n"
    "See launch/*.yaml and README.md.\n"
    "\n"
    "Exit status: 0 done, 1 error (reported once, naming the rank that saw it),\n"
    "75 checkpointed on a signal or --stop-after: resubmit with --resume auto.\n";

static const char *usage_eval =
    "usage: harness eval --checkpoint CKPT [--set KEY=VALUE]...\n"
    "\n"
    "Loss and accuracy of the model saved in CKPT on its config's test set (data.test), every\n"
    "sample exactly once, on any number of ranks.  The config stored in the checkpoint is the\n"
    "starting point; --set overrides keys (e.g. --set data.test=other.h5).\n";

static const char *usage_inspect =
    "usage: harness inspect CKPT\n"
    "\n"
    "Prints a checkpoint's step, epoch, data cursor, world size, optimizer, every tensor's\n"
    "name, shape and L2 norm, and the resolved config it was trained with.\n";

static const char *usage_convert =
    "usage: harness convert fashion-mnist [--src DIR] [--out DIR]\n"
    "\n"
    "Reads the IDX files of Fashion-MNIST (train-images-idx3-ubyte[.gz] and the others) from\n"
    "DIR (default /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist) and\n"
    "writes OUT/train.h5 and OUT/test.h5 (default OUT: datasets/fashion-mnist) with /images\n"
    "uint8 [N,28,28], /labels [N], and attributes num_classes, class_names, mean, std.\n";

static const char *const fashion_classes[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

static int wants_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

/* Picks the IDX file NAME or NAME.gz inside dir. */
static void idx_path(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s.gz", dir, name);
    FILE *f = fopen(out, "rb");
    if (f) { fclose(f); return; }
    snprintf(out, n, "%s/%s", dir, name);
}

static int cmd_convert(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(usage_convert, stdout); return 0; }
    if (argc < 3 || strcmp(argv[2], "fashion-mnist") != 0) {
        fprintf(stderr, "harness convert: unknown or missing format%s%s (known: fashion-mnist)\n%s",
                argc >= 3 ? " " : "", argc >= 3 ? argv[2] : "", usage_convert);
        return 1;
    }
    const char *src = "/usr/share/datasets/fashion-mnist", *out = "datasets/fashion-mnist";
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--src") && i + 1 < argc) src = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else {
            fprintf(stderr, "harness convert: unexpected argument '%s'\n%s", argv[i], usage_convert);
            return 1;
        }
    }
    if (make_dirs(out) != 0) {
        fprintf(stderr, "harness convert: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    static const char *split[2][3] = {
        {"train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
        {"test", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}};
    char err[1024];
    for (int s = 0; s < 2; s++) {
        char images[1100], labels[1100], h5[1100];
        idx_path(images, sizeof images, src, split[s][1]);
        idx_path(labels, sizeof labels, src, split[s][2]);
        snprintf(h5, sizeof h5, "%s/%s.h5", out, split[s][0]);
        if (data_convert_idx(images, labels, h5, 10, fashion_classes, err, sizeof err) != 0) {
            fprintf(stderr, "harness convert: %s\n", err);
            return 1;
        }
        data_info info;
        if (data_inspect(h5, &info, err, sizeof err) != 0) {
            fprintf(stderr, "harness convert: wrote %s but it does not read back: %s\n", h5, err);
            return 1;
        }
        printf("%s: %lld images %lldx%lld, %d classes\n", h5, (long long)info.n,
               (long long)info.sample_shape[0], (long long)info.sample_shape[1], info.num_classes);
        data_info_free(&info);
    }
    return 0;
}

/* Reads the arguments of train / eval after argv[first]: an optional CONFIG file (train), then
 * --set KEY=VALUE, --resume X, --stop-after N, --checkpoint P (each only where allowed).
 * The config file, when given, is read before any --set.  0 or -1 with err. */
typedef struct {
    const char *config_file, *resume, *checkpoint;
    int64_t stop_after;
    const char *sets[256];
    int n_sets;
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
static int cmd_run(int argc, char **argv, int is_eval) {
    if (wants_help(argc, argv)) { fputs(is_eval ? usage_eval : usage_train, stdout); return 0; }
    char err[1024];
    comm *c = NULL;
    if (comm_init(&argc, &argv, &c, err, sizeof err) != 0) {
        fprintf(stderr, "harness: %s\n", err);
        return 1;
    }
    cli_args a;
    config cfg;
    config_defaults(&cfg);
    int st = parse_args(argc, argv, 2, is_eval, &a, err, sizeof err);
    if (st == 0 && a.config_file) st = config_load_file(&cfg, a.config_file, err, sizeof err);
    if (st == 0 && is_eval) {
        /* the model is the checkpoint's: start from the config it was trained with */
        char *text = ckpt_read_config(a.checkpoint, err, sizeof err);
        if (!text) st = -1;
        else st = config_load_string(&cfg, a.checkpoint, text, strlen(text), err, sizeof err);
        free(text);
    }
    for (int i = 0; i < a.n_sets && st == 0; i++) st = config_set(&cfg, a.sets[i], err, sizeof err);
    if (st == 0) st = config_validate(&cfg, err, sizeof err);
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
    return rc;
}

static int cmd_inspect(int argc, char **argv) {
    if (wants_help(argc, argv) || argc != 3) {
        fputs(usage_inspect, argc == 3 ? stdout : stderr);
        return argc == 3 ? 0 : 1;
    }
    char err[1024];
    if (ckpt_inspect(argv[2], stdout, err, sizeof err) != 0) {
        fprintf(stderr, "harness inspect: %s\n", err);
        return 1;
    }
    return 0;
}

/* OpenBLAS chooses its CPU kernels at load time, before main; when it chose slower ones than
 * this CPU can run, start again with OPENBLAS_CORETYPE set (the same process, before MPI or
 * anything else has started).  HARNESS_NO_BLAS_REEXEC=1 or an explicit OPENBLAS_CORETYPE
 * keeps the library's own choice. */
static void reexec_with_faster_blas(char **argv) {
    const char *hint = kern_blas_coretype_hint();
    if (!hint || getenv("OPENBLAS_CORETYPE") || getenv("HARNESS_NO_BLAS_REEXEC")) return;
    if (setenv("OPENBLAS_CORETYPE", hint, 1) != 0) return;
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");   /* exec failed: carry on with the library's choice */
}

int main(int argc, char **argv) {
    reexec_with_faster_blas(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(usage_main, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (!strcmp(argv[1], "--version")) { puts("harness " HARNESS_VERSION); return 0; }
    if (!strcmp(argv[1], "help")) {
        const char *t = argc > 2 ? argv[2] : "";
        fputs(!strcmp(t, "train") ? usage_train : !strcmp(t, "convert") ? usage_convert
              : !strcmp(t, "eval") ? usage_eval : !strcmp(t, "inspect") ? usage_inspect
              : usage_main, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_run(argc, argv, 0);
    if (!strcmp(argv[1], "eval")) return cmd_run(argc, argv, 1);
    if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc, argv);
    if (!strcmp(argv[1], "devices")) {
        int gpus = kern_cuda_device_count();
        if (argc > 2 && !strcmp(argv[2], "--count")) printf("%d\n", gpus);
        else printf("cpu: available\ncuda: %d device%s%s\n", gpus, gpus == 1 ? "" : "s",
                    gpus ? "" : " (none visible, or this build has no CUDA backend)");
        return 0;
    }
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    fprintf(stderr, "harness: unknown command '%s'\n%s", argv[1], usage_main);
    return 1;
}
