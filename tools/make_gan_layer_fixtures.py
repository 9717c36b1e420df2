#!/usr/bin/python3
"""Writes tests/data/nn_gan_layers.safetensors, the PyTorch reference of tests/test_nn_gan_layers.c
(the layers of GANs and image-to-image models in dl_nn.h). Regenerate from the repository root
with a Python that has torch (Debian's python3-torch, 1.13):

    /usr/bin/python3 tools/make_gan_layer_fixtures.py

Every case has an input x, an upstream gradient g, the output y and the gradients of sum(g * y)
with respect to x and to the weights. Inputs are drawn with torch.manual_seed(0); weights are in
dl's (torch's) layout. Tensors (f32):

  leaky.{x,g,y,dx}           [2,3,4,5]   F.leaky_relu(x, 0.2); x holds a few exact zeros (torch
                                         and dl both give slope 0.2 there, in y and dx)
  inorm.{x,gamma,beta,g,y,dx,dgamma,dbeta}
                             x [2,3,5,4] F.instance_norm(x, weight=gamma, bias=beta, eps=1e-3):
                                         nn.InstanceNorm2d(3, affine=True, eps=1e-3), the eps of
                                         dl_InstanceNormalization(0) (tensorflow_addons' default)
  inorm5.y                   [2,3,5,4]   the same with eps=1e-5 (torch's default), forward only
  rpad1.{x,g,y,dx}           x [1,2,4,5] nn.ReflectionPad2d(1)
  rpad3.{x,g,y,dx}           x [1,2,4,5] nn.ReflectionPad2d(3) (3 < 4: the largest legal pad of H)
  rpads.{x,g,y,dx}           x [1,2,4,5] nn.ReflectionPad2d((1, 2, 3, 0)) (left, right, top, bottom)
  zpad.{x,g,y,dx}            x [1,2,3,4] nn.ZeroPad2d((2, 1, 0, 3)), keras ZeroPadding2D(((0, 3), (2, 1)))
  up2.{x,g,y,dx}             x [2,3,3,4] nn.Upsample(scale_factor=2, mode="nearest") = keras
                                         UpSampling2D(2)
  convt7.{x,w,b,g,y,dx,dw,db} x [1,2,7,7] w [2,3,5,5] b [3]   Keras Conv2DTranspose(3, 5,
  convt8.{...}                x [1,2,8,8] (same weights' shapes)  strides=2, padding="same")

Keras' Conv2DTranspose(padding="same") gives out = in * stride. TensorFlow defines
conv2d_transpose as the gradient (the adjoint) of conv2d with respect to its input, here of a
"same" conv2d with stride s on an input of n = in * s pixels. That convolution gives
ceil(n / s) = in pixels and pads pad_total = max((in - 1) * s + k - n, 0) = max(k - s, 0) pixels,
floor(pad_total / 2) before and the odd one after. Its adjoint is the full transposed convolution
((in - 1) * s + k = n + pad_total pixels) with floor(pad_total / 2) pixels cropped at the start
and the rest at the end: for k = 5, s = 2, crop 1 at the top/left and 2 at the bottom/right.
This script computes y both ways and checks they agree:
  - by definition: torch.autograd.grad of F.conv2d(F.pad(z, same pads), w, stride=2) at x;
  - as F.conv_transpose2d(x, w, b, stride=2, padding=1) (crops 1 + 1) minus its last row and
    column.
torch's own arguments cannot express it: ConvTranspose2d(padding=p, output_padding=q) crops p at
the start and p - q at the end, and (1, 2) would need q = -1. The usual port, padding=2,
output_padding=1, crops (2, 1) and is shifted by one pixel from Keras (the script checks that
it differs, so nobody uses it as the reference by mistake).

The safetensors file is written by hand (8-byte header length, JSON header, raw little-endian
data), so nothing but torch is needed.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from fixture_io import save_safetensors


def grads(y, g, *inputs):
    return torch.autograd.grad(y, inputs, grad_outputs=g)


def unary_case(t, prefix, x, f):
    """y = f(x), g, dx for a layer without weights."""
    x = x.clone().requires_grad_()
    y = f(x)
    g = torch.randn_like(y)
    (dx,) = grads(y, g, x)
    t.update({prefix + "x": x, prefix + "g": g, prefix + "y": y, prefix + "dx": dx})


def same_pads(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def convt_same_by_definition(x, w, b, s):
    """TF's conv2d_transpose(padding="SAME", output in * s): the adjoint of a SAME conv2d."""
    k = w.shape[2]
    n_h, n_w = x.shape[2] * s, x.shape[3] * s
    z = torch.zeros(x.shape[0], w.shape[1], n_h, n_w, dtype=torch.float64, requires_grad=True)
    top, bottom = same_pads(n_h, k, s)
    left, right = same_pads(n_w, k, s)
    conv = F.conv2d(F.pad(z, (left, right, top, bottom)), w.double(), stride=s)
    assert conv.shape[2:] == x.shape[2:]
    (y,) = torch.autograd.grad(conv, z, grad_outputs=x.double())
    return y + b.double().view(1, -1, 1, 1)


def convt_same(x, w, b, s):
    """The same with torch's conv_transpose2d: crop 1 + 1, then the odd pixel at the end."""
    n_h, n_w = x.shape[2] * s, x.shape[3] * s
    k = w.shape[2]
    total = max(k - s, 0)
    full = F.conv_transpose2d(x, w, b, stride=s, padding=total // 2)
    return full[:, :, :n_h, :n_w]


def convt_case(t, prefix, hw):
    x = torch.randn(1, 2, hw, hw, requires_grad=True)
    w = (torch.rand(2, 3, 5, 5) * 0.8 - 0.4).requires_grad_()
    b = (torch.rand(3) - 0.5).requires_grad_()
    y = convt_same(x, w, b, 2)
    assert y.shape == (1, 3, 2 * hw, 2 * hw)
    ref = convt_same_by_definition(x.detach(), w.detach(), b.detach(), 2)
    assert torch.allclose(y.double(), ref, atol=1e-5), "conv_transpose2d + crop differs from TF's definition"
    shifted = F.conv_transpose2d(x, w, b, stride=2, padding=2, output_padding=1)
    assert shifted.shape == y.shape and not torch.allclose(shifted, y, atol=1e-3), \
        "padding=2, output_padding=1 should be one pixel off"
    g = torch.randn_like(y)
    dx, dw, db = grads(y, g, x, w, b)
    t.update({prefix + "x": x, prefix + "w": w, prefix + "b": b, prefix + "g": g, prefix + "y": y,
              prefix + "dx": dx, prefix + "dw": dw, prefix + "db": db})


def main():
    torch.manual_seed(0)
    t = {}
    x = torch.randn(2, 3, 4, 5)
    x[0, 0, 0, :2] = 0.0
    x[1, 2, 3, 4] = 0.0
    unary_case(t, "leaky.", x, lambda v: F.leaky_relu(v, 0.2))

    x = (torch.randn(2, 3, 5, 4) * 2.0 + 0.7).requires_grad_()
    gamma = (torch.rand(3) + 0.5).requires_grad_()
    beta = (torch.rand(3) - 0.5).requires_grad_()
    y = F.instance_norm(x, weight=gamma, bias=beta, eps=1e-3)
    m = nn.InstanceNorm2d(3, affine=True, eps=1e-3)
    with torch.no_grad():
        m.weight.copy_(gamma)
        m.bias.copy_(beta)
    assert torch.allclose(m(x), y)
    g = torch.randn_like(y)
    dx, dgamma, dbeta = grads(y, g, x, gamma, beta)
    t.update({"inorm.x": x, "inorm.gamma": gamma, "inorm.beta": beta, "inorm.g": g, "inorm.y": y,
              "inorm.dx": dx, "inorm.dgamma": dgamma, "inorm.dbeta": dbeta,
              "inorm5.y": F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5)})

    x = torch.randn(1, 2, 4, 5)
    unary_case(t, "rpad1.", x, nn.ReflectionPad2d(1))
    unary_case(t, "rpad3.", x, nn.ReflectionPad2d(3))
    unary_case(t, "rpads.", x, nn.ReflectionPad2d((1, 2, 3, 0)))
    unary_case(t, "zpad.", torch.randn(1, 2, 3, 4), nn.ZeroPad2d((2, 1, 0, 3)))
    unary_case(t, "up2.", torch.randn(2, 3, 3, 4), nn.Upsample(scale_factor=2, mode="nearest"))

    convt_case(t, "convt7.", 7)
    convt_case(t, "convt8.", 8)
    save_safetensors("tests/data/nn_gan_layers.safetensors", t)


if __name__ == "__main__":
    main()
