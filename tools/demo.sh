#!/usr/bin/env bash
# The main job on a bundled example: an openpi LoRA fine-tune saved by Orbax (training layout,
# bf16 base + f32 LoRA) is read natively, its LoRA merged exactly as openpi's runtime applied
# it, written as float32 safetensors, re-exported as a PyTorch .pt, and the two are diffed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/ckptbridge
FIX=tests/data/fixtures/openpi_pi0_tiny_lora
OUT="${1:-/tmp/ckptbridge-demo}"
rm -rf "$OUT" && mkdir -p "$OUT"
set -x
"$BIN" inspect "$FIX/train/checkpoints/100" | tail -n 3
"$BIN" merge-lora "$FIX/train/checkpoints/100" -o "$OUT/merged.safetensors" \
  --openpi-config "$FIX/model.json" --report "$OUT/merge-report.json"
"$BIN" convert "$OUT/merged.safetensors" "$OUT/merged.pt"
"$BIN" diff "$OUT/merged.safetensors" "$OUT/merged.pt"
