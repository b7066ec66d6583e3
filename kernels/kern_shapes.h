/* kern_shapes.h: the sizes that follow from an op's shape, computed one way for the backends
 * and their callers (layers, tests) alike.  Pure functions of the shape: no context, no memory.
 * kernels.h includes this header; the backends include it through kernels.h. */
#ifndef HARNESS_KERN_SHAPES_H
#define HARNESS_KERN_SHAPES_H

#ifdef __cplusplus
extern "C" {
#endif

/* conv2d: in[B,C,H,W], w[K, C/groups, R, S], b[K] (or NULL) -> out[B,K,P,Q] with
 *   P = (H + 2*pad_h - dil_h*(R-1) - 1) / stride_h + 1   (Q likewise),
 * PyTorch nn.Conv2d semantics (cross-correlation, zero padding, groups divide C and K). */
typedef struct {
    int B, C, H, W;           /* input */
    int K, R, S;              /* output channels, kernel height, width */
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} kern_conv_shape;

/* Output size of a convolution or pooling window along one axis:
 * floor((in + 2*pad - dil*(win-1) - 1) / stride) + 1, or 0 when the window does not fit;
 * dilation 0 (a zero-initialised pooling shape) counts as 1. */
int kern_conv_out_size(int in, int pad, int dil, int win, int stride);
/* Output height / width of a convolution or pooling window (<= 0 when it does not fit). */
int kern_conv_out_h(const kern_conv_shape *s);
int kern_conv_out_w(const kern_conv_shape *s);

#ifdef __cplusplus
}
#endif

#endif
