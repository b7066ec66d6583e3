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
#include "tokenizer.h"
#include "fsutil.h"
#include "generate.h"
#include "images_cmd.h"
#include "interop_cmd.h"
#include "kernels.h"
#include "plot.h"
#include "train.h"

#define HARNESS_VERSION "0.1.0"

static const char *usage_main =
    "usage: harness COMMAND [ARGS]\n"
    "\n"
    "Data-parallel neural-network training: MPI ranks, HDF5 data, gradients averaged every step.\n"
    "\n"
    "commands:\n"
    "  train [CONFIG] [--set KEY=VALUE]... [--resume auto|none|CKPT] [--stop-after STEP]\n"
    "        [--trace STEPS]\n"
    "                                        train a model (run under mpirun for several ranks)\n"
    "  eval --checkpoint CKPT [--set KEY=VALUE]...\n"
    "                                        test loss and accuracy of a saved model\n"
    "  generate --checkpoint CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]\n"
    "           [--seed S] [--set KEY=VALUE]...\n"
    "                                        continue a text with a language model\n"
    "  inspect CKPT                          step, config, tensors (shapes, norms) of a checkpoint\n"
    "  plot RUN_DIR... [--out FILE.png]      loss, accuracy, lr, throughput of runs as one PNG\n"
    "  inspect FILE.h5                       a dataset: size, type; a token file decoded\n"
    "  devices [--count]                     the compute backends this build and machine offer\n"
    "  convert fashion-mnist [--src DIR] [--out DIR]\n"
    "                                        turn IDX files into HDF5 train.h5 / test.h5\n"
    "  convert text FILE... --out DIR [--tokenizer bytes|gpt2] [--vocab DIR]\n"
    "                                        tokenize text into DIR/train.h5 / val.h5\n"
    "  convert tokens --from llmc|nanogpt FILE... --out FILE.h5 [--vocab-size N]\n"
    "                                        import llm.c / nanoGPT token files\n"
    "  convert images ROOT --out DIR [--size HxW] [--val-fraction F] [--on-bad skip|fail]\n"
    "                                        image folders ROOT/CLASS/*.jpg|png into HDF5\n"
    "  convert weights --from hf DIR|llmc FILE --out CKPT.h5\n"
    "                                        import GPT-2 weights (HuggingFace, llm.c)\n"
    "  export --checkpoint CKPT --format hf --out DIR\n"
    "                                        a GPT as HuggingFace model.safetensors + config.json\n"
    "  help [COMMAND]                        this text, or a command's\n"
    "\n"
    "`harness COMMAND --help` describes each command.  harness " HARNESS_VERSION "\n";

static const char *usage_generate =
    "usage: harness generate --checkpoint CKPT [--prompt TEXT] [--tokens N] [--temperature T]\n"
    "                        [--top-k K] [--seed S] [--set KEY=VALUE]...\n"
    "\n"
    "Prints TEXT and its continuation by the language model saved in CKPT, one token at a time\n"
    "through key-value caches.  The tokenizer is the one stored with the training data the\n"
    "checkpoint names (data.train; --set data.train=PATH if it moved).  Defaults: --tokens 200,\n"
    "--temperature 0.8 (0 = always the most likely token), --top-k 40 (0 = no limit), --seed 1.\n"
    "Runs on the GPU when one is visible (run.device).\n";

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
    "  --trace STEPS     write RUN_DIR/trace.json of STEPS steps from log.trace_start (N), or of\n"
    "                    steps A to B (A-B): every rank's data wait, layers, all-reduce buckets,\n"
    "                    optimizer (the same as --set log.trace=true and log.trace_*)\n"
    "SIGUSR1 or SIGTERM: all ranks checkpoint the next step boundary and exit with status 75.\n"
    "A resumed run sees the same global batches in the same order, on any number of ranks.\n"
    "Keys (section.key): run.{dir,seed,device,threads,precision} data.{train,test,cache_mb,\n"
    "shuffle,normalize,augment_pad,augment_hflip} model.{layers,init,init_from} train.{epochs,steps,\n"
    "batch_size,grad_accum,optimizer,lr,momentum,nesterov,beta1,beta2,eps,weight_decay,\n"
    "clip_grad_norm,schedule,warmup_steps,min_lr,nonfinite} log.{every,eval_every,progress,plot,tensorboard,\n"
    "trace,trace_start,trace_steps,straggler_pct,straggler_intervals}\n"
    "comm.{bucket_kb,shared_memory,timeout_s,heartbeat_s,check_fingerprints} checkpoint.{dir,every,keep,timeout_s}.\n"
    "Layer types: linear conv2d maxpool2d avgpool2d global_avgpool batchnorm2d relu gelu\n"
    "dropout flatten residual_start residual_end.\n"
    "See launch/*.yaml and README.md.\n"
    "\n"
    "Exit status: 0 done, 1 error (reported once, naming the rank that saw it),\n"
    "75 checkpointed on a signal or --stop-after: resubmit with --resume auto,\n"
    "76 a node was lost (no heartbeat for comm.heartbeat_s seconds; the report names it, its\n"
    "ranks and step): resume with --resume auto on the nodes that remain.\n";

static const char *usage_eval =
    "usage: harness eval --checkpoint CKPT [--set KEY=VALUE]...\n"
    "\n"
    "Loss and accuracy of the model saved in CKPT on its config's test set (data.test), every\n"
    "sample exactly once, on any number of ranks.  The config stored in the checkpoint is the\n"
    "starting point; --set overrides keys (e.g. --set data.test=other.h5).\n";

static const char *usage_inspect =
    "usage: harness inspect CKPT | FILE.h5\n"
    "\n"
    "Prints a checkpoint's step, epoch, data cursor, world size, optimizer, every tensor's\n"
    "name, shape and L2 norm, and the resolved config it was trained with.\n"
    "On a token dataset: token count, dtype, vocabulary size, tokenizer, end-of-text id and\n"
    "the first 256 tokens decoded; on an image dataset: samples, shape, classes.\n";

static const char *usage_convert =
    "usage: harness convert fashion-mnist [--src DIR] [--out DIR]\n"
    "       harness convert text FILE... --out DIR [--tokenizer bytes|gpt2] [--vocab DIR]\n"
    "                                 [--val-fraction F]\n"
    "       harness convert tokens --from llmc|nanogpt FILE... --out FILE.h5 [--vocab-size N]\n"
    "                                 [--vocab DIR]\n"
    "       harness convert images ROOT --out DIR [--size HxW] [--val-fraction F]  (image\n"
    "                                 folders: harness convert images --help)\n"
    "       harness convert weights --from hf DIR|llmc FILE --out CKPT.h5  (GPT-2 weights:\n"
    "                                 harness convert weights --help)\n"
    "\n"
    "fashion-mnist: reads the IDX files of Fashion-MNIST (train-images-idx3-ubyte[.gz] and the\n"
    "others) from DIR (default /usr/share/datasets/fashion-mnist, Debian's\n"
    "dataset-fashion-mnist) and writes OUT/train.h5 and OUT/test.h5 (default OUT:\n"
    "datasets/fashion-mnist) with /images uint8 [N,28,28], /labels [N], and attributes\n"
    "num_classes, class_names, mean, std.\n"
    "\n"
    "text: tokenizes the files in order (each one document; with gpt2, <|endoftext|>\n"
    "between them) into DIR/train.h5 and DIR/val.h5: /tokens [T] (uint16 up to 65536 ids,\n"
    "else int32), attributes vocab_size, tokenizer, eot_token, and the tokenizer's tables.\n"
    "  --tokenizer bytes  the UTF-8 bytes, vocabulary 256 (default)\n"
    "  --tokenizer gpt2   GPT-2's byte-level BPE from --vocab DIR (DIR/encoder.json and\n"
    "                     DIR/vocab.bpe; any vocabulary in that format)\n"
    "  --val-fraction F   the last F of the tokens go to val.h5 (default 0.1; 0: no val.h5)\n"
    "Shows progress on a terminal and a summary: bytes in, tokens out, tokens/s.\n"
    "\n"
    "tokens: imports other trainers' token files, concatenated in the order given, into one\n"
    "token dataset FILE.h5.\n"
    "  --from llmc        llm.c .bin shards (header magic 20240520, version 1; uint16 GPT-2\n"
    "                     tokens, vocabulary 50257, tokenizer gpt2)\n"
    "  --from nanogpt     nanoGPT train.bin / val.bin (raw uint16); needs --vocab-size\n"
    "  --vocab-size N     the vocabulary size (every token is checked against it)\n"
    "  --vocab DIR        store GPT-2-format tables (DIR/encoder.json, DIR/vocab.bpe) so that\n"
    "                     the file decodes by itself\n";

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

static int cmd_convert_text(int argc, char **argv);
static int cmd_convert_tokens(int argc, char **argv);

static int cmd_convert(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[2], "weights")) return cmd_convert_weights(argc, argv);
    if (argc >= 3 && !strcmp(argv[2], "images")) return cmd_convert_images(argc, argv);
    if (wants_help(argc, argv)) { fputs(usage_convert, stdout); return 0; }
    if (argc >= 3 && !strcmp(argv[2], "text")) return cmd_convert_text(argc, argv);
    if (argc >= 3 && !strcmp(argv[2], "tokens")) return cmd_convert_tokens(argc, argv);
    if (argc < 3 || strcmp(argv[2], "fashion-mnist") != 0) {
        fprintf(stderr, "harness convert: unknown or missing format%s%s (known: fashion-mnist, "
                "text, tokens, weights, images)\n%s",
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

/* ---- convert text / convert tokens / inspect of datasets ---- */

/* Opens --vocab DIR's encoder.json and vocab.bpe. */
static data_tokenizer *load_vocab_dir(const char *dir, const char *cmd) {
    char enc[4200], bpe[4200], err[1024];
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    data_tokenizer *t = NULL;
    if (data_tokenizer_gpt2(enc, bpe, &t, err, sizeof err) != 0) {
        fprintf(stderr, "harness convert %s: %s\n", cmd, err);
        return NULL;
    }
    return t;
}

/* Redrawn in place on a terminal; nothing otherwise (the summary follows). */
static void text_progress(const data_convert_progress *p, void *user) {
    (void)user;
    double mib = (double)p->bytes_done / (1 << 20);
    double rate = p->seconds > 0 ? (double)p->bytes_done / p->seconds / 1e6 : 0.0;
    if (p->bytes_total > 0) {
        double frac = (double)p->bytes_done / (double)p->bytes_total;
        double eta = frac > 0 ? p->seconds * (1.0 - frac) / frac : 0.0;
        fprintf(stderr, "\r  %.1f / %.1f MiB  %3.0f%%  %lld tokens  %.1f MB/s  ETA %.0f s   ", mib,
                (double)p->bytes_total / (1 << 20), 100.0 * frac, (long long)p->tokens, rate, eta);
    } else {
        fprintf(stderr, "\r  %.1f MiB  %lld tokens  %.1f MB/s   ", mib, (long long)p->tokens, rate);
    }
}

static void progress_done(void) { fputs("\r\033[K", stderr); }

static int cmd_convert_text(int argc, char **argv) {
    const char *out = NULL, *tokenizer = "bytes", *vocab = NULL;
    double val_fraction = 0.1;
    const char **files = calloc((size_t)argc, sizeof *files);
    int n_files = 0;
    if (files == NULL) return 1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--out") && v) { out = v; i++; }
        else if (!strcmp(a, "--tokenizer") && v) { tokenizer = v; i++; }
        else if (!strcmp(a, "--vocab") && v) { vocab = v; i++; }
        else if (!strcmp(a, "--val-fraction") && v) {
            char *end = NULL;
            val_fraction = strtod(v, &end);
            if (*end || !(val_fraction >= 0.0 && val_fraction < 1.0)) {
                fprintf(stderr, "harness convert text: --val-fraction needs a number in [0, 1), "
                        "got '%s'\n", v);
                free(files);
                return 1;
            }
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "harness convert text: unknown option or missing value '%s'\n%s", a,
                    usage_convert);
            free(files);
            return 1;
        } else {
            files[n_files++] = a;
        }
    }
    const char *problem = n_files == 0 ? "no input FILE given"
                          : out == NULL ? "--out DIR is required"
                          : strcmp(tokenizer, "bytes") && strcmp(tokenizer, "gpt2")
                              ? "--tokenizer must be bytes or gpt2"
                          : !strcmp(tokenizer, "gpt2") && !vocab
                              ? "--tokenizer gpt2 needs --vocab DIR (encoder.json, vocab.bpe)"
                          : !strcmp(tokenizer, "bytes") && vocab
                              ? "--vocab is for --tokenizer gpt2" : NULL;
    if (problem) {
        fprintf(stderr, "harness convert text: %s\n%s", problem, usage_convert);
        free(files);
        return 1;
    }
    char err[1024];
    data_tokenizer *tok = NULL;
    if (vocab) tok = load_vocab_dir(vocab, "text");
    else if (data_tokenizer_bytes(&tok, err, sizeof err) != 0) {
        fprintf(stderr, "harness convert text: %s\n", err);
        tok = NULL;
    }
    if (tok == NULL) { free(files); return 1; }
    if (make_dirs(out) != 0) {
        fprintf(stderr, "harness convert text: cannot create %s: %s\n", out, strerror(errno));
        data_tokenizer_free(tok);
        free(files);
        return 1;
    }
    int tty = isatty(fileno(stderr));
    data_convert_stats st;
    int rc = data_convert_text(files, n_files, tok, val_fraction, out, tty ? text_progress : NULL,
                               NULL, &st, err, sizeof err);
    if (tty) progress_done();
    if (rc != 0) {
        fprintf(stderr, "harness convert text: %s\n", err);
    } else {
        printf("%s/train.h5: %lld tokens\n", out, (long long)st.train_tokens);
        if (st.val_tokens > 0) printf("%s/val.h5: %lld tokens\n", out, (long long)st.val_tokens);
        else printf("%s/val.h5: not written (--val-fraction 0)\n", out);
        double s = st.seconds > 0 ? st.seconds : 1e-9;
        printf("%d file%s, %lld bytes in, %lld tokens out (%.2f bytes/token), tokenizer %s "
               "(vocabulary %lld); %.0f tokens/s, %.1f MB/s, %.2f s\n", n_files,
               n_files == 1 ? "" : "s", (long long)st.bytes_in, (long long)st.tokens,
               st.tokens ? (double)st.bytes_in / (double)st.tokens : 0.0, data_tokenizer_name(tok),
               (long long)data_tokenizer_vocab_size(tok), (double)st.tokens / s,
               (double)st.bytes_in / s / 1e6, st.seconds);
    }
    data_tokenizer_free(tok);
    free(files);
    return rc != 0;
}

static int cmd_convert_tokens(int argc, char **argv) {
    const char *out = NULL, *from = NULL, *vocab = NULL;
    long long vocab_size = 0;
    const char **files = calloc((size_t)argc, sizeof *files);
    int n_files = 0;
    if (files == NULL) return 1;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--out") && v) { out = v; i++; }
        else if (!strcmp(a, "--from") && v) { from = v; i++; }
        else if (!strcmp(a, "--vocab") && v) { vocab = v; i++; }
        else if (!strcmp(a, "--vocab-size") && v) {
            char *end = NULL;
            vocab_size = strtoll(v, &end, 10);
            if (*end || vocab_size < 1 || vocab_size > 65536) {
                fprintf(stderr, "harness convert tokens: --vocab-size needs an integer in [1, "
                        "65536], got '%s'\n", v);
                free(files);
                return 1;
            }
            i++;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "harness convert tokens: unknown option or missing value '%s'\n%s", a,
                    usage_convert);
            free(files);
            return 1;
        } else {
            files[n_files++] = a;
        }
    }
    const char *problem = from == NULL ? "--from llmc|nanogpt is required"
                          : strcmp(from, "llmc") && strcmp(from, "nanogpt")
                              ? "--from must be llmc or nanogpt"
                          : n_files == 0 ? "no input FILE given"
                          : out == NULL ? "--out FILE.h5 is required"
                          : !strcmp(from, "nanogpt") && vocab_size == 0
                              ? "--from nanogpt needs --vocab-size N (nanoGPT's .bin files do not "
                                "record it; GPT-2's is 50257)" : NULL;
    if (problem) {
        fprintf(stderr, "harness convert tokens: %s\n%s", problem, usage_convert);
        free(files);
        return 1;
    }
    data_tokenizer *tok = vocab ? load_vocab_dir(vocab, "tokens") : NULL;
    if (vocab && tok == NULL) { free(files); return 1; }
    char err[1024];
    data_convert_stats st;
    int rc = data_convert_tokens(!strcmp(from, "llmc") ? DATA_FROM_LLMC : DATA_FROM_NANOGPT,
                                 files, n_files, vocab_size, tok, out, &st, err, sizeof err);
    if (rc != 0) fprintf(stderr, "harness convert tokens: %s\n", err);
    else printf("%s: %lld tokens from %d file%s (%lld bytes), %.2f s\n", out,
                (long long)st.tokens, n_files, n_files == 1 ? "" : "s", (long long)st.bytes_in,
                st.seconds);
    data_tokenizer_free(tok);
    free(files);
    return rc != 0;
}

/* Decoded bytes as text: valid UTF-8, newlines and tabs as they are; other control bytes and
 * bytes that are not part of a valid UTF-8 character as \xNN. */
static void print_token_text(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 2 : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 && c <= 0xf4 ? 4 : 0;
        int ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = (s[i + k] & 0xc0) == 0x80;
        if (ok && len == 1 && c < 0x20 && c != '\n' && c != '\t') ok = 0;
        if (ok) fwrite(s + i, 1, len, stdout);
        else printf("\\x%02x", c);
        i += ok ? len : 1;
    }
}

#define INSPECT_TOKENS 256

static int inspect_tokens(const char *path, const data_info *info) {
    printf("%s: token dataset\n", path);
    printf("  tokens      %lld (%s)\n", (long long)info->n_tokens,
           info->token_bits == 16 ? "uint16" : "int32");
    printf("  vocab_size  %lld\n", (long long)info->vocab_size);
    char err[1024];
    data_tokenizer *tok = NULL;
    if (!info->tokenizer[0]) {
        printf("  tokenizer   none named\n");
    } else if (data_tokenizer_from_dataset(path, &tok, err, sizeof err) != 0) {
        printf("  tokenizer   %s (cannot decode: %s)\n", info->tokenizer, err);
        tok = NULL;
    } else {
        printf("  tokenizer   %s (vocabulary %lld%s)\n", info->tokenizer,
               (long long)data_tokenizer_vocab_size(tok),
               strcmp(info->tokenizer, "gpt2") ? "" : ", tables stored in the file");
    }
    if (info->eot_token >= 0) printf("  eot_token   %lld\n", (long long)info->eot_token);
    else printf("  eot_token   none\n");
    int64_t n = info->n_tokens < INSPECT_TOKENS ? info->n_tokens : INSPECT_TOKENS;
    int32_t ids[INSPECT_TOKENS];
    if (data_read_tokens(path, 0, n, ids, err, sizeof err) != 0) {
        fprintf(stderr, "harness inspect: %s\n", err);
        data_tokenizer_free(tok);
        return 1;
    }
    if (tok) {
        printf("first %lld tokens, decoded:\n", (long long)n);
        size_t cap = 4096, used = 0;
        unsigned char *text = malloc(cap);
        for (int64_t i = 0; i < n && text; i++) {
            size_t len = 0;
            const char *b = data_tokenizer_token_bytes(tok, ids[i], &len);
            char unknown[32];
            if (!b) len = (size_t)snprintf(unknown, sizeof unknown, "<%d?>", ids[i]), b = unknown;
            if (used + len > cap) {
                unsigned char *p = realloc(text, cap = 2 * (used + len));
                if (!p) { free(text); text = NULL; break; }
                text = p;
            }
            memcpy(text + used, b, len);
            used += len;
        }
        if (text) print_token_text(text, used);
        free(text);
        printf("\n");
    } else {
        printf("first %lld token ids:\n", (long long)n);
        for (int64_t i = 0; i < n; i++) printf("%d%c", ids[i], (i + 1) % 16 && i + 1 < n ? ' ' : '\n');
    }
    data_tokenizer_free(tok);
    return 0;
}

static int inspect_dataset(const char *path, const data_info *info) {
    if (info->kind == DATA_TOKENS) return inspect_tokens(path, info);
    printf("%s: classification dataset\n  samples     %lld of [", path, (long long)info->n);
    for (int i = 0; i < info->sample_ndim; i++)
        printf("%s%lld", i ? "," : "", (long long)info->sample_shape[i]);
    printf("] %s\n  classes     %d\n", info->dtype == DATA_U8 ? "uint8" : "float32",
           info->num_classes);
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

static int cmd_generate(int argc, char **argv) {
    if (wants_help(argc, argv)) { fputs(usage_generate, stdout); return 0; }
    generate_options g = {NULL, NULL, 200, 0.8f, 40, 1};
    const char *sets[64];
    int n_sets = 0;
    char err[1024], *end;
    for (int i = 2; i < argc; i += 2) {   /* --option value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!v) bad = 1;
        else if (!strcmp(a, "--checkpoint")) g.checkpoint = v;
        else if (!strcmp(a, "--prompt")) g.prompt = v;
        else if (!strcmp(a, "--tokens")) { g.tokens = strtoll(v, &end, 10); bad = *end || g.tokens < 0 || g.tokens > 100000000; }
        else if (!strcmp(a, "--temperature")) { g.temperature = strtof(v, &end); bad = *end || !(g.temperature >= 0.0f) || g.temperature > 100.0f; }
        else if (!strcmp(a, "--top-k")) { long t = strtol(v, &end, 10); g.top_k = (int)t; bad = *end || t < 0 || t > (1 << 30); }
        else if (!strcmp(a, "--seed")) { g.seed = strtoull(v, &end, 10); bad = *end != 0; }
        else if (!strcmp(a, "--set") && n_sets < 64) sets[n_sets++] = v;
        else bad = 2;
        if (bad) {
            if (bad == 2 || !v) fprintf(stderr, "harness generate: unexpected argument '%s'%s\n%s", a,
                                        v ? "" : " (missing its value?)", usage_generate);
            else fprintf(stderr, "harness generate: %s: bad value '%s'\n%s", a, v, usage_generate);
            return 1;
        }
    }
    if (!g.checkpoint) {
        fprintf(stderr, "harness generate: needs --checkpoint CKPT\n%s", usage_generate);
        return 1;
    }
    config cfg;
    config_defaults(&cfg);
    char *text = ckpt_read_config(g.checkpoint, err, sizeof err);
    int st = text ? config_load_string(&cfg, g.checkpoint, text, strlen(text), err, sizeof err) : -1;
    free(text);
    for (int i = 0; i < n_sets && st == 0; i++) st = config_set(&cfg, sets[i], err, sizeof err);
    if (st == 0) st = config_validate(&cfg, err, sizeof err);
    if (st != 0) {
        fprintf(stderr, "harness generate: %s\n", err);
        return 1;
    }
    return generate_run(&cfg, &g);
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
    char err[1024], derr[1024];
    data_info info;
    /* a dataset when the data library accepts it, else a checkpoint */
    if (data_inspect(argv[2], &info, derr, sizeof derr) == 0) {
        int rc = inspect_dataset(argv[2], &info);
        data_info_free(&info);
        return rc;
    }
    if (ckpt_inspect(argv[2], stdout, err, sizeof err) != 0) {
        fprintf(stderr, "harness inspect: %s\n(as a dataset: %s)\n", err, derr);
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
              : !strcmp(t, "generate") ? usage_generate : !strcmp(t, "export") ? usage_export
              : usage_main, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_run(argc, argv, 0);
    if (!strcmp(argv[1], "eval")) return cmd_run(argc, argv, 1);
    if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc, argv);
    if (!strcmp(argv[1], "generate")) return cmd_generate(argc, argv);
    if (!strcmp(argv[1], "plot")) return plot_main(argc, argv);
    if (!strcmp(argv[1], "devices")) {
        int gpus = kern_cuda_device_count();
        if (argc > 2 && !strcmp(argv[2], "--count")) printf("%d\n", gpus);
        else printf("cpu: available\ncuda: %d device%s%s\n", gpus, gpus == 1 ? "" : "s",
                    gpus ? "" : " (none visible, or this build has no CUDA backend)");
        return 0;
    }
    if (!strcmp(argv[1], "convert")) return cmd_convert(argc, argv);
    if (!strcmp(argv[1], "export")) return cmd_export(argc, argv);
    fprintf(stderr, "harness: unknown command '%s'\n%s", argv[1], usage_main);
    return 1;
}
