#!/usr/bin/env python3
"""Orbax's own save of the arrays in a safetensors file, the baseline of `ckptbridge convert
X.safetensors OUT --to orbax` (issue #19): loads every tensor with safetensors' Flax API (bfloat16 included), puts
each on the CPU device as a jax.Array (what a training job saves), and saves the flat dict with
PyTreeCheckpointer (OCDBT + zarr v2 + zstd, Orbax's defaults). Prints the load and save times.
    orbax_save.py IN.safetensors OUT_DIR"""
import os, sys, time
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax, numpy as np
import orbax.checkpoint as ocp
from safetensors.flax import load_file

src, out = sys.argv[1], os.path.abspath(sys.argv[2])
t0 = time.time()
tree = {k.replace(".", "/"): v for k, v in load_file(src).items()}
cpu = jax.devices("cpu")[0]
tree = {k: jax.device_put(v, cpu) for k, v in tree.items()}
jax.block_until_ready(tree)
t1 = time.time()
with ocp.PyTreeCheckpointer() as c:
    c.save(out, tree)
t2 = time.time()
os.sync()  # ckptbridge's output is durable when it returns; Orbax's is not until this
t3 = time.time()
nbytes = sum(v.nbytes for v in tree.values())
print(f"orbax_save: load {t1 - t0:.2f}s save {t2 - t1:.2f}s sync {t3 - t2:.2f}s bytes {nbytes / 2**30:.2f} GiB "
      f"largest {max(v.nbytes for v in tree.values()) / 2**30:.2f} GiB", flush=True)
