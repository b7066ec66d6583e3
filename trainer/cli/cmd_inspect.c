/* cmd_inspect: `harness inspect` - a dataset (image or token file, the start of a token file
 * decoded) or else a checkpoint (ckpt_inspect). */
#include "cli.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "data.h"
#include "tokenizer.h"

static const char *const usage_inspect =
    "usage: harness inspect CKPT | FILE.h5\n"
    "\n"
    "Prints a checkpoint's step, epoch, data cursor, world size, optimizer, every tensor's\n"
    "name, shape and L2 norm, and the resolved config it was trained with.\n"
    "On a token dataset: token count, dtype, vocabulary size, tokenizer, end-of-text id and\n"
    "the first 256 tokens decoded; on an image dataset: samples, shape, classes.\n";

void cmd_inspect_usage(FILE *out) { fputs(usage_inspect, out); }

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

int cmd_inspect(int argc, char **argv) {
    if (cli_wants_help(argc, argv) || argc != 3) {
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
