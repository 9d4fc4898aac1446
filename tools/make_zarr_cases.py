#!/usr/bin/python3
"""Generates tests/data/zarr_cases/: small zarr v2 arrays and groups written by zarr-python
2.13 + numcodecs 0.11 (Debian's python3-zarr / python3-numcodecs), and hand-written zarr v3
arrays exercising `must_understand`, with expected values in expected.json.

Expected sha256 values are over each array's C-order little-endian bytes as numpy gives them
from zarr-python's own read (v2) or from the numpy array the chunk bytes were written from
(v3, hand-written: zarr-python 2.13 does not read the final v3 format) - never from
ckptbridge. Run with Debian's /usr/bin/python3:  /usr/bin/python3 tools/make_zarr_cases.py
"""
import gzip
import hashlib
import json
import os
import shutil
import sys

import numcodecs
import numpy as np
import zarr

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "zarr_cases")
CANON = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32", "int16": "I16",
         "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL"}


def entry(a):
    a = np.ascontiguousarray(a)
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {"dtype": CANON[a.dtype.name], "shape": list(a.shape), "sha256": hashlib.sha256(le.tobytes()).hexdigest()}


def v2_tensors(path):
    """name -> entry, from zarr-python's read of an array or (recursively) a group."""
    node = zarr.open(path, mode="r")
    if isinstance(node, zarr.Array):
        return {os.path.basename(path): entry(node[...])}
    out = {}
    def visit(name, obj):
        if isinstance(obj, zarr.Array):
            out[name] = entry(obj[...])
    node.visititems(visit)
    return out


def main():
    if os.path.exists(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    rng = np.random.default_rng(15)
    cases = []

    def v2(name, data, how, **kw):
        path = os.path.join(ROOT, "v2", name)
        z = zarr.open(path, mode="w", shape=data.shape, dtype=kw.pop("dtype", data.dtype), **kw)
        z[...] = data
        return path

    def add(path, how, missing=None, **extra):
        case = {"path": os.path.relpath(path, ROOT), "expect": "read", "format": "zarr", "tensors": v2_tensors(path),
                "how": how}
        if missing is not None:
            case["missing_chunks"] = missing
        case.update(extra)
        cases.append(case)

    how = "sha256 of numpy's C-order little-endian bytes of zarr-python 2.13's read (zarr.open(path)[...])"
    f32 = rng.standard_normal((5, 7)).astype("<f4")
    add(v2("bz2", f32, how, chunks=(2, 3), compressor=numcodecs.BZ2(level=9)), how)
    add(v2("lz4", rng.integers(-3000, 3000, (9, 4)).astype("<i2"), how, chunks=(4, 4), compressor=numcodecs.LZ4()), how)
    add(v2("zstd", f32, how, chunks=(3, 7), compressor=numcodecs.Zstd(level=3)), how)
    add(v2("blosc", rng.standard_normal((6, 5)).astype("<f8"), how, chunks=(4, 2),
           compressor=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)), how)
    add(v2("gzip", rng.integers(0, 255, (7,)).astype("|u1"), how, chunks=(3,), compressor=numcodecs.GZip(level=6)), how)
    ints = np.cumsum(rng.integers(-20, 20, (6, 5)), axis=1).astype("<i4") + 1000
    add(v2("delta", ints, how, chunks=(4, 5), filters=[numcodecs.Delta(dtype="<i4", astype="<i2")],
           compressor=numcodecs.Zlib(level=1)), how)
    add(v2("delta_order_f", ints, how, chunks=(4, 3), order="F", filters=[numcodecs.Delta(dtype="<i4")],
           compressor=None), how)
    add(v2("shuffle", rng.standard_normal((5, 3)).astype("<f8"), how, chunks=(2, 3),
           filters=[numcodecs.Shuffle(elementsize=8)], compressor=numcodecs.Zstd(level=1)), how)
    # float32 -> int8 scaled: zarr-python's read is the decoded (quantised) values.
    add(v2("fixedscaleoffset", (rng.standard_normal((4, 6)) * 3).astype("<f4"), how, chunks=(3, 4),
           filters=[numcodecs.FixedScaleOffset(offset=0.5, scale=10, dtype="<f4", astype="|i1")],
           compressor=numcodecs.GZip(level=1)), how)
    add(v2("delta_shuffle_lz4", ints, how, chunks=(3, 5),
           filters=[numcodecs.Delta(dtype="<i4"), numcodecs.Shuffle(elementsize=4)], compressor=numcodecs.LZ4()), how)
    # A missing chunk reads as the fill value (zarr-python's rule): delete chunk 1.0.
    p = v2("missing_chunk", f32, how, chunks=(2, 4), fill_value=7.25, compressor=None)
    os.remove(os.path.join(p, "1.0"))
    add(p, how, missing=1, missing_key="1.0")

    # Nested groups: a/b/c arrays at three levels; one without and one with consolidated metadata.
    for name, consolidate in (("group", False), ("group_consolidated", True)):
        path = os.path.join(ROOT, "v2", name)
        g = zarr.open_group(path, mode="w")
        g.attrs["about"] = "nested groups"
        g.create_dataset("top", data=np.arange(6, dtype="<i8").reshape(2, 3), chunks=(1, 3),
                         compressor=numcodecs.Zstd())
        s = g.create_group("sub")
        s.create_dataset("w", data=f32, chunks=(5, 2), compressor=numcodecs.BZ2())
        d = s.create_group("deeper")
        d.create_dataset("b", data=np.linspace(-1, 1, 8, dtype="<f8"), chunks=(3,), compressor=numcodecs.LZ4(),
                         dimension_separator="/")
        g.create_group("empty")
        if consolidate:
            zarr.consolidate_metadata(path)
        add(path, how)

    # zarr v3, hand-written (expected values from the numpy arrays written).
    def v3(name, data, meta, chunk_bytes):
        path = os.path.join(ROOT, "v3", name)
        os.makedirs(path)
        with open(os.path.join(path, "zarr.json"), "w") as f:
            json.dump(meta, f, indent=1)
        for key, raw in chunk_bytes.items():
            fp = os.path.join(path, key)
            os.makedirs(os.path.dirname(fp), exist_ok=True)
            with open(fp, "wb") as f:
                f.write(raw)
        return path

    base = {"zarr_format": 3, "node_type": "array", "shape": [2, 3], "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 3]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}}, "fill_value": 0.0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]}
    a = np.arange(6, dtype="<f4").reshape(2, 3) / 4
    v3how = "hand-written zarr.json; sha256 of the numpy array whose bytes were written as chunk c/0/0"
    ok = dict(base, codecs=[{"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "example.checksum", "configuration": {}, "must_understand": False},
                            {"name": "gzip", "configuration": {"level": 1}, "must_understand": True}],
              storage_transformers=[{"name": "example.cache", "must_understand": False}],
              my_extension={"name": "example.field", "must_understand": False, "configuration": {"x": 1}},
              attributes={"note": "must_understand false extensions are ignored"})
    p = v3("must_understand_false", a, ok, {"c/0/0": gzip.compress(a.tobytes(), mtime=0)})
    cases.append({"path": os.path.relpath(p, ROOT), "expect": "read", "format": "zarr",
                  "tensors": {"must_understand_false": entry(a)}, "how": v3how})
    refusals = {
        "unknown_codec": (dict(base, codecs=base["codecs"] + [{"name": "example.scramble"}]),
                          ["zarr.json", "codec 'example.scramble'", "must_understand"]),
        "unknown_codec_marked_true": (dict(base, codecs=base["codecs"] + [
            {"name": "example.scramble", "must_understand": True}]), ["codec 'example.scramble'", "must_understand"]),
        "unknown_field": (dict(base, example_field={"must_understand": True, "x": 1}),
                          ["zarr.json", "unknown metadata field 'example_field'"]),
        "unknown_plain_field": (dict(base, example_flag=True), ["unknown metadata field 'example_flag'"]),
        "unknown_storage_transformer": (dict(base, storage_transformers=[{"name": "example.cache"}]),
                                        ["storage transformer 'example.cache'"]),
        # must_understand: false is not honoured for chunk grids (spec).
        "unknown_chunk_grid": (dict(base, chunk_grid={"name": "example.grid", "must_understand": False,
                                                      "configuration": {"chunk_shape": [2, 3]}}),
                               ["chunk grid 'example.grid'"]),
        "unknown_chunk_key_encoding": (dict(base, chunk_key_encoding={"name": "example.keys"}),
                                       ["chunk key encoding 'example.keys'"]),
    }
    for name, (meta, message) in refusals.items():
        p = v3(name, a, meta, {"c/0/0": a.tobytes()})
        cases.append({"path": os.path.relpath(p, ROOT), "expect": "refuse", "message": message,
                      "why": "zarr v3 spec: an extension or field not understood and not marked must_understand false"})

    # A v3 group holding an array, a subgroup with an array, and inline consolidated metadata.
    gpath = os.path.join(ROOT, "v3", "group")
    os.makedirs(gpath)
    with open(os.path.join(gpath, "zarr.json"), "w") as f:
        json.dump({"zarr_format": 3, "node_type": "group", "attributes": {"k": "v"},
                   "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": {}}}, f)
    v3("group/x", a, base, {"c/0/0": a.tobytes()})
    os.makedirs(os.path.join(gpath, "inner"))
    with open(os.path.join(gpath, "inner", "zarr.json"), "w") as f:
        json.dump({"zarr_format": 3, "node_type": "group"}, f)
    b = np.array([[1, 2], [3, 4]], dtype="<i2")
    v3("group/inner/y", b, dict(base, shape=[2, 2], data_type="int16", fill_value=0,
                                chunk_grid={"name": "regular", "configuration": {"chunk_shape": [1, 2]}},
                                chunk_key_encoding={"name": "v2", "configuration": {"separator": "."}}),
       {"0.0": b[:1].tobytes(), "1.0": b[1:].tobytes()})
    cases.append({"path": "v3/group", "expect": "read", "format": "zarr",
                  "tensors": {"x": entry(a), "inner/y": entry(b)}, "how": v3how})

    manifest = {"project": "ckptbridge zarr cases", "source": "tools/make_zarr_cases.py",
                "generator": {"zarr": zarr.__version__, "numcodecs": numcodecs.__version__, "numpy": np.__version__},
                "cases": cases}
    with open(os.path.join(ROOT, "expected.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {ROOT}", file=sys.stderr)


if __name__ == "__main__":
    main()
