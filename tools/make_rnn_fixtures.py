#!/usr/bin/env python3
"""Writes tests/data/rnn_parity.safetensors, the PyTorch reference of tests/test_nn_rnn.c
(run from the repository root with a Python that has torch; tested with torch 1.13).

For each layer P in simple_rnn, lstm, gru (Keras layout and gate order, see dl_nn.h):
  P.x                 [B, T, F]  input
  P.kernel            [F, G*U]   P.recurrent_kernel [U, G*U]   P.bias [G*U] ([2, 3U] for gru)
  P.y                 [B, T, U]  every output (return_sequences=True)
  P.w                 [B, T, U]  weights of the loss L = sum(P.y * P.w)
  P.dx, P.dkernel, P.drecurrent_kernel, P.dbias   dL/d(input and weights), Keras layout
The outputs come from torch.nn.RNN / LSTM / GRU (batch_first=True) with the weights mapped:
  weight_ih = kernel^T, weight_hh = recurrent_kernel^T; LSTM gates i f g o are Keras' i f c o;
  GRU: torch's gate order is r z n, Keras' z r h, so the blocks are reordered; Keras' reset_after
  GRU bias row 0 is torch's bias_ih, row 1 bias_hh; for SimpleRNN and LSTM, bias_ih = bias and
  bias_hh = 0 (Keras has a single bias).
The file is written by tools/fixture_io.py (by hand, so only torch is needed).
"""
import torch

from fixture_io import save_safetensors

B, T, F, U = 2, 5, 3, 4


def keras_to_torch_blocks(m, order):
    """Columns of a Keras [*, G*U] matrix (or entries of a [G*U] vector) in torch's gate order."""
    return torch.cat([m[..., g * U:(g + 1) * U] for g in order], dim=-1)


def torch_to_keras_blocks(m, order):
    """Inverse of keras_to_torch_blocks along the last axis."""
    out = [None] * len(order)
    for pos, g in enumerate(order):
        out[g] = m[..., pos * U:(pos + 1) * U]
    return torch.cat(out, dim=-1)


def case(prefix, cls, gates, order, gen):
    x = torch.randn(B, T, F, generator=gen)
    kernel = torch.rand(F, gates * U, generator=gen) - 0.5
    rec = torch.rand(U, gates * U, generator=gen) - 0.5
    bias = torch.rand((2, gates * U) if cls is torch.nn.GRU else (gates * U,), generator=gen) - 0.5
    w = torch.rand(B, T, U, generator=gen) * 2 - 1
    m = cls(F, U, batch_first=True)
    with torch.no_grad():
        m.weight_ih_l0.copy_(keras_to_torch_blocks(kernel, order).t())
        m.weight_hh_l0.copy_(keras_to_torch_blocks(rec, order).t())
        if cls is torch.nn.GRU:
            m.bias_ih_l0.copy_(keras_to_torch_blocks(bias[0], order))
            m.bias_hh_l0.copy_(keras_to_torch_blocks(bias[1], order))
        else:
            m.bias_ih_l0.copy_(bias)
            m.bias_hh_l0.zero_()
    xg = x.clone().requires_grad_(True)
    y, _ = m(xg)
    (y * w).sum().backward()
    dkernel = torch_to_keras_blocks(m.weight_ih_l0.grad.t(), order)
    drec = torch_to_keras_blocks(m.weight_hh_l0.grad.t(), order)
    if cls is torch.nn.GRU:
        dbias = torch.stack([torch_to_keras_blocks(m.bias_ih_l0.grad, order),
                             torch_to_keras_blocks(m.bias_hh_l0.grad, order)])
    else:
        dbias = m.bias_ih_l0.grad   # the single Keras bias enters where bias_ih does
    return {prefix + ".x": x, prefix + ".kernel": kernel, prefix + ".recurrent_kernel": rec,
            prefix + ".bias": bias, prefix + ".y": y, prefix + ".w": w, prefix + ".dx": xg.grad,
            prefix + ".dkernel": dkernel, prefix + ".drecurrent_kernel": drec, prefix + ".dbias": dbias}


gen = torch.Generator().manual_seed(1234)
out = {}
out.update(case("simple_rnn", torch.nn.RNN, 1, [0], gen))
out.update(case("lstm", torch.nn.LSTM, 4, [0, 1, 2, 3], gen))   # i f c(g) o in both
out.update(case("gru", torch.nn.GRU, 3, [1, 0, 2], gen))        # torch r z n = Keras blocks 1 0 2
save_safetensors("tests/data/rnn_parity.safetensors", out)
