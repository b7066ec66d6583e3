/* kern_shapes.c: output sizes of convolution and pooling windows (kern_shapes.h). */
#include "kern_shapes.h"

int kern_conv_out_size(int in, int pad, int dil, int win, int stride) {
    int span = in + 2 * pad - (dil > 0 ? dil : 1) * (win - 1) - 1;
    if (span < 0 || stride <= 0) return 0;
    return span / stride + 1;
}

int kern_conv_out_h(const kern_conv_shape *s) {
    return kern_conv_out_size(s->H, s->pad_h, s->dil_h, s->R, s->stride_h);
}

int kern_conv_out_w(const kern_conv_shape *s) {
    return kern_conv_out_size(s->W, s->pad_w, s->dil_w, s->S, s->stride_w);
}
