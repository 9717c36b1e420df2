#!/usr/bin/env python3
"""Inline the parts/*.h fragments that dl_tensor.h includes, producing the single-file header.

Usage: python3 tools/amalgamate.py dl_tensor.h   (rewrites the file in place)
Used once when the fragments were merged; kept for anyone who splits a header to work on it.
"""
import os, re, sys

path = sys.argv[1]
root = os.path.dirname(os.path.abspath(path))
out = []
for line in open(path):
    m = re.match(r'\s*#include "(parts/[^"]+)"', line)
    if not m:
        out.append(line)
        continue
    text = open(os.path.join(root, m.group(1))).read().strip("\n")
    if text:
        out.append(text + "\n")
open(path, "w").write("".join(out))
