"""bench/cuda_torch.py - PyTorch on the same GPU workloads as bench/cuda.c, for the ratio.

GEMM C = A B on n x n FP32 matrices (TF32 off: torch.backends.cuda.matmul.allow_tf32 = False,
the same precision as dl's default), the best of 5 timed runs of 10 products after a warm-up;
and the MLP training step (784-128-10, ReLU, cross-entropy, plain SGD with lr 0.01 written as
in-place updates under no_grad), the median of 5 runs of 200 steps. Same output lines as
bench/cuda.c, with a torch_ prefix. Prints one line saying why when PyTorch has no CUDA.
"""
import statistics
import sys
import time

try:
    import torch
except ImportError:
    print("torch_bench: PyTorch is not installed")
    sys.exit(0)
if not torch.cuda.is_available():
    print("torch_bench: PyTorch has no CUDA device")
    sys.exit(0)

dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
peak = float(sys.argv[sys.argv.index("--peak") + 1]) if "--peak" in sys.argv else 67000.0


def gemm(n):
    g = torch.Generator(device=dev).manual_seed(1)
    a = torch.rand(n, n, device=dev, generator=g) * 0.2 - 0.1
    b = torch.rand(n, n, device=dev, generator=g) * 0.2 - 0.1
    best = 0.0
    for rep in range(6):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if rep > 0:
            best = max(best, 2.0 * n ** 3 * 10 / dt * 1e-9)
    print(f"torch_gemm_{n}_gflops {best:.0f} GFLOP/s ({100 * best / peak:.0f}% of {peak:.0f})")


def mlp(batch):
    g = torch.Generator(device=dev).manual_seed(2)
    p = [torch.rand(s, device=dev, generator=g) * 0.2 - 0.1 for s in ((784, 128), (128,), (128, 10), (10,))]
    for t in p:
        t.requires_grad_(True)
    x = torch.rand(batch, 784, device=dev, generator=g) * 0.2 - 0.1
    y = torch.arange(batch, device=dev) % 10
    times = []
    for rep in range(6):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(200):
            for t in p:
                t.grad = None
            h = torch.relu(x @ p[0] + p[1])
            loss = torch.nn.functional.cross_entropy(h @ p[2] + p[3], y)
            loss.backward()
            with torch.no_grad():
                for t in p:
                    t -= 0.01 * t.grad
        torch.cuda.synchronize()
        if rep > 0:
            times.append(time.perf_counter() - t0)
    m = statistics.median(times)
    print(f"torch_mlp_step_b{batch} {m / 200 * 1e6:.1f} us/step ({200 / m:.0f} steps/s)")


print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
for n in (1024, 4096, 8192):
    gemm(n)
mlp(32)
mlp(256)


def epoch(workload):
    """One training epoch of bench/train_torch.py's model (Keras' recipe: Adam 1e-3, eps 1e-7,
    batch 32 for the MLP and 128 for the CNN, loss.item() every batch) with the whole data set
    on the GPU, after a warm-up of 200 batches; and the test accuracy after 2 epochs."""
    import os
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_torch as tt
    import torch.nn.functional as F
    try:
        x, y = tt.load(True)
        xt, yt = tt.load(False)
    except FileNotFoundError as e:
        print(f"torch_{workload}_epoch NA ({e})")
        return
    x, y, xt, yt = x.to(dev), y.to(dev), xt.to(dev), yt.to(dev)
    torch.manual_seed(0)
    model = tt.build(workload).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    bs, n = tt.BATCH[workload], x.shape[0]

    def run(nb):
        model.train()
        idx = torch.randperm(n, device=dev)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for b in range(nb):
            j = idx[b * bs:(b + 1) * bs]
            loss = F.cross_entropy(model(x[j]), y[j])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    full = (n + bs - 1) // bs
    run(200)
    t = [run(full) for _ in range(2)]
    model.eval()
    with torch.no_grad():
        acc = sum((model(xt[i:i + bs]).argmax(1) == yt[i:i + bs]).sum().item() for i in range(0, xt.shape[0], bs)) / xt.shape[0]
    print(f"torch_{workload}_epoch {min(t):.2f} s (batch {bs}; test accuracy {acc:.4f} after 2 epochs)")


if "--epochs" in sys.argv or "--all" in sys.argv:
    epoch("mlp")
    epoch("cnn")
