#!/usr/bin/env python3
"""Reads every tensor of an Orbax item into NumPy and touches every byte (a uint64 wrap-around
sum of the bytes, the same on both sides), one of two ways:
  ckb    ckptbridge.open(ITEM): get_tensor(name, copy=False) one tensor at a time, each array
         dropped after its checksum (memory: the reader's window plus one array);
  ckb_items  ckptbridge.open(ITEM).items(): the package's read-ahead (arrays decoded on all
         cores while the bytes read ahead stay within 1 GiB; a larger array is read alone);
  ckb_threads  (a diagnostic) the same get_tensor + checksum, tensors spread over N Python
         threads (ctypes and NumPy's sums release the GIL; memory: up to N arrays at once);
  orbax  ocp.PyTreeCheckpointer().restore(ITEM) with ArrayRestoreArgs(restore_type=np.ndarray)
         per leaf (stored dtypes), then the same checksum over the restored tree.
Prints `read_all MODE: tensors=.. bytes=.. read_s=.. checksum_s=.. total_s=.. checksum=0x..
peak_rss_gib=..` (read_s = total_s - checksum_s: the time to have every array in NumPy).
    read_all.py {ckb|ckb_items|ckb_threads[:N]|orbax} ITEM_DIR"""
import resource
import sys
import time

import numpy as np


def checksum(a):
    b = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    n8 = b.size // 8 * 8
    s = int(b[:n8].view(np.uint64).sum(dtype=np.uint64)) if n8 else 0
    return (s + int(b[n8:].sum(dtype=np.uint64))) % 2**64


def main():
    mode, path = sys.argv[1], sys.argv[2]
    t0 = time.perf_counter()
    total, nbytes, count, cs_s = 0, 0, 0, 0.0
    if mode == "ckb":
        import ckptbridge
        with ckptbridge.open(path) as ck:
            for name in ck.keys():
                a = ck.get_tensor(name, copy=False, raw=ck.info(name).numpy_dtype is None)  # raw: no ml_dtypes
                c0 = time.perf_counter()
                total = (total + checksum(a)) % 2**64
                cs_s += time.perf_counter() - c0
                nbytes += a.nbytes
                count += 1
                del a
    elif mode == "ckb_items":
        import ckptbridge
        with ckptbridge.open(path) as ck:
            for name, a in ck.items():
                c0 = time.perf_counter()
                total = (total + checksum(a)) % 2**64
                cs_s += time.perf_counter() - c0
                nbytes += a.nbytes
                count += 1
                del a
    elif mode.startswith("ckb_threads"):
        import ckptbridge
        from concurrent.futures import ThreadPoolExecutor
        workers = int(mode.split(":")[1]) if ":" in mode else 8
        ck = ckptbridge.open(path)

        def work(name):
            a = ck.get_tensor(name, copy=False, raw=ck.info(name).numpy_dtype is None)
            return checksum(a), a.nbytes

        with ThreadPoolExecutor(workers) as ex:
            for c, n in ex.map(work, ck.keys()):
                total, nbytes, count = (total + c) % 2**64, nbytes + n, count + 1
        cs_s = float("nan")  # overlapped with the reads: not separable
    elif mode == "orbax":
        import jax
        import orbax.checkpoint as ocp
        with ocp.PyTreeCheckpointer() as c:
            meta = c.metadata(path)
            tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta
            args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray), tree)
            restored = c.restore(path, args=ocp.args.PyTreeRestore(item=tree, restore_args=args))
        c0 = time.perf_counter()
        for a in jax.tree.leaves(restored):
            total = (total + checksum(a)) % 2**64
            nbytes += a.nbytes
            count += 1
        cs_s = time.perf_counter() - c0
    else:
        sys.exit(f"unknown mode {mode}")
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"read_all {mode}: tensors={count} bytes={nbytes} read_s={dt - cs_s:.2f} checksum_s={cs_s:.2f} "
          f"total_s={dt:.2f} checksum=0x{total:016x} peak_rss_gib={rss:.2f}", flush=True)


if __name__ == "__main__":
    main()
