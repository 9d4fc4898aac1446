#!/usr/bin/env python3
"""Checks that .pt files written by ckptbridge load in real PyTorch.

Loads every file named in EXPECTED with torch.load(path, weights_only=True) (and, with
--mmap, again with mmap=True) and compares each tensor with the expected dtype, shape and
sha256 of its bytes in C order, little-endian (bool 1 byte, bfloat16/float8 raw bits), the
same definition as tests/data/fixtures/*/manifest.json. Needs only torch (numpy optional);
it does not use ckptbridge's Python bindings.

EXPECTED is JSON mapping a file name (relative to DIR) to a manifest:
    {"model.pt": {"tensors": {"embed.weight": {"dtype": "F32", "shape": [64, 16],
                                                "sha256": "..."}},
                  "non_tensor_leaves": {"epoch": 3}}}          # optional
Tensor names are paths in the loaded object: dict keys and list/tuple indices joined
with '/', so a flat state_dict gives its keys unchanged ("embed.weight").

Usage: verify_torch_load.py DIR EXPECTED.json [--mmap]
DIR and DIR/expected.json come from
    CKB_TORCH_EXPORT_DIR=DIR build/tests/ckb_torch_interop --gtest_filter=TorchInterop.Export
Exit status 0 when every file matches, 1 otherwise.
"""
import argparse
import collections
import hashlib
import json
import math
import os
import sys

import torch

CANONICAL = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.complex64: "C64", torch.complex128: "C128",
}
for _name, _canon in [("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2"), ("uint16", "U16"),
                      ("uint32", "U32"), ("uint64", "U64")]:
    if hasattr(torch, _name):
        CANONICAL[getattr(torch, _name)] = _canon


def tensor_bytes(t):
    t = t.detach().cpu().contiguous().reshape(-1)
    raw = t.view(torch.uint8) if t.numel() > 0 else torch.empty(0, dtype=torch.uint8)
    if sys.byteorder != "little":
        raise SystemExit("this checker assumes a little-endian host")
    try:
        return raw.numpy().tobytes()
    except Exception:  # numpy missing
        return bytes(raw.tolist())


def flatten(obj, prefix, tensors, leaves):
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
    elif isinstance(obj, (dict, collections.OrderedDict)):
        for k, v in obj.items():
            flatten(v, f"{prefix}/{k}" if prefix else str(k), tensors, leaves)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, f"{prefix}/{i}" if prefix else str(i), tensors, leaves)
    else:
        leaves[prefix] = obj


def flatten_expected(obj, prefix, out):
    if isinstance(obj, dict):
        for k, v in obj.items():
            flatten_expected(v, f"{prefix}/{k}" if prefix else str(k), out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            flatten_expected(v, f"{prefix}/{i}" if prefix else str(i), out)
    else:
        out[prefix] = obj


def same_leaf(got, want):
    if isinstance(want, float) and isinstance(got, float):
        return got == want or (math.isnan(got) and math.isnan(want))
    return type(got) is type(want) and got == want


def check_file(path, manifest, mmap):
    errors = []
    kwargs = {"mmap": True} if mmap else {}  # torch < 2.1 has no mmap argument
    obj = torch.load(path, weights_only=True, map_location="cpu", **kwargs)
    tensors, leaves = {}, {}
    # A bare tensor (torch.save(t)) is named "tensor", as ckptbridge's reader names it.
    flatten(obj, "tensor" if isinstance(obj, torch.Tensor) else "", tensors, leaves)
    want = manifest.get("tensors", {})
    for name in sorted(set(want) - set(tensors)):
        errors.append(f"missing tensor {name!r}")
    for name in sorted(set(tensors) - set(want)):
        errors.append(f"unexpected tensor {name!r}")
    for name in sorted(set(want) & set(tensors)):
        t, w = tensors[name], want[name]
        dtype = CANONICAL.get(t.dtype, str(t.dtype))
        if dtype != w["dtype"]:
            errors.append(f"{name}: dtype {dtype} != {w['dtype']}")
        if list(t.shape) != list(w["shape"]):
            errors.append(f"{name}: shape {list(t.shape)} != {w['shape']}")
        digest = hashlib.sha256(tensor_bytes(t)).hexdigest()
        if digest != w["sha256"]:
            errors.append(f"{name}: sha256 {digest} != {w['sha256']}")
    expected_leaves = {}
    flatten_expected(manifest.get("non_tensor_leaves", {}), "", expected_leaves)
    for name, value in expected_leaves.items():
        if name not in leaves:
            errors.append(f"missing non-tensor leaf {name!r}")
        elif not same_leaf(leaves[name], value):
            errors.append(f"leaf {name!r}: {leaves[name]!r} != {value!r}")
    return errors, len(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir")
    ap.add_argument("expected")
    ap.add_argument("--mmap", action="store_true", help="also load each file with mmap=True")
    args = ap.parse_args()
    with open(args.expected) as f:
        expected = json.load(f)
    expected = expected.get("files", expected)
    print(f"torch {torch.__version__}")
    failed = checks = 0
    for name, manifest in sorted(expected.items()):
        path = os.path.join(args.dir, name)
        for mmap in ([False, True] if args.mmap else [False]):
            checks += 1
            label = f"{name}{' (mmap)' if mmap else ''}"
            try:
                errors, n = check_file(path, manifest, mmap)
            except Exception as e:  # torch.load refused the file
                errors, n = [f"torch.load failed: {type(e).__name__}: {e}"], 0
            if errors:
                failed += 1
                print(f"FAIL {label}")
                for e in errors:
                    print(f"    {e}")
            else:
                print(f"OK   {label}: {n} tensors match")
    print(f"{checks - failed} of {checks} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
