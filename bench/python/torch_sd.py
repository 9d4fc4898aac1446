#!/usr/bin/env python3
"""The openpi PyTorch state dict of a pi0-sized LoRA checkpoint, in process:
  ckb    ckptbridge.torch.load_state_dict(CKPT, recipe="openpi", variant=VARIANT): LoRA merged,
         PI0Pytorch names and layouts, float32 (the engine writes into the torch storages).
Prints `torch_sd ckb: tensors=.. bytes=.. load_s=.. peak_rss_gib=..`. The Python path it is
measured against is bench/pi0/python_baseline.py (with OUT `-`: no save).
    torch_sd.py CKPT [VARIANT | OPENPI_CONFIG.json]"""
import resource
import sys
import time

import ckptbridge.torch


def main():
    path = sys.argv[1]
    variant = sys.argv[2] if len(sys.argv) > 2 else "gemma_2b_lora,gemma_300m_lora"
    t0 = time.perf_counter()
    opt = {"openpi_config": variant} if variant.endswith(".json") else {"variant": variant}
    sd = ckptbridge.torch.load_state_dict(path, recipe="openpi", **opt)
    dt = time.perf_counter() - t0
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values()})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"torch_sd ckb: tensors={len(sd)} bytes={nbytes} dtypes={','.join(dtypes)} load_s={dt:.2f} "
          f"peak_rss_gib={rss:.2f}", flush=True)


if __name__ == "__main__":
    main()
