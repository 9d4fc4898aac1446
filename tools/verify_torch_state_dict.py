#!/usr/bin/env python3
"""Proves ckptbridge.torch.load_state_dict with the real libraries (issue #17, "Must show" (b)).

  1. openpi: load_state_dict(openpi_pi0_tiny_lora/train/checkpoints/100, recipe="openpi",
     openpi_config=model.json) loads with strict=True into a torch.nn.Module built from the
     converted names and shapes alone (a nested nn.Module per dotted component, nn.Parameter
     leaves): no missing or unexpected keys, every parameter afterwards == the dict's tensor,
     and the dict == the CLI's `ckptbridge convert ... --recipe openpi` safetensors output
     tensor for tensor (names, dtypes, shapes, bits; read with safetensors.torch.load_file).
  2. PEFT: sd = load_state_dict(peft_llama_lora/base, adapter=peft_llama_lora/adapter) loads
     with strict=True into AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
     (float32); its logits on the fixture's input ids are compared with PEFT's online (unmerged)
     model PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter):
     max|ours - online| <= max|merge_and_unload() - online| (PEFT's own merge error, computed
     in this run) + one float32 ulp at the largest |online| logit (np.spacing(max|online|)):
     a merge that is exact up to float32 rounding of the weights may land one rounding step
     beyond PEFT's own on any logit, never more.
Usage: verify_torch_state_dict.py FIXTURES_DIR [--cli ckptbridge] [--only openpi|peft]
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

import ckptbridge
import ckptbridge.torch

FAILS = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILS.append(what)


def module_from_names(sd):
    """A module tree with exactly the dict's names and shapes: nested nn.Module per dotted
    component, a zero-filled nn.Parameter of the tensor's dtype and shape at each leaf."""
    root = torch.nn.Module()
    for name, t in sd.items():
        *path, leaf = name.split(".")
        node = root
        for comp in path:
            child = node._modules.get(comp)
            if child is None:
                child = torch.nn.Module()
                node.add_module(comp, child)
            node = child
        grad = t.dtype.is_floating_point or t.dtype.is_complex
        node.register_parameter(leaf, torch.nn.Parameter(torch.zeros(t.shape, dtype=t.dtype), requires_grad=grad))
    return root


def bits_equal(a, b):
    return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and torch.equal(a, b)


def load_safetensors(path):
    try:
        from safetensors.torch import load_file
    except ImportError:  # Debian has no safetensors: read the CLI's file through ckptbridge.open instead
        print(f"note: safetensors is not importable here; reading {path} through ckptbridge.open", flush=True)
        out = {}
        with ckptbridge.open(path) as ck:
            for k in ck.keys():
                if ck.info(k).dtype == "BF16":
                    out[k] = torch.from_numpy(ck.get_tensor(k, raw=True, copy=True).view(np.int16)).view(torch.bfloat16)
                else:
                    out[k] = torch.from_numpy(ck.get_tensor(k, copy=True))
        return out
    return load_file(path)


def openpi(fixtures, cli):
    fix = os.path.join(fixtures, "openpi_pi0_tiny_lora")
    ckpt, cfg = os.path.join(fix, "train", "checkpoints", "100"), os.path.join(fix, "model.json")
    print(f"== openpi: load_state_dict({ckpt}, recipe='openpi', openpi_config={cfg})")
    sd = ckptbridge.torch.load_state_dict(ckpt, recipe="openpi", openpi_config=cfg)
    nbytes = sum(t.numel() * t.element_size() for t in sd.values())
    dtypes = sorted({str(t.dtype) for t in sd.values()})
    print(f"   {len(sd)} tensors, {nbytes} bytes, dtypes {dtypes}")
    model = module_from_names(sd)
    check(sorted(model.state_dict().keys()) == sorted(sd.keys()), "module built from the names has exactly the dict's keys")
    res = model.load_state_dict(sd, strict=True)
    check(not res.missing_keys and not res.unexpected_keys,
          f"load_state_dict(strict=True): missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    params = dict(model.named_parameters())
    bad = [k for k, t in sd.items() if not bits_equal(params[k].detach(), t)]
    check(not bad, f"every parameter equals the dict's tensor after loading ({len(params)} parameters; unequal: {bad[:5]})")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "model.safetensors")
        cmd = [cli, "convert", "-q", ckpt, out, "--recipe", "openpi", "--openpi-config", cfg]
        print("   $ " + " ".join(cmd))
        rc = subprocess.run(cmd).returncode
        check(rc == 0, f"CLI convert --recipe openpi exit status {rc}")
        if rc != 0:
            return
        ref = load_safetensors(out)
    check(sorted(ref) == sorted(sd), f"same names as the CLI's safetensors ({len(ref)} vs {len(sd)})")
    bad = [k for k in ref if k in sd and not bits_equal(ref[k], sd[k])]
    check(not bad and len(ref) == len(sd),
          f"every tensor equals the CLI's safetensors output (dtype, shape, bits; {len(ref)} tensors; unequal: {bad[:5]})")


def peft(fixtures):
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM
    import peft as peft_pkg
    import transformers
    fix = os.path.join(fixtures, "peft_llama_lora")
    base, adapter = os.path.join(fix, "base"), os.path.join(fix, "adapter")
    print(f"== PEFT (peft {peft_pkg.__version__}, transformers {transformers.__version__}, torch {torch.__version__}): "
          f"load_state_dict({base}, adapter={adapter})")
    sd = ckptbridge.torch.load_state_dict(base, adapter=adapter)
    print(f"   {len(sd)} tensors, dtypes {sorted({str(t.dtype) for t in sd.values()})}")
    cfg = AutoConfig.from_pretrained(base)
    torch.manual_seed(1234)  # from_config initialises weights randomly; all of them are overwritten below
    model = AutoModelForCausalLM.from_config(cfg).float().eval()
    want = set(model.state_dict().keys())
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    missing, extra = sorted(want - set(sd)), sorted(set(sd) - want)
    print(f"   model {type(model).__name__}: {len(want)} state-dict keys, tie_word_embeddings={tied}; "
          f"keys the dict lacks: {missing}; keys the model lacks: {extra}")
    if tied and missing == ["lm_head.weight"]:
        print("   lm_head is tied and absent from the dict: loading strict=False, then model.tie_weights()")
        res = model.load_state_dict(sd, strict=False)
        model.tie_weights()
        check(res.missing_keys == ["lm_head.weight"] and not res.unexpected_keys,
              f"load_state_dict(strict=False) with only the tied lm_head missing: {res}")
    else:
        res = model.load_state_dict(sd, strict=True)
        check(not res.missing_keys and not res.unexpected_keys,
              f"load_state_dict(strict=True): missing {res.missing_keys}, unexpected {res.unexpected_keys}")
    msd = model.state_dict()
    bad = [k for k, t in sd.items() if not bits_equal(msd[k], t)]
    check(not bad, f"every model tensor equals the dict's after loading ({len(sd)}; unequal: {bad[:5]})")

    ids = torch.from_numpy(np.load(os.path.join(fix, "logits.npz"))["input_ids"]).long()
    online_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).float().eval()
    merged_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).float().eval()
    merged_model = merged_model.merge_and_unload()
    with torch.no_grad():
        online = online_model(ids).logits.float().numpy().astype(np.float64)
        merged = merged_model(ids).logits.float().numpy().astype(np.float64)
        ours = model(ids).logits.float().numpy().astype(np.float64)
    merge_err = float(np.abs(merged - online).max())
    ours_err = float(np.abs(ours - online).max())
    ours_vs_merged = float(np.abs(ours - merged).max())
    scale = float(np.abs(online).max())
    ulp = float(np.spacing(np.float32(scale)))
    print(f"   input ids {tuple(ids.shape)}, logits {online.shape}, max|online| = {scale:.6g}")
    print(f"   max|ours - online|           = {ours_err:.6e}")
    print(f"   max|merge_and_unload - online| = {merge_err:.6e}   (PEFT's own merge error)")
    print(f"   max|ours - merge_and_unload| = {ours_vs_merged:.6e}")
    print(f"   tolerance: one float32 ulp at max|online| = np.spacing(float32({scale:.6g})) = {ulp:.6e}")
    check(ours_err <= merge_err + ulp,
          f"max|ours - online| {ours_err:.3e} <= PEFT merge error {merge_err:.3e} + 1 ulp {ulp:.3e} = {merge_err + ulp:.3e}")
    # The merged weights themselves, against PEFT's merge_and_unload in this run (float32 rounding)
    psd = merged_model.state_dict()
    wdiff = {k: float((sd[k].double() - psd[k].double()).abs().max()) for k in sd if k in psd}
    worst = max(wdiff, key=wdiff.get)
    lora = [k for k in sd if any(f".{m}." in k for m in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))]
    print(f"   weights vs PEFT merge_and_unload: {sum(v == 0 for v in wdiff.values())}/{len(wdiff)} bit-equal; "
          f"largest |diff| {wdiff[worst]:.3e} at {worst} ({len(lora)} LoRA-merged tensors)")
    untouched = [k for k in sd if k not in lora and wdiff.get(k, 1) != 0]
    check(not untouched, f"tensors without LoRA equal PEFT's bit for bit (unequal: {untouched[:5]})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures")
    ap.add_argument("--cli", default="ckptbridge")
    ap.add_argument("--only", choices=["openpi", "peft"])
    a = ap.parse_args()
    print(f"ckptbridge from {os.path.dirname(ckptbridge.__file__)}; torch {torch.__version__}; numpy {np.__version__}")
    if a.only in (None, "openpi"):
        openpi(a.fixtures, a.cli)
    if a.only in (None, "peft"):
        peft(a.fixtures)
    print(f"{'ALL OK' if not FAILS else f'{len(FAILS)} FAILED'}")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
