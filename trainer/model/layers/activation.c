/* relu, gelu (tanh approximation) and flatten: element-wise or shape-only layers. */
#include "layer.h"

static int same_shape_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    (void)p; (void)err; (void)errlen;
    L->out = L->in;
    return 0;
}

static void relu_forward(model *m, model_layer *L, const model_pass *a) {
    kern_relu_forward(m->k, layer_out(m, L), layer_in(m, L), pass_rows(a) * shape_features(L->in));
}
static int relu_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                         int need_din) {
    (void)din;
    /* fused into the linear before: the input was not written, the output says the same
     * (out > 0 exactly where in > 0) */
    if (need_din)
        kern_relu_backward(m->k, dout, dout, L->fused ? layer_out(m, L) : layer_in(m, L),
                           pass_rows(a) * shape_features(L->in));
    return 0;
}

static void gelu_forward(model *m, model_layer *L, const model_pass *a) {
    kern_gelu_forward(m->k, layer_out(m, L), layer_in(m, L), pass_rows(a) * shape_features(L->in));
}
static int gelu_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                         int need_din) {
    (void)din;
    if (need_din)
        kern_gelu_backward(m->k, dout, dout, layer_in(m, L), pass_rows(a) * shape_features(L->in));
    return 0;
}

/* flatten: [t, c, h, w] -> one vector per sample (a view) */
static int flatten_plan(model_layer *L, model_plan *p, char *err, size_t errlen) {
    (void)p; (void)err; (void)errlen;
    L->out = (model_shape){1, shape_size(L->in), 1, 1};
    return 0;
}
static int view_backward(model *m, model_layer *L, const model_pass *a, float *dout, float *din,
                         int need_din) {
    (void)m; (void)L; (void)a; (void)dout; (void)din; (void)need_din;
    return 0;
}

const layer_ops layer_relu = {same_shape_plan, relu_forward, relu_backward, 0};
const layer_ops layer_gelu = {same_shape_plan, gelu_forward, gelu_backward, 0};
const layer_ops layer_flatten = {flatten_plan, NULL, view_backward, 1};
