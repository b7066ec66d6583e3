/* cpu_embedding.c: token + position embeddings on the CPU, [B, T, C] row-major.
 * The backward adds each dout row into its token's (and position's) gradient row in (b, t)
 * order, so every gradient row is summed in the same order on every run. */
#include "cpu_internal.h"

#include <string.h>

void kcpu_embedding_forward(void *c, float *out, const int32_t *tokens, const float *wte,
                            const float *wpe, int B, int T, int C) {
    (void)c;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *restrict o = out + ((size_t)b * T + t) * C;
            const float *restrict e = wte + (size_t)tokens[(size_t)b * T + t] * C;
            if (wpe) {
                const float *restrict p = wpe + (size_t)t * C;
                for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
            } else {
                memcpy(o, e, (size_t)C * sizeof(float));
            }
        }
}

void kcpu_embedding_backward(void *c, float *dwte, float *dwpe, const float *dout,
                             const int32_t *tokens, int B, int T, int C, int V, void *workspace) {
    (void)c; (void)V; (void)workspace;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *restrict g = dout + ((size_t)b * T + t) * C;
            float *restrict e = dwte + (size_t)tokens[(size_t)b * T + t] * C;
            for (int i = 0; i < C; i++) e[i] += g[i];
            if (dwpe) {
                float *restrict p = dwpe + (size_t)t * C;
                for (int i = 0; i < C; i++) p[i] += g[i];
            }
        }
}
