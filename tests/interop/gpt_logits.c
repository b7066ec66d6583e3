/* gpt_logits CKPT OUT.f32 TOKEN...: the logits of a GPT checkpoint on one sequence, for the
 * interop test to compare with transformers.  Writes float32 [n_tokens, V] (V: the vocabulary
 * before padding) to OUT.f32.  The sequence is padded to the model's context with token 0;
 * attention is causal, so the padding changes none of the first n_tokens rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "interop.h"

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: gpt_logits CKPT OUT.f32 TOKEN...\n");
        return 2;
    }
    char err[2048];
    config cfg;
    kern_ctx *k = NULL;
    model m;
    if (interop_load_gpt(argv[1], 0, 1, 0, &cfg, &k, &m, err, sizeof err) != 0) {
        fprintf(stderr, "gpt_logits: %s\n", err);
        return 1;
    }
    int64_t T = m.rows_per_sample, n = argc - 3, V = m.n_classes;
    if (n > T) {
        fprintf(stderr, "gpt_logits: %lld tokens, context %lld\n", (long long)n, (long long)T);
        return 1;
    }
    int32_t *tok = calloc((size_t)T, sizeof *tok);
    float *logits = malloc((size_t)(T * m.out_ld) * sizeof *logits);
    if (!tok || !logits) return 1;
    for (int64_t i = 0; i < n; i++) {
        tok[i] = atoi(argv[3 + i]);
        if (tok[i] < 0 || tok[i] >= V) {
            fprintf(stderr, "gpt_logits: token %d outside the vocabulary of %lld\n", tok[i],
                    (long long)V);
            return 1;
        }
    }
    kern_to_device(k, model_input_tokens(&m), tok, (size_t)T * sizeof *tok);
    const float *out = model_forward(&m, 1, 0, cfg.seed, 0, 0);
    kern_to_host(k, logits, out, (size_t)(T * m.out_ld) * sizeof *logits);
    FILE *f = fopen(argv[2], "wb");
    for (int64_t i = 0; f && i < n; i++) fwrite(logits + i * m.out_ld, sizeof(float), (size_t)V, f);
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "gpt_logits: cannot write %s\n", argv[2]);
        return 1;
    }
    free(tok);
    free(logits);
    model_free(&m);
    kern_destroy(k);
    return 0;
}
