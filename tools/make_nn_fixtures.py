#!/usr/bin/env python3
"""Writes the small gzip fixtures of tests/test_nn_data.c (run from the repository root).

tests/data/nn_images.idx.gz  20 images of 8x8, pixel (i, h, w) = (i*37 + h*11 + w*w*5) % 256,
                             IDX u8 (magic 00 00 08 03), gzipped by Python's zlib (dynamic
                             Huffman blocks), with the FNAME header field set
tests/data/nn_labels.idx.gz  the 20 labels i % 7 (magic 00 00 08 01), gzipped the same way
The C test regenerates the same bytes and compares. mtime is fixed so the files are reproducible.
"""
import gzip, struct

def images():
    n, h, w = 20, 8, 8
    data = bytes((i * 37 + y * 11 + x * x * 5) % 256 for i in range(n) for y in range(h) for x in range(w))
    return struct.pack(">BBBBIII", 0, 0, 8, 3, n, h, w) + data

def labels():
    return struct.pack(">BBBBI", 0, 0, 8, 1, 20) + bytes(i % 7 for i in range(20))

for name, raw in (("nn_images.idx", images()), ("nn_labels.idx", labels())):
    with open("tests/data/" + name + ".gz", "wb") as f:
        with gzip.GzipFile(filename=name, mode="wb", fileobj=f, mtime=0, compresslevel=9) as g:
            g.write(raw)
