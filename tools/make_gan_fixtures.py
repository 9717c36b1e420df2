#!/usr/bin/env python3
"""Writes tests/data/gan_gp.safetensors, PyTorch's reference for the WGAN-GP penalty and the
quality numbers of tests/test_gan.c (run from the repository root with a Python that has
torch; torch 1.13).

Two critics D(x) = dense2(act(dense1(x))), x [B, F], hidden H, one score per sample:
  P = "leaky": act = LeakyReLU(0.2) (piecewise linear: the central difference is exact)
  P = "tanh":  act = tanh           (smooth: the central difference is O(h^2))
Tensors, dl's Dense layout (kernel [in, out]):
  P.kernel1 [F, H]  P.bias1 [H]  P.kernel2 [H, 1]  P.bias2 [1]  P.x_hat [B, F]
  P.penalty [1]     lambda * mean_i (|grad_x D(x_hat_i)| - 1)^2, lambda = 10
  P.dkernel1 ...    d penalty / d weights, by autograd.grad(create_graph=True) then backward
Quality: fid.a [300, 6], fid.b [200, 6] features and fid.value, their Frechet distance (float64,
torch.linalg.eigh); is.probs [50, 4] softmax rows and is.value, their Inception score.
"""
import torch

from fixture_io import save_safetensors

B, F, H, LAMBDA = 6, 5, 7, 10.0


def case(prefix, act, gen):
    k1 = (torch.randn(F, H, generator=gen) * 0.6).requires_grad_()
    b1 = (torch.randn(H, generator=gen) * 0.1).requires_grad_()
    k2 = (torch.randn(H, 1, generator=gen) * 0.6).requires_grad_()
    b2 = (torch.randn(1, generator=gen) * 0.1).requires_grad_()
    x = torch.randn(B, F, generator=gen).requires_grad_()
    d = act(x @ k1 + b1) @ k2 + b2
    (g,) = torch.autograd.grad(d.sum(), x, create_graph=True)
    penalty = LAMBDA * ((g.norm(dim=1) - 1) ** 2).mean()
    grads = torch.autograd.grad(penalty, [k1, b1, k2, b2], allow_unused=True)   # bias2: unused, 0
    grads = [torch.zeros_like(w) if gr is None else gr for w, gr in zip([k1, b1, k2, b2], grads)]
    out = {"kernel1": k1, "bias1": b1, "kernel2": k2, "bias2": b2, "x_hat": x, "penalty": penalty.reshape(1)}
    out.update({"d" + n: v for n, v in zip(["kernel1", "bias1", "kernel2", "bias2"], grads)})
    return {prefix + "." + n: v for n, v in out.items()}


gen = torch.Generator().manual_seed(7)
tensors = {}
tensors.update(case("leaky", lambda z: torch.nn.functional.leaky_relu(z, 0.2), gen))
tensors.update(case("tanh", torch.tanh, gen))


def quality():
    """Frechet distance and Inception score, by torch in float64 (eigh, LAPACK)."""
    g = torch.Generator().manual_seed(11)
    a = torch.randn(300, 6, generator=g) @ torch.randn(6, 6, generator=g)
    b = torch.randn(200, 6, generator=g) @ torch.randn(6, 6, generator=g) + 0.5
    a64, b64 = a.double(), b.double()
    mu_a, mu_b = a64.mean(0), b64.mean(0)
    sa, sb = torch.cov(a64.T), torch.cov(b64.T)   # unbiased, as numpy.cov
    la, va = torch.linalg.eigh(sa)
    half = va @ torch.diag(la.clamp(min=0).sqrt()) @ va.T
    tr_sqrt = torch.linalg.eigvalsh(half @ sb @ half).clamp(min=0).sqrt().sum()
    fid = ((mu_a - mu_b) ** 2).sum() + torch.trace(sa) + torch.trace(sb) - 2 * tr_sqrt
    logits = torch.randn(50, 4, generator=g) * 2
    p = torch.softmax(logits.double(), dim=1)
    marg = p.mean(0)
    inception = torch.exp((p * (p.log() - marg.log())).sum(1).mean())
    return {"fid.a": a, "fid.b": b, "fid.value": fid.reshape(1), "is.probs": p.float(), "is.value": inception.reshape(1)}


tensors.update(quality())
save_safetensors("tests/data/gan_gp.safetensors", tensors)
