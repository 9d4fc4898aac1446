#!/usr/bin/env bash
# The Python package's benchmarks and GPU-host checks (issue #17), all measured in one run, on
# a machine with the Python stack (jax, orbax, torch, transformers, peft, safetensors) and
# ckptbridge + libckptbridge.so set up (tools/pack_device.sh's env.sh). Phases, in order given:
#   env       versions, cores, memory
#   verify    tools/verify_torch_state_dict.py on the bundled fixtures ("Must show" (b))
#   make      the pi0-sized Orbax checkpoint (bench/pi0/make_pi0_sized.py) under W (once)
#   read      read every tensor: ckptbridge.open vs Orbax restore to NumPy, cold, interleaved, x2
#   items     read every tensor: ckptbridge.open(...).items() (read-ahead) vs Orbax to NumPy, cold, interleaved, x2
#   threads   diagnostic: the same ckptbridge.open reads spread over 8 Python threads, cold
#   jax       ckptbridge.jax.restore vs Orbax restore into one abstract state on jax.devices()[0], cold, x2
#   jaxdiag   diagnostic: ckptbridge.open reads on 8 threads + jax.device_put vs ckptbridge.jax.restore, cold
#   torch     ckptbridge.torch.load_state_dict(recipe="openpi") vs bench/pi0/python_baseline.py (no save), cold, interleaved, x2
# Timed rows are bench/pi0/timed.py's `LABEL_rN cold: wall_s=.. peak_rss_gib=..` (the whole child
# process); each script also prints its in-process time. bench/python/summarize.py LOG prints the ratios.
#   bash bench/python/device_run.sh env verify make read threads jax torch 2>&1 | tee log
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
W=${W:-/tmp/pi0}
CK=$W/ckpt
ITEM=$CK/1000/params
T="python3 $ROOT/bench/pi0/timed.py"
mkdir -p "$W"
for phase in "$@"; do
  echo "### phase $phase ($(date -u +%T))"
  case $phase in
  env)
    python3 -c 'import sys, numpy, jax, orbax.checkpoint as o, torch, ckptbridge; print("python", sys.version.split()[0], "numpy", numpy.__version__, "jax", jax.__version__, "orbax", o.__version__, "torch", torch.__version__, "ckptbridge", ckptbridge.__file__); print("jax devices", jax.devices())'
    echo "cores $(nproc); $(free -g | sed -n 2p)"
    ;;
  verify)
    python3 "$ROOT/tools/verify_torch_state_dict.py" "$ROOT/tests/data/fixtures" --cli "${CKB:-ckptbridge}"
    ;;
  make)
    [ -d "$ITEM" ] || python3 "$ROOT/bench/pi0/make_pi0_sized.py" "$CK"
    echo "checkpoint: $(du -sb "$CK" | cut -f1) bytes, $(find "$CK" -type f | wc -l) files"
    ;;
  read)
    for rep in 1 2; do
      $T ckb_open_read_all_r$rep --cold -- python3 "$HERE/read_all.py" ckb "$ITEM"
      $T orbax_restore_numpy_r$rep --cold -- python3 "$HERE/read_all.py" orbax "$ITEM"
    done
    ;;
  items)
    for rep in 1 2; do
      $T ckb_open_items_r$rep --cold -- python3 "$HERE/read_all.py" ckb_items "$ITEM"
      $T orbax_restore_numpy_items_r$rep --cold -- python3 "$HERE/read_all.py" orbax "$ITEM"
    done
    ;;
  threads)
    $T ckb_open_read_all_8threads_r1 --cold -- python3 "$HERE/read_all.py" ckb_threads:8 "$ITEM"
    ;;
  jax)
    for rep in 1 2; do
      $T ckb_jax_restore_r$rep --cold -- python3 "$HERE/jax_restore.py" ckb "$ITEM"
      $T orbax_jax_restore_r$rep --cold -- python3 "$HERE/jax_restore.py" orbax "$ITEM"
    done
    ;;
  jaxdiag)
    $T ckb_jax_restore_r3 --cold -- python3 "$HERE/jax_restore.py" ckb "$ITEM"
    $T ckb_parallel_diag_jax_r1 --cold -- python3 "$HERE/jax_restore.py" ckb_parallel_diag "$ITEM"
    ;;
  torch)
    for rep in 1 2; do
      $T ckb_load_state_dict_openpi_r$rep --cold -- python3 "$HERE/torch_sd.py" "$CK"
      $T python_baseline_state_dict_r$rep --cold -- python3 "$ROOT/bench/pi0/python_baseline.py" "$ITEM" -
    done
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
