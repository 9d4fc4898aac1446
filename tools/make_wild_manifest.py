#!/usr/bin/python3
"""Writes tests/data/wild/<project>/MANIFEST.json for the files vendored from other projects
(issue #15, "a corpus test from the wild"), with every expected value computed here by the
reference implementations, never by ckptbridge:

  * NumPy .npy/.npz ........ numpy.load
  * zarr v2 ................ zarr-python 2.13 (zarr.open_array / open_group) with numcodecs 0.11
  * zarr v3 ................ decoded by hand below (zarr-python 2.13 has no v3) with numcodecs'
                             gzip/zstd/blosc/bz2 and numpy; the sharding index is checked with a
                             hand-written CRC-32C; every result is also compared with the data the
                             project's own generator script wrote (zarrita.js scripts/generate-v3.py,
                             zarrs tests/data/v3_generate.py and src/array.rs)
  * PyTorch ................ torch.load(weights_only=True) (Debian python3-torch)
  * safetensors ............ the 8-byte length + JSON header parsed by hand, compared with the
                             arrays the project's samples/generate.py saved

Run from the repository root:  /usr/bin/python3 tools/make_wild_manifest.py
"""
import hashlib
import json
import os
import struct
import sys
import zipfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "wild")

# ---------------------------------------------------------------------------------------------
# common helpers

NP_TO_CKB = {
    "f8": "F64", "f4": "F32", "f2": "F16",
    "i8": "I64", "i4": "I32", "i2": "I16", "i1": "I8",
    "u8": "U64", "u4": "U32", "u2": "U16", "u1": "U8",
    "b1": "BOOL", "c8": "C64", "c16": "C128",
}


def ckb_dtype(dt):
    dt = np.dtype(dt)
    return NP_TO_CKB[dt.kind + str(dt.itemsize)]


def le_bytes(a):
    """C-order little-endian bytes of an array (the manifest's sha256 definition)."""
    a = np.asarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a).tobytes(order="C")


def tensor_entry(a):
    a = np.asarray(a)
    return {"dtype": ckb_dtype(a.dtype), "shape": list(a.shape), "sha256": hashlib.sha256(le_bytes(a)).hexdigest()}


def read_case(path, fmt, tensors, how, leaves=None, convert=False):
    c = {"path": path, "expect": "read", "format": fmt, "tensors": tensors}
    if leaves is None and fmt != "zarr":
        leaves = {}  # no non-tensor leaves (zarr: attributes are the zarr reader's choice, not checked)
    if leaves is not None:
        c["leaves"] = leaves
    c["how"] = how
    if convert:
        c["convert"] = True  # the corpus test also converts this one to safetensors
    return c


def refuse_case(path, message, why):
    return {"path": path, "expect": "refuse", "message": message, "why": why}


def write_manifest(project, source, license_, cases):
    d = os.path.join(ROOT, project)
    for c in cases:
        assert os.path.exists(os.path.join(d, c["path"])), c["path"]
    m = {"project": project, "source": source, "license": license_, "cases": cases}
    with open(os.path.join(d, "MANIFEST.json"), "w") as f:
        json.dump(m, f, indent=1, ensure_ascii=False)
        f.write("\n")
    n_read = sum(c["expect"] == "read" for c in cases)
    print(f"{project}: {len(cases)} cases ({n_read} read, {len(cases) - n_read} refuse)")


# ---------------------------------------------------------------------------------------------
# zarr v2 through zarr-python 2.13

def zarr2_array(path):
    import zarr
    meta = json.load(open(os.path.join(path, ".zarray")))
    comp = meta.get("compressor") or {}
    if comp.get("id") == "zstd" and comp.get("checksum") is False:
        # numcodecs 0.11 predates the zstd "checksum" option (false = no checksum, its only
        # behaviour): open an in-memory copy without the key
        store = {}
        for dirpath, _, names in os.walk(path):
            for n in names:
                key = os.path.relpath(os.path.join(dirpath, n), path).replace(os.sep, "/")
                store[key] = open(os.path.join(dirpath, n), "rb").read()
        del comp["checksum"]
        store[".zarray"] = json.dumps(meta).encode()
        return zarr.open_array(store=store, mode="r")[...]
    return zarr.open_array(store=path, mode="r")[...]


def zarr2_group(path):
    import zarr
    g = zarr.open_group(store=path, mode="r")
    out = {}

    def walk(grp, prefix):
        for name, arr in grp.arrays():
            out[prefix + name] = arr[...]
        for name, sub in grp.groups():
            walk(sub, prefix + name + "/")

    walk(g, "")
    return out


HOW_ZARR2 = "zarr-python 2.13 zarr.open_array(...)[...] with numcodecs 0.11"

# ---------------------------------------------------------------------------------------------
# zarr v3 decoded by hand

_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


V3_DTYPES = {"bool": "b1", "int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8", "uint8": "u1",
             "uint16": "u2", "uint32": "u4", "uint64": "u8", "float16": "f2", "float32": "f4", "float64": "f8"}


def v3_fill(v, dt):
    if isinstance(v, str):
        return {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf}[v]
    return v


def bytes_to_bytes_decode(codec, data):
    import numcodecs
    name, cfg = codec["name"], codec.get("configuration", {})
    if name == "gzip":
        return numcodecs.GZip().decode(data)
    if name == "zstd":
        return numcodecs.Zstd().decode(data)
    if name == "blosc":
        return numcodecs.Blosc().decode(data)
    if name == "numcodecs.bz2":
        return numcodecs.BZ2().decode(data)
    if name == "numcodecs.zlib":
        return numcodecs.Zlib().decode(data)
    if name == "crc32c":
        body, stored = data[:-4], struct.unpack("<I", data[-4:])[0]
        assert crc32c(body) == stored, "crc32c mismatch"
        return body
    raise NotImplementedError(name)


def decode_chunk(codecs, data, shape, dtype, fill):
    """Decodes one chunk's bytes with a v3 codec list into an array of `shape`."""
    a2a, a2b, b2b = [], None, []
    for c in codecs:
        if c["name"] in ("transpose", "numcodecs.delta"):
            assert a2b is None
            a2a.append(c)
        elif c["name"] in ("bytes", "sharding_indexed"):
            a2b = c
        else:
            b2b.append(c)
    for c in reversed(b2b):
        data = bytes(bytes_to_bytes_decode(c, data))
    # the shape the array->bytes codec sees: shape after the array->array codecs
    shapes = [tuple(shape)]
    for c in a2a:
        if c["name"] == "transpose":
            shapes.append(tuple(shapes[-1][i] for i in c["configuration"]["order"]))
        else:
            shapes.append(shapes[-1])
    inner_shape = shapes[-1]
    if a2b["name"] == "bytes":
        endian = a2b.get("configuration", {}).get("endian", "little")
        dt = np.dtype(dtype).newbyteorder("<" if endian == "little" else ">")
        arr = np.frombuffer(data, dtype=dt).reshape(inner_shape).astype(np.dtype(dtype).newbyteorder("<"))
    else:
        arr = decode_shard(a2b["configuration"], data, inner_shape, dtype, fill)
    for c, s in zip(reversed(a2a), reversed(shapes[:-1])):
        if c["name"] == "transpose":
            order = c["configuration"]["order"]
            inv = [order.index(i) for i in range(len(order))]
            arr = np.transpose(arr, inv)
        else:  # numcodecs.delta: cumulative sum over the C-order flattened chunk
            import numcodecs
            d = numcodecs.Delta(dtype=c["configuration"]["dtype"])
            arr = np.asarray(d.decode(np.ascontiguousarray(arr))).reshape(arr.shape)
    assert arr.shape == tuple(shape)
    return np.ascontiguousarray(arr)


def decode_shard(cfg, data, shard_shape, dtype, fill):
    inner = cfg["chunk_shape"]
    grid = [s // c for s, c in zip(shard_shape, inner)]
    n = int(np.prod(grid))
    index_len = 16 * n + 4  # bytes + crc32c index codecs
    assert [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
    if cfg.get("index_location", "end") == "end":
        raw_index = data[-index_len:]
    else:
        raw_index = data[:index_len]
    raw_index = bytes_to_bytes_decode({"name": "crc32c"}, raw_index)
    index = np.frombuffer(raw_index, dtype="<u8").reshape(grid + [2])
    out = np.full(shard_shape, fill, dtype=dtype)
    for idx in np.ndindex(*grid):
        off, nb = (int(x) for x in index[idx])
        if off == 2**64 - 1 and nb == 2**64 - 1:
            continue
        chunk = decode_chunk(cfg["codecs"], data[off:off + nb], inner, dtype, fill)
        sl = tuple(slice(i * c, (i + 1) * c) for i, c in zip(idx, inner))
        out[sl] = chunk
    return out


def zarr3_array(path):
    meta = json.load(open(os.path.join(path, "zarr.json")))
    assert meta["node_type"] == "array"
    dtype = np.dtype(V3_DTYPES[meta["data_type"]])
    shape = meta["shape"]
    chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
    fill = v3_fill(meta["fill_value"], dtype)
    enc = meta.get("chunk_key_encoding", {"name": "default"})
    sep = enc.get("configuration", {}).get("separator", "/" if enc["name"] == "default" else ".")
    out = np.full(shape, fill, dtype=dtype)
    grid = [-(-s // c) for s, c in zip(shape, chunk)]
    for idx in np.ndindex(*grid):
        key = sep.join(str(i) for i in idx)
        if enc["name"] == "default":
            key = "c" + sep + key
        p = os.path.join(path, *key.split("/"))
        if not os.path.exists(p):
            continue  # missing chunk: the fill value
        data = open(p, "rb").read()
        a = decode_chunk(meta["codecs"], data, chunk, dtype, fill)
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunk, shape))
        out[sl] = a[tuple(slice(0, s.stop - s.start) for s in sl)]
    return out


def zarr3_group(path):
    out = {}

    def walk(p, prefix):
        for name in sorted(os.listdir(p)):
            q = os.path.join(p, name)
            mj = os.path.join(q, "zarr.json")
            if not os.path.isfile(mj):
                continue
            node = json.load(open(mj))["node_type"]
            if node == "array":
                out[prefix + name] = zarr3_array(q)
            else:
                walk(q, prefix + name + "/")

    walk(path, "")
    return out


HOW_ZARR3 = ("zarr v3 decoded by hand in tools/make_wild_manifest.py (numcodecs gzip/zstd/blosc/bz2, "
             "numpy, hand CRC-32C of the shard index)")


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    assert le_bytes(a) == le_bytes(b), (a, b)


# ---------------------------------------------------------------------------------------------
# zarr-python's v2 fixtures (branch support/v2; fixture/<n>/<compressor>: data from
# zarr/tests/test_storage.py's test_format_compatibility)

def zarr_python():
    base = os.path.join(ROOT, "zarr-python")
    cases = []
    # fixture/2 is a group: <i4 [1111], order F, one array per compressor (0 none, 1 zlib, 2 bz2,
    # 3-5 blosc zstd with shuffle 0/1/2, 6 blosc lz4)
    g = zarr2_group(os.path.join(base, "fixture/2"))
    cases.append(read_case("fixture/2", "zarr", {k: tensor_entry(v) for k, v in g.items()},
                           "zarr-python 2.13 zarr.open_group; the group of fixture/2 (<i4 in every compressor)"))
    for sub in range(7):
        p = f"fixture/2/{sub}"
        a = zarr2_array(os.path.join(base, p))
        cases.append(read_case(p, "zarr", {str(sub): tensor_entry(a)}, HOW_ZARR2, convert=(sub == 2)))
    for p in ["fixture/4/1", "fixture/5/2", "fixture/7/3", "fixture/9/4", "fixture/11/5", "fixture/13/6",
              "fixture/17/1", "fixture/18/2", "fixture/19/1", "fixture/20/3", "fixture/21/4", "fixture/23/6",
              "fixture/flat", "fixture/nested"]:
        a = zarr2_array(os.path.join(base, p))
        cases.append(read_case(p, "zarr", {os.path.basename(p): tensor_entry(a)}, HOW_ZARR2,
                               convert=p in ("fixture/19/1", "fixture/nested")))
    cases.append(refuse_case("fixture/14/1", ["|S1"], "fixed-length byte strings (|S1) are not tensors"))
    cases.append(refuse_case("fixture/15/1", ["<U4"], "fixed-length unicode strings (<U4) are not tensors"))
    write_manifest("zarr-python", "github:zarr-developers/zarr-python@c11b3828de218e449ec73161cb2cf9a70b0d717e",
                   "MIT", cases)


# ---------------------------------------------------------------------------------------------
# zarrita.js fixtures (scripts/generate-v2.py, scripts/generate-v3.py)

ZARRITA_V3_DATA = {  # what scripts/generate-v3.py wrote
    "1d.contiguous.gzip.i2": np.array([1, 2, 3, 4], "i2"),
    "1d.contiguous.blosc.i2": np.array([1, 2, 3, 4], "i2"),
    "1d.contiguous.raw.i2": np.array([1, 2, 3, 4], "i2"),
    "1d.contiguous.i4": np.array([1, 2, 3, 4], "i4"),
    "1d.contiguous.u1": np.array([255, 0, 255, 0], "u1"),
    "1d.contiguous.f2.le": np.array([-1000.5, 0, 1000.5, 0], "f2"),
    "1d.contiguous.f4.le": np.array([-1000.5, 0, 1000.5, 0], "f4"),
    "1d.contiguous.f4.be": np.array([-1000.5, 0, 1000.5, 0], "f4"),
    "1d.contiguous.f8": np.array([1.5, 2.5, 3.5, 4.5], "f8"),
    "1d.contiguous.b1": np.array([True, False, True, False]),
    "1d.chunked.i2": np.array([1, 2, 3, 4], "i2"),
    "1d.chunked.ragged.i2": np.array([1, 2, 3, 4, 5], "i2"),
    "2d.contiguous.i2": np.array([[1, 2], [3, 4]], "i2"),
    "2d.chunked.i2": np.array([[1, 2], [3, 4]], "i2"),
    "2d.chunked.ragged.i2": np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], "i2"),
    "3d.contiguous.i2": np.arange(27, dtype="i2").reshape(3, 3, 3),
    "3d.chunked.i2": np.arange(27, dtype="i2").reshape(3, 3, 3),
    "3d.chunked.mixed.i2.C": np.arange(27, dtype="i2").reshape(3, 3, 3),
    "3d.chunked.mixed.i2.F": np.arange(27, dtype="i2").reshape(3, 3, 3),
    "1d.contiguous.compressed.sharded.i2": np.array([1, 2, 3, 4], "i2"),
    "1d.contiguous.compressed.sharded.i4": np.array([1, 2, 3, 4], "i4"),
    "1d.contiguous.compressed.sharded.u1": np.array([255, 0, 255, 0], "u1"),
    "1d.contiguous.compressed.sharded.f4": np.array([-1000.5, 0, 1000.5, 0], "f4"),
    "1d.contiguous.compressed.sharded.f8": np.array([1.5, 2.5, 3.5, 4.5], "f8"),
    "1d.contiguous.compressed.sharded.b1": np.array([True, False, True, False]),
    "1d.chunked.compressed.sharded.i2": np.array([1, 2, 3, 4], "i2"),
    "1d.chunked.filled.compressed.sharded.i2": np.array([1, 2, 0, 0], "i2"),
    "2d.contiguous.compressed.sharded.i2": np.arange(1, 5, dtype="i2").reshape(2, 2),
    "2d.chunked.compressed.sharded.filled.i2": np.arange(16, dtype="i2").reshape(4, 4),
    "2d.chunked.compressed.sharded.i2": np.arange(16, dtype="i2").reshape(4, 4) + 1,
    "2d.chunked.ragged.compressed.sharded.i2": np.arange(1, 10, dtype="i2").reshape(3, 3),
    "3d.contiguous.compressed.sharded.i2": np.arange(27, dtype="i2").reshape(3, 3, 3),
    "3d.chunked.compressed.sharded.i2": np.arange(64, dtype="i2").reshape(4, 4, 4),
    "3d.chunked.mixed.compressed.sharded.i2": np.arange(27, dtype="i2").reshape(3, 3, 3),
    "1d.contiguous.delta.i4": np.array([1, 2, 3, 4], "i4"),
    "3d.contiguous.delta.i4.mixed": np.arange(27, dtype="i4").reshape(3, 3, 3),
}
ZARRITA_V3_STRINGS = ["1d.contiguous.string.vlen", "1d.chunked.string.vlen", "2d.chunked.string.vlen",
                      "1d.string.empty", "1d.string.unicode", "1d.contiguous.string.compressed"]


def zarrita():
    base = os.path.join(ROOT, "zarrita.js")
    cases = []
    v2 = "fixtures/v2/data.zarr"
    strings = {"1d.contiguous.S7": "|S7", "1d.contiguous.U13.be": ">U13", "1d.contiguous.U13.le": "<U13",
               "1d.contiguous.U7": "<U7", "2d.chunked.U7": "<U7"}
    for name in sorted(os.listdir(os.path.join(base, v2))):
        p = f"{v2}/{name}"
        if not os.path.isfile(os.path.join(base, p, ".zarray")):
            continue
        meta = json.load(open(os.path.join(base, p, ".zarray")))
        if name in strings:
            assert meta["dtype"] == strings[name], (name, meta["dtype"])
            cases.append(refuse_case(p, [strings[name]], f"fixed-length strings ({strings[name]}) are not tensors"))
        elif meta["dtype"] == "|O":
            codec = (meta.get("filters") or [{}])[0].get("id")
            cases.append(refuse_case(p, ["|O"], f"Python object array (object codec {codec}) is not a tensor"))
        elif any(f["id"] == "bitround" for f in meta.get("filters") or []):
            cases.append(refuse_case(p, ["bitround"],
                                     "numcodecs BitRound filter: not among the filters ckptbridge implements "
                                     "(delta, shuffle, fixedscaleoffset); its decode is the identity"))
        else:
            a = zarr2_array(os.path.join(base, p))
            cases.append(read_case(p, "zarr", {name: tensor_entry(a)}, HOW_ZARR2,
                                   convert=name in ("1d.contiguous.fixedscaleoffset.f4", "3d.chunked.mixed.i2.F")))
    v3 = "fixtures/v3/data.zarr"
    for name in sorted(os.listdir(os.path.join(base, v3))):
        p = f"{v3}/{name}"
        mj = os.path.join(base, p, "zarr.json")
        if not os.path.isfile(mj) or json.load(open(mj))["node_type"] != "array":
            continue
        if name in ZARRITA_V3_STRINGS:
            cases.append(refuse_case(p, ["string"], "variable-length strings (data_type string, vlen-utf8) are not tensors"))
            continue
        a = zarr3_array(os.path.join(base, p))
        same(a, ZARRITA_V3_DATA[name])
        cases.append(read_case(p, "zarr", {name: tensor_entry(a)},
                               HOW_ZARR3 + "; equals the data scripts/generate-v3.py wrote",
                               convert=name in ("3d.chunked.compressed.sharded.i2", "3d.contiguous.delta.i4.mixed")))
    assert not set(ZARRITA_V3_DATA) - {os.path.basename(c["path"]) for c in cases}
    g = zarr3_group(os.path.join(base, v3, "consolidated"))
    same(g["1d.chunked.i2"], np.array([1, 2, 3, 4], "i2"))
    same(g["2d.contiguous.i2"], np.array([[1, 2], [3, 4]], "i2"))
    same(g["nested/1d.i2"], np.array([10, 20, 30, 40], "i2"))
    cases.append(read_case(f"{v3}/consolidated", "zarr", {k: tensor_entry(v) for k, v in g.items()},
                           HOW_ZARR3 + "; a v3 group with a nested group; equals generate-v3.py's data"))
    write_manifest("zarrita.js", "github:manzt/zarrita.js@c5d7a7df397f7e953cbacd1868a94519ba37e4a7", "MIT", cases)


# ---------------------------------------------------------------------------------------------
# zarrs test data

def zarrs():
    base = os.path.join(ROOT, "zarrs")
    t = "zarrs/tests/data"
    cases = []
    arange100 = np.arange(100, dtype="f4").reshape(10, 10)  # src/array.rs array_v3_numcodecs / v3_generate.py
    for c in ["blosc_C", "blosc_F", "bz2_C", "gzip_C", "none_F", "zstd_C"]:
        p = f"{t}/v2/array_{c}.zarr"
        a = zarr2_array(os.path.join(base, p))
        cases.append(read_case(p, "zarr", {f"array_{c}.zarr": tensor_entry(a)}, HOW_ZARR2, convert=c == "blosc_F"))
    cases.append(refuse_case(f"{t}/v2/array_pcodec_C.zarr", ["pcodec"], "pcodec compressor: no Debian library"))
    cases.append(refuse_case(f"{t}/v2/array_zfpy_C.zarr", ["zfpy"], "zfpy (lossy ZFP) compressor: no Debian library"))
    # v3/*.zarr hold both .zarray and zarr.json (zarrs' v2->v3 metadata conversion of v2/*); both describe
    # the same chunks, so the values are the same whichever a reader follows: check that here.
    for c in ["blosc_transpose", "none_transpose", "bz2", "zstd", "gzip"]:
        p = f"{t}/v3/array_{c}.zarr"
        a3 = zarr3_array(os.path.join(base, p))
        a2 = zarr2_array(os.path.join(base, p))
        same(a3, a2)
        cases.append(read_case(p, "zarr", {f"array_{c}.zarr": tensor_entry(a3)},
                               HOW_ZARR3 + "; equals zarr-python 2.13 reading the .zarray beside it"))
    cases.append(refuse_case(f"{t}/v3/array_pcodec.zarr", ["pcodec"], "pcodec: no Debian library"))
    cases.append(refuse_case(f"{t}/v3/array_optional.zarr/array", ["optional"],
                             "zarrs' experimental 'optional' data type (masked values) is not a tensor type"))
    for c in ["none", "blosc", "bz2", "gzip", "zlib", "zstd"]:
        p = f"{t}/v3_zarr_python/array_{c}.zarr"
        a = zarr3_array(os.path.join(base, p))
        same(a, arange100)
        cases.append(read_case(p, "zarr", {f"array_{c}.zarr": tensor_entry(a)},
                               HOW_ZARR3 + "; equals arange(100).reshape(10,10) as zarrs' src/array.rs asserts"))
    for c in ["adler32", "fletcher32"]:
        cases.append(refuse_case(f"{t}/v3_zarr_python/array_{c}.zarr", [f"numcodecs.{c}"],
                                 f"numcodecs {c} checksum codec: not implemented (a checksum is verified or refused)"))
    cases.append(refuse_case(f"{t}/v3_zarr_python/array_pcodec.zarr", ["pcodec"], "pcodec: no Debian library"))
    cases.append(refuse_case(f"{t}/v3_zarr_python/array_zfpy.zarr", ["zfpy"], "zfpy: no Debian library"))
    p = f"{t}/sharded_array_write_read.zarr/group"
    g = zarr3_group(os.path.join(base, p))
    same(g["array"], np.arange(64, dtype="u2").reshape(8, 8))  # what examples/sharded_array_write_read.rs stores
    cases.append(read_case(p, "zarr", {k: tensor_entry(v) for k, v in g.items()},
                           HOW_ZARR3 + "; equals arange(64) as zarrs' examples/sharded_array_write_read.rs wrote it; a v3 group holding a sharded uint16 array (gzip inner chunks, crc32c index)",
                           convert=True))
    p = f"{t}/array_write_read.zarr"
    g = zarr3_group(os.path.join(base, p))
    assert np.isnan(g["group/array"][:4, :4]).all()  # chunk c/0/0 is absent: the NaN fill value
    cases.append(read_case(p, "zarr", {k: tensor_entry(v) for k, v in g.items()},
                           HOW_ZARR3 + "; chunk c/0/0 is absent and reads as the fill value NaN"))
    cases.append(refuse_case(f"{t}/zarr_python_compat/datetime64[ns].zarr", ["datetime64"],
                             "numpy.datetime64 data type is not a tensor type"))
    cases.append(refuse_case(f"{t}/zarr_python_compat/fixed_length_utf32_v2_le.zarr", ["<U4"],
                             "fixed-length unicode strings are not tensors"))
    cases.append(refuse_case(f"{t}/zarr_python_compat/v3_bytes.zarr", ["variable_length_bytes"],
                             "variable-length bytes are not tensors"))
    write_manifest("zarrs", "github:zarrs/zarrs@85b26a34cb92f3e128a3f9d74cc2894cd7c1e6a5", "MIT OR Apache-2.0", cases)


# ---------------------------------------------------------------------------------------------
# NumPy's test data: all object arrays (Python 2 and 3 pickles)

def numpy_data():
    cases = []
    for f in ["py2-np0-objarr.npy", "py2-objarr.npy", "py3-objarr.npy", "py2-objarr.npz", "py3-objarr.npz"]:
        p = f"numpy/lib/tests/data/{f}"
        full = os.path.join(ROOT, "numpy", p)
        if f.endswith(".npy"):
            with open(full, "rb") as fh:
                np.lib.format.read_magic(fh)
                assert np.lib.format.read_array_header_1_0(fh)[2] == np.dtype(object)
        else:
            with zipfile.ZipFile(full) as z:
                assert z.namelist() == ["x.npy"]
        msg = ["Python objects", "pickle"] if f.endswith(".npy") else ["x.npy", "Python objects", "pickle"]
        cases.append(refuse_case(p, msg, "object array: its elements are a pickle (Python " + f[2] +
                                 "), which ckptbridge never unpickles"))
    write_manifest("numpy", "github:numpy/numpy@1f90bbb55e65e7de68921bc3f1a2d94492fdf689", "BSD-3-Clause", cases)


# ---------------------------------------------------------------------------------------------
# safetensors' samples (commit bd71d43, samples/generate.py) + attacks/safetensors_abuse_attempt_1.py

def safetensors_parse(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    data = b[8 + n:]
    meta = header.pop("__metadata__", None)
    out = {}
    np_of = {"I8": "<i1", "U8": "<u1", "I16": "<i2", "U16": "<u2", "I32": "<i4", "U32": "<u4", "I64": "<i8",
             "U64": "<u8", "F16": "<f2", "F32": "<f4", "F64": "<f8", "BOOL": "|b1"}
    for k, v in header.items():
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(data[s:e], dtype=np_of[v["dtype"]]).reshape(v["shape"])
        assert v["dtype"] == ckb_dtype(out[k].dtype)
    return out, meta


def safetensors_data():
    base = os.path.join(ROOT, "safetensors")
    cases = []
    everything = {}
    for f in sorted(os.listdir(os.path.join(base, "samples"))):
        if not f.endswith(".safetensors") or f == "overall.safetensors":
            continue
        code = f[:-len(".safetensors")]
        t, meta = safetensors_parse(os.path.join(base, "samples", f))
        assert meta == {"test": "a"} and list(t) == [code]
        with np.errstate(all="ignore"):
            ref = np.array(range(-3, 3)).astype("<" + code)  # generate.py's array (wrapping for unsigned)
        same(t[code], ref)
        everything.update(t)
        cases.append(read_case(f"samples/{f}", "safetensors", {code: tensor_entry(t[code])},
                               "header parsed by hand; equals np.array(range(-3, 3), dtype='<" + code +
                               "') as samples/generate.py saved it", convert=code == "e"))
    t, meta = safetensors_parse(os.path.join(base, "samples/overall.safetensors"))
    assert set(t) == set(everything)
    for k in t:
        same(t[k], everything[k])
    cases.append(read_case("samples/overall.safetensors", "safetensors", {k: tensor_entry(v) for k, v in t.items()},
                           "header parsed by hand; every tensor equals its single-type sample"))
    cases.append(refuse_case("attacks/safetensors_abuse_attempt_1.safetensors", ["header"],
                             "header length field 1000 is longer than the 88-byte file "
                             "(attacks/safetensors_abuse_attempt_1.py; the reference loader fails too)"))
    write_manifest("safetensors", "github:huggingface/safetensors@bd71d434a6ce4c9e96d5477ba1ef8b2be0f3e1fd",
                   "Apache-2.0 (samples/: Unlicense, public domain)", cases)


def make_safetensors_attempt_1():
    """attacks/safetensors_abuse_attempt_1.py without torch/safetensors: save_file({"weight":
    zeros((2, 2))}) then overwrite the 8-byte header length with 1000."""
    header = json.dumps({"weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
                        separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors pads the header to 8 bytes with spaces
    body = struct.pack("<Q", len(header)) + header + bytes(16)
    body = struct.pack("<Q", 1000) + body[8:]
    d = os.path.join(ROOT, "safetensors", "attacks")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "safetensors_abuse_attempt_1.safetensors"), "wb") as f:
        f.write(body)


# ---------------------------------------------------------------------------------------------
# PyTorch files: candle's samples and picklescan's benign models

def torch_tensors(path):
    import torch
    obj = torch.load(path, weights_only=True)
    out = {}

    def walk(o, prefix):
        if isinstance(o, torch.Tensor):
            out[prefix] = o.detach().contiguous().numpy()
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, f"{prefix}/{k}" if prefix else str(k))
        else:
            raise TypeError(f"{path}: {prefix}: {type(o)}")

    # a bare tensor saved at the root: ckptbridge names it "tensor" (formats/torch/torch_tree.cpp)
    walk(obj, "" if isinstance(obj, dict) else "tensor")
    return out


HOW_TORCH = "torch 1.13 torch.load(weights_only=True) (Debian python3-torch)"


def candle():
    base = os.path.join(ROOT, "candle")
    d = "candle-core/tests"
    cases = []
    for f in ["test.pt", "test_with_key.pt", "fortran_tensor_3d.pth"]:
        t = torch_tensors(os.path.join(base, d, f))
        cases.append(read_case(f"{d}/{f}", "torch", {k: tensor_entry(v) for k, v in t.items()}, HOW_TORCH,
                               convert=f == "fortran_tensor_3d.pth"))
    a = np.load(os.path.join(base, d, "test.npy"))
    cases.append(read_case(f"{d}/test.npy", "npy", {"test": tensor_entry(a)}, "numpy 1.24 np.load"))
    with np.load(os.path.join(base, d, "test.npz")) as z:
        cases.append(read_case(f"{d}/test.npz", "npz", {k: tensor_entry(z[k]) for k in z.files}, "numpy 1.24 np.load",
                               convert=True))
    write_manifest("candle", "github:huggingface/candle@2a13b0f3ff62f7e67013597f2996f764c5735e21",
                   "MIT OR Apache-2.0", cases)


# ---------------------------------------------------------------------------------------------
# picklescan: malicious pickles (all refused, never executed) and its few benign files

def picklescan():
    base = os.path.join(ROOT, "picklescan")
    cases = []
    benign_torch = {"tests/data/pytorch_model.bin", "tests/data/new_pytorch_model.bin"}
    benign_numpy = {"tests/data2/int_array.npy", "tests/data2/int_arrays.npz", "tests/data2/int_arrays_compressed.npz"}
    pickled_numpy = {"tests/data2/object_array.npy": ["Python objects", "pickle"],
                     "tests/data2/dns_exfiltration.npy": ["Python objects", "pickle"],
                     "tests/data2/object_arrays.npz": ["a.npy", "Python objects", "pickle"],
                     "tests/data2/object_arrays_compressed.npz": ["a.npy", "Python objects", "pickle"]}
    files = []
    for sub in ["tests/data", "tests/data2"]:
        files += [f"{sub}/{f}" for f in sorted(os.listdir(os.path.join(base, sub)))]
    for p in files:
        full = os.path.join(base, p)
        if p in benign_torch:
            t = torch_tensors(full)
            cases.append(read_case(p, "torch", {k: tensor_entry(v) for k, v in t.items()},
                                   HOW_TORCH + "; picklescan scans it as benign", convert=True))
        elif p in benign_numpy:
            if p.endswith(".npy"):
                a = np.load(full)
                cases.append(read_case(p, "npy", {os.path.basename(p)[:-4]: tensor_entry(a)}, "numpy 1.24 np.load"))
            else:
                with np.load(full) as z:
                    cases.append(read_case(p, "npz", {k: tensor_entry(z[k]) for k in z.files}, "numpy 1.24 np.load"))
        elif p in pickled_numpy:
            cases.append(refuse_case(p, pickled_numpy[p], "object array (a pickle, in picklescan's corpus as a "
                                                          "code-execution vector); never unpickled"))
        else:
            b = open(full, "rb").read()
            kind = "a zip holding a bare pickle (not a torch.save archive)" if b[:2] == b"PK" else \
                   "a bare pickle stream (not torch.save's format)" if p.endswith((".pkl", ".pickle")) or b[:1] in (b"\x80", b"c", b"(", b"V", b"S") else \
                   "not a checkpoint (PNG magic in a .pt)"
            # a zip no format takes is refused with its own defect (encrypted, names that
            # disagree, ...) or as "a zip archive that is neither an .npz nor a PyTorch checkpoint"
            cases.append(refuse_case(p, ["zip"] if b[:2] == b"PK" else ["not a checkpoint format"],
                                     f"picklescan test case: {kind}; ckptbridge recognises no such format and "
                                     "never runs a pickle's GLOBAL/REDUCE"))
    write_manifest("picklescan", "github:mmaitre314/picklescan@f15d54da3dec9aa28a87ede82f87882bb80f1023", "MIT", cases)


if __name__ == "__main__":
    make_safetensors_attempt_1()
    zarr_python()
    zarrita()
    zarrs()
    numpy_data()
    safetensors_data()
    candle()
    picklescan()
