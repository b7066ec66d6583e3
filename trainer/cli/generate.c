/* generate: `harness generate` - text from a language-model checkpoint, one token at a time
 * through the model's key-value caches (each new token costs O(context), not O(context^2)).
 *
 * The model is rebuilt from the config stored in the checkpoint, for one sequence, in decode
 * mode; the tokenizer comes from the training data the checkpoint names (data.train), which
 * stores it.  Sampling runs on the host over the [V] logits of the new position: temperature,
 * top-k, then a draw from a splitmix64 stream seeded by --seed, so a seed reproduces a text. */
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "data.h"
#include "kernels.h"
#include "model.h"
#include "tokenizer.h"

#define ERRLEN 1024

static const char *const usage_generate =
    "usage: harness generate --checkpoint CKPT [--prompt TEXT] [--tokens N] [--temperature T]\n"
    "                        [--top-k K] [--seed S] [--set KEY=VALUE]...\n"
    "\n"
    "Prints TEXT and its continuation by the language model saved in CKPT, one token at a time\n"
    "through key-value caches.  The tokenizer is the one stored with the training data the\n"
    "checkpoint names (data.train; --set data.train=PATH if it moved).  Defaults: --tokens 200,\n"
    "--temperature 0.8 (0 = always the most likely token), --top-k 40 (0 = no limit), --seed 1.\n"
    "Runs on the GPU when one is visible (run.device).\n";

void cmd_generate_usage(FILE *out) { fputs(usage_generate, out); }

typedef struct {
    const char *checkpoint;   /* the checkpoint file */
    const char *prompt;       /* text to continue (NULL or "": a new document) */
    int64_t tokens;           /* tokens to generate */
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = the whole vocabulary */
    uint64_t seed;
} generate_options;

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Index drawn from softmax(logits[0,V) / temperature) restricted to the top_k largest (0 =
 * all); temperature 0 = greedy.  prob[V] and order[V] are scratch. */
static int32_t sample(const float *logits, int64_t V, float temperature, int top_k,
                      uint64_t *rng, double *prob, int32_t *order) {
    int64_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0.0f) return (int32_t)best;
    int64_t keep = top_k > 0 && top_k < V ? top_k : V;
    double threshold = -INFINITY;
    if (keep < V) {
        /* the keep-th largest logit: partial selection by repeated maxima over a copy */
        for (int64_t i = 0; i < V; i++) order[i] = (int32_t)i;
        for (int64_t j = 0; j < keep; j++) {
            int64_t m = j;
            for (int64_t i = j + 1; i < V; i++)
                if (logits[order[i]] > logits[order[m]]) m = i;
            int32_t t = order[j];
            order[j] = order[m];
            order[m] = t;
        }
        threshold = logits[order[keep - 1]];
    }
    double total = 0.0, top = logits[best];
    for (int64_t i = 0; i < V; i++) {
        prob[i] = logits[i] >= threshold ? exp(((double)logits[i] - top) / temperature) : 0.0;
        total += prob[i];
    }
    double u = (double)(splitmix64(rng) >> 11) * (1.0 / 9007199254740992.0) * total;
    for (int64_t i = 0; i < V; i++) {
        u -= prob[i];
        if (u < 0.0 && prob[i] > 0.0) return (int32_t)i;
    }
    return (int32_t)best;
}

static void emit(const data_tokenizer *tok, int32_t id, FILE *out) {
    size_t len = 0;
    const char *bytes = data_tokenizer_token_bytes(tok, id, &len);
    if (bytes) fwrite(bytes, 1, len, out);
    fflush(out);
}

/* cfg: the config stored in the checkpoint (with any --set applied).  Prints the prompt and
 * its continuation on stdout; errors on stderr.  Returns the exit code. */
static int generate_run(const config *cfg, const generate_options *g) {
    char err[ERRLEN];
    int rc = 1;
    kern_ctx *k = NULL;
    data_tokenizer *tok = NULL;
    model m;
    memset(&m, 0, sizeof m);
    int32_t *ids = NULL, *order = NULL;
    double *prob = NULL;
    float *row = NULL;
    size_t n_ids = 0, cap = 0;

    data_info info;
    memset(&info, 0, sizeof info);
    if (data_inspect(cfg->train_path, &info, err, sizeof err) != 0) {
        fprintf(stderr, "harness generate: the tokenizer is stored with the training data, "
                "which the checkpoint names as data.train=%s: %s (pass --set data.train=PATH "
                "to point at it)\n", cfg->train_path, err);
        return 1;
    }
    if (info.kind != DATA_TOKENS) {
        fprintf(stderr, "harness generate: %s is not a token dataset: the checkpoint is not a "
                "language model\n", cfg->train_path);
        goto out;
    }
    if (data_tokenizer_from_dataset(cfg->train_path, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "harness generate: %s\n", err);
        goto out;
    }
    int64_t context = cfg->gpt_layers > 0 ? cfg->gpt_context : cfg->layers[0].context;
    if (context <= 0) {
        fprintf(stderr, "harness generate: the model has no position context (model.gpt or an "
                "embedding with context)\n");
        goto out;
    }
    kern_options ko = {0};
    ko.backend = KERN_CPU;
    ko.threads = cfg->threads > 0 ? cfg->threads : 1;
    ko.precision = cfg->precision == PRECISION_BF16 ? KERN_BF16
                   : cfg->precision == PRECISION_TF32 ? KERN_TF32 : KERN_FP32;
    if (cfg->device != DEVICE_CPU && kern_cuda_device_count() > 0) ko.backend = KERN_CUDA;
    if (kern_create(&ko, &k, err, sizeof err) != 0) {
        fprintf(stderr, "harness generate: %s\n", err);
        goto out;
    }
    model_input_desc in = {0};
    in.tokens = 1;
    in.sample_ndim = 1;
    in.sample_shape[0] = context;
    in.n_classes = info.vocab_size;
    if (model_build(&m, cfg, &in, 1, 1, k, err, sizeof err) != 0) {
        fprintf(stderr, "harness generate: %s\n", err);
        goto out;
    }
    ckpt_state s;
    if (ckpt_read(g->checkpoint, &m, NULL, &s, err, sizeof err) != CKPT_OK) {
        fprintf(stderr, "harness generate: %s\n", err);
        goto out;
    }
    int64_t V = info.vocab_size;
    const char *prompt = g->prompt ? g->prompt : "";
    if (data_tokenizer_encode(tok, prompt, strlen(prompt), &ids, &n_ids, &cap, err, sizeof err)) {
        fprintf(stderr, "harness generate: %s\n", err);
        goto out;
    }
    if (n_ids == 0) {   /* no prompt: start a document (end-of-text, else a newline) */
        int64_t eot = data_tokenizer_eot(tok);
        size_t n1 = 0;
        if (eot >= 0) {
            if (!(ids = realloc(ids, sizeof *ids))) goto oom;
            ids[0] = (int32_t)eot;
            n_ids = 1;
        } else if (data_tokenizer_encode(tok, "\n", 1, &ids, &n1, &cap, err, sizeof err) == 0) {
            n_ids = n1;
        }
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            fprintf(stderr, "harness generate: the prompt's token %d is outside the model's "
                    "vocabulary of %lld\n", ids[i], (long long)V);
            goto out;
        }
    size_t total = n_ids + (size_t)g->tokens;
    if (!(ids = realloc(ids, total * sizeof *ids)) || !(prob = malloc((size_t)V * sizeof *prob)) ||
        !(order = malloc((size_t)V * sizeof *order)) ||
        !(row = malloc((size_t)m.out_ld * sizeof *row)))
        goto oom;
    fputs(prompt, stdout);
    fflush(stdout);
    uint64_t rng = g->seed;
    /* the caches hold positions [start, start + pos); when the context is full, the newest
     * half is replayed into fresh caches (the model has no positions beyond its context) */
    size_t start = 0, pos = 0, n = n_ids;
    while (n < total) {
        if (pos == (size_t)context) {
            start = n - (size_t)context / 2;
            pos = 0;
        }
        /* feed every token not yet in the cache; the last one's logits give the next */
        const float *logits = NULL;
        while (start + pos < n) {
            kern_to_device(k, model_input_tokens(&m), &ids[start + pos], sizeof(int32_t));
            logits = model_decode_step(&m, 1, (int64_t)pos);
            pos++;
            if (pos == (size_t)context && start + pos < n) {
                start = n - (size_t)context / 2;
                pos = 0;
            }
        }
        kern_to_host(k, row, logits, (size_t)m.out_ld * sizeof *row);
        if (kern_check(k, err, sizeof err) != 0) {
            fprintf(stderr, "\nharness generate: %s\n", err);
            goto out;
        }
        int32_t next = sample(row, V, g->temperature, g->top_k, &rng, prob, order);
        ids[n++] = next;
        emit(tok, next, stdout);
    }
    fputc('\n', stdout);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "harness generate: out of memory\n");
out:
    free(ids);
    free(prob);
    free(order);
    free(row);
    if (k) model_free(&m);
    if (k) kern_destroy(k);
    data_tokenizer_free(tok);
    data_info_free(&info);
    return rc;
}

/* harness generate: the options, then the config stored in the checkpoint with each --set
 * applied (cli_resolve_config), then generate_run. */
int cmd_generate(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        fputs(usage_generate, stdout);
        return 0;
    }
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
    if (cli_resolve_config(&cfg, NULL, g.checkpoint, sets, n_sets, err, sizeof err) != 0) {
        fprintf(stderr, "harness generate: %s\n", err);
        return 1;
    }
    return generate_run(&cfg, &g);
}
