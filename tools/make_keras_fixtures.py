#!/usr/bin/python3
"""Writes tests/data/nn_conv_parity.safetensors, the PyTorch reference of tests/test_nn_layers.c
for Keras-style "same" padding (run from the repository root with a Python that has torch 1.13,
e.g. /usr/bin/python3 tools/make_keras_fixtures.py).

Keras (TensorFlow) "same": out = ceil(in / s); the total padding max((out - 1) * s + k - in, 0)
is split with the smaller half first (floor(total / 2) top/left, the rest bottom/right). So the
reference of a Conv2D is F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=s).
Conv2DTranspose "same" is the transpose of that convolution on an input of in * s: the full
F.conv_transpose2d output ((in - 1) * s + k) cropped to in * s, starting at floor((k - s) / 2).

Tensors (f32; weights in dl's torch layout; the inputs are drawn with torch.manual_seed(0)):
  conv.x [2,3,7,8]  conv.w [4,3,3,3]  conv.b [4]       Conv2D(4, 3, stride 2, same): H 7 pads
  conv.y [2,4,4,4]                                      1+1, W 8 pads 0+1 (the asymmetric case)
  conv.g [2,4,4,4] upstream gradient; conv.dx conv.dw conv.db = d(sum(g * y))
  convt3.x [2,3,5,4] convt3.w [3,2,3,3] convt3.b [2] convt3.y [2,2,10,8]
                                                        Conv2DTranspose(2, 3, 2, same): crop 0+1
  convt5.x [1,2,4,3] convt5.w [2,3,5,5] convt5.b [3] convt5.y [1,3,8,6]
                                                        Conv2DTranspose(3, 5, 2, same): crop 1+2
The safetensors file is written by hand (8-byte header length, JSON header, raw little-endian
data), so nothing but torch is needed.
"""

import torch
import torch.nn.functional as F
from fixture_io import save_safetensors


def same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv_same(x, w, b, s):
    k = w.shape[2]
    top, bottom = same_pads(x.shape[2], k, s)
    left, right = same_pads(x.shape[3], k, s)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=s)


def convt_same(x, w, b, s):
    k = w.shape[2]
    full = F.conv_transpose2d(x, w, b, stride=s)
    first = max(k - s, 0) // 2
    h, wd = x.shape[2] * s, x.shape[3] * s
    return full[:, :, first:first + h, first:first + wd]


def main():
    torch.manual_seed(0)
    t = {}
    x = torch.randn(2, 3, 7, 8, requires_grad=True)
    w = (torch.rand(4, 3, 3, 3) * 0.8 - 0.4).requires_grad_()
    b = (torch.rand(4) - 0.5).requires_grad_()
    y = conv_same(x, w, b, 2)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    t.update({"conv.x": x, "conv.w": w, "conv.b": b, "conv.y": y, "conv.g": g,
              "conv.dx": x.grad, "conv.dw": w.grad, "conv.db": b.grad})
    for k, shape_x, cout in ((3, (2, 3, 5, 4), 2), (5, (1, 2, 4, 3), 3)):
        x = torch.randn(*shape_x)
        w = torch.rand(shape_x[1], cout, k, k) * 0.8 - 0.4
        b = torch.rand(cout) - 0.5
        y = convt_same(x, w, b, 2)
        p = "convt%d." % k
        t.update({p + "x": x, p + "w": w, p + "b": b, p + "y": y})
    save_safetensors("tests/data/nn_conv_parity.safetensors", t)


if __name__ == "__main__":
    main()
