"""ckptbridge.open: any checkpoint as NumPy arrays, read lazily (safetensors.safe_open's shape).

    with ckptbridge.open("ckpt/") as ck:          # Orbax, safetensors, .pt, .npz, msgpack, zarr
        ck.format, ck.keys(), ck.metadata, ck.tree
        w = ck["params/w"]                         # numpy.ndarray (zero-copy when stored raw)
        part = ck.get_slice("params/w")[0:2, :, 5] # reads only the bytes/chunks it needs

Zero-copy: a tensor whose bytes lie uncompressed in a mapped file (safetensors, .npy/.npz
stored members, .pt storages, msgpack) comes back as a read-only array over the mapping;
everything else (zarr chunks, deflated members, computed targets) is read into a new array.
Arrays keep the mapping alive: closing the checkpoint never invalidates an array.
"""
import ctypes
import json

import numpy as np

from . import _dtypes
from ._lib import c_tree_p, call_json, check, enc, lib
from .errors import UsageError


class TensorInfo:
    """A tensor's name, engine dtype (``"BF16"``), shape, size and whether reads are zero-copy."""
    __slots__ = ("name", "dtype", "shape", "nbytes", "zero_copy", "index")

    def __init__(self, d, index):
        self.name, self.dtype, self.shape = d["name"], d["dtype"], tuple(d["shape"])
        self.nbytes, self.zero_copy, self.index = d["nbytes"], d["zero_copy"], index

    @property
    def numpy_dtype(self):
        """The NumPy dtype arrays of this tensor have (None: needs ml_dtypes, or as_float32/raw)."""
        return _dtypes.numpy_dtype(self.dtype)

    def __repr__(self):
        return f"TensorInfo({self.name!r}, {self.dtype}, {list(self.shape)})"


class _Handle:
    """Owns a native tree; freed when the last checkpoint or zero-copy array lets go of it."""

    def __init__(self, ptr):
        self.ptr = ptr

    def __del__(self):
        if self.ptr:
            lib.ckb_tree_free(self.ptr)
            self.ptr = None


class _Mapped:
    """Exposes mapped bytes to NumPy (__array_interface__) and keeps their tree alive."""

    def __init__(self, handle, ptr, nbytes):
        self._handle = handle
        self.__array_interface__ = {"data": (ptr, True), "typestr": "|u1", "shape": (nbytes,), "version": 3}


def _leaf_value(node):
    t, v = node["t"], node.get("v")
    if t == "float" and isinstance(v, str):
        return float(v)
    if t == "bytes":
        return bytes.fromhex(v)
    return v


def _build_tree(node, infos):
    t = node["t"]
    if t == "dict":
        return {k: _build_tree(c, infos) for k, c in node["c"]}
    if t == "list":
        return [_build_tree(c, infos) for _, c in node["c"]]
    if t == "tuple":
        return tuple(_build_tree(c, infos) for _, c in node["c"])
    if t == "tensor":
        return infos[node["i"]]
    return _leaf_value(node)


class Checkpoint:
    """A checkpoint opened by :func:`open` (or a job's target tree): metadata now, bytes on demand."""

    def __init__(self, ptr, owner=None):
        self._handle = _Handle(ptr)
        self._owner = owner  # arrays a tree built in memory borrows
        d = call_json(lib.ckb_tree_describe, ptr)
        self._desc = d
        self.format = d["format"]
        self.path = d["path"]
        self.metadata = dict(d["metadata"])
        self.report = d.get("report")
        self._infos = [TensorInfo(t, i) for i, t in enumerate(d["tensors"])]
        self._by_name = {i.name: i for i in self._infos}
        self._tree = None

    # ---- safetensors.safe_open's surface ----
    def keys(self):
        """Tensor names ('/'-joined tree paths; a flat format's stored names), in file order."""
        return [i.name for i in self._infos]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._infos)

    def __contains__(self, name):
        return name in self._by_name

    def info(self, name):
        return self._info(name)

    def infos(self):
        return list(self._infos)

    @property
    def tree(self):
        """The checkpoint as nested dicts/lists/tuples: TensorInfo at tensors, values at other leaves."""
        if self._tree is None:
            self._tree = _build_tree(self._desc["tree"], self._infos) if self._desc["tree"] else {}
        return self._tree

    def get_tensor(self, name, *, as_float32=False, raw=False, copy=False):
        """The whole tensor as a numpy.ndarray.

        Zero-copy (read-only, over the mapped file) where the bytes are stored raw, unless
        ``copy=True``. bfloat16/float8 come as ml_dtypes dtypes when ml_dtypes is importable;
        ``as_float32=True`` widens them (exactly) to float32 instead, ``raw=True`` returns the
        stored bits (uint16 for BF16, uint8 for float8 and the packed sub-byte types)."""
        info = self._info(name)
        dtype = self._dtype(info, as_float32, raw)
        if dtype is None:
            raise UsageError(f"{name}: a {info.dtype} tensor has no NumPy dtype here (ml_dtypes is not importable); "
                             f"pass as_float32=True for float32 values or raw=True for the stored bits",
                             path=name)
        widen = as_float32 and info.dtype in _dtypes.FLOATS_WIDENED
        shape = (info.nbytes,) if raw and info.dtype in _dtypes.SUB_BYTE else info.shape
        if not widen and not copy and info.zero_copy and info.nbytes:
            ptr = ctypes.c_void_p()
            check(lib.ckb_tensor_pointer(self._ptr(), info.index, ctypes.byref(ptr)))
            if ptr.value:
                arr = np.asarray(_Mapped(self._handle, ptr.value, info.nbytes)).view(dtype).reshape(shape)
                arr.flags.writeable = False
                return arr
        if widen:
            stored = np.empty(info.nbytes, np.uint8)
            self._read(info, stored)
            return _widen(info.dtype, stored, info.shape)
        out = np.empty(shape, dtype)
        self._read(info, out)
        if self.report is None:  # an opened checkpoint: nothing of this tensor stays cached
            self.release(name)
        return out

    def release(self, name):
        """Drops what reading `name` left in memory (decoded zarr chunks kept for the next slice,
        a target's computed data). Arrays already returned are unaffected."""
        check(lib.ckb_tensor_release(self._ptr(), self._info(name).index))

    __getitem__ = get_tensor

    def items(self, names=None, *, workers=None, window=1 << 30, **kw):
        """Yields ``(name, array)`` for `names` (default: every tensor) in order, reading ahead
        on `workers` threads (default: the CPU count) while the bytes read ahead stay within
        `window` plus the largest tensor among them: arrays from compressed or chunked formats
        decode in parallel, as a loop over get_tensor cannot. Keyword arguments go to get_tensor."""
        from ._parallel import bounded_map
        names = list(self.keys() if names is None else names)
        sizes = [self._info(n).nbytes for n in names]
        arrays = bounded_map(lambda n: self.get_tensor(n, **kw), names, sizes, workers=workers, window=window)
        yield from zip(names, arrays)

    def get_slice(self, name):
        """A lazy view: ``[...]`` with ints, slices (any step) and ``...`` reads only what it selects."""
        return TensorSlice(self, self._info(name))

    def read_into(self, name, out):
        """Reads the whole tensor into a caller's C-contiguous buffer of exactly its size (e.g. a
        torch tensor's storage via a NumPy view); returns `out`."""
        info = self._info(name)
        self._read(info, out)
        return out

    def close(self):
        """Lets go of the checkpoint; arrays already returned stay valid."""
        self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<ckptbridge.Checkpoint {self.format} {self.path!r}: {len(self)} tensors>"

    # ---- internals ----
    def _ptr(self):
        if self._handle is None:
            raise UsageError(f"{self.path}: the checkpoint is closed")
        return self._handle.ptr

    def _info(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            close = [k for k in self._by_name if k.endswith(name) or name in k][:5]
            raise KeyError(f"{name!r} is not a tensor of {self.path}" +
                           (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")) from None

    @staticmethod
    def _dtype(info, as_float32, raw):
        if as_float32 and raw:
            raise UsageError("pass at most one of as_float32 and raw")
        if as_float32 and info.dtype in _dtypes.FLOATS_WIDENED:
            return np.dtype(np.float32)
        if info.dtype in _dtypes.SUB_BYTE and not raw:
            raise UsageError(f"{info.name}: {info.dtype} packs several elements per byte; pass raw=True for its bytes",
                             path=info.name)
        return _dtypes.numpy_dtype(info.dtype, raw=raw)

    def _read(self, info, out):
        buf = _writable_buffer(out, info.nbytes, info.name)
        check(lib.ckb_tensor_read(self._ptr(), info.index, 0, buf, info.nbytes, 0))

    def _read_region(self, info, start, stop, out):
        n = len(start)
        a = (ctypes.c_int64 * n)(*start)
        b = (ctypes.c_int64 * n)(*stop)
        buf = _writable_buffer(out, out.nbytes, info.name)
        check(lib.ckb_tensor_read_region(self._ptr(), info.index, n, a, b, buf, out.nbytes, 0))


def _widen(dtype, stored, shape):
    """Float32 values of the `dtype` elements in C-contiguous `stored` (exact: every widened type
    fits in float32), as an array of `shape`."""
    out = np.empty(shape, np.float32)
    check(lib.ckb_convert(dtype.encode(), stored.ctypes.data, out.size, b"F32", out.ctypes.data))
    return out


def _writable_buffer(out, nbytes, name):
    if isinstance(out, np.ndarray):
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise UsageError(f"{name}: the buffer must be a writable C-contiguous array")
        if out.nbytes != nbytes:
            raise UsageError(f"{name}: the buffer holds {out.nbytes} bytes, the tensor {nbytes}")
        return out.ctypes.data
    raise UsageError(f"{name}: read into a numpy.ndarray")


class TensorSlice:
    """``ck.get_slice(name)``: shape and dtype now, ``[...]`` reads the selected elements."""

    def __init__(self, ck, info):
        self._ck, self._info = ck, info

    @property
    def shape(self):
        return self._info.shape

    @property
    def dtype(self):
        return self._info.dtype

    def get_shape(self):
        return list(self._info.shape)

    def get_dtype(self):
        return self._info.dtype

    def __getitem__(self, key):
        return self.read(key)

    def read(self, key, *, as_float32=False, raw=False):
        info, shape = self._info, self._info.shape
        if not isinstance(key, tuple):
            key = (key,)
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            i = key.index(Ellipsis)
            key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1:]
        if len(key) > len(shape):
            raise IndexError(f"too many indices for a {len(shape)}-d tensor {info.name!r}")
        key = key + (slice(None),) * (len(shape) - len(key))
        start, stop, local, drop = [], [], [], []
        for axis, (k, dim) in enumerate(zip(key, shape)):
            if isinstance(k, (int, np.integer)):
                i = int(k) + (dim if k < 0 else 0)
                if not 0 <= i < dim:
                    raise IndexError(f"index {int(k)} is out of bounds for axis {axis} with size {dim}")
                start.append(i), stop.append(i + 1), local.append(slice(None)), drop.append(axis)
            elif isinstance(k, slice):
                a, b, s = k.indices(dim)
                n = len(range(a, b, s))
                if n == 0:
                    start.append(0), stop.append(0), local.append(slice(None))
                elif s > 0:
                    start.append(a), stop.append(a + (n - 1) * s + 1), local.append(slice(None, None, s))
                else:
                    lo = a + (n - 1) * s
                    start.append(lo), stop.append(a + 1), local.append(slice(None, None, s))
            else:
                raise TypeError(f"get_slice takes ints, slices and '...', not {type(k).__name__}")
        dtype = Checkpoint._dtype(info, as_float32, raw)
        if dtype is None or info.dtype in _dtypes.SUB_BYTE:
            raise UsageError(f"{info.name}: a {info.dtype} tensor has no NumPy dtype here; use read(key, "
                             f"as_float32=True) or read(key, raw=True)", path=info.name)
        widen = as_float32 and info.dtype in _dtypes.FLOATS_WIDENED
        box = tuple(b - a for a, b in zip(start, stop))
        stored = np.empty(box, _dtypes.numpy_dtype(info.dtype, raw=True) if widen else dtype)
        if stored.size:
            self._ck._read_region(info, start, stop, stored)
        if widen:
            stored = _widen(info.dtype, stored, box)
        out = stored[tuple(local)]
        if drop:
            out = out.reshape([d for i, d in enumerate(out.shape) if i not in drop])
        return out


def open(path, step=None, *, strict_chunks=False):  # noqa: A001 - ckptbridge.open, like safetensors' safe_open
    """Opens any checkpoint ckptbridge reads, lazily (metadata only; tensors read on access).

    ``step``: the step of an Orbax CheckpointManager root (default: the latest)."""
    ptr = c_tree_p()
    opts = json.dumps({"step": step, "strict_chunks": bool(strict_chunks)}).encode()
    check(lib.ckb_open(enc(path), opts, ctypes.byref(ptr)))
    return Checkpoint(ptr.value)
