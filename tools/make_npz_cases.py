#!/usr/bin/env python3
"""Writes the .npz cases with non-numeric members (tests/data/npz_cases/) and their expected
values, computed by NumPy itself (np.load), not by ckptbridge.

  strings.npz             np.savez (stored members): Unicode ('<U', '>U') and bytes ('|S')
                          arrays of rank 0, 1 and 2 (one Fortran-ordered), plus a float32 array
  strings_compressed.npz  the same through np.savez_compressed (deflated members)
  objects.npz             np.savez with a dtype=object member (a pickle) and a float32 array
  expected.json           per member of strings.npz: "kind" ("str", "bytes" or "tensor");
                          "value" for strings as np.load returns them (.tolist(): nested lists
                          for N-d, a scalar for 0-d; bytes as lowercase hex); for the tensor
                          dtype, shape and the sha256 of its C-order little-endian bytes.

Usage: /usr/bin/python3 tools/make_npz_cases.py OUT_DIR   (Debian's python3 with numpy)
"""
import hashlib
import json
import os
import sys

import numpy as np


def members():
    grid = np.array([["x", "yy", "zzz"], ["\u03b1\u03b2", "", "\U0001F642"]])  # <U3
    return {
        "greeting": np.array("h\u00e9llo w\u00f6rld"),  # 0-d <U11
        "names": np.array(["a", "bc", "d\u00e9f", ""]),  # <U3
        "grid": grid,
        "grid_fortran": np.asfortranarray(grid),
        "big_endian": np.array(["ab", "c"], dtype=">U2"),
        "inner_nul": np.array(["a\x00b"]),  # a NUL inside an element is kept, trailing ones are not
        "raw": np.array([b"ab", b"", b"c\x00d"], dtype="S3"),
        "raw_scalar": np.array(b"xyz"),
        "raw_grid": np.array([[b"\x01", b"\xff\xfe"], [b"", b"z"]]),
        "empty_names": np.zeros((0,), dtype="<U4"),
        "weights": np.arange(6, dtype="<f4").reshape(2, 3) / 4,
    }


def expected_value(v):
    if isinstance(v, list):
        return [expected_value(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return v


def main(out):
    os.makedirs(out, exist_ok=True)
    m = members()
    np.savez(os.path.join(out, "strings.npz"), **m)
    np.savez_compressed(os.path.join(out, "strings_compressed.npz"), **m)
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = {"a": 1}, None
    np.savez(os.path.join(out, "objects.npz"), weights=np.ones(3, dtype="<f4"), meta=obj)

    expected = {}
    with np.load(os.path.join(out, "strings.npz")) as z:
        for name in z.files:
            a = z[name]
            if a.dtype.kind in "US":
                expected[name] = {"kind": "str" if a.dtype.kind == "U" else "bytes", "descr": a.dtype.str,
                                  "shape": list(a.shape), "value": expected_value(a.tolist())}
            else:
                c = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"))
                expected[name] = {"kind": "tensor", "descr": a.dtype.str, "shape": list(a.shape),
                                  "sha256": hashlib.sha256(c.tobytes()).hexdigest()}
    with np.load(os.path.join(out, "objects.npz"), allow_pickle=False) as z:
        try:
            z["meta"]
            raise SystemExit("numpy loaded an object array without allow_pickle")
        except ValueError as e:
            expected["__objects_numpy_error__"] = str(e)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"numpy": np.__version__, "members": expected}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
