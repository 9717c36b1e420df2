"""Shared by the fixture scripts of tools/: writes a safetensors file by hand (the format is a
little-endian u64 header length, a JSON header, then the raw tensors), so only torch is needed."""
import json
import struct

import torch


def save_safetensors(path, tensors):
    """tensors: name -> torch tensor, written as F32 in sorted name order."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous()
        raw = struct.pack("<%df" % t.numel(), *t.flatten().tolist())
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
