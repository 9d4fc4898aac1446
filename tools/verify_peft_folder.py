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


def multi_adapter(cli, work, case):
    """`--adapter A --adapter B:0.5` against PEFT with both adapters active online (B loaded with
    its lora_alpha halved: the same 0.5 scale), and PEFT's own merge of both."""
    import shutil
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    a = os.path.join(case, "adapter")
    b, b_half = os.path.join(work, "adapter_b"), os.path.join(work, "adapter_b_half")
    for d in (b, b_half):
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(a, d)
    g = torch.Generator().manual_seed(11)
    w = {k: 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float32).to(v.dtype)
         for k, v in load_file(os.path.join(a, "adapter_model.safetensors")).items()}
    for d in (b, b_half):
        save_file(w, os.path.join(d, "adapter_model.safetensors"), metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(b_half, "adapter_config.json")))
    cfg["lora_alpha"] = cfg["lora_alpha"] / 2
    json.dump(cfg, open(os.path.join(b_half, "adapter_config.json"), "w"))
    ids = np.load(os.path.join(case, "logits.npz"))["input_ids"]
    base = AutoModelForCausalLM.from_pretrained(os.path.join(case, "base"), torch_dtype=torch.float32)
    pm = PeftModel.from_pretrained(base, a, adapter_name="a")
    pm.load_adapter(b_half, adapter_name="b")
    pm.base_model.set_adapter(["a", "b"])
    with torch.no_grad():
        online = pm.eval()(torch.as_tensor(ids)).logits.float().numpy()
        peft_merged = pm.merge_and_unload(adapter_names=["a", "b"])(torch.as_tensor(ids)).logits.float().numpy()
    out = os.path.join(work, "multi")
    r = subprocess.run([cli, "merge-lora", os.path.join(case, "base"), "--adapter", a, "--adapter", b + ":0.5",
                        "-o", out, "--overwrite", "-q"], capture_output=True, text=True)
    if r.returncode:
        print(f"FAIL multi-adapter: exit {r.returncode}: {r.stderr.strip()}")
        return False
    ours = logits(out, ids, torch.float32)
    err, peft_err = float(np.abs(ours - online).max()), float(np.abs(peft_merged - online).max())
    single = float(np.abs(logits(os.path.join(work, os.path.basename(os.path.normpath(case)) + "-base"), ids, torch.float32) - online).max())
    good = err <= max(2 * peft_err, 1e-4 * float(np.abs(online).max())) and single > 100 * max(err, 1e-7)
    print(f"{'OK  ' if good else 'FAIL'} two adapters (--adapter A --adapter B:0.5) vs PEFT with both active online: "
          f"max|ours - online| = {err:.3g}, PEFT's merge of both {peft_err:.3g}; A alone is off by {single:.3g}")
    return good


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
    llama = [c for c in cases if os.path.basename(os.path.normpath(c)) == "peft_llama_lora"]
    ok &= multi_adapter(cli, work, (llama or cases)[0])
    print("ALL OK" if ok else "SOME FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
