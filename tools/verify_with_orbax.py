#!/usr/bin/env python3
"""Proves that the real Orbax restores what ckptbridge writes, value for value.

For each case, ckptbridge converts a fixture to Orbax (OCDBT or per-array dirs, zarr v2 or v3,
compressed or not, chunked or not, item dir or CheckpointManager step), then
    ocp.PyTreeCheckpointer().restore(item_dir)           (item layout)
    ocp.CheckpointManager(root).restore(step)            (step layout)
restore it with no arguments, and every leaf is compared with a reference read by the library
that wrote the fixture (Orbax itself for Orbax fixtures, torch.load for .pt): same tree paths,
same dtypes and shapes, identical bytes for arrays (PRNG keys: identical key data and impl),
equal values for scalars, strings and None.

    JAX_PLATFORMS=cpu python3 verify_with_orbax.py CKPTBRIDGE FIXTURES_DIR WORK_DIR
Prints one line per case and exits 0 only when every case matches.
"""
import os, shutil, subprocess, sys, traceback

import numpy as np
import jax
jax.config.update("jax_enable_x64", True)  # int64/float64 leaves must not be narrowed on restore
import orbax.checkpoint as ocp

CKB, FIX, WORK = sys.argv[1], sys.argv[2], sys.argv[3]


def canon(x):
    """A comparable form of one restored leaf."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(x))
        return ("key", str(jax.random.key_impl(x)), data.dtype.str, data.shape, data.tobytes())
    if isinstance(x, (jax.Array, np.ndarray)):
        a = np.asarray(x)
        return ("array", str(a.dtype), a.shape, np.ascontiguousarray(a).tobytes())
    if hasattr(x, "dtype") and hasattr(x, "shape") and hasattr(x, "numpy"):  # torch.Tensor
        import torch
        t = x.detach().contiguous()
        name = str(t.dtype).replace("torch.", "")
        raw = t.view(torch.uint8) if t.dtype == torch.bool else t
        b = raw.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return ("array", name, tuple(t.shape), b)
    if isinstance(x, np.generic):
        return ("scalar", x.item())
    if x is None or isinstance(x, (bool, int, float, str)):
        return ("scalar", x)
    return ("other", repr(x))


def flatten(tree, prefix=()):
    out = {}
    if isinstance(tree, dict):
        if not tree:
            out[prefix] = ("empty", "dict")
        for k, v in tree.items():
            out.update(flatten(v, prefix + (str(k),)))
    elif isinstance(tree, (list, tuple)):
        if not tree:
            out[prefix] = ("empty", "seq")
        for i, v in enumerate(tree):
            out.update(flatten(v, prefix + (str(i),)))
    else:
        out[prefix] = canon(tree)
    return out


def compare(got, want):
    g, w = flatten(got), flatten(want)
    problems = []
    for k in sorted(set(g) | set(w)):
        if k not in g:
            problems.append(f"missing {'/'.join(k)}")
        elif k not in w:
            problems.append(f"extra {'/'.join(k)}")
        elif g[k] != w[k]:
            problems.append(f"differs {'/'.join(k)}: {str(g[k])[:120]} vs {str(w[k])[:120]}")
    return len(g), problems


def ckb(*args):
    subprocess.run([CKB, "convert", "-q", *args], check=True)


def restore_item(path):
    with ocp.PyTreeCheckpointer() as c:
        return c.restore(os.path.abspath(path))


def restore_step(root, step):
    with ocp.CheckpointManager(os.path.abspath(root)) as m:
        return m.restore(step)


def torch_reference(path):
    import torch
    return torch.load(path, weights_only=True)


ITEM = f"{FIX}/orbax_ocdbt_zarr2/ckpt"
cases = []
for flags in ([], ["--zarr-version", "3"], ["--no-ocdbt"], ["--zarr-version", "3", "--no-ocdbt"], ["--compression", "none"],
              ["--chunk-size", "4KB"], ["--zarr-version", "3", "--chunk-size", "4KB", "--compression", "none"]):
    cases.append((f"orbax item {' '.join(flags) or 'default'}", ITEM, flags, None, None, lambda: restore_item(ITEM)))
PT = f"{FIX}/torch_with_extras/checkpoint.pt"
for flags in ([], ["--zarr-version", "3"]):
    cases.append((f"torch extras (scalars, strings, lists) {' '.join(flags) or 'zarr2'}", PT, flags, None, None,
                  lambda: torch_reference(PT)))
NNX = f"{FIX}/maxtext_linen_nnx/nnx_fresh_raw"
cases.append(("maxtext nnx (PRNG keys, uint32 step) zarr3", NNX, ["--zarr-version", "3"], None, None,
              lambda: restore_step(NNX, 0)["items"]))
OPENPI = f"{FIX}/openpi_pi0_tiny_lora/train/checkpoints"
cases.append(("openpi train (bf16+f32) as manager step 100/params", OPENPI, [], 100, "params",
              lambda: restore_step(OPENPI, 100)["params"]))

failed = 0
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
for i, (name, src, flags, step, item, reference) in enumerate(cases):
    out = f"{WORK}/case{i}"
    try:
        if step is None:
            ckb(src, out, "--to", "orbax", *flags)
            got = restore_item(out)
        else:
            ckb(src, out, "--to", "orbax", "--step", str(step), "--item", item, *flags)
            got = restore_step(out, step)[item]
        n, problems = compare(got, reference())
        if problems:
            failed += 1
            print(f"FAIL {name}: {len(problems)} of {n} leaves: " + "; ".join(problems[:5]))
        else:
            print(f"ok   {name}: {n} leaves identical")
    except Exception:
        failed += 1
        print(f"FAIL {name}: exception\n{traceback.format_exc()}")
print(f"orbax {ocp.__version__ if hasattr(ocp, '__version__') else '?'} jax {jax.__version__}: "
      f"{len(cases) - failed}/{len(cases)} cases restored identically")
sys.exit(1 if failed else 0)
