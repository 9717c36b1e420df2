#!/usr/bin/env python3
"""Makes the safetensors fixtures of tests/test_safetensors.c with the reference implementation
(pip install safetensors numpy), and checks that the file dl writes loads in Python.

    python3 tools/make_fixtures.py            # writes tests/data/*.safetensors, verifies from_dl
    ./build/test_safetensors --write-fixture tests/data/from_dl.safetensors   # dl's own file

The expected values are pasted as constants in tests/test_safetensors.c (CI has no Python);
keep both sides in sync when changing anything here. mixed.safetensors differs from run to run in
the order of its metadata keys (Python's writer uses a randomly seeded hash map); that is fine.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import safetensors
from safetensors import TensorSpec, safe_open, serialize
from safetensors.numpy import load, save

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data")

# Metadata exercising the JSON escapes the writer emits (\" \\ \n \t \u0001) and non-ASCII text.
META = {
    "format": "np",
    "unicode": "h\u00e9llo w\u00f6rld \u2713 \U0001F389",
    "escapes": 'quote" backslash\\ newline\n tab\t ctrl\x01 slash/',
}


def bf16_bits(values):
    """float32 -> bfloat16 bits, round to nearest even (what torch.bfloat16 does)."""
    u = np.array(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def mixed():
    """Every dtype dl reads, a 0-d and two zero-size tensors, metadata: Python's own writer."""
    arrays = {
        "f32": np.array([[1.5, -2.25, 3e-8], [1e30, -0.0, 7.0]], dtype=np.float32),
        "i32": np.array([-2147483648, -1, 0, 2147483647], dtype=np.int32),
        "u8": np.array([0, 128, 255], dtype=np.uint8),
        "bool": np.array([[True, False], [False, True]]),
        "f16": np.array([1.0, -2.5, 65504.0, 6e-8, 0.1, np.inf, -np.inf, np.nan], dtype=np.float16),
        "f64": np.array([1.0 / 3.0, 1e300, -2.5, 5e-324], dtype=np.float64),
        "i64": np.array([[-2147483648, 2147483647, 5]], dtype=np.int64),
        "scalar": np.array(3.25, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "empty_i64": np.zeros((2, 0), dtype=np.int64),
    }
    keep = [np.ascontiguousarray(a) for a in arrays.values()]
    specs = {k: TensorSpec(dtype=a.dtype.name, shape=a.shape, data_ptr=a.ctypes.data, data_len=a.nbytes)
             for k, a in zip(arrays, keep)}
    bf = bf16_bits([1.0, -3.140625, 1e38, 1e-39])
    keep.append(bf)
    specs["bf16"] = TensorSpec(dtype="bfloat16", shape=(2, 2), data_ptr=bf.ctypes.data, data_len=bf.nbytes)
    return bytes(serialize(specs, metadata=META))


def handmade():
    """A header no writer makes but the reference reader accepts: pretty-printed, keys in reverse
    offset order, metadata last, a 0-d tensor, an unknown field, non-ASCII names as \\u escapes (one a surrogate
    pair), a trailing tab/newline. Checked below by loading it with safetensors."""
    a = np.arange(6, dtype=np.float32).reshape(3, 2) - 2.5
    b = np.array([7, -8], dtype=np.int32)
    data = a.tobytes() + b.tobytes() + np.float32(-0.5).tobytes()
    header = {
        "s": {"dtype": "F32", "shape": [], "data_offsets": [32, 36]},
        "b\u00e4r \U0001F43B": {"shape": [2], "dtype": "I32", "data_offsets": [24, 32], "extra": {"x": [1, 2.5e3, None, True]}},
        "a": {"dtype": "F32", "shape": [3, 2], "data_offsets": [0, 24]},
        "__metadata__": {"k\u00e9y": "v\u00e2lue", "empty": ""},
    }
    text = json.dumps(header, indent=1, ensure_ascii=True).encode() + b"\t\n"
    return struct.pack("<Q", len(text)) + text + data


def i64_overflow():
    return save({"big": np.array([1, 2, 1 << 40], dtype=np.int64)})


def check_handmade(blob):
    with open(os.path.join(DATA, "handmade.safetensors"), "wb") as f:
        f.write(blob)
    with safe_open(os.path.join(DATA, "handmade.safetensors"), "np") as f:
        assert sorted(f.keys()) == ["a", "b\u00e4r \U0001F43B", "s"], f.keys()
        assert f.get_tensor("s").shape == () and f.get_tensor("s") == -0.5
        assert f.metadata() == {"k\u00e9y": "v\u00e2lue", "empty": ""}
        assert f.get_tensor("b\u00e4r \U0001F43B").tolist() == [7, -8]


# What tests/test_safetensors.c (make_from_dl) writes; keep in sync.
def expected_from_dl():
    base = np.arange(12, dtype=np.float32) * 0.5 - 2.0          # 4x3, saved transposed
    row = np.arange(10, dtype=np.float32) * 0.25                # saved as row[1::3]
    return {
        "weight": base.reshape(4, 3).T,
        "bias": np.array([0.5, -1.0, 2.0, 1e-7], dtype=np.float32),
        "ids": np.array([[-2147483648, -1, 0], [1, 7, 2147483647]], dtype=np.int32),
        "mask": np.array([0, 1, 2, 254, 255], dtype=np.uint8),
        "scalar": np.array(-4.75, dtype=np.float32),
        "empty": np.zeros((2, 0), dtype=np.float32),
        "sliced": row[1::3],
        "\u00fcn\u00ef/\u5b57": np.array([[1, 2]], dtype=np.int32),
    }, {
        "format": "dl",
        "note": 'tab\t quote" backslash\\ newline\n ctrl\x01 \u2713 \U0001F389',
        "arch": '{"layers": [1, 2]}',
    }


def check_from_dl():
    path = os.path.join(DATA, "from_dl.safetensors")
    if not os.path.exists(path):
        print("skip: %s is missing (run the C test with --write-fixture first)" % path)
        return
    blob = open(path, "rb").read()
    want, want_meta = expected_from_dl()
    got = load(blob)
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert meta == want_meta, meta
    assert sorted(got) == sorted(want), sorted(got)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, (k, got[k].dtype, got[k].shape)
        assert np.array_equal(got[k], v), (k, got[k], v)
    # Same layout as Python's writer: same header (as JSON; metadata order is a hash order in
    # Python) and the same data bytes.
    ref = save({k: np.ascontiguousarray(v) for k, v in want.items()}, metadata=want_meta)
    n, m = struct.unpack("<Q", blob[:8])[0], struct.unpack("<Q", ref[:8])[0]
    assert n == m, (n, m)
    ref_header = json.loads(ref[8:8 + m])
    assert ref_header["scalar"]["shape"] in ([], [1])
    ref_header["scalar"]["shape"] = []  # safetensors.numpy writes a 0-d array with shape [1]
    assert json.loads(blob[8:8 + n]) == ref_header
    assert blob[8 + n:] == ref[8 + m:]
    print("from_dl.safetensors: loads in Python %s with identical values, metadata and layout" % safetensors.__version__)


def from_py_same():
    """Python's bytes for dl's fixture tensors with one metadata entry: dl must write the same bytes.
    Without the 0-d scalar, which safetensors.numpy writes with shape [1] (dl writes [])."""
    want, want_meta = expected_from_dl()
    del want["scalar"]
    return save({k: np.ascontiguousarray(v) for k, v in want.items()}, metadata={"format": want_meta["format"]})


def main():
    os.makedirs(DATA, exist_ok=True)
    blob = mixed()
    with open(os.path.join(DATA, "mixed.safetensors"), "wb") as f:
        f.write(blob)
    with safe_open(os.path.join(DATA, "mixed.safetensors"), "np") as f:  # numpy cannot hold BF16
        assert f.get_tensor("i64").tolist() == [[-2147483648, 2147483647, 5]]
        assert f.metadata() == META
    with open(os.path.join(DATA, "i64_overflow.safetensors"), "wb") as f:
        f.write(i64_overflow())
    check_handmade(handmade())
    with open(os.path.join(DATA, "from_py_same.safetensors"), "wb") as f:
        f.write(from_py_same())
    # Values to paste into the C test (float32 after the conversions dl does).
    f16 = np.array([1.0, -2.5, 65504.0, 6e-8, 0.1], dtype=np.float16).astype(np.float32)
    print("f16 as f32:", [float.hex(float(x)) for x in f16])
    bf = (bf16_bits([1.0, -3.140625, 1e38, 1e-39]).astype(np.uint32) << 16).view(np.float32)
    print("bf16 as f32:", [float.hex(float(x)) for x in bf])
    print("f64 as f32:", [float.hex(float(x)) for x in np.array([1.0 / 3.0, 1e300, -2.5, 5e-324]).astype(np.float32)])
    check_from_dl()
    print("fixtures written to", os.path.normpath(DATA))
    return 0


if __name__ == "__main__":
    with np.errstate(over="ignore"):
        sys.exit(main())
