#!/usr/bin/python3
"""torch_parity.py - random differential test of dl_tensor.h against PyTorch (developer tool, not CI).

    /usr/bin/python3 tools/torch_parity.py [--seed S] [--reps R] [--show N] [--keep]

Draws seeded random cases for many ops, computes torch (float32) outputs and gradients for a
random upstream gradient, writes them with the inputs to build/torch_parity/cases.safetensors
(written by hand: struct + json), builds and runs build/torch_parity (tools/torch_parity.c),
reads its results and prints a per-op summary plus the first mismatches. Cases torch rejects
must come back NULL from dl. A float64 torch value is shown next to each mismatch so you can
tell rounding from real disagreement.
"""
import warnings
warnings.filterwarnings("ignore")
import argparse, json, math, os, struct, subprocess, sys
import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "build", "torch_parity_data")

# ---------------------------------------------------------------- safetensors by hand
def st_write(path, tensors, meta):
    hdr = {"__metadata__": meta}
    off, blobs = 0, []
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        b = arr.tobytes()
        dt = {"float32": "F32", "int32": "I32"}[str(arr.dtype)]
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    out = {}
    for name, e in hdr.items():
        dt = {"F32": np.float32, "I32": np.int32, "U8": np.uint8}[e["dtype"]]
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b:8 + n + en], dtype=dt).reshape(e["shape"])
    return out, meta

# ---------------------------------------------------------------- case building
CASES = []
VIEWS = True
R = None  # numpy Generator

def fmt(v):
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    return str(int(v))

def run_torch(fn, arrs, mask, dtype):
    ts, leaves = [], []
    for a, m in zip(arrs, mask):
        if a.dtype == np.int32:
            t = torch.from_numpy(a.astype(np.int64))
            ts.append(t); leaves.append(None)
            continue
        leaf = torch.from_numpy(a.astype(np.float32)).to(dtype)
        if m in "12":
            leaf.requires_grad_(True)
        leaves.append(leaf)
        ts.append(leaf.transpose(-1, -2) if m in "23" else leaf)
    r = fn(ts)
    extras = {}
    if isinstance(r, tuple):
        r, extras = r
    return r, extras, leaves

def case(op, args, inputs, fn, mask=None, tol="std", note=""):
    """inputs: numpy arrays as stored (float32 / int32). mask: per input '0'..'3' (see the C file);
    default '1' for float inputs, '0' for int ones."""
    if mask is None:
        mask = "".join("1" if a.dtype == np.float32 else "0" for a in inputs)
    inputs = [np.ascontiguousarray(a) for a in inputs]
    if VIEWS:  # randomly feed some float inputs as strided (transposed) views
        ml = list(mask)
        for i, a in enumerate(inputs):
            if ml[i] == "1" and a.ndim >= 2 and R.random() < 0.25:
                inputs[i], ml[i] = T(a), "2"
        mask = "".join(ml)
    c = dict(id=len(CASES), op=op, args=args, inputs=inputs, mask=mask, tol=tol, note=note)
    try:
        out, extras, leaves = run_torch(fn, inputs, mask, torch.float32)
    except Exception as e:  # torch rejects: dl must give NULL
        c["err"] = str(e).split("\n")[0][:160]
        CASES.append(c)
        return
    c["err"] = None
    res = {"out": out.detach().numpy().copy()}
    for k, v in extras.items():
        res[k] = v.detach().numpy().copy()
    gout = None
    gidx = [i for i, m in enumerate(mask) if m in "12"]
    if out.dtype.is_floating_point and gidx and out.requires_grad:
        gout = R.standard_normal(out.shape).astype(np.float32)
        grads = torch.autograd.grad(out, [leaves[i] for i in gidx], torch.from_numpy(gout), allow_unused=True)
        for i, g in zip(gidx, grads):
            res["g%d" % i] = np.zeros(inputs[i].shape, np.float32) if g is None else g.numpy().copy()
    # float64 reference for diagnosis
    ref64 = {}
    try:
        out64, ex64, leaves64 = run_torch(fn, inputs, mask, torch.float64)
        ref64["out"] = out64.detach().numpy()
        for k, v in ex64.items():
            ref64[k] = v.detach().numpy()
        if gout is not None:
            grads = torch.autograd.grad(out64, [leaves64[i] for i in gidx], torch.from_numpy(gout.astype(np.float64)), allow_unused=True)
            for i, g in zip(gidx, grads):
                ref64["g%d" % i] = np.zeros(inputs[i].shape) if g is None else g.numpy()
    except Exception:
        pass
    c["gout"], c["res"], c["ref64"] = gout, res, ref64
    CASES.append(c)

# ---------------------------------------------------------------- random helpers
def ri(lo, hi):  # inclusive
    return int(R.integers(lo, hi + 1))

def choice(xs):
    return xs[int(R.integers(len(xs)))]

def randn(*shape, scale=1.0):
    return (R.standard_normal(shape) * scale).astype(np.float32)

def randint_f(*shape, lo=-2, hi=2):  # small integers: lots of ties
    return R.integers(lo, hi + 1, size=shape).astype(np.float32)

def rshape(nmin=1, nmax=4, smax=5):
    return tuple(ri(1, smax) for _ in range(ri(nmin, nmax)))

def with_kinks(x, kinks):
    shape = x.shape
    x = x.copy().reshape(-1)
    for i in range(x.size):
        if R.random() < 0.2:
            x[i] = choice(kinks)
    return x.reshape(shape)

def T(a):  # stored form of a transposed view: the op sees T(a)^T = a
    return np.ascontiguousarray(np.swapaxes(a, -1, -2))

def bcast_pair():
    base = rshape(0, 4)
    def sub(shape):
        s = list(shape[ri(0, len(shape)):] if R.random() < 0.3 else shape)
        return tuple(1 if R.random() < 0.3 else d for d in s)
    return sub(base), sub(base)

# ---------------------------------------------------------------- case generators
def gen_binary(reps):
    fns = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
           "minimum": torch.minimum, "maximum": torch.maximum}
    for op, f in fns.items():
        for r in range(reps):
            sa, sb = bcast_pair()
            if op in ("minimum", "maximum") and r % 2 == 0:
                a, b = randint_f(*sa, lo=-1, hi=1), randint_f(*sb, lo=-1, hi=1)  # ties
            else:
                a, b = randn(*sa), randn(*sb)
            if op == "div":
                b = np.where(np.abs(b) < 0.3, 0.5, b).astype(np.float32)
            mask = None
            if len(sa) >= 2 and R.random() < 0.3:
                a, mask = T(a), "2" + "1"
            case(op, [], [a, b], lambda t, f=f: f(t[0], t[1]), mask=mask)
        # incompatible shapes
        case(op, [], [randn(2, 3), randn(4, 3)], lambda t, f=f: f(t[0], t[1]))

def gen_scalar(reps):
    for r in range(reps):
        s = float(np.float32(R.standard_normal() * 2))
        x = randn(*rshape())
        case("add_scalar", [s], [x], lambda t, s=s: t[0] + s)
        case("mul_scalar", [s], [x], lambda t, s=s: t[0] * s)
        case("rsub_scalar", [s], [x], lambda t, s=s: s - t[0])
    case("neg", [], [randn(3, 4)], lambda t: -t[0])

def gen_unary(reps):
    for r in range(reps):
        p = choice([2.0, 3.0, 0.5, -1.0, 0.0, 1.5, -2.5, 1.0, 4.0])
        shape = rshape()
        if p in (2.0, 3.0, 0.0, 4.0, 1.0):
            x = with_kinks(randn(*shape), [0.0])
        elif p == -1.0:
            x = randn(*shape); x = np.where(np.abs(x) < 0.2, 0.7, x).astype(np.float32)
        else:
            x = (np.abs(randn(*shape)) + 0.1).astype(np.float32)
        case("pow", [p], [x], lambda t, p=p: torch.pow(t[0], p))
        x = randn(*rshape(), scale=3)
        case("exp", [], [x], lambda t: torch.exp(t[0]))
        x = (np.abs(randn(*rshape())) * 3 + 1e-3).astype(np.float32)
        case("log", [], [x], lambda t: torch.log(t[0]))
        x = (np.abs(randn(*rshape())) * 3 + 1e-2).astype(np.float32)
        case("sqrt", [], [x], lambda t: torch.sqrt(t[0]))
        x = with_kinks(randn(*rshape()), [0.0, -0.0])
        case("abs", [], [x], lambda t: torch.abs(t[0]))
        lo, hi = sorted([float(np.float32(v)) for v in R.standard_normal(2)])
        kind = r % 4
        if kind == 1: lo = -math.inf
        if kind == 2: hi = math.inf
        if kind == 3: lo, hi = hi, lo  # lo > hi: all hi
        x = with_kinks(randn(*rshape()), [v for v in (lo, hi) if math.isfinite(v)])
        case("clamp", [lo, hi], [x], lambda t, lo=lo, hi=hi: torch.clamp(t[0], min=None if lo == -math.inf else lo, max=None if hi == math.inf else hi))
    case("log", [], [np.array([0.0, -1.0, 2.0], np.float32)], lambda t: torch.log(t[0]), note="log(0), log(-1)")
    case("sqrt", [], [np.array([0.0, 4.0], np.float32)], lambda t: torch.sqrt(t[0]), note="sqrt(0) grad inf")

def pick_axes(nd):
    k = ri(0, nd)
    axes = sorted(R.choice(nd, size=k, replace=False).tolist()) if k else []
    axes = [a - nd if R.random() < 0.3 else a for a in axes]
    return axes

def gen_reduce(reps):
    for op in ("sum", "mean", "max", "var"):
        for r in range(reps):
            shape = rshape(1, 4)
            nd = len(shape)
            x = randint_f(*shape, lo=-2, hi=2) if (op == "max" and r % 2 == 0) else randn(*shape)
            axes = pick_axes(nd)
            keep = ri(0, 1)
            corr = ri(0, 1)
            dims = axes if axes else list(range(nd))
            if op == "sum": f = lambda t, d=dims, k=keep: torch.sum(t[0], dim=d, keepdim=bool(k))
            elif op == "mean": f = lambda t, d=dims, k=keep: torch.mean(t[0], dim=d, keepdim=bool(k))
            elif op == "max": f = lambda t, d=dims, k=keep: torch.amax(t[0], dim=d, keepdim=bool(k))
            else: f = lambda t, d=dims, k=keep, c=corr: torch.var(t[0], dim=d, unbiased=bool(c), keepdim=bool(k))
            case(op, [len(axes), keep, corr] + axes, [x], f, note="axes=%s keep=%d corr=%d shape=%s" % (axes, keep, corr, shape))
        # duplicate axis: torch rejects
        case(op, [2, 0, 1, 0, 0], [randn(3, 4)], lambda t: torch.sum(t[0], dim=[0, 0]), note="dup axis")
        case(op, [1, 0, 1, 2], [randn(3, 4)], lambda t: torch.sum(t[0], dim=[2]), note="axis out of range")
    # var with N - correction == 0
    case("var", [1, 0, 1, 1], [randn(3, 1)], lambda t: torch.var(t[0], dim=[1], unbiased=True), note="N=1 unbiased")
    for r in range(reps):
        shape = rshape(1, 4)
        x = randint_f(*shape, lo=-1, hi=1)
        ax = ri(-len(shape), len(shape) - 1)
        keep = ri(0, 1)
        case("argmax", [ax, keep], [x], lambda t, a=ax, k=keep: torch.argmax(t[0], dim=a, keepdim=bool(k)), note="ties")
    x = randn(2, 3)
    case("sum_all", [], [x], lambda t: t[0].sum())
    case("mean_all", [], [x], lambda t: t[0].mean())

def gen_softmax(reps):
    for op, f in (("softmax", F.softmax), ("log_softmax", F.log_softmax)):
        for r in range(reps):
            shape = rshape(1, 4, 6)
            ax = ri(-len(shape), len(shape) - 1)
            x = randn(*shape, scale=choice([1.0, 10.0, 100.0]))
            case(op, [ax], [x], lambda t, a=ax, f=f: f(t[0], dim=a))

def gen_matmul(reps):
    for r in range(reps):
        m, k, n = ri(1, 7), ri(1, 9), ri(1, 7)
        kind = r % 5
        if kind == 0:  # 1-D operands
            sa = (k,) if R.random() < 0.5 else (m, k)
            sb = (k,) if len(sa) == 2 or R.random() < 0.5 else (k, n)
            if R.random() < 0.5: sb = (ri(1, 3), k, n)
        else:
            batch = rshape(0, 3, 3)
            ba = tuple(1 if R.random() < 0.3 else d for d in batch[ri(0, len(batch)):])
            bb = tuple(1 if R.random() < 0.3 else d for d in batch[ri(0, len(batch)):])
            sa, sb = ba + (m, k), bb + (k, n)
        a, b = randn(*sa), randn(*sb)
        ma = mb = "1"
        if len(sa) >= 2 and R.random() < 0.5: a, ma = T(a), "2"
        if len(sb) >= 2 and R.random() < 0.5: b, mb = T(b), "2"
        case("matmul", [], [a, b], lambda t: torch.matmul(t[0], t[1]), mask=ma + mb, tol="loose", note="a%s b%s" % (sa, sb))
        # matmul_t: flags handled inside dl
        ta, tb = ri(0, 1), ri(0, 1)
        batch = rshape(0, 2, 3)
        sa, sb = batch + ((k, m) if ta else (m, k)), batch[ri(0, len(batch)):] + ((n, k) if tb else (k, n))
        a, b = randn(*sa), randn(*sb)
        case("matmul_t", [ta, tb], [a, b],
             lambda t, ta=ta, tb=tb: torch.matmul(t[0].transpose(-1, -2) if ta else t[0], t[1].transpose(-1, -2) if tb else t[1]),
             tol="loose")
    case("matmul", [], [randn(3, 4), randn(5, 2)], lambda t: torch.matmul(t[0], t[1]), note="k mismatch")
    case("matmul", [], [randn(2, 3, 4), randn(3, 4, 2)], lambda t: torch.matmul(t[0], t[1]), note="batch mismatch")
    for r in range(reps):
        lead = rshape(0, 3, 4)
        fi, fo = ri(1, 8), ri(1, 8)
        hasb, wt = ri(0, 1), ri(0, 1)
        x = randn(*(lead + (fi,)))
        w = randn(fo, fi) if wt else randn(fi, fo)
        ins = [x, w] + ([randn(fo)] if hasb else [])
        case("linear", [hasb, wt], ins,
             lambda t, wt=wt, hasb=hasb: torch.matmul(t[0], t[1].t() if wt else t[1]) + (t[2] if hasb else 0), tol="loose")
    case("linear", [1, 0], [randn(2, 3), randn(4, 5), randn(5)], lambda t: t[0] @ t[1] + t[2], note="in mismatch")
    case("linear", [1, 0], [randn(2, 3), randn(3, 5), randn(4)], lambda t: (t[0] @ t[1]) + t[2].reshape(1, 4, 1)[0, :, 0].expand(5), note="bias mismatch")

def gen_act(reps):
    acts = {
        "relu": (lambda t: F.relu(t[0]), []),
        "leaky_relu": (None, None),
        "elu": (None, None),
        "gelu": (lambda t: F.gelu(t[0]), []),
        "gelu_tanh": (lambda t: F.gelu(t[0], approximate="tanh"), []),
        "sigmoid": (lambda t: torch.sigmoid(t[0]), []),
        "tanh": (lambda t: torch.tanh(t[0]), []),
        "softplus": (lambda t: F.softplus(t[0]), []),
    }
    for op, (f, args) in acts.items():
        for r in range(reps):
            shape = rshape(1, 3, 6)
            x = randn(*shape, scale=choice([1.0, 3.0, 10.0]))
            x = with_kinks(x, [0.0, 20.0, -20.0, 20.5, 19.5, 50.0, -50.0, 100.0, -100.0, 88.0, -88.0, 1e-4, -1e-4])
            mask = None
            if len(shape) >= 2 and R.random() < 0.3: x, mask = T(x), "2"
            if op == "leaky_relu":
                s = choice([0.01, 0.2, -0.5, 1.5])
                case(op, [s], [x], lambda t, s=s: F.leaky_relu(t[0], s), mask=mask)
            elif op == "elu":
                a = choice([1.0, 0.5, 2.0])
                case(op, [a], [x], lambda t, a=a: F.elu(t[0], a), mask=mask)
            else:
                case(op, [], [x], f, mask=mask)

def gen_losses(reps):
    for r in range(reps):
        n, c = ri(1, 6), ri(1, 6)
        spatial = () if r % 2 == 0 else rshape(1, 2, 3)
        x = randn(*((n, c) + spatial), scale=choice([1.0, 5.0, 50.0]))
        lab = R.integers(0, c, size=(n,) + spatial).astype(np.int32)
        if r % 3 == 1:
            lab = np.where(R.random(lab.shape) < 0.3, -100, lab).astype(np.int32)
        case("cross_entropy", [], [x, lab], lambda t: F.cross_entropy(t[0], t[1]), note="labels=%s" % lab.tolist())
    case("cross_entropy", [], [randn(3, 4), np.full((3,), -100, np.int32)], lambda t: F.cross_entropy(t[0], t[1]), note="all ignored")
    case("cross_entropy", [], [randn(3, 4), np.array([0, 4, 1], np.int32)], lambda t: F.cross_entropy(t[0], t[1]), note="label out of range")
    case("cross_entropy", [], [randn(3, 4), np.array([0, -1, 1], np.int32)], lambda t: F.cross_entropy(t[0], t[1]), note="label -1")
    case("cross_entropy", [], [randn(3, 4), np.array([0, 1], np.int32)], lambda t: F.cross_entropy(t[0], t[1]), note="N mismatch")
    for r in range(reps):
        shape = rshape(1, 3)
        x = with_kinks(randn(*shape, scale=choice([1.0, 10.0, 100.0])), [0.0, 50.0, -50.0])
        y = R.random(shape).astype(np.float32)
        if r % 2: y = np.round(y).astype(np.float32)
        case("bce_with_logits", [], [x, y], lambda t: F.binary_cross_entropy_with_logits(t[0], t[1]))
        a, b = randn(*shape), randn(*shape)
        b = np.where(R.random(shape) < 0.2, a, b).astype(np.float32)  # ties for l1 kink
        case("mse", [], [a, b], lambda t: F.mse_loss(t[0], t[1]))
        case("l1", [], [a, b], lambda t: F.l1_loss(t[0], t[1]))
        d = choice([1.0, 0.5, 2.0])
        b2 = np.where(R.random(shape) < 0.2, a + d, b).astype(np.float32)  # |diff| == delta
        case("huber", [d], [a, b2], lambda t, d=d: F.huber_loss(t[0], t[1], delta=d))
    case("mse", [], [randn(3, 4), randn(3, 5)], lambda t: F.mse_loss(t[0], t[1]), note="shape mismatch")
    case("bce_with_logits", [], [randn(3, 4), randn(4, 3)], lambda t: F.binary_cross_entropy_with_logits(t[0], t[1]), note="shape mismatch")

def gen_conv(reps):
    for r in range(reps):
        n, cin, cout = ri(1, 3), ri(1, 4), ri(1, 4)
        kh, kw = ri(1, 4), ri(1, 4)
        sh, sw = ri(1, 3), ri(1, 3)
        ph, pw = ri(0, 2), ri(0, 2)
        dh, dw = ri(1, 2), ri(1, 2)
        h, w = ri(3, 9), ri(3, 9)
        hasb = ri(0, 1)
        x, wt = randn(n, cin, h, w), randn(cout, cin, kh, kw)
        ins = [x, wt] + ([randn(cout)] if hasb else [])
        case("conv2d", [hasb, sh, sw, ph, pw, dh, dw, 0, 0], ins,
             lambda t, hasb=hasb, s=(sh, sw), p=(ph, pw), d=(dh, dw): F.conv2d(t[0], t[1], t[2] if hasb else None, stride=s, padding=p, dilation=d),
             tol="loose", note="x%s w%s s%s p%s d%s" % (x.shape, wt.shape, (sh, sw), (ph, pw), (dh, dw)))
        # transpose
        oph, opw = ri(0, max(sh, dh) - 1), ri(0, max(sw, dw) - 1)
        if r % 5 == 4: oph = max(sh, dh)  # invalid
        h, w = ri(1, 6), ri(1, 6)
        x, wt = randn(n, cin, h, w), randn(cin, cout, kh, kw)
        ins = [x, wt] + ([randn(cout)] if hasb else [])
        case("conv_transpose2d", [hasb, sh, sw, ph, pw, dh, dw, oph, opw], ins,
             lambda t, hasb=hasb, s=(sh, sw), p=(ph, pw), d=(dh, dw), op_=(oph, opw): F.conv_transpose2d(t[0], t[1], t[2] if hasb else None, stride=s, padding=p, output_padding=op_, dilation=d),
             tol="loose", note="x%s w%s s%s p%s d%s op%s" % (x.shape, wt.shape, (sh, sw), (ph, pw), (dh, dw), (oph, opw)))
    case("conv2d", [0, 1, 1, 0, 0, 1, 1, 0, 0], [randn(1, 3, 5, 5), randn(2, 4, 3, 3)], lambda t: F.conv2d(t[0], t[1]), note="cin mismatch")
    case("conv2d", [0, 1, 1, 0, 0, 1, 1, 0, 0], [randn(1, 3, 2, 2), randn(2, 3, 3, 3)], lambda t: F.conv2d(t[0], t[1]), note="kernel > input")
    case("conv2d", [1, 1, 1, 0, 0, 1, 1, 0, 0], [randn(1, 3, 5, 5), randn(2, 3, 3, 3), randn(3)], lambda t: F.conv2d(t[0], t[1], t[2]), note="bias mismatch")

def gen_pool(reps):
    for r in range(reps):
        n, c = ri(1, 2), ri(1, 3)
        kh, kw = ri(1, 4), ri(1, 4)
        sh, sw = (0, 0) if r % 4 == 0 else (ri(1, 3), ri(1, 3))
        ph, pw = ri(0, kh // 2), ri(0, kw // 2)
        dh, dw = (1, 1) if r % 2 else (ri(1, 2), ri(1, 2))
        h, w = ri(4, 10), ri(4, 10)
        x = randint_f(n, c, h, w, lo=-2, hi=2) if r % 2 == 0 else randn(n, c, h, w)
        st = None if sh == 0 else (sh, sw)
        case("max_pool2d", [kh, kw, sh, sw, ph, pw, dh, dw], [x],
             lambda t, k=(kh, kw), st=st, p=(ph, pw), d=(dh, dw): F.max_pool2d(t[0], k, stride=st, padding=p, dilation=d),
             note="x%s k%s s%s p%s d%s" % (x.shape, (kh, kw), st, (ph, pw), (dh, dw)))
        x = randn(n, c, h, w)
        case("avg_pool2d", [kh, kw, sh, sw, ph, pw, 0, 0], [x],
             lambda t, k=(kh, kw), st=st, p=(ph, pw): F.avg_pool2d(t[0], k, stride=st, padding=p),
             note="x%s k%s s%s p%s" % (x.shape, (kh, kw), st, (ph, pw)))
    case("max_pool2d", [2, 2, 0, 0, 2, 2, 1, 1], [randn(1, 1, 6, 6)], lambda t: F.max_pool2d(t[0], 2, padding=2), note="pad > k/2")
    case("avg_pool2d", [2, 2, 0, 0, 2, 2, 0, 0], [randn(1, 1, 6, 6)], lambda t: F.avg_pool2d(t[0], 2, padding=2), note="pad > k/2")
    case("max_pool2d", [5, 5, 0, 0, 0, 0, 1, 1], [randn(1, 1, 3, 3)], lambda t: F.max_pool2d(t[0], 5), note="kernel > input")
    for r in range(max(3, reps // 3)):
        x = randn(ri(1, 2), ri(1, 3), ri(1, 5), ri(1, 5))
        case("global_avg_pool2d", [], [x], lambda t: t[0].mean(dim=(2, 3)))
        s1, s2 = ri(1, 3), ri(1, 3)
        case("upsample_nearest2d", [s1, s2], [x], lambda t, s=(s1, s2): F.interpolate(t[0], scale_factor=s, mode="nearest"))
    for r in range(reps):
        shape = (ri(1, 2), ri(1, 3), ri(2, 6), ri(2, 6)) if r % 3 else (ri(1, 3), ri(2, 6), ri(2, 6))
        mode = r % 2
        H, W = shape[-2], shape[-1]
        if mode:
            l, rr, t_, b = ri(0, W - 1), ri(0, W - 1), ri(0, H - 1), ri(0, H - 1)
        else:
            l, rr, t_, b = ri(0, 3), ri(0, 3), ri(0, 3), ri(0, 3)
        x = randn(*shape)
        case("pad2d", [l, rr, t_, b, mode], [x],
             lambda t, p=(l, rr, t_, b), m=mode: F.pad(t[0], p, mode="reflect" if m else "constant"),
             note="x%s pad(l,r,t,b)=%s mode=%s" % (shape, (l, rr, t_, b), "reflect" if mode else "zero"))
    case("pad2d", [3, 0, 0, 0, 1], [randn(1, 1, 3, 3)], lambda t: F.pad(t[0], (3, 0, 0, 0), mode="reflect"), note="reflect pad == size")
    x = randn(2, 5)
    case("pad2d", [1, 2, 1, 0, 0], [x], lambda t: F.pad(t[0], (1, 2, 1, 0)), note="2-D zero pad")

def gen_norm(reps):
    for r in range(reps):
        n, c = ri(1, 4), ri(1, 4)
        sp = choice([(), (ri(1, 4),), (ri(1, 4), ri(1, 4))])
        training = r % 3 != 0
        if training and n * int(np.prod(sp)) == 1: n = 2
        x = randn(*((n, c) + sp), scale=2.0) + np.float32(1.0)
        g, b = randn(c), randn(c)
        rm, rv = randn(c), (np.abs(randn(c)) + 0.5).astype(np.float32)
        hasg, hasb = ri(0, 1), ri(0, 1)
        hasrun = 1 if not training else ri(0, 1)
        mom, eps = choice([0.1, 0.3]), choice([1e-5, 1e-3])
        mask = "1" + ("1" if hasg else "0") + ("1" if hasb else "0") + "00"
        def f(t, tr=training, hg=hasg, hb=hasb, hr=hasrun, mom=mom, eps=eps):
            rm_, rv_ = t[3].detach().clone(), t[4].detach().clone()
            y = F.batch_norm(t[0], rm_ if hr else None, rv_ if hr else None, t[1] if hg else None, t[2] if hb else None,
                             training=tr, momentum=mom, eps=eps)
            return (y, {"rm": rm_, "rv": rv_})
        case("batch_norm", [int(training), mom, eps, hasg, hasb, hasrun], [x, g, b, rm, rv], f, mask=mask, tol="loose",
             note="x%s train=%d g=%d b=%d run=%d mom=%g eps=%g" % (x.shape, training, hasg, hasb, hasrun, mom, eps))
    case("batch_norm", [1, 0.1, 1e-5, 1, 1, 1], [randn(1, 3), randn(3), randn(3), randn(3), np.ones(3, np.float32)],
         lambda t: F.batch_norm(t[0], t[3].clone(), t[4].clone(), t[1], t[2], training=True), mask="11100", note="1 value per channel")
    for r in range(reps):
        shape = rshape(1, 4, 5)
        nnd = ri(1, len(shape))
        ns = shape[len(shape) - nnd:]
        if int(np.prod(ns)) == 1 and r % 2: shape = shape[:-1] + (3,); ns = ns[:-1] + (3,)
        hasg, hasb = ri(0, 1), ri(0, 1)
        eps = choice([1e-5, 1e-3])
        x = randn(*shape, scale=3.0)
        case("layer_norm", [nnd, eps, hasg, hasb], [x, randn(*ns), randn(*ns)],
             lambda t, ns=ns, hg=hasg, hb=hasb, eps=eps: F.layer_norm(t[0], ns, t[1] if hg else None, t[2] if hb else None, eps),
             mask="1" + str(hasg) + str(hasb), tol="loose", note="x%s nnd=%d g=%d b=%d" % (shape, nnd, hasg, hasb))
    case("layer_norm", [1, 1e-5, 1, 0], [randn(2, 3), randn(4), randn(4)], lambda t: F.layer_norm(t[0], (3,), t[1]), mask="110", note="gamma mismatch")
    for r in range(reps):
        n, c = ri(1, 3), ri(1, 4)
        sp = choice([(ri(2, 5),), (ri(1, 4), ri(2, 4))])
        hasg, hasb = ri(0, 1), ri(0, 1)
        eps = choice([1e-5, 1e-3])
        x = randn(*((n, c) + sp), scale=2.0)
        case("instance_norm", [eps, hasg, hasb], [x, randn(c), randn(c)],
             lambda t, hg=hasg, hb=hasb, eps=eps: F.instance_norm(t[0], weight=t[1] if hg else None, bias=t[2] if hb else None, eps=eps),
             mask="1" + str(hasg) + str(hasb), tol="loose", note="x%s g=%d b=%d" % (x.shape, hasg, hasb))
    case("instance_norm", [1e-5, 0, 0], [randn(2, 3, 1, 1), randn(3), randn(3)], lambda t: F.instance_norm(t[0]), mask="100", note="1 spatial element")

def gen_nan(reps):
    nan = float("nan")
    a = np.array([[1.0, nan, 2.0], [nan, -1.0, 0.0]], np.float32)
    b = np.array([[nan, 0.5, 2.0], [1.0, nan, 0.0]], np.float32)
    for op, f in (("minimum", torch.minimum), ("maximum", torch.maximum)):
        case(op, [], [a, b], lambda t, f=f: f(t[0], t[1]), note="NaN")
    case("max", [1, 0, 0, 1], [a], lambda t: torch.amax(t[0], dim=[1]), note="NaN")
    case("max", [0, 0, 0], [a], lambda t: torch.amax(t[0], dim=[0, 1]), note="NaN all")
    case("argmax", [1, 0], [a], lambda t: torch.argmax(t[0], dim=1), note="NaN")
    x = np.array([[[[1.0, nan, 3.0, 0.0], [2.0, 2.0, -1.0, 5.0]]]], np.float32)
    case("max_pool2d", [2, 2, 0, 0, 0, 0, 1, 1], [x], lambda t: F.max_pool2d(t[0], 2), note="NaN")
    case("relu", [], [np.array([nan, -1.0, 1.0], np.float32)], lambda t: F.relu(t[0]), note="NaN")
    case("clamp", [-1.0, 1.0], [np.array([nan, -2.0, 2.0], np.float32)], lambda t: torch.clamp(t[0], -1.0, 1.0), note="NaN")
    case("softmax", [0], [np.array([-math.inf, 0.0, 1.0], np.float32)], lambda t: F.softmax(t[0], 0), note="-inf logit")
    case("log_softmax", [0], [np.array([-math.inf, 0.0, 1.0], np.float32)], lambda t: F.log_softmax(t[0], 0), note="-inf logit")
    case("sigmoid", [], [np.array([-200.0, 200.0, -89.0, 89.0], np.float32)], lambda t: torch.sigmoid(t[0]), note="huge")
    case("tanh", [], [np.array([-200.0, 200.0, -9.0, 9.0], np.float32)], lambda t: torch.tanh(t[0]), note="huge")
    case("log_softmax", [1], [np.array([[1e30, 0.0, -1e30]], np.float32)], lambda t: F.log_softmax(t[0], 1), note="huge")
    case("cross_entropy", [], [np.array([[1e4, 0.0, -1e4]], np.float32), np.array([2], np.int32)], lambda t: F.cross_entropy(t[0], t[1]), note="huge")
    case("bce_with_logits", [], [np.array([1e4, -1e4, 0.0], np.float32), np.array([0.0, 1.0, 0.5], np.float32)], lambda t: F.binary_cross_entropy_with_logits(t[0], t[1]), note="huge")
    case("var", [1, 0, 1, 0], [np.full((4, 2), 1e4, np.float32) + randn(4, 2) * 1e-2], lambda t: torch.var(t[0], dim=[0]), tol="cond", note="large mean (ill-conditioned: tolerance 10%)")
    case("layer_norm", [1, 1e-5, 0, 0], [np.full((2, 8), 1e3, np.float32) + randn(2, 8), randn(8), randn(8)], lambda t: F.layer_norm(t[0], (8,)), mask="100", tol="cond", note="large mean (ill-conditioned: tolerance 10%)")

def gen_index(reps):
    for r in range(reps):
        V_, D = ri(1, 6), ri(1, 5)
        ishape = rshape(1, 3, 4)
        idx = R.integers(0, V_, size=ishape).astype(np.int32)
        case("embedding", [], [randn(V_, D), idx], lambda t: F.embedding(t[1], t[0]))
        shape = rshape(1, 4)
        ax = ri(-len(shape), len(shape) - 1)
        ishape = tuple(ri(1, s) if i != (ax % len(shape)) else ri(1, 5) for i, s in enumerate(shape))
        idx = R.integers(0, shape[ax], size=ishape).astype(np.int32)
        case("gather", [ax], [randn(*shape), idx], lambda t, a=ax: torch.gather(t[0], a, t[1]), note="x%s axis=%d idx%s" % (shape, ax, ishape))
        idx1 = R.integers(0, shape[ax], size=(ri(1, 6),)).astype(np.int32)
        case("index_select", [ax], [randn(*shape), idx1], lambda t, a=ax: torch.index_select(t[0], a, t[1]), note="x%s axis=%d idx=%s" % (shape, ax, idx1.tolist()))
        k = ri(1, 4)
        ax = ri(-len(shape), len(shape) - 1)
        xs = []
        for i in range(k):
            s = list(shape); s[ax] = ri(1, 3); xs.append(randn(*s))
        case("concat", [ax], xs, lambda t, a=ax: torch.cat(t, dim=a))
        lab = R.integers(0, 5, size=rshape(1, 3, 4)).astype(np.int32)
        nc = choice([-1, 5, 7])
        case("one_hot", [nc], [lab], lambda t, nc=nc: F.one_hot(t[0], nc).float())
        x = randn(ri(1, 3), ri(1, 4), ri(1, 4), ri(1, 4))
        case("gram", [], [x], lambda t: (lambda Fm: Fm @ Fm.transpose(1, 2) / Fm.shape[2])(t[0].reshape(t[0].shape[0], t[0].shape[1], -1)), tol="loose")
    case("embedding", [], [randn(4, 3), np.array([0, 4], np.int32)], lambda t: F.embedding(t[1], t[0]), note="index out of range")
    case("gather", [1], [randn(3, 4), np.array([[0, 4]], np.int32)], lambda t: torch.gather(t[0], 1, t[1]), note="index out of range")
    case("gather", [1], [randn(3, 4), np.zeros((4, 1), np.int32)], lambda t: torch.gather(t[0], 1, t[1]), note="idx dim0 > x dim0")
    case("index_select", [0], [randn(3, 4), np.array([3], np.int32)], lambda t: torch.index_select(t[0], 0, t[1]), note="index out of range")
    case("concat", [0], [randn(2, 3), randn(2, 4)], lambda t: torch.cat(t, 0), note="shape mismatch")
    case("one_hot", [3], [np.array([0, 3], np.int32)], lambda t: F.one_hot(t[0], 3).float(), note="label >= classes")
    case("one_hot", [3], [np.array([0, -1], np.int32)], lambda t: F.one_hot(t[0], 3).float(), note="negative label")
    for r in range(reps // 2):
        sa, _ = bcast_pair()
        tgt = tuple(d if d != 1 else ri(1, 3) for d in sa)
        tgt = rshape(0, 2, 3) + tgt
        x = randn(*sa)
        case("broadcast_to", [len(tgt)] + list(tgt), [x], lambda t, s=tgt: t[0].expand(*s) * 1.0)

# ---------------------------------------------------------------- compare
def tol_for(c):
    if c["tol"] == "cond":
        return (1e-1, 1e-4)
    return (1e-3, 1e-4) if c["tol"] == "loose" else (1e-4, 1e-5)

def cmp(ref, got, rtol, atol):
    """returns None if fine, else (flat index, torch value, dl value)."""
    if ref.shape != got.shape:
        return ("shape", ref.shape, got.shape)
    r, g = ref.astype(np.float64).reshape(-1), got.astype(np.float64).reshape(-1)
    if r.size == 0:
        return None
    scale = np.max(np.abs(r[np.isfinite(r)])) if np.isfinite(r).any() else 0.0
    lim = atol + rtol * np.abs(r) + (atol * scale if rtol > 1e-4 else 0.0)
    bothnan = np.isnan(r) & np.isnan(g)
    sameinf = np.isinf(r) & (r == g)
    bad = ~(bothnan | sameinf | (np.abs(r - g) <= lim))
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return (i, float(r[i]), float(g[i]), int(bad.sum()), r.size)

def main():
    global R
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=12, help="random cases per op (per kind)")
    ap.add_argument("--show", type=int, default=4, help="mismatching cases shown per op")
    ap.add_argument("--no-build", action="store_true", help="use build/torch_parity as it is")
    ap.add_argument("--only", default="", help="comma-separated ops")
    args = ap.parse_args()
    R = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    for g in (gen_binary, gen_scalar, gen_unary, gen_reduce, gen_softmax, gen_matmul, gen_act, gen_losses,
              gen_conv, gen_pool, gen_norm, gen_index, gen_nan):
        g(args.reps)
    cases = [c for c in CASES if not args.only or c["op"] in args.only.split(",")]
    os.makedirs(WORK, exist_ok=True)
    tensors, meta = [], {}
    for c in cases:
        key = "c%05d" % c["id"]
        meta[key] = "%s;%s;%s" % (c["op"], c["mask"], " ".join(fmt(a) for a in c["args"]))
        for i, a in enumerate(c["inputs"]):
            tensors.append(("%s.i%d" % (key, i), a))
        if c.get("gout") is not None:
            tensors.append((key + ".gout", c["gout"]))
    cpath, rpath = os.path.join(WORK, "cases.safetensors"), os.path.join(WORK, "results.safetensors")
    st_write(cpath, tensors, meta)
    exe = os.path.join(ROOT, "build", "torch_parity")
    if not args.no_build:
        subprocess.check_call(["cc", "-O2", "-I.", "tools/torch_parity.c", "-o", exe, "-lm", "-lpthread"], cwd=ROOT)
    p = subprocess.run([exe, cpath, rpath], cwd=ROOT)
    if p.returncode != 0:
        print("driver failed with code %d; bisecting for the crashing case..." % p.returncode)
        for c in cases:
            q = subprocess.run([exe, cpath, rpath + ".one", str(c["id"])], cwd=ROOT, capture_output=True)
            if q.returncode != 0:
                print("  case %d %s %s args=%s: rc=%d %s" % (c["id"], c["op"], c["note"], c["args"], q.returncode, q.stderr.decode()[:300]))
        return 1
    res, rmeta = st_read(rpath)
    summary, fails = {}, {}
    nchecked, nerr = [0], 0
    for c in cases:
        key = "c%05d" % c["id"]
        st = rmeta.get(key, "missing")
        s = summary.setdefault(c["op"], [0, 0])
        s[1] += 1
        problems = []
        if c["err"] is not None:
            nerr += 1
            if not st.startswith("null:"):
                problems.append("torch rejects (%s) but dl returned a tensor" % c["err"])
        elif st.startswith("null:") or st.startswith("bwfail:"):
            problems.append("dl failed: %s" % st)
        else:
            rtol, atol = tol_for(c)
            for name, ref in c["res"].items():
                got = res.get("%s.%s" % (key, name))
                if got is None:
                    problems.append("%s: missing from dl" % name)
                    continue
                if rmeta.get("%s.%s" % (key, name)) == "nograd" and np.any(ref != 0):
                    problems.append("%s: dl allocated no gradient (torch's is nonzero)" % name)
                    continue
                d = cmp(ref, got, rtol, atol)
                nchecked[0] += 1
                r64 = c["ref64"].get(name)
                if d is None or (d[0] != "shape" and r64 is not None and cmp(r64, got, rtol, atol) is None):
                    continue  # agrees with torch in float32, or with torch's float64 value
                if d[0] == "shape":
                    problems.append("%s: shape torch %s dl %s" % (name, d[1], d[2]))
                    continue
                i, tv, gv, nbad, n = d
                r64 = c["ref64"].get(name)
                v64 = float(r64.reshape(-1)[i]) if r64 is not None else float("nan")
                idx = np.unravel_index(i, ref.shape) if ref.ndim else ()
                problems.append("%s[%s]: torch %.7g dl %.7g (torch f64 %.7g); %d/%d elements off" % (
                    name, ",".join(map(str, idx)), tv, gv, v64, nbad, n))
        if problems:
            fails.setdefault(c["op"], []).append((c, problems))
        else:
            s[0] += 1
    total_pass = sum(v[0] for v in summary.values())
    total = sum(v[1] for v in summary.values())
    print("%-20s %s" % ("op", "pass/total"))
    for op, (ok, n) in summary.items():
        print("%-20s %d/%d%s" % (op, ok, n, "" if ok == n else "   <-- %d FAIL" % (n - ok)))
    print("TOTAL %d/%d cases (%d tensors compared; %d error cases where torch raises and dl must return NULL)" % (total_pass, total, nchecked[0], nerr))
    for op, lst in fails.items():
        print("\n== %s: %d mismatching case(s)" % (op, len(lst)))
        for c, probs in lst[:args.show]:
            shapes = [tuple(a.shape) for a in c["inputs"]]
            print("  case %d args=%s mask=%s inputs=%s %s" % (c["id"], c["args"], c["mask"], shapes, c["note"]))
            for pr in probs:
                print("     " + pr)
            if sum(a.size for a in c["inputs"]) <= 12:
                print("     inputs: %s" % [a.tolist() for a in c["inputs"]])
    return 0 if total_pass == total else 1

if __name__ == "__main__":
    sys.exit(main())
