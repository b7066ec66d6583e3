/* reference.c: see reference.h.  Every loop is the textbook formula in double. */
#include "reference.h"

#include <math.h>
#include <stddef.h>

void ref_linear_forward(double *out, const double *in, const double *w, const double *b, int B,
                        int I, int O) {
    for (int r = 0; r < B; r++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < I; i++) s += in[r * I + i] * w[o * I + i];
            out[r * O + o] = s;
        }
}

void ref_linear_backward(double *din, double *dw, double *db, const double *dout,
                         const double *in, const double *w, int B, int I, int O) {
    if (din)
        for (int r = 0; r < B; r++)
            for (int i = 0; i < I; i++) {
                double s = 0.0;
                for (int o = 0; o < O; o++) s += dout[r * O + o] * w[o * I + i];
                din[r * I + i] = s;
            }
    for (int o = 0; o < O; o++)
        for (int i = 0; i < I; i++) {
            double s = 0.0;
            for (int r = 0; r < B; r++) s += dout[r * O + o] * in[r * I + i];
            dw[o * I + i] += s;
        }
    if (db)
        for (int o = 0; o < O; o++) {
            double s = 0.0;
            for (int r = 0; r < B; r++) s += dout[r * O + o];
            db[o] += s;
        }
}

void ref_relu_forward(double *out, const double *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = in[i] > 0.0 ? in[i] : 0.0;
}

void ref_relu_backward(double *din, const double *dout, const double *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) din[i] = in[i] > 0.0 ? dout[i] : 0.0;
}

static const double GELU_K = 0.79788456080286535588;   /* sqrt(2/pi) */
static const double GELU_C = 0.044715;

double ref_gelu(double x) {
    return 0.5 * x * (1.0 + tanh(GELU_K * (x + GELU_C * x * x * x)));
}

double ref_gelu_grad(double x) {
    double t = tanh(GELU_K * (x + GELU_C * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}

void ref_gelu_forward(double *out, const double *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = ref_gelu(in[i]);
}

void ref_gelu_backward(double *din, const double *dout, const double *in, int64_t n) {
    for (int64_t i = 0; i < n; i++) din[i] = dout[i] * ref_gelu_grad(in[i]);
}

void ref_dropout_forward(double *out, const uint8_t *mask, const double *in, int64_t n, double p) {
    for (int64_t i = 0; i < n; i++) out[i] = mask[i] ? in[i] / (1.0 - p) : 0.0;
}

void ref_dropout_backward(double *din, const double *dout, const uint8_t *mask, int64_t n,
                          double p) {
    for (int64_t i = 0; i < n; i++) din[i] = mask[i] ? dout[i] / (1.0 - p) : 0.0;
}

double ref_softmax_xent(double *losses, double *dlogits, int64_t *correct, const double *logits,
                        const int32_t *labels, int B, int C, double grad_scale) {
    double total = 0.0;
    int64_t right = 0;
    for (int r = 0; r < B; r++) {
        const double *z = logits + (size_t)r * C;
        double zmax = z[0];
        int argmax = 0;
        for (int j = 1; j < C; j++)
            if (z[j] > zmax) {
                zmax = z[j];
                argmax = j;
            }
        double sum = 0.0;
        for (int j = 0; j < C; j++) sum += exp(z[j] - zmax);
        double loss = log(sum) + zmax - z[labels[r]];
        if (losses) losses[r] = loss;
        total += loss;
        right += argmax == labels[r];
        if (dlogits)
            for (int j = 0; j < C; j++)
                dlogits[(size_t)r * C + j] =
                    (exp(z[j] - zmax) / sum - (j == labels[r] ? 1.0 : 0.0)) * grad_scale;
    }
    if (correct) *correct = right;
    return total;
}

double ref_sumsq(const double *x, int64_t n) {
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

void ref_sgd_update(double *param, double *buf, const double *grad, int64_t n, double lr,
                    double momentum, double weight_decay, int nesterov, int first) {
    for (int64_t i = 0; i < n; i++) {
        double g = grad[i] + weight_decay * param[i];
        double step = g;
        if (momentum != 0.0) {
            buf[i] = first ? g : momentum * buf[i] + g;
            step = nesterov ? g + momentum * buf[i] : buf[i];
        }
        param[i] -= lr * step;
    }
}

void ref_adamw_update(double *param, double *m, double *v, const double *grad, int64_t n,
                      double lr, double beta1, double beta2, double eps, double weight_decay,
                      int64_t t) {
    double bc1 = 1.0 - pow(beta1, (double)t);
    double bc2 = 1.0 - pow(beta2, (double)t);
    for (int64_t i = 0; i < n; i++) {
        param[i] *= 1.0 - lr * weight_decay;
        m[i] = beta1 * m[i] + (1.0 - beta1) * grad[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
        param[i] -= lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
    }
}
