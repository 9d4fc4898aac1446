#!/usr/bin/env python3
"""pi0's parameter tree (names, shapes, dtypes of openpi's training layout, `/value` leaves
dropped) as a safetensors file, with standard-library Python only, for profiling on machines
without JAX. Values are random with a bounded exponent (|x| < 2^-5, no NaN/inf), so merges and
casts do real arithmetic. `--depth` and `--vocab` scale it down. `--training-names` writes
the names as openpi's training layout has them (`params/NAME/value`), so that
`ckptbridge convert OUT.safetensors CK --to orbax --step 1000 --item params` gives the layout
make_pi0_sized.py writes (CheckpointManager root, item `params`, `.../value` leaves).
    make_pi0_synthetic.py OUT.safetensors [--depth 18] [--vocab 257152] [--training-names]"""
import argparse, importlib.util, json, os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(); ap.add_argument("out"); ap.add_argument("--depth", type=int, default=18)
ap.add_argument("--vocab", type=int, default=257152)
ap.add_argument("--training-names", action="store_true"); a = ap.parse_args()
# The shape table is make_pi0_sized.tree(); import it without its JAX imports.
src = open(os.path.join(here, "make_pi0_sized.py")).read()
start, end = src.index("def tree("), src.index("def main(")
ns = {}; exec(src[start:end], ns)
tree = ns["tree"](a.depth, a.vocab)
# Byte translation keeping the exponent small: the high byte of every element gets 0x3C/0xBC.
hi = bytes((0x3C | (b & 0x80)) for b in range(256)); ident = bytes(range(256))
header, off, items = {}, 0, []
for name, (shape, kind) in tree.items():
    dt, size = ("BF16", 2) if kind == "base" else ("F32", 4)
    n = size
    for d in shape: n *= d
    if a.training_names: name = f"params/{name}/value"
    header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
    items.append((n, size)); off += n
h = json.dumps(header).encode(); h += b" " * ((8 - len(h) % 8) % 8)
with open(a.out, "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
    for n, size in items:
        while n:
            m = min(n, 1 << 24)
            raw = bytearray(os.urandom(m))
            raw[size - 1::size] = raw[size - 1::size].translate(hi)
            f.write(raw); n -= m
print(f"{len(tree)} tensors, {off / 2**30:.2f} GiB")
