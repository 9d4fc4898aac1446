#!/usr/bin/env python3
"""Compares ckptbridge's `--recipe openpi` output (PI0Pytorch names and layouts) with the Python
baseline's (JAX names, each layer reshaped to 2-D and transposed) on the merged LLM weights of
expert 0: q_proj, o_proj, gate/up_proj, down_proj of the first and last layer. Prints max abs and
max relative differences.    check_openpi.py OURS.safetensors BASELINE.safetensors"""
import sys
import numpy as np
from safetensors import safe_open

ours, base = safe_open(sys.argv[1], "np"), safe_open(sys.argv[2], "np")
L, T = "PaliGemma/llm/layers/", "paligemma_with_expert.paligemma.model.language_model.layers."
depth = max(int(k.split(".")[-1]) for k in base.keys() if k.startswith(L + "attn/q_einsum/w.")) + 1
worst = 0.0
def cmp(name, got, want):
    global worst
    d = np.abs(got.astype(np.float64) - want.astype(np.float64))
    rel = float(d.max() / max(np.abs(want).max(), 1e-30)); worst = max(worst, rel)
    print(f"{name} {got.shape}: max abs {d.max():.3g} max rel {rel:.3g}")
for i in (0, depth - 1):
    q = ours.get_tensor(f"{T}{i}.self_attn.q_proj.weight")            # [N*H, D], q[nH+h, d] = w[n, d, h]
    bq = base.get_tensor(f"{L}attn/q_einsum/w.{i}")                    # [H, N*D], b[h, nD+d] = w[n, d, h]
    H, ND = bq.shape; D = q.shape[1]; N = ND // D
    cmp(f"q_proj[{i}]", q.reshape(N, H, D).transpose(1, 0, 2).reshape(H, N * D), bq)
    cmp(f"o_proj[{i}]", ours.get_tensor(f"{T}{i}.self_attn.o_proj.weight"), base.get_tensor(f"{L}attn/attn_vec_einsum/w.{i}"))
    bg = base.get_tensor(f"{L}mlp/gating_einsum.{i}")                  # [F, 2D]
    cmp(f"gate_proj[{i}]", ours.get_tensor(f"{T}{i}.mlp.gate_proj.weight"), bg[:, :D])
    cmp(f"up_proj[{i}]", ours.get_tensor(f"{T}{i}.mlp.up_proj.weight"), bg[:, D:])
    cmp(f"down_proj[{i}]", ours.get_tensor(f"{T}{i}.mlp.down_proj.weight"), base.get_tensor(f"{L}mlp/linear.{i}"))
print(f"worst relative difference {worst:.3g}; {len(list(ours.keys()))} tensors in ours")
