#!/usr/bin/env bash
# The GPU-host checks of issue #18, on a machine with jax, flax, optax, orbax, torch,
# transformers and peft, with ckptbridge set up by tools/pack_device.sh's env.sh. Phases:
#   fixtures  real-library fixtures: make_fixtures.py --heldout (openpi with openpi's own modules
#             from out/openpi_src, see tools/fixtures/stage_openpi_src.sh; MaxText sgd(momentum);
#             PEFT variants) and tools/fixtures/make_peft_sharded_bf16.py, into $OUT/fixtures
#   optax     tools/verify_optax_chain.py: adapt --layout linen outputs restored by Orbax into the
#             Linen TrainState, two more steps, losses compared
#   peft      tools/verify_peft_folder.py on every PEFT case with logits.npz
#   pi0       bench/pi0's pi0-sized LoRA checkpoint converted with no flags into a folder
#   bash tools/gpu_checks.sh fixtures optax peft 2>&1 | tee log
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu_checks}
W=${W:-/tmp/gpu_work}
mkdir -p "$OUT" "$W"
for phase in "$@"; do
  echo "### phase $phase ($(date -u +%T))"
  case $phase in
  fixtures)
    JAX_PLATFORMS=cpu python3 "$ROOT/tests/data/fixtures/gen/make_fixtures.py" "$OUT/fixtures" --heldout \
      --openpi-src "$ROOT/out/openpi_src" 2>&1 | tail -5
    python3 "$ROOT/tools/fixtures/make_peft_sharded_bf16.py" "$OUT/fixtures" 2>&1 | tail -30
    ;;
  optax)
    # on the CPU: GPU scatter-add (the embedding gradient) is not deterministic, and the check is ==
    JAX_PLATFORMS=cpu python3 "$ROOT/tools/verify_optax_chain.py" "$(command -v ckptbridge)" "$W/optax" 2>&1 | tail -40
    ;;
  peft)
    cases=()
    for d in "$ROOT"/tests/data/fixtures/peft_* "$OUT"/fixtures/peft_*; do
      [ -f "$d/logits.npz" ] && cases+=("$d")
    done
    python3 "$ROOT/tools/verify_peft_folder.py" "$(command -v ckptbridge)" "$W/peft" "${cases[@]}" 2>&1 | tail -30
    ;;
  pi0)
    [ -d /tmp/pi0/ckpt ] || python3 "$ROOT/bench/pi0/make_pi0_sized.py" /tmp/pi0/ckpt 2>&1 | tail -3
    for dt in "" bf16; do
      echo "--- convert /tmp/pi0/ckpt/1000 OUT_DIR --recipe openpi ${dt:+--dtype $dt} (no other flags)"
      /usr/bin/time -v ckptbridge convert /tmp/pi0/ckpt/1000 "$W/pi0_out$dt" --recipe openpi ${dt:+--dtype $dt} --overwrite \
        --report "$OUT/pi0_report$dt.json" 2>&1 | grep -vE "^\s+(Average|Exit|File|Socket|Signals|Swaps|Page size|Minor|Major|Voluntary|Involuntary|Percent|System time|User time)" | tail -30
      ls -la "$W/pi0_out$dt" 2>&1 | head
    done
    ;;
  *) echo "unknown phase $phase" ;;
  esac
done
