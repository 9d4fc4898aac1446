#!/usr/bin/env python3
"""Proves that `ckptbridge merge-lora BASE --adapter ADAPTER -o OUT` writes a Hugging Face model
folder that transformers loads as it is, with the logits of the PEFT model run online (issue #18).

Needs torch, transformers, peft (the GPU host) and the ckptbridge CLI. Usage:
  verify_peft_folder.py CKPTBRIDGE_CLI WORK_DIR CASE_DIR [CASE_DIR ...]
A case folder holds base/ (a transformers model folder, possibly sharded), adapter/ (PEFT) and
logits.npz (input_ids and the online logits; see tools/fixtures/make_peft_sharded_bf16.py and
tests/data/fixtures/gen/make_fixtures.py). For each case and each output dtype (the base's, and
f32): merge, `AutoModelForCausalLM.from_pretrained(OUT)` (transformers' own checks: no missing
or unexpected keys), logits on the recorded input_ids, compared with the online logits.
"PEFT's own merge error" is |merge_and_unload logits - online logits| as recorded; ours must not
exceed it by more than a factor (bf16 rounding of the merged weights differs element by element)
and, in f32, must sit within float32 rounding of the online model. Prints one line per check.
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM


def logits(folder, ids, dtype):
    model, info = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise SystemExit(f"FAIL {folder}: transformers loading info {bad}")
    with torch.no_grad():
        return model.eval()(torch.as_tensor(ids)).logits.float().numpy()


def main():
    cli, work, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
    os.makedirs(work, exist_ok=True)
    ok = True
    for case in cases:
        name = os.path.basename(os.path.normpath(case))
        z = np.load(os.path.join(case, "logits.npz"))
        ids = z["input_ids"]
        if "online_f32" in z:   # bf16 base: the reference is the adapter online over the upcast base
            ref, peft_merged = z["online_f32"], z["merged_bf16"]
        else:
            ref, peft_merged = z["online"], z["merged"]
        peft_err = float(np.abs(peft_merged - ref).max())
        base_cfg = json.load(open(os.path.join(case, "base", "config.json")))
        base_dtype = base_cfg.get("torch_dtype") or base_cfg.get("dtype") or "float32"
        for label, flag, tdtype in (("base dtype", [], getattr(torch, base_dtype)), ("f32", ["--dtype", "f32"], torch.float32)):
            out = os.path.join(work, f"{name}-{'f32' if flag else 'base'}")
            r = subprocess.run([cli, "merge-lora", os.path.join(case, "base"), "--adapter", os.path.join(case, "adapter"),
                                "-o", out, "--overwrite", "--report", out + ".report.json", *flag],
                               capture_output=True, text=True)
            if r.returncode:
                print(f"FAIL {name} {label}: exit {r.returncode}: {r.stderr.strip()}")
                ok = False
                continue
            files = sorted(os.listdir(out))
            ours = logits(out, ids, tdtype)
            err = float(np.abs(ours - ref).max())
            scale = float(np.abs(ref).max())
            if tdtype == torch.float32:   # float32 weights: within float32 rounding of the online model
                good = err <= max(2 * peft_err, 1e-4 * scale) if base_dtype == "float32" else err <= 1e-4 * scale
            else:                         # bf16 weights: rounded once, no worse than PEFT's in-dtype add
                good = err <= 2 * peft_err
            ok &= good
            print(f"{'OK  ' if good else 'FAIL'} {name} {label}: from_pretrained loads {files}; "
                  f"max|ours - online| = {err:.3g}, PEFT's own merge max|merged - online| = {peft_err:.3g} "
                  f"(|logits| max {scale:.3g})")
    print("ALL OK" if ok else "SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
