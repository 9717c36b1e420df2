"""Shared by the scripts of tools/: writes a safetensors file by hand (the format is a
little-endian u64 header length, a JSON header, then the raw tensors), so that only torch (or
only numpy, for tools/vgg19_to_safetensors.py) is needed."""
import json
import struct


def _f32(t):
    """(shape, little-endian f32 bytes) of a torch tensor or anything numpy takes."""
    if hasattr(t, "detach"):   # torch
        import torch
        t = t.detach().to(torch.float32).contiguous()
        return list(t.shape), struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    import numpy as np
    a = np.ascontiguousarray(t, dtype="<f4")
    return list(a.shape), a.tobytes()


def save_safetensors(path, tensors, meta=None):
    """tensors: name -> tensor, written as F32 in sorted name order; meta: str -> str or None."""
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name in sorted(tensors):
        shape, raw = _f32(tensors[name])
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
