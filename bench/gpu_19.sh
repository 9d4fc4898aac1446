#!/usr/bin/env bash
# Issue #19's measurements on the GPU host (jax, orbax, torch, safetensors installed; ckptbridge
# set up by tools/pack_device.sh's env.sh). Every number is measured in this run, cold page
# cache before each timed command (bench/pi0/timed.py --cold). Phases, in the order given:
#   env     versions, cores, memory, disk
#   pi0     the pi0-sized openpi LoRA checkpoint (bench/pi0/make_pi0_sized.py) -> openpi PyTorch
#           safetensors (merged, f32): ours vs reading the checkpoint + a durable write of the
#           output bytes, vs the Python path (bench/pi0/python_baseline.py)
#   orbax   safetensors (pi0-sized, largest array 2.4 GB) -> Orbax zstd: ours vs Orbax's own save
#           of the same arrays (bench/python/orbax_save.py); ours read back and compared
#   orbaxwarm  the same job like for like with Orbax's save: the input already in memory (page
#           cache) for ours as the arrays are for Orbax; both durable; plus a durable write of our
#           output's bytes (the disk's own cost of the job)
#   verify  tools/verify_with_orbax.py: our Orbax/zarr outputs of every fixture restored by Orbax
#   matrix  bench/matrix.py --python at MATRIX_SIZES (default 1,4) into $OUT/gpu.jsonl
#   bash bench/gpu_19.sh env pi0 orbax matrix 2>&1 | tee log
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu19}
W=${W:-/tmp/pi0}
CK=$W/ckpt
T="python3 $ROOT/bench/pi0/timed.py"
mkdir -p "$OUT" "$W"
# The pi0-sized checkpoint, made once per machine.
make_checkpoint() { [ -d "$CK/1000/params" ] || python3 "$ROOT/bench/pi0/make_pi0_sized.py" "$CK" > /dev/null; }
for phase in "$@"; do
  echo "### phase $phase ($(date -u +%T))"
  case $phase in
  env)
    python3 -c 'import sys, jax, orbax.checkpoint as o, torch, safetensors; print("python", sys.version.split()[0], "jax", jax.__version__, "orbax", o.__version__, "torch", torch.__version__, "safetensors", safetensors.__version__)'
    echo "cores $(nproc); $(free -g | sed -n 2p)"; df -h "$W" | tail -1
    ;;
  pi0)
    make_checkpoint
    echo "checkpoint: $(du -sb "$CK/1000/params" | cut -f1) bytes in params"
    ckptbridge inspect --json "$CK/1000/params" | python3 -c 'import json,sys,math; t=json.load(sys.stdin)["tensors"]; b={"BF16":2,"F32":4}; print("largest input tensor bytes", max(math.prod(v["shape"])*b.get(v["dtype"],4) for v in t.values()))'
    for rep in 1 2; do
      $T raw_read_params_r$rep --cold -- sh -c "find '$CK/1000/params' -type f -exec cat {} + > /dev/null"
      rm -f "$W/pt.safetensors"
      $T ckb_openpi_merged_f32_r$rep --cold -- ckptbridge convert -q "$CK/1000/params" "$W/pt.safetensors" --recipe openpi
    done
    echo "output bytes $(stat -c %s "$W/pt.safetensors")"
    cat "$W/pt.safetensors" > /dev/null  # warm: the baseline writes its bytes, it does not read them from disk
    $T durable_write_output_bytes -- dd if="$W/pt.safetensors" of="$W/copy.bin" bs=16M conv=fsync status=none
    rm -f "$W/copy.bin"
    $T python_restore_merge_save --cold -- python3 "$ROOT/bench/pi0/python_baseline.py" "$CK/1000/params" "$W/py.safetensors"
    python3 "$ROOT/bench/pi0/check_openpi.py" "$W/pt.safetensors" "$W/py.safetensors"
    rm -f "$W/py.safetensors"
    ;;
  orbax)
    [ -f "$W/stacked.safetensors" ] || make_checkpoint
    [ -f "$W/stacked.safetensors" ] || ckptbridge convert -q "$CK/1000/params" "$W/stacked.safetensors"
    echo "input $(stat -c %s "$W/stacked.safetensors") bytes"
    for rep in 1 2; do
      rm -rf "$W/ours_orbax" "$W/py_orbax"
      $T ckb_safetensors_to_orbax_zstd_r$rep --cold -- ckptbridge convert -q "$W/stacked.safetensors" "$W/ours_orbax" --to orbax
      $T orbax_save_same_arrays_r$rep --cold -- python3 "$ROOT/bench/python/orbax_save.py" "$W/stacked.safetensors" "$W/py_orbax"
    done
    echo "sizes: ours $(du -sb "$W/ours_orbax" | cut -f1) orbax $(du -sb "$W/py_orbax" | cut -f1)"
    ckptbridge convert -q "$W/ours_orbax" "$W/back.safetensors" && ckptbridge diff "$W/stacked.safetensors" "$W/back.safetensors" > /dev/null \
      && echo "ours_orbax reads back bit-identical (ckptbridge diff)"
    JAX_PLATFORMS=cpu python3 "$ROOT/bench/python/orbax_matches_safetensors.py" "$W/ours_orbax" "$W/stacked.safetensors" "our output"
    rm -rf "$W/ours_orbax" "$W/py_orbax" "$W/back.safetensors"
    ;;
  orbaxwarm)
    [ -f "$W/stacked.safetensors" ] || make_checkpoint
    [ -f "$W/stacked.safetensors" ] || ckptbridge convert -q "$CK/1000/params" "$W/stacked.safetensors"
    for rep in 1 2; do
      rm -rf "$W/ours_orbax" "$W/py_orbax"
      $T ckb_safetensors_to_orbax_zstd_cold_r$rep --cold -- ckptbridge convert -q "$W/stacked.safetensors" "$W/ours_orbax" --to orbax
      rm -rf "$W/ours_orbax"
      sync; echo 3 > /proc/sys/vm/drop_caches; cat "$W/stacked.safetensors" > /dev/null
      $T ckb_safetensors_to_orbax_zstd_warm_input_r$rep -- ckptbridge convert -q "$W/stacked.safetensors" "$W/ours_orbax" --to orbax
      $T orbax_save_same_arrays_r$rep --cold -- python3 "$ROOT/bench/python/orbax_save.py" "$W/stacked.safetensors" "$W/py_orbax"
    done
    echo "sizes: ours $(du -sb "$W/ours_orbax" | cut -f1) orbax $(du -sb "$W/py_orbax" | cut -f1)"
    find "$W/ours_orbax" -type f -exec cat {} + > "$W/ours.bin"
    $T durable_write_of_our_output_bytes -- dd if="$W/ours.bin" of="$W/copy.bin" bs=16M conv=fsync status=none
    rm -rf "$W/ours_orbax" "$W/py_orbax" "$W/ours.bin" "$W/copy.bin"
    ;;
  verify)
    JAX_PLATFORMS=cpu python3 "$ROOT/tools/verify_with_orbax.py" "$(command -v ckptbridge)" "$ROOT/tests/data/fixtures" "$W/verify" 2>&1 | tail -15
    rm -rf "$W/verify"
    ;;
  matrix)
    python3 "$ROOT/bench/matrix.py" --bin "$(command -v ckptbridge)" --work "$W/matrix" --sizes "${MATRIX_SIZES:-1,4}" \
      --reps "${MATRIX_REPS:-1}" --python --out "$OUT/gpu.jsonl" --host gpu-host 2>&1 | cut -c1-160
    rm -rf "$W/matrix"
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
