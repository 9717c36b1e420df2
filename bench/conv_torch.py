# bench/conv_torch.py - the PyTorch counterpart of bench/conv.c: same layers, same batch, same
# timing (best of 15 runs after 3 warm-ups), same output lines.
#     /usr/bin/python3 bench/conv_torch.py
import time
import torch
import torch.nn.functional as F

RUNS = 15


def bench(name, n, cin, h, w, cout, k, threads):
    torch.set_num_threads(threads)
    x = torch.rand(n, cin, h, w, requires_grad=True)
    wt = (torch.rand(cout, cin, k, k) - 0.5).requires_grad_()
    b = torch.zeros(cout, requires_grad=True)
    oh, ow = h - k + 1, w - k + 1
    ones = torch.ones(n, cout, oh, ow)
    fwd, bwd = [], []
    for it in range(-3, RUNS):
        x.grad = wt.grad = b.grad = None
        t0 = time.perf_counter()
        y = F.conv2d(x, wt, b)
        t1 = time.perf_counter()
        y.backward(ones)
        t2 = time.perf_counter()
        if it >= 0:
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    t_f, t_b = min(fwd), min(bwd)
    flops = 2.0 * n * cout * oh * ow * cin * k * k
    print("conv name=%s threads=%d fwd_ms=%.3f bwd_ms=%.3f gflops=%.1f"
          % (name, threads, t_f, t_b, 3.0 * flops / ((t_f + t_b) * 1e-3) / 1e9), flush=True)


print("# torch %s conv2d, batch 128" % torch.__version__)
for threads in (1, 2):
    bench("c1", 128, 1, 28, 28, 32, 3, threads)
    bench("c2", 128, 32, 13, 13, 64, 3, threads)
