# bench/gan_torch.py - the PyTorch counterpart of bench/gan.c: one DCGAN training step (the
# TensorFlow DCGAN tutorial's train_step) on Fashion-MNIST, batch 256, the same timing and the
# same output lines.
#
#     /usr/bin/python3 bench/gan_torch.py [--threads 1,2] [--steps S] [--warmup W] [--batch B]
#                                         [--max-s S]
#
# The networks are bench/gan.c's (see there): the tutorial's generator and discriminator with a
# bias in every layer, LeakyReLU slope 0.2, BatchNorm as Keras' (momentum 0.99, i.e. torch's
# momentum 0.01, eps 1e-3), weights initialized as Keras' (Glorot uniform kernels, zero biases).
# "same" padding: ConvTranspose2d(5, stride 2, padding 2, output_padding 1) and Conv2d(5,
# stride 2, padding 2) give Keras' output sizes with the same work (Keras/dl crop or pad the odd
# row at the other end: a one-pixel shift that changes no cost).
#
# One step: z ~ N(0, 1) [B, 100]; fake = G(z); D on real (x in [-1, 1]) and on fake;
# gen_loss = BCE(D(fake), 1), disc_loss = BCE(D(real), 1) + BCE(D(fake), 0) (from logits);
# torch.autograd.grad(gen_loss, G's parameters, retain_graph=True) and
# torch.autograd.grad(disc_loss, D's parameters) - the tutorial's two tapes: each computes only
# its own network's weight gradients - then Adam (lr 1e-4, betas 0.9/0.999, eps 1e-7) on each.
#
# Timing: W warm-up steps (default 2), then S timed steps (default 5), each timed alone;
# step_ms is the median. The warm-up and the timed steps each stop once they have run --max-s
# seconds (default 60; 0: no limit; at least one step is timed): this PyTorch build takes
# seconds per step (steps= in the output says how many were timed). Each thread count runs in a fresh subprocess, so peak_mib (ru_maxrss,
# MiB, read after the timed steps) is per configuration; it includes the interpreter, the torch
# libraries and the Fashion-MNIST training set as floats (188 MB, which dl holds too).
#
# Output, one line per thread count, then the best:
#     torch gan threads=1 step_ms=... peak_mib=... batch=256 steps=5
#     torch best threads=... step_ms=... peak_mib=...
import argparse
import gzip
import os
import resource
import statistics
import subprocess
import sys
import time

DATA_DIR = os.environ.get("DL_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
NOISE = 100


def load_images():
    """The 60000 training images as float32 [N, 1, 28, 28] in [-1, 1]."""
    import numpy as np
    import torch
    for path in (os.path.join(DATA_DIR, "train-images-idx3-ubyte.gz"),
                 os.path.join(DATA_DIR, "train-images-idx3-ubyte")):
        if os.path.exists(path):
            break
    else:
        raise FileNotFoundError("train-images-idx3-ubyte(.gz) not found in %s" % DATA_DIR)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8 or data[3] != 3:
        raise ValueError("%s: not an unsigned-byte IDX image file" % path)
    n = int.from_bytes(data[4:8], "big")
    x = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, 1, 28, 28).astype("float32")
    x /= 127.5
    x -= 1.0
    return torch.from_numpy(x)


def build():
    import torch.nn as nn

    class Reshape(nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], 256, 7, 7)

    def bn(c):
        return nn.BatchNorm1d(c, eps=1e-3, momentum=0.01) if c == 7 * 7 * 256 else \
            nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    g = nn.Sequential(
        nn.Linear(NOISE, 7 * 7 * 256), bn(7 * 7 * 256), nn.LeakyReLU(0.2), Reshape(),
        nn.ConvTranspose2d(256, 128, 5, stride=1, padding=2), bn(128), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(128, 64, 5, stride=2, padding=2, output_padding=1), bn(64), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(64, 1, 5, stride=2, padding=2, output_padding=1), nn.Tanh())
    d = nn.Sequential(
        nn.Conv2d(1, 64, 5, stride=2, padding=2), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Conv2d(64, 128, 5, stride=2, padding=2), nn.LeakyReLU(0.2), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(128 * 7 * 7, 1))
    for m in list(g.modules()) + list(d.modules()):   # Keras' initializers
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return g, d


def child(threads, steps, warmup, batch, max_s):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = load_images()
    pool = x.shape[0] // batch
    g, d = build()
    g.train()
    d.train()
    gp, dp = list(g.parameters()), list(d.parameters())
    opt_g = torch.optim.Adam(gp, lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
    opt_d = torch.optim.Adam(dp, lr=1e-4, betas=(0.9, 0.999), eps=1e-7)
    ones = torch.ones(batch, 1)
    zeros = torch.zeros(batch, 1)
    times = []
    t_phase = time.perf_counter()
    for step in range(warmup + steps):
        if step == warmup:
            t_phase = time.perf_counter()
        elif max_s > 0 and time.perf_counter() - t_phase > max_s and (step < warmup or times):
            if step < warmup:
                continue          # warm-up over: skip to the timed steps
            break
        b = step % pool
        t0 = time.perf_counter()
        real = x[b * batch:(b + 1) * batch]
        z = torch.randn(batch, NOISE)
        fake = g(z)
        real_out = d(real)
        fake_out = d(fake)
        gen_loss = F.binary_cross_entropy_with_logits(fake_out, ones)
        disc_loss = (F.binary_cross_entropy_with_logits(real_out, ones)
                     + F.binary_cross_entropy_with_logits(fake_out, zeros))
        g_grads = torch.autograd.grad(gen_loss, gp, retain_graph=True)
        d_grads = torch.autograd.grad(disc_loss, dp)
        for p, gr in zip(gp, g_grads):
            p.grad = gr
        for p, gr in zip(dp, d_grads):
            p.grad = gr
        opt_g.step()
        opt_d.step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux
    print("torch gan threads=%d step_ms=%.1f peak_mib=%.1f batch=%d steps=%d"
          % (threads, 1e3 * statistics.median(times), peak, batch, len(times)), flush=True)


def main():
    ap = argparse.ArgumentParser(description="PyTorch counterpart of bench/gan.c")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps (default 2)")
    ap.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    ap.add_argument("--max-s", type=float, default=60.0,
                    help="the warm-up and the timed steps each stop after this many seconds "
                         "(0: no limit; default 60)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    if a.steps < 1 or a.warmup < 0 or a.batch < 1:
        ap.error("--steps must be >= 1, --warmup >= 0, --batch >= 1")
    if a.child:
        child(threads[0], a.steps, a.warmup, a.batch, a.max_s)
        return
    import torch
    print("# torch %s, DCGAN train step, batch %d; step_ms = median of up to %d timed steps after up "
          "to %d warm-up steps (each phase stops after %g s); peak_mib includes the data set"
          % (torch.__version__, a.batch, a.steps, a.warmup, a.max_s), flush=True)
    best = None
    for t in threads:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--threads", str(t),
                            "--steps", str(a.steps), "--warmup", str(a.warmup), "--batch", str(a.batch),
                            "--max-s", str(a.max_s)],
                           stdout=subprocess.PIPE, universal_newlines=True)
        sys.stdout.write(r.stdout)
        sys.stdout.flush()
        if r.returncode != 0:
            sys.exit("gan_torch.py: threads=%d failed" % t)
        f = dict(kv.split("=", 1) for kv in r.stdout.strip().split("\n")[-1].split()[2:])
        if best is None or float(f["step_ms"]) < float(best["step_ms"]):
            best = f
    print("torch best threads=%s step_ms=%s peak_mib=%s"
          % (best["threads"], best["step_ms"], best["peak_mib"]), flush=True)


if __name__ == "__main__":
    main()
