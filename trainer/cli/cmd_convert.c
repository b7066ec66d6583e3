/* cmd_convert: `harness convert` - Fashion-MNIST's IDX files, text (tokenized) and other
 * trainers' token files into the HDF5 datasets the trainer reads. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "fsutil.h"
#include "tokenizer.h"

static const char *const usage_convert =
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

void cmd_convert_usage(FILE *out) { fputs(usage_convert, out); }

/* Picks the IDX file NAME or NAME.gz inside dir. */
static void idx_path(char *out, size_t n, const char *dir, const char *name) {
    snprintf(out, n, "%s/%s.gz", dir, name);
    FILE *f = fopen(out, "rb");
    if (f) { fclose(f); return; }
    snprintf(out, n, "%s/%s", dir, name);
}

static int cmd_convert_text(int argc, char **argv);
static int cmd_convert_tokens(int argc, char **argv);

int cmd_convert(int argc, char **argv) {
    /* these two have --help of their own */
    if (argc >= 3 && !strcmp(argv[2], "images")) return cmd_convert_images(argc, argv);
    if (argc >= 3 && !strcmp(argv[2], "weights")) return cmd_convert_weights(argc, argv);
    if (cli_wants_help(argc, argv)) {
        fputs(usage_convert, stdout);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[2], "text")) return cmd_convert_text(argc, argv);
    if (argc >= 3 && !strcmp(argv[2], "tokens")) return cmd_convert_tokens(argc, argv);
    if (argc < 3 || strcmp(argv[2], "fashion-mnist") != 0) {
        fprintf(stderr, "harness convert: unknown or missing format%s%s (known: fashion-mnist, "
                "text, tokens, images, weights)\n%s",
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

/* ---- convert text / convert tokens ---- */

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
