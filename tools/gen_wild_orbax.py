#!/usr/bin/python3
"""Vendors T5X's and Orbax's test checkpoints into tests/data/wild/{t5x,orbax}, builds the
hand-made Orbax cases (aggregate layout, zarr v2/v3 choice, refusals) and writes each folder's
MANIFEST.json with expected values computed here, independently of ckptbridge:
  - msgpack trees: msgpack-python + numpy, decoding flax's ext types (1 ndarray, 3 numpy scalar)
    by hand;
  - zarr v2 arrays: zarr-python 2.13 (numcodecs 0.11), except zstd frames without a content
    size (what TensorStore writes; numcodecs 0.11 refuses them): the zstd CLI + numpy;
  - zarr v3 arrays (written here by hand with the plain `bytes` codec): numpy.

Usage (Debian's python3, which has numpy, zarr 2.13, numcodecs 0.11, msgpack):
  /usr/bin/python3 tools/gen_wild_orbax.py --t5x-git /work/.mirror/google-research+t5x/repo \
      --orbax-git /work/.mirror/google+orbax/repo
The --*-git arguments are bare git mirrors of github.com/google-research/t5x and
github.com/google/orbax; the commits used are recorded in the READMEs and manifests.
"""
import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import msgpack
import numcodecs
import numpy as np
import zarr

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "wild")

DTYPE_NAMES = {  # numpy -> the manifest's (safetensors-style) names
    "float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32", "int16": "I16",
    "int8": "I8", "uint64": "U64", "uint32": "U32", "uint16": "U16", "uint8": "U8", "bool": "BOOL"}


def tensor_entry(a):
    a = np.asarray(a).copy(order="C")  # (np.ascontiguousarray makes 0-d arrays 1-d)
    le = a.astype(a.dtype.newbyteorder("<")) if a.dtype.byteorder == ">" else a
    return {"dtype": DTYPE_NAMES[a.dtype.name], "shape": list(a.shape),
            "sha256": hashlib.sha256(le.tobytes(order="C")).hexdigest()}


# ---- msgpack (flax.serialization encoding) ----------------------------------------------

def ext_hook(code, data):
    if code in (1, 3):  # ndarray / numpy scalar: [shape, dtype name, raw bytes]
        shape, dtype, buf = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape)
    raise ValueError("unexpected msgpack ext type %d" % code)


def load_msgpack(path):
    with open(path, "rb") as f:
        return msgpack.unpackb(f.read(), ext_hook=ext_hook, raw=False, strict_map_key=False)


def ndarray_ext(a):
    a = np.asarray(a).copy(order="C")  # (np.ascontiguousarray makes 0-d arrays 1-d)
    return msgpack.ExtType(1, msgpack.packb((list(a.shape), a.dtype.name, a.tobytes()), use_bin_type=True))


def npscalar_ext(a):
    a = np.asarray(a)
    return msgpack.ExtType(3, msgpack.packb(((), a.dtype.name, a.tobytes()), use_bin_type=True))


def write_msgpack(path, tree):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(msgpack.packb(tree, use_bin_type=True))


def flatten(tree, prefix=()):
    """(path tuple, leaf) pairs; empty dicts are leaves."""
    if isinstance(tree, dict) and tree:
        for k, v in tree.items():
            yield from flatten(v, prefix + (str(k),))
    else:
        yield prefix, tree


# ---- zarr v2 reading ---------------------------------------------------------------------

def read_zarr_v2(path):
    """A v2 array directory as numpy. zarr-python unless its zstd chunks lack a content size."""
    with open(os.path.join(path, ".zarray")) as f:
        meta = json.load(f)
    if (meta.get("compressor") or {}).get("id") != "zstd":
        return zarr.open(path, mode="r")[...]
    # numcodecs 0.11 cannot decode TensorStore's zstd frames (no content size): decode each
    # chunk with the zstd CLI and assemble with numpy (C order, '.'-separated keys only).
    assert meta["order"] == "C" and not meta.get("filters") and meta.get("dimension_separator", ".") == "."
    shape, chunks, dt = meta["shape"], meta["chunks"], np.dtype(meta["dtype"])
    out = np.zeros(shape, dtype=dt)
    grid = [-(-s // c) for s, c in zip(shape, chunks)]
    for idx in np.ndindex(*grid) if grid else [()]:
        key = ".".join(str(i) for i in idx) if idx else "0"
        raw = subprocess.run(["zstd", "-dc"], input=open(os.path.join(path, key), "rb").read(),
                             check=True, capture_output=True).stdout
        chunk = np.frombuffer(raw, dtype=dt).reshape(chunks)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))
        out[sl] = chunk[tuple(slice(0, x.stop - x.start) for x in sl)]
    return out


def read_via_spec(item_dir, spec):
    """A T5X TensorStore-spec leaf: the zarr v2 array at its relative kvstore path. When the
    .zarray is absent (T5X's testdata lost its dot-files), a copy gets the .zarray TensorStore
    writes for that spec (spec metadata + its defaults) and zarr-python reads the copy."""
    rel = spec["kvstore"]["path"].rstrip("/")
    src = os.path.join(item_dir, rel)
    if os.path.exists(os.path.join(src, ".zarray")):
        return read_zarr_v2(src)
    ts_to_v2 = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "bfloat16": "bfloat16"}
    meta = dict(spec["metadata"])
    meta.setdefault("dtype", ts_to_v2[spec["dtype"]])
    meta.update(zarr_format=2, order="C", filters=None, fill_value=None, dimension_separator=".")
    with tempfile.TemporaryDirectory() as tmp:
        dst = os.path.join(tmp, rel)
        shutil.copytree(src, dst)
        with open(os.path.join(dst, ".zarray"), "w") as f:
            json.dump(meta, f)
        return read_zarr_v2(dst)


def is_spec(v):
    return isinstance(v, dict) and {"driver", "kvstore", "metadata"} <= v.keys()


def is_placeholder(v):
    return isinstance(v, str) and (v.startswith("PLACEHOLDER://") or v.startswith("AGGREGATED://"))


def expected_from_aggregate(item_dir, tree, metadata=None):
    """tensors/leaves of an item as Orbax restores it: aggregate values, placeholders and
    specs resolved to the arrays beside the file (by param name = keys joined with '.')."""
    tensors, leaves = {}, {}
    def spec_walk(t, prefix=()):
        if is_spec(t):
            yield prefix, t
        elif isinstance(t, dict) and t:
            for k, v in t.items():
                yield from spec_walk(v, prefix + (str(k),))
        else:
            yield prefix, t
    for path, v in spec_walk(tree):
        name = "/".join(path)
        if is_spec(v):
            tensors[name] = tensor_entry(read_via_spec(item_dir, v))
        elif is_placeholder(v):
            tensors[name] = tensor_entry(read_zarr_v2(os.path.join(item_dir, ".".join(path))))
        elif isinstance(v, np.ndarray):
            tensors[name] = tensor_entry(v)
        elif isinstance(v, dict):
            leaves[name] = {}
        else:
            leaves[name] = v
    return tensors, leaves


# ---- vendoring ---------------------------------------------------------------------------

def git_head(git):
    return subprocess.run(["git", "--git-dir", git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def vendor(git, commit, src_prefix, dst):
    """Extracts `src_prefix` (a folder or file at `commit`) to `dst`."""
    data = subprocess.run(["git", "--git-dir", git, "archive", commit, src_prefix], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar, tempfile.TemporaryDirectory() as tmp:
        tar.extractall(tmp)
        src = os.path.join(tmp, src_prefix)
        if os.path.isdir(src):
            shutil.copytree(src, dst)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy(src, dst)


def write_manifest(folder, project, source, license_, cases):
    with open(os.path.join(folder, "MANIFEST.json"), "w") as f:
        json.dump({"project": project, "source": source, "license": license_, "cases": cases}, f, indent=1)
        f.write("\n")


def read_case(path, tensors, leaves, how):
    return {"path": path, "expect": "read", "format": "orbax", "tensors": tensors, "leaves": leaves, "how": how}


# ---- T5X ---------------------------------------------------------------------------------

def make_t5x(git):
    out = os.path.join(ROOT, "t5x")
    shutil.rmtree(out, ignore_errors=True)
    commit = git_head(git)
    vendor(git, commit, "t5x/testdata/tiny_t5", os.path.join(out, "tiny_t5"))
    vendor(git, commit, "t5x/testdata/tiny_orbax", os.path.join(out, "tiny_orbax"))
    # tiny_orbax lost its .zarray files in T5X's export (dot-files are not in the repository);
    # a completed copy gets the .zarray Orbax writes for these arrays. dtype/shape: the same
    # optimizer state as tiny_t5's TensorStore specs (the kernel chunk's decoded bytes are
    # identical to tiny_t5's); chunks = shape, zstd as the chunk files are.
    done = os.path.join(out, "tiny_orbax_completed")
    shutil.copytree(os.path.join(out, "tiny_orbax"), done)
    zarrays = {"_optimizer.state.param_states.bias": ("<f4", [5]),
               "_optimizer.state.param_states.kernel": ("<f8", [10, 5]),
               "_optimizer.state.param_states.step": ("<i4", []),
               "_optimizer.state.step": ("<i4", [])}
    for name, (dt, shape) in zarrays.items():
        with open(os.path.join(done, "1", name, ".zarray"), "w") as f:
            json.dump({"chunks": shape, "compressor": {"id": "zstd", "level": 1}, "dimension_separator": ".",
                       "dtype": dt, "fill_value": None, "filters": None, "order": "C", "shape": shape,
                       "zarr_format": 2}, f, sort_keys=True, separators=(",", ":"))

    cases = []
    item = os.path.join(out, "tiny_t5", "checkpoint_1")
    tensors, leaves = expected_from_aggregate(item, load_msgpack(os.path.join(item, "checkpoint")))
    how = ("msgpack-python + numpy (flax ext 1/3 decoded by hand); TensorStore-spec arrays with zarr-python "
           "2.13 over a copy given the .zarray TensorStore writes for each spec (T5X's export dropped it)")
    cases.append(read_case("tiny_t5/checkpoint_1", tensors, leaves, how))
    cases.append(read_case("tiny_t5/checkpoint_1/checkpoint", tensors, leaves, how))
    item = os.path.join(done, "1")
    t2, l2 = expected_from_aggregate(item, load_msgpack(os.path.join(item, "checkpoint")))
    assert t2["_optimizer/state/param_states/kernel"] == tensors["optimizer/state/param_states/kernel"]
    cases.append(read_case("tiny_orbax_completed/1", t2, l2,
                           "msgpack-python; PLACEHOLDER arrays decoded with the zstd CLI + numpy "
                           "(numcodecs 0.11 refuses zstd frames without a content size)"))
    cases.append({"path": "tiny_orbax/1", "expect": "refuse",
                  "message": ["_optimizer.state.param_states.bias", "no zarr metadata", "PLACEHOLDER://"],
                  "why": "T5X's copy has no .zarray/zarr.json for its placeholder arrays (lost in export): "
                         "dtype and shape are unknown, Orbax cannot restore it either"})
    write_manifest(out, "t5x", "github:google-research/t5x@" + commit, "Apache-2.0", cases)
    return commit


# ---- Orbax -------------------------------------------------------------------------------

def metadata_json(entries, use_zarr3):
    """_METADATA in Orbax's schema for {key tuple: (value_type, skip_deserialize)}."""
    tree = {}
    for keys, (vt, skip) in entries.items():
        tree[str(tuple(keys))] = {"key_metadata": [{"key": k, "key_type": 2} for k in keys],
                                  "value_metadata": {"value_type": vt, "skip_deserialize": skip}}
    d = {"tree_metadata": tree}
    if use_zarr3 is not None:
        d["use_zarr3"] = use_zarr3
    return json.dumps(d)


def write_v2(path, a, compressor=None, chunks=None):
    z = zarr.open(path, mode="w", shape=a.shape, chunks=chunks or a.shape, dtype=a.dtype,
                  compressor=compressor, fill_value=None, dimension_separator=".")
    z[...] = a


def write_v3(path, a):
    """A zarr v3 array with one chunk and the plain `bytes` codec (little-endian)."""
    os.makedirs(os.path.join(path, "c"), exist_ok=True)
    meta = {"zarr_format": 3, "node_type": "array", "shape": list(a.shape), "data_type": a.dtype.name,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(a.shape)}},
            "chunk_key_encoding": {"name": "default"}, "fill_value": 0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]}
    with open(os.path.join(path, "zarr.json"), "w") as f:
        json.dump(meta, f)
    key = os.path.join(path, "c", *["0"] * a.ndim) if a.ndim else os.path.join(path, "c")
    os.makedirs(os.path.dirname(key), exist_ok=True)
    with open(key, "wb") as f:
        f.write(np.asarray(a).copy(order="C").astype(a.dtype.newbyteorder("<")).tobytes())


def make_orbax(git):
    out = os.path.join(ROOT, "orbax")
    shutil.rmtree(out, ignore_errors=True)
    commit = git_head(git)
    for name in ("aggregate_all.checkpoint", "aggregate_some.checkpoint"):
        vendor(git, commit, "checkpoint/orbax/checkpoint/testing/" + name, os.path.join(out, name))
    cases = []
    # Orbax's own values for these goldens (orbax/checkpoint/testing: the saved tree).
    want = {"a": np.arange(8), "b": np.arange(16) * 2, "c/a": np.arange(8).reshape(2, 4) * 3,
            "c/e": np.arange(16).reshape(4, 4) * 4}
    for name in ("aggregate_all.checkpoint", "aggregate_some.checkpoint"):
        item = os.path.join(out, name)
        tensors, leaves = expected_from_aggregate(item, load_msgpack(os.path.join(item, "checkpoint")))
        assert tensors == {k: tensor_entry(v) for k, v in want.items()}, name
        how = ("msgpack-python + numpy for ext 1 values; PLACEHOLDER arrays decoded with the zstd CLI + numpy; "
               "equal to the tree Orbax saved (arange(8), arange(16)*2, ...)")
        cases.append(read_case(name, tensors, leaves, how))
    cases.append(read_case("aggregate_some.checkpoint/checkpoint", cases[-1]["tensors"], cases[-1]["leaves"],
                           cases[-1]["how"]))

    gen = os.path.join(out, "gen")
    os.makedirs(gen)
    A = np.arange(6, dtype=np.float32).reshape(2, 3)  # the zarr v2 copy of "w"
    B = A * 10 + 0.5                                    # the zarr v3 copy of "w"

    def both(folder):
        write_v2(os.path.join(folder, "w"), A)
        write_v3(os.path.join(folder, "w"), B)

    # A directory holding both .zarray and zarr.json: _METADATA decides.
    for name, use_zarr3, value in (("both_declared_v3", True, B), ("both_declared_v2", False, A)):
        d = os.path.join(gen, name)
        both(d)
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata_json({("w",): ("jax.Array", False)}, use_zarr3))
        cases.append(read_case("gen/" + name, {"w": tensor_entry(value)}, {},
                               "numpy (the array written to the declared zarr version)"))
    # No _METADATA: the aggregate file's placeholder; nothing declares a version, Orbax's
    # default (zarr v2) is read.
    d = os.path.join(gen, "both_undeclared")
    both(d)
    write_msgpack(os.path.join(d, "checkpoint"), {"w": "PLACEHOLDER://w"})
    cases.append(read_case("gen/both_undeclared", {"w": tensor_entry(A)}, {},
                           "numpy (the zarr v2 copy: Orbax restores undeclared items with use_zarr3=False)"))
    # _METADATA declares zarr3 but only a .zarray exists: refused, naming the array.
    d = os.path.join(gen, "declared_v3_only_v2")
    write_v2(os.path.join(d, "w"), A)
    with open(os.path.join(d, "_METADATA"), "w") as f:
        f.write(metadata_json({("w",): ("jax.Array", False)}, True))
    cases.append({"path": "gen/declared_v3_only_v2", "expect": "refuse",
                  "message": ["array 'w'", "declares zarr v3", ".zarray"],
                  "why": "Orbax opens the array with the zarr3 driver _METADATA names; there is no zarr.json"})

    # Aggregate layout with every kind of value, placeholders to chunked zarr v2 arrays.
    d = os.path.join(gen, "aggregate_mixed")
    big = (np.arange(60, dtype=np.float32).reshape(6, 10) - 20) / 8
    ids = np.arange(12, dtype=np.int32).reshape(3, 4) * -3
    write_v2(os.path.join(d, "params.big"), big, compressor=numcodecs.Zstd(level=1), chunks=(4, 6))
    write_v2(os.path.join(d, "params.ids"), ids, compressor=numcodecs.Zlib(level=5), chunks=(2, 4))
    small = np.array([[1.5, -2.25], [0.0, 7.0]], dtype=np.float64)
    agg = {"params": {"big": "PLACEHOLDER://params.big", "ids": "PLACEHOLDER://params.ids",
                      "small": ndarray_ext(small)},
           "step": 42, "lr": 0.125, "name": "run-7", "count": npscalar_ext(np.int64(9)), "nothing": None}
    write_msgpack(os.path.join(d, "checkpoint"), agg)
    entries = {("params", "big"): ("jax.Array", False), ("params", "ids"): ("np.ndarray", False),
               ("params", "small"): ("np.ndarray", True), ("step",): ("scalar", True),
               ("lr",): ("scalar", True), ("name",): ("string", True), ("count",): ("np.ndarray", True),
               ("nothing",): ("None", True)}
    with open(os.path.join(d, "_METADATA"), "w") as f:
        f.write(metadata_json(entries, False))
    tensors = {"params/big": tensor_entry(zarr.open(os.path.join(d, "params.big"), mode="r")[...]),
               "params/ids": tensor_entry(zarr.open(os.path.join(d, "params.ids"), mode="r")[...]),
               "params/small": tensor_entry(small), "count": tensor_entry(np.array(9, dtype=np.int64))}
    assert tensors["params/big"] == tensor_entry(big)
    leaves = {"step": 42, "lr": 0.125, "name": "run-7", "nothing": None}
    how = "numpy values written here; zarr arrays read back with zarr-python 2.13"
    cases.append(read_case("gen/aggregate_mixed", tensors, leaves, how))
    # The same without _METADATA (pre-_METADATA Orbax): the aggregate alone is the tree.
    d2 = os.path.join(gen, "legacy_no_metadata")
    shutil.copytree(d, d2)
    os.remove(os.path.join(d2, "_METADATA"))
    cases.append(read_case("gen/legacy_no_metadata", tensors, leaves, how))

    # skip_deserialize: true but the aggregate file has no value: refused, naming the leaf.
    d = os.path.join(gen, "skip_without_value")
    write_msgpack(os.path.join(d, "checkpoint"), {"a": ndarray_ext(np.arange(3))})
    with open(os.path.join(d, "_METADATA"), "w") as f:
        f.write(metadata_json({("a",): ("np.ndarray", True), ("b",): ("np.ndarray", True)}, False))
    cases.append({"path": "gen/skip_without_value", "expect": "refuse",
                  "message": ["'b'", "skip_deserialize", "no value"],
                  "why": "_METADATA says b's value is in the aggregate file, which lacks it"})
    # A placeholder whose array is absent: refused, naming the array and the placeholder.
    d = os.path.join(gen, "placeholder_missing")
    write_msgpack(os.path.join(d, "checkpoint"), {"a": ndarray_ext(np.arange(3)), "b": "PLACEHOLDER://b"})
    with open(os.path.join(d, "_METADATA"), "w") as f:
        f.write(metadata_json({("a",): ("np.ndarray", True), ("b",): ("np.ndarray", False)}, False))
    cases.append({"path": "gen/placeholder_missing", "expect": "refuse",
                  "message": ["array 'b'", "PLACEHOLDER://b", "missing"],
                  "why": "the placeholder's zarr array is not there"})
    write_manifest(out, "orbax", "github:google/orbax@" + commit + " (+ cases built by tools/gen_wild_orbax.py)",
                   "Apache-2.0", cases)
    return commit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t5x-git", required=True)
    ap.add_argument("--orbax-git", required=True)
    args = ap.parse_args()
    print("t5x", make_t5x(args.t5x_git))
    print("orbax", make_orbax(args.orbax_git))


if __name__ == "__main__":
    main()
