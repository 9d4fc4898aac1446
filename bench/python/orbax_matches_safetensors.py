#!/usr/bin/env python3
"""Restores an Orbax checkpoint with the real Orbax and compares every array with the bytes of a
safetensors file (names: '/' or '.' separated paths).   orbax_matches_safetensors.py ORBAX ST [LABEL]
Prints one line; exits 1 when any array differs or is missing."""
import json, struct, sys

import numpy as np
import orbax.checkpoint as ocp

restored = ocp.PyTreeCheckpointer().restore(sys.argv[1])
label = sys.argv[3] if len(sys.argv) > 3 else "our output"
flat = {}


def walk(path, v):
    if isinstance(v, dict):
        for k, x in v.items():
            walk(path + [k], x)
    else:
        flat[".".join(path)] = v


walk([], restored)
bad = 0
with open(sys.argv[2], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    base = 8 + n
    for k, m in header.items():
        if k == "__metadata__":
            continue
        a, b = m["data_offsets"]
        f.seek(base + a)
        raw = f.read(b - a)
        got = flat.get(k.replace("/", "."))
        bad += got is None or np.asarray(got).tobytes() != raw
print(f"Orbax restored {label}: {len(flat)} arrays, {bad} differ from the safetensors bytes")
sys.exit(1 if bad else 0)
