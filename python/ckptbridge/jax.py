"""Restore any checkpoint into JAX arrays placed with the target's shardings, adapting
Flax Linen <-> NNX layouts on load (what MaxText's NNX code does in-process, generalised).

    import ckptbridge.jax
    abstract = {"model": nnx.state(abstract_model), "optimizer": nnx.state(abstract_opt)}
    state = ckptbridge.jax.restore("gs_copy/linen_run/3/items", abstract)      # Linen -> NNX

`target` is any pytree whose leaves say what to restore: ``jax.ShapeDtypeStruct`` (with
``sharding=`` to place it; else the default device), ``jax.Array`` / ``np.ndarray`` (their
shape, dtype and sharding), Python scalars (restored as Python values), ``None`` and empty
containers (structure, e.g. optax's EmptyState). ``nnx.State`` targets are handled through
their pure dict and returned as an ``nnx.State``; ``flax.training.train_state.TrainState``
and other registered pytrees by their paths (attribute names are keys).

Each device shard is read straight from the checkpoint through
``jax.make_array_from_callback``: only the bytes (zarr chunks) of that shard, one host buffer
per shard, no full host copy of an array that is sharded.

layout="auto": when the checkpoint is Flax Linen and the target NNX (or the reverse), the
engine's Linen <-> NNX profile maps it in-process (params only or full training state: optax
chain, moments, step dtype; NNX RNG key/count leaves the source lacks are filled as MaxText
does: ``rng_fill="deterministic"`` = key(seed) / split(key(seed), n) and zero counts).
Otherwise leaves are matched by path. layout="nnx"/"linen" forces the direction, None
matches by path only. ``recipe=`` / ``profile=`` map the checkpoint through any recipe.

Arrays are read on `workers` threads (default: the CPU count), largest first, while the host
bytes in flight stay within `window` (default 1 GiB) plus the largest array in flight.

Strict by default: a target leaf with no source, a source tensor left unused, or a dtype or
shape mismatch raises MappingError with every path named (``.problems``). partial=True
restores what matches and leaves every other target leaf as it was given; with
``return_report=True`` the call returns ``(tree, report)`` where report lists
``missing``, ``unused`` and ``mismatched`` paths and the engine's notes.
"""
import numpy as np

import jax
import jax.numpy as jnp

from . import _dtypes
from ._memory import MemoryTree
from .errors import MappingError, UsageError
from ._parallel import bounded_map
from .jobs import target as _target

_TARGET = "<jax target>"


def _key_name(k):
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _is_structure(x):
    return x is None or (isinstance(x, (tuple, list, dict)) and len(x) == 0)


def _is_key_dtype(dtype):
    try:
        return jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    except TypeError:
        return False


def _engine_dtype(dtype):
    return _dtypes.engine_name(np.dtype(dtype))


class _Leaf:
    """One target leaf: what it is and how to build it."""

    def __init__(self, name, value):
        self.name, self.value = name, value
        self.kind = "array"
        if _is_structure(value):
            self.kind = "structure"
        elif isinstance(value, (bool, int, float, str)) and not isinstance(value, np.generic):
            self.kind = "scalar"
        elif not hasattr(value, "shape") or not hasattr(value, "dtype"):
            raise UsageError(f"{name}: a target leaf must be an array, a jax.ShapeDtypeStruct, a Python scalar or "
                             f"None, not {type(value).__name__}", path=name)
        if self.kind != "array":
            return
        self.shape = tuple(int(d) for d in value.shape)
        self.sharding = getattr(value, "sharding", None)
        self.is_key = _is_key_dtype(value.dtype)
        if self.is_key:  # typed PRNG keys are stored as their uint32 key data
            data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(self.shape, value.dtype))
            self.stored_shape, self.dtype = tuple(data.shape), "U32"
            self.key_impl = getattr(value.dtype, "_impl", None)
        else:
            self.stored_shape, self.dtype = self.shape, _engine_dtype(value.dtype)


def _flatten(target):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(target, is_leaf=_is_structure)
    out = []
    for path, value in leaves:
        out.append(_Leaf("/".join(_key_name(k) for k in path), value))
    return out, treedef


def _memory_tree(leaves):
    tree = MemoryTree()
    for leaf in leaves:
        if leaf.kind == "structure":
            v = leaf.value
            tree.add_value(leaf.name, None if v is None or isinstance(v, tuple) else {} if isinstance(v, dict) else [])
        elif leaf.kind == "scalar":
            tree.add_value(leaf.name, leaf.value)
        else:
            tree.add_abstract(leaf.name, leaf.stored_shape, leaf.dtype)
    return tree


def _job_options(layout, rng_fill, rng_seed, recipe, profile, partial):
    if recipe is not None or profile is not None:
        return {"recipe": recipe, "profile": profile}, (None if partial else _TARGET)
    if layout is None or layout == "none":
        return {}, (None if partial else _TARGET)
    if layout not in ("auto", "nnx", "linen"):
        raise UsageError(f"layout must be 'auto', 'nnx', 'linen' or None, not {layout!r}")
    opts = {"profile": "flax", "layout": layout, "like": _TARGET}
    if layout == "nnx" or layout == "auto":
        opts["rng_fill"] = "like" if rng_fill == "like" else rng_fill
        opts["rng_seed"] = rng_seed
    return opts, None


def _shard_reader(ck, info, leaf):
    """The make_array_from_callback callback: reads exactly the shard's box from the checkpoint."""
    cache = {}
    extra = len(leaf.stored_shape) - len(leaf.shape)

    def read(index):
        start, stop = [], []
        for sl, dim in zip(index, leaf.shape):
            a, b, s = sl.indices(dim)
            if s != 1:
                raise UsageError(f"{leaf.name}: a shard index with step {s}", path=leaf.name)
            start.append(a)
            stop.append(max(a, b))
        start += [0] * extra
        stop += list(leaf.stored_shape[len(leaf.shape):])
        key = (tuple(start), tuple(stop))
        if key not in cache:  # replicas of one shard on several devices are read once
            box = tuple(b - a for a, b in zip(start, stop))
            arr = np.empty(box, _dtypes.numpy_dtype(info.dtype))
            if arr.size:
                ck._read_region(info, start, stop, arr)
            cache[key] = arr
        return cache[key]

    return read


def _build(ck, info, leaf):
    if leaf.is_key:
        data = ck.get_tensor(info.name, copy=True)
        impl = leaf.key_impl if leaf.key_impl is not None else "threefry2x32"
        keys = jax.random.wrap_key_data(jnp.asarray(data), impl=impl)
        return jax.device_put(keys, leaf.sharding) if leaf.sharding is not None else keys
    sharding = leaf.sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    arr = jax.make_array_from_callback(leaf.shape, sharding, _shard_reader(ck, info, leaf))
    ck.release(info.name)  # decoded chunks kept between shard reads: not needed any more
    return arr


def restore(path, target, *, layout="auto", rng_fill="deterministic", rng_seed=0, partial=False, step=None,
            recipe=None, profile=None, return_report=False, workers=None, window=1 << 30, **options):
    """Restores checkpoint `path` into the structure of `target` (see the module docstring)."""
    nnx_state = None
    try:
        from flax import nnx
        if isinstance(target, nnx.State):
            nnx_state, target = target, nnx.to_pure_dict(target)
    except ImportError:
        nnx = None
    leaves, treedef = _flatten(target)
    memory = _memory_tree(leaves)
    opts, expect = _job_options(layout, rng_fill, rng_seed, recipe, profile, partial)
    opts.update(options)
    ck = _target(path, memory={_TARGET: memory}, allow_problems=partial, src_step=step, expect=expect, **opts)
    report = dict(ck.report or {})
    planned = {i.name: i for i in ck.infos()}
    values = {}
    for n, v in _leaf_values(ck.tree):
        values[n] = v
    problems = list(report.get("problems", []))
    missing, mismatched, used, out, builds = [], [], set(), [], []
    for leaf in leaves:
        if leaf.kind == "structure":
            out.append(leaf.value)
            continue
        if leaf.kind == "scalar":
            if leaf.name in values and not hasattr(values[leaf.name], "dtype"):
                used.add(leaf.name)
                out.append(type(leaf.value)(values[leaf.name]))
            elif leaf.name in planned and planned[leaf.name].shape == ():
                used.add(leaf.name)
                out.append(type(leaf.value)(ck.get_tensor(leaf.name, copy=True).item()))
            else:
                missing.append(leaf.name)
                out.append(leaf.value)
            continue
        info = planned.get(leaf.name)
        if info is None:
            missing.append(leaf.name)
            out.append(leaf.value)
            continue
        used.add(leaf.name)
        if info.dtype != leaf.dtype or tuple(info.shape) != tuple(leaf.stored_shape):
            mismatched.append(f"{leaf.name}: checkpoint {info.dtype} {list(info.shape)}, target {leaf.dtype} "
                              f"{list(leaf.stored_shape)}")
            out.append(leaf.value)
            continue
        builds.append((len(out), info, leaf))
        out.append(None)
    if not (not partial and (missing or mismatched or problems)):  # arrays read in parallel, window-bounded
        builds.sort(key=lambda b: -b[1].nbytes)  # the largest arrays (the longest reads) first
        made = bounded_map(lambda b: _build(ck, b[1], b[2]), builds, [b[1].nbytes for b in builds],
                           workers=workers, window=window)
        for (pos, _, _), arr in zip(builds, made):
            out[pos] = arr
    unused = [n for n in planned if n not in used]
    if not partial and (missing or mismatched or unused or problems):
        lines = problems + [f"target leaf with no source: {n}" for n in missing] + \
            [f"dtype/shape mismatch: {m}" for m in mismatched] + [f"source tensor not used: {n}" for n in unused]
        raise MappingError(f"{path}: {len(lines)} problem(s) restoring into the target:\n  " + "\n  ".join(lines[:40]),
                           path=str(path), problems=lines)
    tree = jax.tree_util.tree_unflatten(treedef, out)
    if nnx_state is not None:
        nnx.replace_by_pure_dict(nnx_state, tree)
        tree = nnx_state
    if return_report:
        return tree, {"missing": missing, "unused": unused, "mismatched": mismatched, "problems": problems,
                      "notes": report.get("notes", []), "engine": report}
    return tree


def _leaf_values(node, prefix=""):
    """(path, value) of every non-container leaf of a Checkpoint.tree."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        yield prefix, node
        return
    for k, v in items:
        yield from _leaf_values(v, f"{prefix}/{k}" if prefix else str(k))
