"""ckptbridge.save: NumPy arrays (flat or nested) to any format ckptbridge writes.

    ckptbridge.save({"w": np.ones((2, 3), np.float32)}, "out/model.safetensors")
    ckptbridge.save({"params": {"dense": {"kernel": k}}, "step": 3}, "ckpt/", to="orbax")

Flat dicts keep their keys as tensor names (dots and all, as safetensors and PyTorch name
them); nested dicts, lists and tuples become tree paths joined with '/'. Python scalars,
strings and None are non-tensor leaves (Orbax and msgpack store them; safetensors refuses
them, naming each). Arrays are borrowed for the duration of the call, not copied."""
import numpy as np

from . import _dtypes, jobs
from ._memory import MemoryTree
from .errors import UsageError

_SOURCE = "<arrays>"


def _add(tree, path, value):
    if isinstance(value, dict):
        if not value:
            tree.add_value(path, {})
        for k, v in value.items():
            if "/" in str(k):
                raise UsageError(f"key {k!r} under {path or 'the root'} contains '/', the path separator", path=str(k))
            _add(tree, f"{path}/{k}" if path else str(k), v)
    elif isinstance(value, (list, tuple)):
        if not value:
            tree.add_value(path, [])
        for i, v in enumerate(value):
            _add(tree, f"{path}/{i}" if path else str(i), v)
    elif value is None or isinstance(value, (bool, int, float, str)):
        tree.add_value(path, value)
    elif isinstance(value, np.generic):
        tree.add_array(path, np.asarray(value))
    elif isinstance(value, np.ndarray):
        tree.add_array(path, value)
    elif hasattr(value, "__array__"):
        arr = np.asarray(value)
        _dtypes.engine_name(arr.dtype)  # a clear error for dtypes without a checkpoint name
        tree.add_array(path, arr)
    else:
        raise UsageError(f"{path}: cannot save a {type(value).__name__}", path=path)


def memory_tree(tree):
    """A MemoryTree over a (nested) dict of arrays and values."""
    if not isinstance(tree, dict):
        raise UsageError("save takes a dict (names -> arrays, or a nested tree)")
    m = MemoryTree()
    _add(m, "", tree)
    return m


def save(tree, path, *, to=None, metadata=None, overwrite=False, dtype=None, progress=False, **options):
    """Writes `tree` to `path` (format from ``to=`` or the extension); the write options of the
    format as keywords (``shard_size="5GB"``, ``zarr_version=3``, ``step=10``). Returns the Report."""
    m = memory_tree(tree)
    job = jobs._make_job(_SOURCE, path, to=to, metadata=metadata, overwrite=overwrite, dtype=dtype, **options)
    return jobs.run_job(job, progress=progress, memory={_SOURCE: m})
