#!/usr/bin/python3
"""Writes the sparse and quantized .pt samples of tests/data/strict/ with real torch.save.

Run with Debian's python3-torch (1.13): /usr/bin/python3 tools/gen_strict_torch.py
Each file holds one unsupported tensor next to an ordinary one, so a reader must refuse the
whole file naming the unsupported tensor's path.
"""
import os
import torch

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "strict")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
dense = torch.arange(4, dtype=torch.float32)
i = torch.tensor([[0, 1], [1, 0]])
v = torch.tensor([1.0, 2.0])
coo = torch.sparse_coo_tensor(i, v, (2, 2))
samples = {
    "sparse_coo.pt": {"layer": {"w": coo, "b": dense}},
    "sparse_csr.pt": {"w": coo.to_sparse_csr(), "b": dense},
    "quant_per_tensor.pt": {"b": dense, "q": torch.quantize_per_tensor(torch.tensor([1.0, 2.0, 3.0]), 0.5, 0, torch.quint8)},
    "quant_per_channel.pt": {"qc": torch.quantize_per_channel(torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
                                                              torch.tensor([0.5, 0.25]), torch.tensor([0, 1]), 0,
                                                              torch.qint8)},
}
for name, obj in samples.items():
    torch.save(obj, os.path.join(out, name))
# The legacy (non-zip) serialization of the sparse sample.
torch.save(samples["sparse_coo.pt"], os.path.join(out, "sparse_coo_legacy.pt"), _use_new_zipfile_serialization=False)
print("torch", torch.__version__, "->", out)
