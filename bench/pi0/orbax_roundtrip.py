#!/usr/bin/env python3
"""Orbax's own speed on a checkpoint, for comparison with ckptbridge: restores every leaf as a
NumPy array in its stored dtype (no cast), then saves the tree again with PyTreeCheckpointer
(OCDBT + zarr v2, Orbax's defaults). Prints both times and the bytes moved.
    orbax_roundtrip.py ITEM_DIR OUT_DIR"""
import os, sys, time
import numpy as np, jax
import orbax.checkpoint as ocp
from orbax_restore import restore_numpy

src, out = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
t0 = time.time()
t = restore_numpy(src)
t1 = time.time()
nbytes = sum(x.nbytes for x in jax.tree.leaves(t) if hasattr(x, "nbytes"))
with ocp.PyTreeCheckpointer() as c:
    c.save(out, t)
t2 = time.time()
print(f"orbax restore (numpy, stored dtypes): {t1-t0:.2f}s  save: {t2-t1:.2f}s  bytes {nbytes/2**30:.2f} GiB", flush=True)
