#!/usr/bin/env python3
"""Restores an Orbax item into one abstract state (a jax.ShapeDtypeStruct per leaf with the
stored shape and dtype and a SingleDeviceSharding on jax.devices()[0], the GPU on the GPU
host), one of two ways:
  ckb    ckptbridge.jax.restore(ITEM, abstract, layout=None)  (leaves matched by path);
  orbax  ocp.PyTreeCheckpointer().restore(ITEM, args=PyTreeRestore(item=abstract,
         restore_args=construct_restore_args(abstract)));
  ckb_parallel_diag  (a diagnostic, not the package's API) ckptbridge.open + get_tensor of
         each leaf on 8 Python threads, each array jax.device_put to the leaf's sharding: what
         restore would take if it read several arrays at once.
Both build the abstract state the same way (from Orbax's metadata) before the clock starts.
Prints `jax_restore MODE: device=.. leaves=.. bytes=.. restore_s=.. rss_before_gib=..
peak_rss_after_gib=.. fingerprint=0x..` where the fingerprint is a wrap-around sum of every
array's bits computed on the device after the timing (equal fingerprints: equal restores).
    jax_restore.py {ckb|orbax|ckb_parallel_diag} ITEM_DIR"""
import resource
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@jax.jit
def _bits_sum(x):
    width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[x.dtype.itemsize]
    b = jax.lax.bitcast_convert_type(x, width)
    return b.astype(jnp.uint32).sum(dtype=jnp.uint32)


def main():
    mode, path = sys.argv[1], sys.argv[2]
    dev = jax.devices()[0]
    sharding = jax.sharding.SingleDeviceSharding(dev)
    jnp.zeros(1).block_until_ready()  # device and runtime up before the clock
    with ocp.PyTreeCheckpointer() as c:
        meta = c.metadata(path)
    tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), tree)
    leaves = jax.tree.leaves(abstract)
    nbytes = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in leaves)
    import ckptbridge.jax
    before = rss_gib()
    t0 = time.perf_counter()
    if mode == "ckb":
        out = ckptbridge.jax.restore(path, abstract, layout=None)
    elif mode == "orbax":
        with ocp.PyTreeCheckpointer() as c:
            args = ocp.checkpoint_utils.construct_restore_args(abstract)
            out = c.restore(path, args=ocp.args.PyTreeRestore(item=abstract, restore_args=args))
    elif mode == "ckb_parallel_diag":
        import ckptbridge
        from concurrent.futures import ThreadPoolExecutor
        flat, treedef = jax.tree_util.tree_flatten_with_path(abstract)
        ck = ckptbridge.open(path)

        def load(item):
            keys, leaf = item
            a = ck.get_tensor("/".join(str(getattr(k, "key", k)) for k in keys), copy=False)
            return jax.device_put(a, leaf.sharding).block_until_ready()

        with ThreadPoolExecutor(8) as ex:
            out = jax.tree_util.tree_unflatten(treedef, list(ex.map(load, flat)))
    else:
        sys.exit(f"unknown mode {mode}")
    jax.block_until_ready(out)
    dt = time.perf_counter() - t0
    after = rss_gib()
    got = jax.tree.leaves(out)
    wrong = [i for i, (g, w) in enumerate(zip(got, leaves))
             if g.shape != w.shape or g.dtype != w.dtype or g.sharding != w.sharding]
    fp = sum(int(_bits_sum(x)) for x in got) % 2**64
    print(f"jax_restore {mode}: device={dev.platform}:{dev.device_kind.replace(' ', '_')} leaves={len(got)} bytes={nbytes} "
          f"restore_s={dt:.2f} rss_before_gib={before:.2f} peak_rss_after_gib={after:.2f} "
          f"shape_dtype_sharding_mismatches={len(wrong)} fingerprint=0x{fp:016x}", flush=True)


if __name__ == "__main__":
    main()
