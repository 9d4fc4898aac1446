#!/usr/bin/env python3
"""Checks that files ckptbridge wrote load in the real libraries, bit for bit.

DIR/expected.json maps a file (or directory) name under DIR to
    {"format": "safetensors" | "safetensors_sharded" | "npz" | "npy" | "msgpack",
     "tensors": {NAME: {"dtype": "F32", "shape": [..], "sha256": ".."}}}
and each is loaded with the library that owns the format:
    safetensors      safetensors.torch.load_file
    sharded          model.safetensors.index.json -> each shard with load_file
    npz / npy        numpy.load
    msgpack          flax.serialization.msgpack_restore
Names are the stored keys, or tree paths joined with '/' for msgpack. sha256 is over the
tensor's bytes in C order, little-endian (the fixtures' manifest definition).
Usage: verify_with_libs.py DIR     (exit 0 when everything matches)
"""
import hashlib, json, os, sys

import numpy as np

def np_bytes(a):
    return np.ascontiguousarray(a).tobytes()

def torch_bytes(t):
    import torch
    t = t.contiguous()
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""

def flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        name = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, name))
        else:
            out[name] = v
    return out

def load(path, fmt):
    if fmt == "safetensors":
        from safetensors.torch import load_file
        return {k: (list(v.shape), torch_bytes(v)) for k, v in load_file(path).items()}
    if fmt == "safetensors_sharded":
        from safetensors.torch import load_file
        idx = json.load(open(os.path.join(path, "model.safetensors.index.json")))
        out = {}
        for shard in sorted(set(idx["weight_map"].values())):
            for k, v in load_file(os.path.join(path, shard)).items():
                assert idx["weight_map"][k] == shard, k
                out[k] = (list(v.shape), torch_bytes(v))
        return out
    if fmt == "npz":
        z = np.load(path)
        return {k: (list(z[k].shape), np_bytes(z[k])) for k in z.files}
    if fmt == "npy":
        a = np.load(path)
        return {os.path.splitext(os.path.basename(path))[0]: (list(a.shape), np_bytes(a))}
    if fmt == "msgpack":
        from flax.serialization import msgpack_restore
        tree = msgpack_restore(open(path, "rb").read())
        return {k: (list(np.shape(v)), np_bytes(np.asarray(v))) for k, v in flatten(tree).items()
                if isinstance(v, np.ndarray) or hasattr(v, "dtype")}
    raise ValueError(fmt)

def main():
    root = sys.argv[1]
    expected = json.load(open(os.path.join(root, "expected.json")))
    ok_all = True
    for name, exp in sorted(expected.items()):
        try:
            got = load(os.path.join(root, name), exp["format"])
        except Exception as e:
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            ok_all = False
            continue
        bad = []
        for t, want in exp["tensors"].items():
            if t not in got:
                bad.append(f"missing {t}")
                continue
            shape, data = got[t]
            if shape != want["shape"]:
                bad.append(f"{t}: shape {shape} != {want['shape']}")
            if hashlib.sha256(data).hexdigest() != want["sha256"]:
                bad.append(f"{t}: sha256 differs")
        extra = set(got) - set(exp["tensors"])
        if extra:
            bad.append(f"unexpected {sorted(extra)[:5]}")
        ok_all &= not bad
        print(("OK   " if not bad else "FAIL ") + f"{name} ({exp['format']}): {len(exp['tensors'])} tensors" +
              ("" if not bad else "\n    " + "\n    ".join(bad[:10])))
    print("ALL OK" if ok_all else "SOME FAILED")
    sys.exit(0 if ok_all else 1)

if __name__ == "__main__":
    main()
