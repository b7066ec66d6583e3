#!/usr/bin/env python3
"""Write PyTorch's numbers for the convolutional kernels: test_kernels_cnn_torch compares
kern_conv2d_*, kern_maxpool2d_*, kern_avgpool2d_* and kern_batchnorm_* with them.

Usage: torch_cnn_reference.py OUT.bin

Cases: nn.Conv2d (stride, padding, dilation, groups, with and without bias, 1x1),
F.max_pool2d (with indices), F.avg_pool2d (count_include_pad=True), F.adaptive_avg_pool2d(1),
nn.BatchNorm2d in train mode (output, running stats after one step with momentum 0.1, input,
weight and bias grads) and then in eval mode.  Everything float32, deterministic (fixed
torch.Generator seed, one thread).

File format: torch_ref_file.py (the same as torch_reference.py's).  Exits 77 (ctest: skipped)
when torch cannot be imported.
"""
import os
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"torch not importable ({e}); skipping", file=sys.stderr)
    sys.exit(77)

# torch_ref_file.py lies next to this script (ctest runs it from the build directory)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_ref_file  # noqa: E402
from torch_ref_file import randn  # noqa: E402


# name, B, C, H, W, K, (R, S), stride, padding, dilation, groups, bias
CONV_CASES = [
    ("conv0", 2, 4, 7, 5, 6, (3, 2), (1, 1), (1, 1), (1, 1), 1, True),
    ("conv1", 2, 4, 7, 5, 6, (3, 2), (2, 2), (1, 0), (2, 1), 2, True),
    ("conv2", 2, 6, 9, 8, 9, (3, 3), (1, 2), (2, 1), (1, 2), 3, False),
    ("conv3", 4, 16, 14, 14, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ("conv4", 3, 8, 5, 7, 12, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),      # 1x1 fast path
    ("conv5", 2, 8, 9, 9, 16, (1, 1), (2, 2), (0, 0), (1, 1), 1, False),     # 1x1 stride 2
    ("conv6", 2, 8, 8, 8, 8, (3, 3), (2, 2), (1, 1), (1, 1), 8, True),       # depthwise
    ("conv7", 2, 3, 20, 18, 8, (7, 7), (2, 2), (3, 3), (1, 1), 1, False),    # stem
]


def conv_case(w, gen, name, B, C, H, W, K, RS, stride, pad, dil, groups, bias):
    conv = torch.nn.Conv2d(C, K, RS, stride=stride, padding=pad, dilation=dil, groups=groups,
                           bias=bias)
    fan_in = C // groups * RS[0] * RS[1]
    with torch.no_grad():
        conv.weight.copy_(randn(gen, *conv.weight.shape, scale=fan_in ** -0.5))
        if bias:
            conv.bias.copy_(randn(gen, K, scale=0.5))
    x = randn(gen, B, C, H, W).requires_grad_()
    y = conv(x)
    dy = randn(gen, *y.shape)
    y.backward(dy)
    dims = [B, C, H, W, K, RS[0], RS[1], stride[0], stride[1], pad[0], pad[1], dil[0], dil[1],
            groups, int(bias)]
    w.put(f"{name}.dims", torch.tensor(dims))
    for key, t in [("x", x), ("w", conv.weight), ("dy", dy), ("y", y), ("dx", x.grad),
                   ("dw", conv.weight.grad)]:
        w.put(f"{name}.{key}", t)
    if bias:
        w.put(f"{name}.b", conv.bias)
        w.put(f"{name}.db", conv.bias.grad)


# name, B, C, H, W, (R, S), stride, padding
POOL_CASES = [
    ("pool0", 2, 3, 7, 5, (3, 3), (2, 2), (1, 1)),
    ("pool1", 2, 3, 8, 8, (2, 2), (2, 2), (0, 0)),
    ("pool2", 2, 4, 9, 7, (3, 2), (1, 2), (1, 1)),
]


def pool_case(w, gen, name, B, C, H, W, RS, stride, pad):
    w.put(f"{name}.dims", torch.tensor([B, C, H, W, RS[0], RS[1], stride[0], stride[1],
                                        pad[0], pad[1]]))
    x = randn(gen, B, C, H, W)
    w.put(f"{name}.x", x)
    xm = x.clone().requires_grad_()
    y, idx = F.max_pool2d(xm, RS, stride=stride, padding=pad, return_indices=True)
    dy = randn(gen, *y.shape)
    y.backward(dy)
    for key, t in [("dy", dy), ("max_y", y), ("max_idx", idx), ("max_dx", xm.grad)]:
        w.put(f"{name}.{key}", t)
    xa = x.clone().requires_grad_()
    y = F.avg_pool2d(xa, RS, stride=stride, padding=pad, count_include_pad=True)
    y.backward(dy)
    w.put(f"{name}.avg_y", y)
    w.put(f"{name}.avg_dx", xa.grad)


def global_pool_case(w, gen, B, C, H, W):
    x = randn(gen, B, C, H, W).requires_grad_()
    y = F.adaptive_avg_pool2d(x, 1)
    dy = randn(gen, *y.shape)
    y.backward(dy)
    w.put("gap.dims", torch.tensor([B, C, H, W]))
    for key, t in [("x", x), ("dy", dy), ("y", y), ("dx", x.grad)]:
        w.put(f"gap.{key}", t)


def batchnorm_case(w, gen, name, B, C, H, W, shift):
    bn = torch.nn.BatchNorm2d(C, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(1.0 + randn(gen, C, scale=0.3))
        bn.bias.copy_(randn(gen, C, scale=0.3))
        bn.running_mean.copy_(randn(gen, C, scale=0.5))
        bn.running_var.copy_(1.0 + randn(gen, C, scale=0.2).abs())
    w.put(f"{name}.dims", torch.tensor([B, C, H, W]))
    w.put(f"{name}.gamma", bn.weight)
    w.put(f"{name}.beta", bn.bias)
    w.put(f"{name}.running_mean0", bn.running_mean)
    w.put(f"{name}.running_var0", bn.running_var)
    bn.train()
    x = (randn(gen, B, C, H, W, scale=2.0) + shift).requires_grad_()
    y = bn(x)
    dy = randn(gen, *y.shape)
    y.backward(dy)
    for key, t in [("x", x), ("dy", dy), ("y", y), ("dx", x.grad), ("dgamma", bn.weight.grad),
                   ("dbeta", bn.bias.grad), ("running_mean", bn.running_mean),
                   ("running_var", bn.running_var)]:
        w.put(f"{name}.{key}", t)
    bn.eval()
    x2 = randn(gen, B, C, H, W, scale=2.0) + shift
    with torch.no_grad():
        w.put(f"{name}.eval_x", x2)
        w.put(f"{name}.eval_y", bn(x2))


def write_cases(w, gen):
    for case in CONV_CASES:
        conv_case(w, gen, *case)
    for case in POOL_CASES:
        pool_case(w, gen, *case)
    global_pool_case(w, gen, 3, 5, 7, 9)
    batchnorm_case(w, gen, "bn0", 4, 6, 5, 7, 0.0)
    batchnorm_case(w, gen, "bn1", 8, 3, 1, 1, 3.0)   # after a global pool: HW = 1


if __name__ == "__main__":
    sys.exit(torch_ref_file.main(__doc__, 20240611, write_cases))
