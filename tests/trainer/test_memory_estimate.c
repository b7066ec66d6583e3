/* test_memory_estimate.c: the start-up memory estimate of a GPT (model_estimate_bytes plus
 * the optimizer state, as check_memory in train_setup.c adds them) for a config file:
 *
 *   test_memory_estimate CONFIG.yaml LIMIT_GIB
 *
 * prints the estimate for the config's micro-batch on one GPU (train.batch_size /
 * train.grad_accum sequences, GPT-2's vocabulary of 50257) and fails when it is above
 * LIMIT_GIB, or when attention's memory grows with context^2: the same tokens per micro-step
 * at twice the context must need about the same memory (a [B, heads, T, T] buffer per layer
 * would add gigabytes; lse [B, heads, T] and the position table add megabytes). */
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "model.h"
#include "optim.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

/* model + optimizer state bytes for `batch` sequences of `context` tokens (world 1, stage 0) */
static double estimate(config *cfg, int context, int64_t batch) {
    cfg->gpt_context = context;
    model_input_desc in = {.tokens = 1, .sample_shape = {context}, .sample_ndim = 1,
                           .n_classes = 50257};
    int64_t n_params = 0;
    int64_t model = model_estimate_bytes(cfg, &in, batch, &n_params);
    if (model < 0) return -1;
    return (double)model + (double)optim_state_count(cfg) * (double)n_params * 4.0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONFIG.yaml LIMIT_GIB\n", argv[0]);
        return 2;
    }
    config cfg;
    char err[512];
    config_defaults(&cfg);
    if (config_load_file(&cfg, argv[1], err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double limit = atof(argv[2]) * GIB;
    int T = cfg.gpt_context;
    int64_t B = cfg.batch_size / (cfg.grad_accum > 0 ? cfg.grad_accum : 1);
    double at_T = estimate(&cfg, T, B), at_2T = estimate(&cfg, 2 * T, B / 2);
    if (!(at_T > 0) || !(at_2T > 0)) {
        fprintf(stderr, "FAIL: the model does not plan for %s\n", argv[1]);
        return 1;
    }
    printf("%s: %lld sequences x %d tokens per micro-step: estimate %.2f GiB (limit %.2f GiB)\n",
           argv[1], (long long)B, T, at_T / GIB, limit / GIB);
    printf("same tokens at context %d (%lld sequences): %.2f GiB\n", 2 * T, (long long)(B / 2),
           at_2T / GIB);
    int fails = 0;
    if (!(at_T <= limit)) {
        printf("FAIL: the estimate is above %.2f GiB\n", limit / GIB);
        fails++;
    }
    if (!(at_2T - at_T <= 256.0 * 1024 * 1024)) {
        printf("FAIL: twice the context with the same tokens needs %.2f GiB more: memory grows "
               "with context^2\n", (at_2T - at_T) / GIB);
        fails++;
    }
    printf("%s\n", fails ? "FAILED" : "PASSED");
    return fails ? 1 : 0;
}
