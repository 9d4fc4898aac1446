#!/usr/bin/env python3
"""Writes a synthetic safetensors checkpoint for benchmarks: `--layers` transformer-like layers
(q/k/v/o, gate/up/down, norms) in bfloat16, so a 4 GB file has hundreds of tensors with realistic
names and sizes. Values are normal with std 0.02 like trained weights (a 64 MiB block repeated), so
casts and compression do realistic work. Uses only NumPy.

    python3 make_synthetic.py OUT.safetensors --gb 4
"""
import argparse, json, os, struct
import numpy as np

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--gb", type=float, default=4.0)
    ap.add_argument("--hidden", type=int, default=2048)
    a = ap.parse_args()
    h = a.hidden
    per_layer = {"self_attn.q_proj.weight": (h, h), "self_attn.k_proj.weight": (h // 4, h),
                 "self_attn.v_proj.weight": (h // 4, h), "self_attn.o_proj.weight": (h, h),
                 "mlp.gate_proj.weight": (4 * h, h), "mlp.up_proj.weight": (4 * h, h),
                 "mlp.down_proj.weight": (h, 4 * h), "input_layernorm.weight": (h,),
                 "post_attention_layernorm.weight": (h,)}
    layer_bytes = sum(2 * int(np.prod(s)) for s in per_layer.values())
    layers = max(1, int(a.gb * 2**30 // layer_bytes))
    header, off = {"__metadata__": {"format": "pt"}}, 0
    names = []
    for l in range(layers):
        for k, s in per_layer.items():
            n = f"model.layers.{l}.{k}"
            nb = 2 * int(np.prod(s))
            header[n] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + nb]}
            names.append((n, nb))
            off += nb
    hj = json.dumps(header).encode()
    hj += b" " * ((8 - len(hj) % 8) % 8)
    rng = np.random.default_rng(0)
    # 64 MiB of bfloat16 values drawn like trained weights (normal, std 0.02; the top half of
    # each float32), so compression (Orbax's zstd) sees realistic bytes.
    w = (rng.standard_normal(32 << 20, dtype=np.float32) * np.float32(0.02)).view(np.uint32)
    block = (w >> 16).astype(np.uint16).view(np.uint8)
    with open(a.out, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        left = off
        while left > 0:
            n = min(left, block.size)
            f.write(block[:n].tobytes())
            left -= n
    print(f"{a.out}: {layers} layers, {len(names)} tensors, {off / 2**30:.2f} GiB")

if __name__ == "__main__":
    main()
