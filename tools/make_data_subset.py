#!/usr/bin/env python3
"""tools/make_data_subset.py - write the small data sets shipped in data/ (see data/README.md).

    python3 tools/make_data_subset.py fashion   # data/fashion-mnist/: first 3000 train, 1000 test
    python3 tools/make_data_subset.py text      # data/text/pride_and_prejudice_ch1-18.txt
    python3 tools/make_data_subset.py all       # both
    python3 tools/make_data_subset.py --check all   # write nothing; exit 1 if data/ differs

fashion: reads the full Fashion-MNIST from --fashion-src (default /usr/share/datasets/fashion-mnist,
  Debian's dataset-fashion-mnist) and writes the FIRST --train training and FIRST --test test
  images and labels (no shuffling) in the same IDX format under the same file names, gzip level 9
  with mtime 0 and no file name in the gzip header, so the output is byte-for-byte reproducible.
  Prints the class counts.

text: reads Pride and Prejudice from Debian's r-cran-janeaustenr (an R package of Jane Austen's
  novels from Project Gutenberg, with Gutenberg's header and license text already removed) and
  writes chapters 1 to --chapters as plain ASCII with Unix newlines. The package need not be
  installed (it would pull in R): by default it is fetched with `apt-get download` and unpacked
  with `dpkg -x` into a temporary folder; --austen-src DIR names an unpacked
  .../site-library/janeaustenr instead. Its data are in R's lazy-load format (a gzip'd index
  .rdx and zlib'd serialized objects in .rdb); the small reader below handles what they use.

Python standard library only.
"""
import argparse
import bz2
import collections
import glob
import gzip
import lzma
import os
import re
import struct
import subprocess
import sys
import tempfile
import unicodedata
import zlib

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
TEXT_NAME = "pride_and_prejudice_ch1-%d.txt"


def emit(path, content, check):
    """Write content to path, or with check compare it; returns 1 when it differs."""
    if check:
        old = open(path, "rb").read() if os.path.exists(path) else None
        if old != content:
            print("differs: %s" % os.path.relpath(path))
            return 1
        return 0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    print("wrote %s (%d bytes)" % (os.path.relpath(path), len(content)))
    return 0


# ---- Fashion-MNIST ----

def read_idx(path):
    """(dims, payload bytes) of a u8 IDX file, plain or .gz, with its header checked."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        sys.exit("%s: not a u8 IDX file" % path)
    ndim = data[3]
    dims = struct.unpack(">%dI" % ndim, data[4:4 + 4 * ndim])
    payload = data[4 + 4 * ndim:]
    size = 1
    for d in dims:
        size *= d
    if len(payload) != size:
        sys.exit("%s: %d payload bytes, header says %d" % (path, len(payload), size))
    return dims, payload


def idx_bytes(dims, payload):
    return bytes([0, 0, 0x08, len(dims)]) + struct.pack(">%dI" % len(dims), *dims) + payload


def find_idx(src, base):
    for name in (base + ".gz", base):
        if os.path.exists(os.path.join(src, name)):
            return os.path.join(src, name)
    sys.exit("no %s[.gz] in %s (Debian: apt-get install dataset-fashion-mnist)" % (base, src))


def fashion(a):
    differ = 0
    out = os.path.join(DATA, "fashion-mnist")
    for split, n in (("train", a.train), ("t10k", a.test)):
        idims, ipay = read_idx(find_idx(a.fashion_src, "%s-images-idx3-ubyte" % split))
        ldims, lpay = read_idx(find_idx(a.fashion_src, "%s-labels-idx1-ubyte" % split))
        if len(idims) != 3 or len(ldims) != 1 or idims[0] != ldims[0]:
            sys.exit("%s: image and label files do not match: %s vs %s" % (split, idims, ldims))
        if n > idims[0]:
            sys.exit("%s: asked for %d examples, the source has %d" % (split, n, idims[0]))
        per = idims[1] * idims[2]
        files = (("images-idx3", idx_bytes((n, idims[1], idims[2]), ipay[:n * per])),
                 ("labels-idx1", idx_bytes((n,), lpay[:n])))
        for kind, raw in files:
            path = os.path.join(out, "%s-%s-ubyte.gz" % (split, kind))
            differ |= emit(path, gzip.compress(raw, compresslevel=9, mtime=0), a.check)
        counts = collections.Counter(lpay[:n])
        print("%s: %d examples; per class: %s" % (split, n, ", ".join(
            "%d %s %d" % (c, CLASSES[c], counts[c]) for c in range(10))))
    return differ


# ---- R's serialization format (XDR), as much as janeaustenr's lazy-load data use ----

class RReader:
    def __init__(self, b):
        self.b, self.p, self.refs = b, 0, []

    def int(self):
        v = struct.unpack_from(">i", self.b, self.p)[0]
        self.p += 4
        return v

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def top(self):
        if self.b[:2] != b"X\n":
            raise ValueError("not R's XDR serialization")
        self.p = 2
        version = self.int()
        self.int(), self.int()  # writer's R version, minimal reader version
        if version == 3:
            n = self.int()  # native encoding name
            self.p += n
        return self.item()

    def item(self):
        """R object as Python: vectors as lists, NULL as None, symbols as ('sym', name);
        an object with attributes as ('attr', value, {name: value})."""
        flags = self.int()
        t, levels = flags & 0xFF, flags >> 12
        has_attr, has_tag = flags & (1 << 9), flags & (1 << 10)
        if t == 254:  # NILVALUE_SXP
            return None
        if t == 255:  # REFSXP
            i = flags >> 8
            return self.refs[(i or self.int()) - 1]
        if t == 1:  # SYMSXP
            v = ("sym", self.item())
            self.refs.append(v)
            return v
        if t in (2, 6):  # LISTSXP, LANGSXP: attributes, tag, car, cdr
            attr = self.item() if has_attr else None
            tag = self.item() if has_tag else None
            car, cdr = self.item(), self.item()
            return ("pair", tag, car, cdr, attr)
        if t == 9:  # CHARSXP
            n = self.int()
            if n == -1:
                return None  # NA_character_
            raw = self.b[self.p:self.p + n]
            self.p += n
            return raw.decode("latin-1" if levels & 4 else "utf-8")
        if t in (10, 13):  # LGLSXP, INTSXP
            n = self.length()
            v = list(struct.unpack_from(">%di" % n, self.b, self.p))
            self.p += 4 * n
        elif t == 14:  # REALSXP
            n = self.length()
            v = list(struct.unpack_from(">%dd" % n, self.b, self.p))
            self.p += 8 * n
        elif t in (16, 19, 20):  # STRSXP, VECSXP, EXPRSXP
            v = [self.item() for _ in range(self.length())]
        else:
            raise ValueError("R type %d not handled" % t)
        if has_attr:
            return ("attr", v, pairlist(self.item()))
        return v


def pairlist(p):
    out = {}
    while p:
        _, tag, car, p, _ = p
        out[tag[1]] = car
    return out


def lazyload(base):
    """{name: object} of an R lazy-load database base.rdx / base.rdb."""
    index = RReader(gzip.decompress(open(base + ".rdx", "rb").read())).top()
    _, values, attrs = index
    index = dict(zip(attrs["names"], values))
    _, offsets, names = index["variables"]
    compressed = index["compressed"][0]
    rdb = open(base + ".rdb", "rb").read()
    out = {}
    for name, (off, n) in zip(names["names"], offsets):
        chunk = rdb[off:off + n]
        size = struct.unpack(">I", chunk[:4])[0]
        if compressed == 1:
            raw = zlib.decompress(chunk[4:])
        else:  # 2 bzip2, 3 xz: a type byte ('2', 'X', '0' stored) after the size
            kind, body = chunk[4:5], chunk[5:]
            raw = {b"2": bz2.decompress, b"X": lzma.decompress, b"Z": zlib.decompress,
                   b"0": bytes}[kind](body)
        if len(raw) != size:
            raise ValueError("%s: %d bytes, index says %d" % (name, len(raw), size))
        out[name] = RReader(raw).top()
    return out


# ---- text ----

ASCII = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
         "\u2014": "--", "\u2026": "...", "\u00a3": "L", "\u00a0": " ", "\u00e6": "ae",
         "\u00c6": "AE", "\u0153": "oe", "\u0152": "OE"}


def to_ascii(text):
    out = []
    for ch in text:
        if ch == "\n" or " " <= ch <= "~":
            out.append(ch)
        elif ch in ASCII:
            out.append(ASCII[ch])
        else:  # accented letters lose their accents; anything else is an error to look at
            base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
            if not base or not all(" " <= c <= "~" for c in base):
                sys.exit("no ASCII spelling for %r (U+%04X); add one to ASCII" % (ch, ord(ch)))
            out.append(base)
    return "".join(out)


def austen_dir(src, tmp):
    if src:
        return src
    installed = "/usr/lib/R/site-library/janeaustenr"
    if os.path.isdir(installed):
        return installed
    print("text: fetching r-cran-janeaustenr (apt-get download; dpkg -x)")
    try:
        subprocess.run(["apt-get", "download", "-q", "r-cran-janeaustenr"], cwd=tmp, check=True)
        deb = glob.glob(os.path.join(tmp, "r-cran-janeaustenr_*.deb"))[0]
        subprocess.run(["dpkg", "-x", deb, os.path.join(tmp, "x")], check=True)
    except (OSError, IndexError, subprocess.CalledProcessError) as e:
        sys.exit("text: cannot get r-cran-janeaustenr (%s); unpack it yourself and pass --austen-src" % e)
    print("text: %s" % os.path.basename(deb))
    return os.path.join(tmp, "x", "usr", "lib", "R", "site-library", "janeaustenr")


def text(a):
    with tempfile.TemporaryDirectory() as tmp:
        books = lazyload(os.path.join(austen_dir(a.austen_src, tmp), "data", "Rdata"))
    lines = books["prideprejudice"]
    if isinstance(lines, tuple):
        lines = lines[1]
    body = "\n".join(line or "" for line in lines)
    stop = re.search(r"^Chapter %d$" % (a.chapters + 1), body, re.M)
    if not body.startswith("PRIDE AND PREJUDICE") or not stop:
        sys.exit("text: Pride and Prejudice does not look as expected")
    body = to_ascii(body[:stop.start()])
    body = "\n".join(line.rstrip() for line in body.split("\n"))  # no trailing blanks
    body = re.sub(r"\n{4,}", "\n\n\n", body).strip("\n") + "\n"  # at most two blank lines
    path = os.path.join(DATA, "text", TEXT_NAME % a.chapters)
    differ = emit(path, body.encode("ascii"), a.check)
    print("text: chapters 1-%d, %d characters, %d distinct" % (a.chapters, len(body), len(set(body))))
    return differ


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("fashion", "text", "all"))
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if data/ differs")
    ap.add_argument("--fashion-src", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--austen-src", help="an unpacked .../site-library/janeaustenr")
    ap.add_argument("--chapters", type=int, default=18)
    a = ap.parse_args()
    differ = 0
    if a.what in ("fashion", "all"):
        differ |= fashion(a)
    if a.what in ("text", "all"):
        differ |= text(a)
    if a.check:
        print("data/ differs from the sources" if differ else "data/ matches the sources")
    return differ


if __name__ == "__main__":
    sys.exit(main())
