#!/usr/bin/env python3
"""Proves that the real Orbax restores an Orbax checkpoint written by several MPI ranks (each
rank its own ocdbt.process_<rank>/ database, rank 0 the root manifest pointing into them) and
that it holds exactly what the single-process output of the same conversion holds.

    JAX_PLATFORMS=cpu python3 verify_mpi_orbax.py MULTI_RANK_DIR SINGLE_PROCESS_DIR [...pairs]
For each pair: ocp.PyTreeCheckpointer().restore() of both, then every leaf compared: same tree
paths, dtypes, shapes and bytes. Prints one line per pair; exits 0 only when all match.
"""
import sys

import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import orbax.checkpoint as ocp


def leaves(tree):
    out = {}
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = jax.tree_util.keystr(path)
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        a = np.asarray(x)
        out[key] = (a.dtype.str, a.shape, a.tobytes())
    return out


ok = True
args = sys.argv[1:]
for multi, single in zip(args[0::2], args[1::2]):
    ck = ocp.PyTreeCheckpointer()
    a, b = leaves(ck.restore(multi)), leaves(ck.restore(single))
    bad = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    nbytes = sum(len(v[2]) for v in a.values())
    print(f"{'ok ' if not bad else 'BAD'} {multi}: {len(a)} leaves, {nbytes} bytes restored by Orbax"
          + (f"; differ: {bad[:5]}" if bad else "; equal to the single-process output"))
    ok &= not bad
sys.exit(0 if ok else 1)
