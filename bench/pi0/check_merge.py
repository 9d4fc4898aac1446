#!/usr/bin/env python3
"""Compares ckptbridge's merged openpi weights (JAX layout, stacked layers) with the Python
baseline's output (unstacked, transposed) for every merged kind of tensor: max abs and max
relative difference.   check_merge.py OURS.safetensors BASELINE.safetensors"""
import sys
import numpy as np
from safetensors import safe_open

ours, base = safe_open(sys.argv[1], "np"), safe_open(sys.argv[2], "np")
L = "PaliGemma/llm/layers/"
worst = 0.0
def ours_key(name):  # ours may keep the training layout's `params/` root and `/value` leaves
    hits = [k for k in ours.keys() if k.replace("/value", "").endswith(L + name)]
    assert len(hits) == 1, (name, hits)
    return hits[0]
for name in ("attn/q_einsum/w", "attn/kv_einsum_1/w", "attn/attn_vec_einsum/w", "mlp/gating_einsum", "mlp_1/linear"):
    a = ours.get_tensor(ours_key(name))
    for i in (0, a.shape[0] - 1):
        x = a[i]
        want = x.reshape(-1, x.shape[-1]).T if x.ndim >= 2 else x
        got = base.get_tensor(f"{L}{name}.{i}")
        d = np.abs(got.astype(np.float64) - want.astype(np.float64))
        rel = float(d.max() / max(np.abs(want).max(), 1e-30))
        worst = max(worst, rel)
        print(f"{name}[{i}] {want.dtype} {want.shape}: max abs {d.max():.3g} max rel {rel:.3g}")
print(f"worst relative difference {worst:.3g}")
