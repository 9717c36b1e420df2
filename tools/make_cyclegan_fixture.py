#!/usr/bin/env python3
"""Writes tests/data/cyclegan_step.safetensors, PyTorch's reference for one CycleGAN training
step of tests/test_cyclegan.c (run from the repository root with a Python that has torch; torch
1.13).

The step is optimize_parameters() of junyanz/pytorch-CycleGAN-and-pix2pix's
models/cycle_gan_model.py, written out with functional ops on tiny networks of dl's
dl_cyclegan_generator / dl_cyclegan_discriminator shapes:
  images   a, b [2, 3, 8, 8] in (-1, 1)
  G_AB, G_BA  ResNet generator, ngf 2, 2 residual blocks (networks.py ResnetGenerator): c7s1-2,
           d4, d8, 2 x R8, u4, u2, c7s1-3, tanh; reflection padding, InstanceNorm2d(affine=False,
           eps 1e-5), every conv with a bias. The up-sampling is dl's Conv2DTranspose "same"
           (TensorFlow's): conv_transpose2d without padding (2H + 1), cropped to the first 2H
           rows and columns (theirs, padding=1 output_padding=1, crops the first row instead).
  D_A, D_B PatchGAN, ndf 2, n_layers 1 (networks.py NLayerDiscriminator): C2 stride 2 (no norm),
           C4 stride 1 with instance norm, then a 1-channel conv; 4x4 kernels, zero pad 1,
           LeakyReLU 0.2. 8x8 -> 4x4 -> 3x3 -> 2x2 logits.
  losses   LSGAN (MSELoss against 1 / 0), L1 cycle and identity, lambda_A = lambda_B = 10,
           lambda_identity 0.5; D losses halved. G_AB is their netG_A, D_B (judges B) their netD_A.
  step     Adam(lr 2e-4, betas (0.5, 0.999)) for both generators' weights, another for both
           discriminators'; pools empty, so the fakes pass through (as an image pool that is
           not full returns its input).
Tensors (kernels in torch layout: Conv2d [out, in, k, k], ConvTranspose2d [in, out, k, k]):
  a, b                          the batches
  init.<net>.<i>.kernel / .bias the initial weights of net's i-th convolution (forward order;
                                <net> g_ab, g_ba, d_a, d_b); N(0, 0.3^2) kernels, N(0, 0.1^2) biases
  after.<net>.<i>.kernel ...    the weights after the step
  grad.<net>.<i>.kernel ...     their gradients in that step (G's from the G step, D's from the D step)
  loss.<name> [1]               gan_ab gan_ba cycle_a cycle_b idt_ab idt_ba g_loss d_a d_b
"""
import torch
import torch.nn.functional as F

from fixture_io import save_safetensors

C, H, NGF, NBLOCKS, NDF = 3, 8, 2, 2, 2
LAMBDA_A = LAMBDA_B = 10.0
LAMBDA_IDT = 0.5


def gen_specs():
    """(kind, in, out, k, stride) of each conv of the generator, forward order."""
    s = [("conv", C, NGF, 7, 1), ("conv", NGF, 2 * NGF, 3, 2), ("conv", 2 * NGF, 4 * NGF, 3, 2)]
    for _ in range(NBLOCKS):
        s += [("conv", 4 * NGF, 4 * NGF, 3, 1), ("conv", 4 * NGF, 4 * NGF, 3, 1)]
    s += [("convt", 4 * NGF, 2 * NGF, 3, 2), ("convt", 2 * NGF, NGF, 3, 2), ("conv", NGF, C, 7, 1)]
    return s


def disc_specs():
    return [("conv", C, NDF, 4, 2), ("conv", NDF, 2 * NDF, 4, 1), ("conv", 2 * NDF, 1, 4, 1)]


def make(specs, g):
    ws = []
    for kind, cin, cout, k, _ in specs:
        shape = (cout, cin, k, k) if kind == "conv" else (cin, cout, k, k)
        ws.append([(torch.randn(*shape, generator=g) * 0.3).requires_grad_(),
                   (torch.randn(cout, generator=g) * 0.1).requires_grad_()])
    return ws


def inorm(x):
    return F.instance_norm(x, eps=1e-5)


def generator(ws, x):
    w = iter(ws)

    def conv(x, stride, pad, mode):
        k, bias = next(w)
        return F.conv2d(F.pad(x, (pad,) * 4, mode=mode), k, bias, stride=stride)

    def up(x):
        k, bias = next(w)
        y = F.conv_transpose2d(x, k, bias, stride=2)
        return y[:, :, : 2 * x.shape[2], : 2 * x.shape[3]]

    x = F.relu(inorm(conv(x, 1, 3, "reflect")))
    x = F.relu(inorm(conv(x, 2, 1, "constant")))
    x = F.relu(inorm(conv(x, 2, 1, "constant")))
    for _ in range(NBLOCKS):
        h = F.relu(inorm(conv(x, 1, 1, "reflect")))
        h = inorm(conv(h, 1, 1, "reflect"))
        x = x + h
    x = F.relu(inorm(up(x)))
    x = F.relu(inorm(up(x)))
    return torch.tanh(conv(x, 1, 3, "reflect"))


def discriminator(ws, x):
    (k0, b0), (k1, b1), (k2, b2) = ws
    x = F.leaky_relu(F.conv2d(F.pad(x, (1,) * 4), k0, b0, stride=2), 0.2)
    x = F.leaky_relu(inorm(F.conv2d(F.pad(x, (1,) * 4), k1, b1, stride=1)), 0.2)
    return F.conv2d(F.pad(x, (1,) * 4), k2, b2, stride=1)


def flat(ws):
    return [t for pair in ws for t in pair]


def set_grad(ws, on):
    for t in flat(ws):
        t.requires_grad_(on)


g = torch.Generator().manual_seed(5)
a = torch.tanh(torch.randn(2, C, H, H, generator=g))
b = torch.tanh(torch.randn(2, C, H, H, generator=g))
nets = {"g_ab": make(gen_specs(), g), "g_ba": make(gen_specs(), g),
        "d_a": make(disc_specs(), g), "d_b": make(disc_specs(), g)}
out = {"a": a, "b": b}
for name, ws in nets.items():
    for i, (k, bias) in enumerate(ws):
        out[f"init.{name}.{i}.kernel"] = k.detach().clone()
        out[f"init.{name}.{i}.bias"] = bias.detach().clone()

opt_g = torch.optim.Adam(flat(nets["g_ab"]) + flat(nets["g_ba"]), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(flat(nets["d_b"]) + flat(nets["d_a"]), lr=2e-4, betas=(0.5, 0.999))
G_AB = lambda x: generator(nets["g_ab"], x)
G_BA = lambda x: generator(nets["g_ba"], x)
D_A = lambda x: discriminator(nets["d_a"], x)
D_B = lambda x: discriminator(nets["d_b"], x)

# forward()
fake_b = G_AB(a)
rec_a = G_BA(fake_b)
fake_a = G_BA(b)
rec_b = G_AB(fake_a)
# G step, D frozen (backward_G)
set_grad(nets["d_a"], False)
set_grad(nets["d_b"], False)
opt_g.zero_grad()
idt_ab = F.l1_loss(G_AB(b), b) * LAMBDA_B * LAMBDA_IDT    # their loss_idt_A
idt_ba = F.l1_loss(G_BA(a), a) * LAMBDA_A * LAMBDA_IDT    # their loss_idt_B
pred = D_B(fake_b)
gan_ab = F.mse_loss(pred, torch.ones_like(pred))          # their loss_G_A
pred = D_A(fake_a)
gan_ba = F.mse_loss(pred, torch.ones_like(pred))          # their loss_G_B
cycle_a = F.l1_loss(rec_a, a) * LAMBDA_A
cycle_b = F.l1_loss(rec_b, b) * LAMBDA_B
g_loss = gan_ab + gan_ba + cycle_a + cycle_b + idt_ab + idt_ba
g_loss.backward()
opt_g.step()
set_grad(nets["d_a"], True)
set_grad(nets["d_b"], True)
# D step (backward_D_A: our D_B, then backward_D_B: our D_A), pools pass the fakes through
opt_d.zero_grad()


def d_loss(D, real, fake):
    pr, pf = D(real), D(fake.detach())
    loss = (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf))) * 0.5
    loss.backward()
    return loss


d_b = d_loss(D_B, b, fake_b)
d_a = d_loss(D_A, a, fake_a)
opt_d.step()

for name, ws in nets.items():
    for i, (k, bias) in enumerate(ws):
        out[f"after.{name}.{i}.kernel"] = k.detach().clone()
        out[f"after.{name}.{i}.bias"] = bias.detach().clone()
        out[f"grad.{name}.{i}.kernel"] = k.grad.clone()
        out[f"grad.{name}.{i}.bias"] = bias.grad.clone()
for n, v in [("gan_ab", gan_ab), ("gan_ba", gan_ba), ("cycle_a", cycle_a), ("cycle_b", cycle_b), ("idt_ab", idt_ab),
             ("idt_ba", idt_ba), ("g_loss", g_loss), ("d_a", d_a), ("d_b", d_b)]:
    out["loss." + n] = v.detach().reshape(1)
save_safetensors("tests/data/cyclegan_step.safetensors", out)
