"""ckptbridge.open: every fixture's tensors against the sha256 manifests real frameworks wrote,
slices against NumPy slicing of the whole array, bfloat16 without ml_dtypes, and zero-copy
arrays that lie inside the mapped file and outlive the checkpoint."""
import gc
import json
import os

import numpy as np
import pytest

import ckptbridge
from conftest import FIXTURES, bf16_to_f32, manifest, sha256_of

# (case, path opened, manifest folder, format): the paths the C++ tests read (test::fixture(...)):
# safetensors_test.cpp, torch_read_test.cpp, npz_test.cpp, msgpack_test.cpp, orbax_test.cpp.
CASES = [
    ("safetensors_single", "safetensors_single/model.safetensors", "safetensors_single", "safetensors"),
    ("safetensors_sharded", "safetensors_sharded", "safetensors_sharded", "safetensors"),
    ("torch_zip", "torch_zip/model.pt", "torch_zip", "torch"),
    ("torch_legacy", "torch_legacy/model.pt", "torch_legacy", "torch"),
    ("torch_with_extras", "torch_with_extras/checkpoint.pt", "torch_with_extras", "torch"),
    ("npz_stored", "npz/arrays.npz", "npz", "npz"),
    ("npz_deflated", "npz/arrays_compressed.npz", "npz", "npz"),
    ("flax_msgpack", "flax_msgpack/params.msgpack", "flax_msgpack", "msgpack"),
    ("orbax_ocdbt_zarr2", "orbax_ocdbt_zarr2/ckpt", "orbax_ocdbt_zarr2", "orbax"),
    ("orbax_ocdbt_zarr3", "orbax_ocdbt_zarr3/ckpt", "orbax_ocdbt_zarr3", "orbax"),
    ("orbax_plain_zarr2", "orbax_plain_zarr2/ckpt", "orbax_plain_zarr2", "orbax"),
    ("orbax_plain_zarr3", "orbax_plain_zarr3/ckpt", "orbax_plain_zarr3", "orbax"),
    ("orbax_sharded_zarr2", "orbax_sharded_zarr2/ckpt", "orbax_sharded_zarr2", "orbax"),
    ("orbax_sharded_zarr3", "orbax_sharded_zarr3/ckpt", "orbax_sharded_zarr3", "orbax"),
    ("orbax_manager", "orbax_manager/run", "orbax_manager", "orbax"),
    ("openpi_lora_release", "openpi_pi0_tiny_lora/release/params", "openpi_pi0_tiny_lora/release", "orbax"),
    ("openpi_lora_train", "openpi_pi0_tiny_lora/train/checkpoints", "openpi_pi0_tiny_lora/train", "orbax"),
    ("openpi_full_release", "openpi_pi0_tiny_full/release/params", "openpi_pi0_tiny_full/release", "orbax"),
    ("openpi_full_train", "openpi_pi0_tiny_full/train/checkpoints", "openpi_pi0_tiny_full/train", "orbax"),
]

# The openpi projection kernels the generator hashed as float64 although Orbax stored float32
# (orbax_test.cpp, OrbaxFixtures.OpenpiReleaseAndTrain): only their shape can be compared.
OPENPI_F64_IN_MANIFEST = ["action_in_proj/kernel", "action_out_proj/kernel", "action_time_mlp_in/kernel",
                          "action_time_mlp_out/kernel", "state_proj/kernel"]


def expected_tensors(case, folder):
    """The manifest's tensors with the known generator quirks corrected exactly as the C++ tests do;
    returns (expected {name: (dtype, shape, sha256 or None)}, [names whose sha256 cannot be compared])."""
    m = manifest(folder)
    want = {n: (t["dtype"], list(t["shape"]), t["sha256"]) for n, t in m["tensors"].items()}
    if case in ("npz_stored", "npz_deflated", "flax_msgpack") or case.startswith(("orbax_ocdbt", "orbax_plain")):
        # npz_test.cpp npz_manifest(), msgpack_test.cpp params_manifest(), orbax_test.cpp: the generator
        # hashed np.ascontiguousarray(a) of a 0-d "scalar", recording shape [1]; same bytes, shape [].
        assert want["scalar"][1] == [1]
        want["scalar"] = (want["scalar"][0], [], want["scalar"][2])
    if case.startswith(("orbax_ocdbt", "orbax_plain")):
        # orbax_test.cpp OrbaxTensorSet.MatchesManifest: JAX without x64 stored the int64
        # [-(2^62), 0, 2^62+5] as int32 [0, 0, 5].
        want["i64"] = ("I32", [3], sha256_of(np.array([0, 0, 5], "<i4")))
    if case.startswith("openpi"):
        suffix = "/value" if case.endswith("train") else ""
        for n in OPENPI_F64_IN_MANIFEST:
            name = f"params/{n}{suffix}"
            assert want[name][0] == "F64", name  # the manifest's claim
            want[name] = ("F32", want[name][1], None)  # what Orbax stored ("<f4"); bytes unknown
    return want


@pytest.mark.parametrize("case,path,folder,fmt", CASES, ids=[c[0] for c in CASES])
def test_every_tensor_matches_the_manifest(case, path, folder, fmt):
    want = expected_tensors(case, folder)
    with ckptbridge.open(FIXTURES / path) as ck:
        assert ck.format == fmt
        assert sorted(ck.keys()) == sorted(want)
        assert len(ck) == len(want)
        for name in ck.keys():
            dtype, shape, sha = want[name]
            info = ck.info(name)
            assert (info.dtype, list(info.shape)) == (dtype, shape), name
            a = ck.get_tensor(name, raw=True)
            assert a.shape == tuple(shape) or info.dtype in ("F4", "F6_E2M3", "F6_E3M2"), name
            assert a.nbytes == info.nbytes, name
            if sha is not None:
                assert sha256_of(a) == sha, name
            assert name in ck
            if info.numpy_dtype is not None:  # the typed array holds the same bytes
                assert ck[name].tobytes() == a.tobytes() and ck[name].dtype == info.numpy_dtype, name


def test_npy_files_match_the_manifest_entries_they_copy():
    # npy_test.cpp extra_file_manifest: big.npy holds "big", fortran.npy "i32" in Fortran order.
    m = manifest("npz")
    for file, entry in m["extra_files"].items():
        entry = entry.split(" ")[0]
        with ckptbridge.open(FIXTURES / "npz" / file) as ck:
            assert ck.format == "npy"
            stem = file[:-4]
            assert ck.keys() == [stem]
            t = m["tensors"][entry]
            assert (ck.info(stem).dtype, list(ck.info(stem).shape)) == (t["dtype"], t["shape"])
            assert sha256_of(ck[stem]) == t["sha256"]


def test_orbax_fixture_quirks_hold_the_values_on_disk():
    with ckptbridge.open(FIXTURES / "orbax_plain_zarr3/ckpt") as ck:
        assert ck["i64"].tolist() == [0, 0, 5] and ck["i64"].dtype == np.int32
        assert ck["scalar"].shape == () and ck["scalar"][()] == np.float32(3.5)


def test_non_tensor_leaves_and_metadata():
    m = json.loads((FIXTURES / "orbax_ocdbt_zarr3/manifest.json").read_text())
    with ckptbridge.open(FIXTURES / "orbax_ocdbt_zarr3/ckpt") as ck:
        tree = ck.tree

        def at(path):
            node = tree
            for k in path.split("/"):
                node = node[int(k)] if isinstance(node, (list, tuple)) else node[k]
            return node

        for name, v in m["scalars"].items():
            assert at(name) == v and type(at(name)) is type(v), name
        for name, v in m["strings"].items():
            assert at(name) == v, name
        for name in m["none_leaves"]:
            assert at(name) is None, name
        for name in m["empty_nodes"]:
            assert at(name) == {} or at(name) == [], name
        assert isinstance(at("stack"), list)  # orbax_test.cpp: key_type 1 is a list
        assert isinstance(at("embed/weight"), ckptbridge.TensorInfo) and at("embed/weight").name == "embed/weight"
    with ckptbridge.open(FIXTURES / "torch_with_extras/checkpoint.pt") as ck:
        extras = json.loads((FIXTURES / "torch_with_extras/manifest.json").read_text())["non_tensor_leaves"]
        for name, v in extras.items():
            node = ck.tree
            for k in name.split("/"):
                node = node[int(k)] if isinstance(node, (list, tuple)) else node[k]
            assert (list(node) if isinstance(node, tuple) else node) == v, name
    with ckptbridge.open(FIXTURES / "safetensors_single/model.safetensors") as ck:
        assert ck.metadata == {"format": "pt", "note": "tiny"}


def test_orbax_manager_steps():
    with ckptbridge.open(FIXTURES / "orbax_manager/run") as ck:
        assert ck.metadata["orbax.step"] == "2"
        assert ck["w"].tolist() == [2, 2, 2]
    with ckptbridge.open(FIXTURES / "orbax_manager/run", step=1) as ck:
        assert ck.metadata["orbax.step"] == "1"
        assert ck["w"].tolist() == [1, 1, 1]
    with pytest.raises(ckptbridge.UsageError):
        ckptbridge.open(FIXTURES / "orbax_manager/run", step=3)


# ---- slices ----

def _keys(shape):
    """Index expressions over a tensor of `shape`: ints, negative ints, steps (also negative),
    '...', empty ranges, and mixtures, the same on every axis count."""
    nd = len(shape)
    keys = [(), Ellipsis, (Ellipsis,)]
    if nd == 0:
        return keys
    d0 = shape[0]
    keys += [0, -1, d0 // 2, slice(None), slice(1, None), slice(None, -1), slice(None, None, 2),
             slice(None, None, -1), slice(None, None, -3), slice(-2, None), slice(d0 - 1, 0, -2),
             slice(0, 0), slice(5, 2), slice(-100, 100), slice(None, None, 7), (Ellipsis, 0), (0, Ellipsis)]
    if nd >= 2:
        d1 = shape[1]
        keys += [(0, 0), (-1, -1), (slice(1, 3), slice(None, None, -2)), (slice(None, None, 3), 1),
                 (Ellipsis, slice(d1 - 1, None, -1)), (slice(d0 // 3, d0 // 2), slice(d1 // 4, None, 5)),
                 (slice(0, 0), slice(None)), (1, slice(2, 2)), (-2, Ellipsis), (slice(None, None, -1), -1)]
    if nd >= 3:
        keys += [(0, slice(None, None, -1), 5 % shape[2]), (slice(0, 2), Ellipsis, -1),
                 (Ellipsis, slice(1, None, 2)), (1, 2, 3 % shape[2]), (slice(None, None, -2), 0, slice(None))]
    return keys


SLICE_CASES = [
    ("safetensors", "safetensors_single/model.safetensors", ["big", "embed.weight", "layers.0.attn.q.kernel", "i32",
                                                             "f64", "mask", "i8", "scalar", "empty"]),
    ("zarr2_sharded", "orbax_sharded_zarr2/ckpt", ["big", "q"]),
    ("zarr3_sharded", "orbax_sharded_zarr3/ckpt", ["big", "q"]),
    ("zarr3_ocdbt", "orbax_ocdbt_zarr3/ckpt", ["big", "embed/weight", "layers/0/attn/q/kernel", "scalar"]),
    ("torch_zip", "torch_zip/model.pt", ["big", "big_rows_2_to_5", "embed.weight", "layers.0.attn.q.kernel"]),
    ("torch_legacy", "torch_legacy/model.pt", ["big", "big_rows_2_to_5", "i64"]),
    ("npz_deflated", "npz/arrays_compressed.npz", ["big", "embed.weight", "i32", "scalar", "empty"]),
    ("npy_fortran", "npz/fortran.npy", ["fortran"]),
    ("msgpack", "flax_msgpack/params.msgpack", ["big", "scalar"]),
]


@pytest.mark.parametrize("case,path,names", SLICE_CASES, ids=[c[0] for c in SLICE_CASES])
def test_slices_equal_numpy_slicing_of_the_whole_tensor(case, path, names):
    checked = 0
    with ckptbridge.open(FIXTURES / path) as ck:
        for name in names:
            info = ck.info(name)
            raw = info.numpy_dtype is None  # bf16 without ml_dtypes: the stored bits
            whole = ck.get_tensor(name, raw=raw)
            sl = ck.get_slice(name)
            assert sl.shape == info.shape and sl.get_shape() == list(info.shape) and sl.dtype == info.dtype
            for key in _keys(info.shape):
                try:
                    want = whole[key]
                except IndexError:  # out of range for this shape in NumPy: also for get_slice
                    with pytest.raises(IndexError):
                        sl.read(key, raw=raw)
                    continue
                # A full integer index gives NumPy a scalar, get_slice a 0-d array: same dtype and value.
                got, want = np.asarray(sl.read(key, raw=True) if raw else sl[key]), np.asarray(want)
                assert got.dtype == want.dtype and got.shape == want.shape, (name, key)
                assert np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), (name, key)
                assert got.tobytes() == np.ascontiguousarray(want).tobytes(), (name, key)
                checked += 1
    assert checked >= len(names) * 3


def test_sharded_zarr_slices_cross_chunk_boundaries():
    # orbax_sharded_*: each array is stored as 2x2 chunks (array_metadatas: chunk_shape < shape);
    # a slice around the middle needs all four, read through ckb_tensor_read_region.
    for case in ("orbax_sharded_zarr2", "orbax_sharded_zarr3"):
        meta = json.loads((FIXTURES / case / "ckpt/array_metadatas/process_0").read_text())["array_metadatas"]
        chunks = {m["array_metadata"]["param_name"]: m["array_metadata"]["chunk_shape"] for m in meta}
        with ckptbridge.open(FIXTURES / case / "ckpt") as ck:
            for name, chunk in chunks.items():
                shape = ck.info(name).shape
                n_chunks = int(np.prod([d // c for d, c in zip(shape, chunk)]))
                assert n_chunks == 4, (case, name, shape, chunk)
                whole = ck.get_tensor(name, raw=True)
                key = tuple(slice(c - 1, c + 2) if c < d else slice(None, None, -1) for d, c in zip(shape, chunk))
                assert np.array_equal(ck.get_slice(name).read(key, raw=True), whole[key]), (case, name)


def test_bad_slices_are_index_and_type_errors():
    with ckptbridge.open(FIXTURES / "safetensors_single/model.safetensors") as ck:
        sl = ck.get_slice("big")
        with pytest.raises(IndexError):
            sl[256]
        with pytest.raises(IndexError):
            sl[-257]
        with pytest.raises(IndexError):
            sl[0, 0, 0]
        with pytest.raises(IndexError):
            sl[..., 0, ...]
        with pytest.raises(TypeError):
            sl["a"]
        with pytest.raises(KeyError, match="'nope' is not a tensor"):
            ck.get_slice("nope")


# ---- bfloat16 ----

BF16_CASES = [("safetensors_single/model.safetensors", "layers.0.attn.q.kernel"),
              ("safetensors_single/model.safetensors", "bf16_specials"),
              ("flax_msgpack/params.msgpack", "bf16_specials"),
              ("orbax_sharded_zarr3/ckpt", "q"),
              ("orbax_ocdbt_zarr2/ckpt", "layers/0/attn/q/kernel"),
              ("torch_zip/model.pt", "layers.0.attn.q.kernel")]


@pytest.mark.parametrize("path,name", BF16_CASES)
def test_bf16_raw_bits_and_float32_widening(path, name):
    with ckptbridge.open(FIXTURES / path) as ck:
        info = ck.info(name)
        assert info.dtype == "BF16"
        bits = ck.get_tensor(name, raw=True)
        assert bits.dtype == np.uint16 and bits.shape == info.shape
        wide = ck.get_tensor(name, as_float32=True)
        assert wide.dtype == np.float32 and wide.shape == info.shape
        ref = bf16_to_f32(bits)
        assert wide.tobytes() == ref.tobytes()  # exact, NaN payloads and -0 included
        if info.shape:
            key = (slice(None, None, -2),) + (1,) * (len(info.shape) - 1)
            s = ck.get_slice(name)
            assert s.read(key, raw=True).tobytes() == np.ascontiguousarray(bits[key]).tobytes()
            assert s.read(key, as_float32=True).tobytes() == np.ascontiguousarray(ref[key]).tobytes()


def test_bf16_without_ml_dtypes_asks_for_a_choice():
    from ckptbridge import _dtypes
    assert _dtypes.ml_dtypes is None, "this test is about Debian's Python, which has no ml_dtypes"
    with ckptbridge.open(FIXTURES / "safetensors_single/model.safetensors") as ck:
        assert ck.info("bf16_specials").numpy_dtype is None
        with pytest.raises(ckptbridge.UsageError) as e:
            ck.get_tensor("bf16_specials")
        assert "as_float32=True" in str(e.value) and "raw=True" in str(e.value) and "BF16" in str(e.value)
        assert e.value.path == "bf16_specials"
        with pytest.raises(ckptbridge.UsageError) as e:
            ck.get_slice("bf16_specials")[0:2]
        assert "as_float32=True" in str(e.value) and "raw=True" in str(e.value)
        with pytest.raises(ckptbridge.UsageError, match="at most one"):
            ck.get_tensor("bf16_specials", raw=True, as_float32=True)
        # Non-bf16 tensors need no choice, and as_float32 leaves them as they are.
        assert ck.get_tensor("big", as_float32=True).dtype == np.float32
        assert ck.get_tensor("f64", as_float32=True).dtype == np.float64


def test_f16_as_float32_is_numpys_widening():
    with ckptbridge.open(FIXTURES / "safetensors_single/model.safetensors") as ck:
        h = ck["f16_specials"]
        assert h.dtype == np.float16
        assert ck.get_tensor("f16_specials", as_float32=True).tobytes() == h.astype(np.float32).tobytes()


# ---- zero-copy ----

def _mappings_of(path):
    """Address ranges of `path` in this process (/proc/self/maps)."""
    real = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].strip() == real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((lo, hi))
    return ranges


def _inside(arr, ranges):
    lo = arr.ctypes.data
    return any(a <= lo and lo + arr.nbytes <= b for a, b in ranges)


@pytest.mark.parametrize("path,names", [
    ("safetensors_single/model.safetensors", ["big", "embed.weight", "layers.0.attn.q.kernel", "i64", "mask"]),
    ("flax_msgpack/params.msgpack", ["big", "bf16_specials", "scalar"]),
    ("torch_legacy/model.pt", ["big", "embed.weight"]),
    ("npz/big.npy", ["big"]),
])
def test_zero_copy_arrays_lie_in_the_mapped_file_and_outlive_the_checkpoint(path, names):
    file = FIXTURES / path
    ck = ckptbridge.open(file)
    arrays = {}
    for name in names:
        assert ck.info(name).zero_copy, name
        a = ck.get_tensor(name, raw=ck.info(name).numpy_dtype is None)
        assert not a.flags.writeable, name
        arrays[name] = (a, sha256_of(a))
    ranges = _mappings_of(file)
    assert ranges, f"{file} is not mapped"
    for name, (a, _) in arrays.items():
        assert _inside(a, ranges), name
        # copy=True is a private, writable copy outside the mapping
        c = ck.get_tensor(name, raw=ck.info(name).numpy_dtype is None, copy=True)
        assert c.flags.writeable and not _inside(c, ranges) and c.tobytes() == a.tobytes(), name
    del a, c  # only `arrays` holds them now
    ck.close()
    with pytest.raises(ckptbridge.UsageError, match="closed"):
        ck.get_tensor(names[0], raw=True)
    del ck
    gc.collect()
    assert _mappings_of(file), "the arrays keep the mapping alive"
    for name, (arr, sha) in arrays.items():
        assert sha256_of(arr) == sha, name
    del arr
    arrays.clear()
    gc.collect()
    assert not _mappings_of(file), "the mapping is released with the last array"


def test_copied_reads_are_not_in_any_mapping():
    # A deflated npz member and zarr chunks are decoded into fresh arrays.
    for path, name in (("npz/arrays_compressed.npz", "big"), ("orbax_sharded_zarr3/ckpt", "big")):
        with ckptbridge.open(FIXTURES / path) as ck:
            assert not ck.info(name).zero_copy
            a = ck[name]
            assert a.flags.writeable and a.flags.c_contiguous
            assert not _inside(a, _mappings_of(FIXTURES / path))


def test_reads_from_many_threads_equal_serial_reads():
    # A tree is read from any thread (capi/ckptbridge.h); ctypes releases the GIL around reads.
    from concurrent.futures import ThreadPoolExecutor
    with ckptbridge.open(FIXTURES / "orbax_ocdbt_zarr3/ckpt") as ck:
        names = ck.keys() * 8
        serial = [sha256_of(ck.get_tensor(n, raw=True)) for n in names]
        with ThreadPoolExecutor(8) as pool:
            parallel = list(pool.map(lambda n: sha256_of(ck.get_tensor(n, raw=True)), names))
            sliced = list(pool.map(lambda n: ck.get_slice(n).read((), raw=True).tobytes(), names))
        assert parallel == serial
        assert [sha256_of(np.frombuffer(b, np.uint8)) for b in sliced] == serial


def test_read_into_fills_a_caller_buffer():
    with ckptbridge.open(FIXTURES / "orbax_sharded_zarr2/ckpt") as ck:
        out = np.empty(ck.info("big").shape, np.float32)
        assert ck.read_into("big", out) is out
        assert np.array_equal(out, ck["big"])
        with pytest.raises(ckptbridge.UsageError, match="bytes"):
            ck.read_into("big", np.empty(3, np.float32))
        with pytest.raises(ckptbridge.UsageError, match="C-contiguous"):
            ck.read_into("big", np.empty(ck.info("big").shape[::-1], np.float32).T)
