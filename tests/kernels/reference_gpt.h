/* reference_gpt.h: float64 plain-C reference of the language-model ops of kernels.h
 * (embedding, layer norm, causal attention, decode, padded softmax cross-entropy): the
 * textbook loops, no BLAS, for the gradient checks and the float32 comparisons. */
#ifndef HARNESS_TESTS_KERNELS_REFERENCE_GPT_H
#define HARNESS_TESTS_KERNELS_REFERENCE_GPT_H

#include <stdint.h>

/* out[B,T,C] = wte[tokens] + wpe[t] (wpe may be NULL) */
void ref_embedding_forward(double *out, const int32_t *tokens, const double *wte,
                           const double *wpe, int B, int T, int C);
/* dwte[V,C] += scattered dout, dwpe[T,C] += sum_b dout (NULL: skipped) */
void ref_embedding_backward(double *dwte, double *dwpe, const double *dout,
                            const int32_t *tokens, int B, int T, int C);

/* x[N,C]: out = (x - mean)/sqrt(var + eps) * w + b (b may be NULL); mean_rstd[2N] */
void ref_layernorm_forward(double *out, double *mean_rstd, const double *x, const double *w,
                           const double *b, int N, int C, double eps);
/* din[N,C] overwritten (NULL: skipped), dw[C] and db[C] accumulated (db NULL: skipped) */
void ref_layernorm_backward(double *din, double *dw, double *db, const double *dout,
                            const double *x, const double *w, int N, int C, double eps);

/* qkv[B,T,3C] -> out[B,T,C], att[B,NH,T,T] (masked entries 0) */
void ref_attention_forward(double *out, double *att, const double *qkv, int B, int T, int C,
                           int NH);
/* lse[B,NH,T] = log sum_{s<=t} exp(q_t . k_s / sqrt(HS)), what the kernels save for backward */
void ref_attention_lse(double *lse, const double *qkv, int B, int T, int C, int NH);
/* dqkv[B,T,3C] overwritten */
void ref_attention_backward(double *dqkv, const double *dout, const double *qkv,
                            const double *att, int B, int T, int C, int NH);

/* rows of ld values, first C classes: losses[B] (NULL ok), dlogits[B,ld] (NULL ok; padding
 * 0), acc[0] += sum of losses, acc[1] += rows whose first argmax is the label */
void ref_softmax_xent_acc(double *losses, double *dlogits, double *acc, const double *logits,
                          const int32_t *labels, int B, int C, int ld, double grad_scale);

#endif
