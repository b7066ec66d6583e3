/* bench_attention.c: CPU causal attention, forward + backward, one thread: the current
 * kcpu_attention_* (cpu_attention.c: lse saved, probabilities recomputed) against a base
 * version that stores the probabilities att[B,NH,T,T] (cpu_attention.c at BASE, built by
 * bench_attention.sh with its functions renamed base_*).  Times are thread CPU time (a busy
 * machine's waiting does not count), the best of REPS runs, alternating base and current.
 *
 *   bench_attention B T C NH REPS */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cpu_backend.h"

void openblas_set_num_threads(int n);
void base_attention_forward(kcpu_ctx *c, float *out, float *att, const float *qkv, int B, int T,
                            int C, int NH, void *workspace);
void base_attention_backward(kcpu_ctx *c, float *dqkv, const float *dout, const float *qkv,
                             const float *att, int B, int T, int C, int NH, void *workspace);
size_t base_gpt_workspace(kcpu_ctx *c, int B, int T, int C, int NH, int V);

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *fill(size_t n, unsigned *seed) {
    float *p = malloc(n * sizeof(float) + 64);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (float)rand_r(seed) / (float)RAND_MAX * 2.0f - 1.0f;
    return p;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s B T C NH REPS\n", argv[0]);
        return 2;
    }
    int B = atoi(argv[1]), T = atoi(argv[2]), C = atoi(argv[3]), NH = atoi(argv[4]);
    int reps = atoi(argv[5]);
    openblas_set_num_threads(1);
    unsigned seed = 1;
    size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
    size_t na = nl * (size_t)T;
    float *qkv = fill(nq, &seed), *dout = fill(no, &seed), *dqkv = fill(nq, &seed);
    float *out = fill(no, &seed), *lse = fill(nl, &seed), *att = fill(na, &seed);
    void *ws_base = malloc(base_gpt_workspace(NULL, B, T, C, NH, 1) + 64);
    void *ws = malloc(kcpu_gpt_workspace(NULL, B, T, C, NH, 1) + 64);
    double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}};   /* [base, current][forward, total] */
    for (int r = 0; r < reps; r++) {
        double t0 = cpu_seconds();
        base_attention_forward(NULL, out, att, qkv, B, T, C, NH, ws_base);
        double t1 = cpu_seconds();
        base_attention_backward(NULL, dqkv, dout, qkv, att, B, T, C, NH, ws_base);
        double t2 = cpu_seconds();
        kcpu_attention_forward(NULL, out, lse, qkv, B, T, C, NH, ws);
        double t3 = cpu_seconds();
        kcpu_attention_backward(NULL, dqkv, dout, qkv, out, lse, B, T, C, NH, ws);
        double t4 = cpu_seconds();
        double v[2][2] = {{t1 - t0, t2 - t0}, {t3 - t2, t4 - t2}};
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                if (v[i][j] < best[i][j]) best[i][j] = v[i][j];
    }
    printf("B=%d T=%d heads=%d x %d: base %.3f ms (forward %.3f), current %.3f ms (forward %.3f): "
           "%.2fx; saved for backward per layer: base %.2f MiB, current %.3f MiB\n",
           B, T, NH, C / NH, best[0][1] * 1e3, best[0][0] * 1e3, best[1][1] * 1e3,
           best[1][0] * 1e3, best[0][1] / best[1][1], (double)na * 4 / 1048576.0,
           (double)nl * 4 / 1048576.0);
    free(qkv), free(dout), free(dqkv), free(out), free(lse), free(att), free(ws_base), free(ws);
    return 0;
}
