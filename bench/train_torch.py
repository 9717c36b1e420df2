# bench/train_torch.py - the PyTorch counterpart of bench/train.c: the same two Fashion-MNIST
# training workloads, the same timing, the same output lines.
#
#     /usr/bin/python3 bench/train_torch.py [--workload mlp|cnn|all] [--threads 1,2]
#                                           [--epochs E] [--batches N] [--warmup W]
#                                           [--max-epoch-s S]
#
#   mlp  Flatten, Linear 784->128 ReLU, Dropout 0.2, Linear 128->10 (logits); batch 32
#   cnn  Conv 1->32 3x3 ReLU (valid), MaxPool 2, Conv 32->64 3x3 ReLU, MaxPool 2, Flatten,
#        Dropout 0.5, Linear 1600->10; batch 128
# Both: Adam lr 1e-3, betas 0.9/0.999, eps 1e-7 (Keras' values), sparse categorical
# cross-entropy on logits, the 60000 training images (x in [0, 1], NCHW) held in memory as one
# tensor and shuffled every epoch (a new randperm, then x[idx] batches: no DataLoader, the
# fastest plain PyTorch way to feed an in-memory set), running loss and accuracy as Keras' fit
# keeps them. Weights start as Keras' (Glorot uniform kernels, zero biases).
#
# Timing: one warm-up of W batches (default 200), then E timed epochs (default 2); epoch_s is
# the median of the timed epochs. With --batches N each timed "epoch" runs only its first N
# batches and epoch_s = seconds / N * (batches in a full epoch): a per-full-epoch estimate,
# marked scaled=1 in the output. A timed epoch (or the warm-up) that runs past --max-epoch-s
# seconds (default 20) stops there and is scaled the same way (batches= shows the fewest
# batches an epoch ran): on a loaded 2-core machine OpenMP with 2 threads can slow down
# 100-fold, and the cap keeps such a run to minutes. test_acc: accuracy on the 10000 test
# images after training (untimed).
#
# Every (workload, threads) configuration runs in a fresh subprocess, so peak_mib (ru_maxrss of
# that process, MiB, read when training ends, before the test set is evaluated) is per
# configuration. It includes the Python interpreter, the torch libraries (about 226 MiB after
# `import torch`) and the data set (60000 x 784 floats = 188 MB, which dl holds too).
#
# Output, one line per configuration, then the best thread count per workload:
#     torch workload=mlp threads=1 epoch_s=... peak_mib=... test_acc=... batches=1875 scaled=0
#     torch best workload=mlp threads=... epoch_s=... peak_mib=...
import argparse
import gzip
import os
import resource
import statistics
import subprocess
import sys
import time

DATA_DIR = os.environ.get("DL_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
BATCH = {"mlp": 32, "cnn": 128}


def load_idx(path):
    """An IDX u8 file (plain or gzip) -> numpy uint8 array of its shape."""
    import numpy as np
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(name):
    for p in (os.path.join(DATA_DIR, name + ".gz"), os.path.join(DATA_DIR, name)):
        if os.path.exists(p):
            return p
    raise FileNotFoundError("%s(.gz) not found in %s" % (name, DATA_DIR))


def load(train):
    import torch
    prefix = "train" if train else "t10k"
    xs = load_idx(find(prefix + "-images-idx3-ubyte"))
    ys = load_idx(find(prefix + "-labels-idx1-ubyte"))
    xf = xs.astype("float32")          # one float copy, divided in place (no second temporary)
    xf /= 255.0
    x = torch.from_numpy(xf).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(ys.astype("int64"))
    return x, y


def build(workload):
    import torch.nn as nn
    if workload == "mlp":
        m = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(128, 10))
    else:
        m = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    for mod in m.modules():   # Keras' initializers: glorot_uniform kernels, zero biases
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(mod.weight)
            nn.init.zeros_(mod.bias)
    return m


def child(workload, threads, epochs, batches, warmup, max_epoch_s):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x, y = load(True)
    xt, yt = load(False)
    model = build(workload)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-7)
    bs = BATCH[workload]
    n = x.shape[0]
    full = (n + bs - 1) // bs          # batches per full epoch (the last one partial, as Keras)
    per_epoch = min(batches, full) if batches > 0 else full

    def run(nb):
        """nb batches of a freshly shuffled epoch, or fewer when max_epoch_s is up; returns
        (seconds, batches run, loss, accuracy)."""
        model.train()
        t0 = time.perf_counter()
        idx = torch.randperm(n)
        tot_loss, correct, seen = 0.0, 0, 0
        for b in range(nb):
            if max_epoch_s > 0 and b > 0 and time.perf_counter() - t0 > max_epoch_s:
                nb = b
                break
            j = idx[b * bs:(b + 1) * bs]
            xb, yb = x[j], y[j]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k = yb.shape[0]
            tot_loss += loss.item() * k
            correct += (out.argmax(1) == yb).sum().item()
            seen += k
        return time.perf_counter() - t0, nb, tot_loss / seen, correct / seen

    if warmup > 0:
        run(min(warmup, full))
    times, done = [], per_epoch
    for _ in range(epochs):
        s, nb, _, _ = run(per_epoch)
        times.append(s / nb * full)
        done = min(done, nb)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, xt.shape[0], bs):
            correct += (model(xt[i:i + bs]).argmax(1) == yt[i:i + bs]).sum().item()
    print("torch workload=%s threads=%d epoch_s=%.3f peak_mib=%.1f test_acc=%.4f batches=%d scaled=%d"
          % (workload, threads, statistics.median(times), peak, correct / xt.shape[0], done,
             int(done != full)), flush=True)


def main():
    ap = argparse.ArgumentParser(description="PyTorch counterpart of bench/train.c")
    ap.add_argument("--workload", default="all", help="mlp, cnn or all (default)")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    ap.add_argument("--batches", type=int, default=0,
                    help="batches per timed epoch (0: all); epoch_s is then scaled to a full epoch")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up batches (default 200)")
    ap.add_argument("--max-epoch-s", type=float, default=20.0,
                    help="a timed epoch (or the warm-up) stops after this many seconds and is "
                         "scaled from the batches it ran (0: no limit; default 20)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    workloads = ["mlp", "cnn"] if a.workload == "all" else a.workload.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    for w in workloads:
        if w not in BATCH:
            ap.error("unknown workload %r" % w)
    if a.epochs < 1:
        ap.error("--epochs must be >= 1")
    if a.child:
        child(workloads[0], threads[0], a.epochs, a.batches, a.warmup, a.max_epoch_s)
        return
    import torch
    print("# torch %s, Fashion-MNIST 60000 training images; epoch_s = median of %d timed epochs "
          "after %d warm-up batches%s; peak_mib includes the data set"
          % (torch.__version__, a.epochs, a.warmup,
             ", scaled from %d batches per epoch" % a.batches if a.batches > 0 else ""), flush=True)
    for w in workloads:
        best = None
        for t in threads:
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--workload", w,
                                "--threads", str(t), "--epochs", str(a.epochs),
                                "--batches", str(a.batches), "--warmup", str(a.warmup),
                                "--max-epoch-s", str(a.max_epoch_s)],
                               stdout=subprocess.PIPE, universal_newlines=True)
            sys.stdout.write(r.stdout)
            sys.stdout.flush()
            if r.returncode != 0:
                sys.exit("train_torch.py: workload=%s threads=%d failed" % (w, t))
            f = dict(kv.split("=", 1) for kv in r.stdout.split("\n")[-2].split()[1:])
            if best is None or float(f["epoch_s"]) < float(best["epoch_s"]):
                best = f
        print("torch best workload=%s threads=%s epoch_s=%s peak_mib=%s"
              % (w, best["threads"], best["epoch_s"], best["peak_mib"]), flush=True)


if __name__ == "__main__":
    main()
