#!/usr/bin/env bash
# The pi0-sized benchmark on a machine with the Python stack (jax, orbax, safetensors):
# ckptbridge against raw disk reads/writes and against today's Python path, all measured in the
# same run. Phases (any subset, in this order): make verify ours openpi baseline.
#   CKB=path/to/ckptbridge bash bench/pi0/device_run.sh make ours baseline
# Results are printed as `label: wall_s=.. peak_rss_gib=..` lines; W (default /tmp/pi0) holds
# the data.
set -uo pipefail
CKB=${CKB:-ckptbridge}
W=${W:-/tmp/pi0}
HERE=$(cd "$(dirname "$0")" && pwd)
T="python3 $HERE/timed.py"
CK=$W/ckpt
mkdir -p "$W"
for phase in "$@"; do
  case $phase in
  make)
    [ -d "$CK/1000/params" ] || python3 "$HERE/make_pi0_sized.py" "$CK"
    echo "checkpoint: $(du -sb "$CK" | cut -f1) bytes, $(find "$CK" -type f | wc -l) files"
    ;;
  verify)
    JAX_PLATFORMS=cpu python3 "$HERE/../../tools/verify_with_orbax.py" "$CKB" "$HERE/../../tests/data/fixtures" "$W/verify"
    rm -rf "$W/verify"
    ;;
  ours)
    for rep in 1 2; do  # cold reads vary run to run: two of each, interleaved
      $T raw_read_ckpt --cold -- sh -c "find $CK -type f -exec cat {} + > /dev/null"
      $T ckb_orbax_read_discard --cold -- "$CKB" convert -q "$CK" - --to discard
    done
    # Two copy baselines: the checkpoint's own bytes from a cold cache (read and written, as
    # convert does), and the output's bytes from a warm one (written only).
    $T raw_copy_ckpt_cold --cold -- sh -c "cp -r '$CK' '$W/ckcopy' && sync"
    rm -rf "$W/ckcopy"
    $T ckb_orbax_to_safetensors --cold -- "$CKB" convert -q "$CK" "$W/ours.safetensors"
    $T raw_copy_fsync_same_bytes -- dd if="$W/ours.safetensors" of="$W/copy.safetensors" bs=16M conv=fsync status=none
    rm -f "$W/copy.safetensors"
    $T ckb_safetensors_to_orbax_zstd -- "$CKB" convert -q "$W/ours.safetensors" "$W/ours_orbax" --to orbax
    echo "orbax written: $(du -sb "$W/ours_orbax" | cut -f1) bytes"
    rm -rf "$W/ours_orbax"
    $T ckb_safetensors_to_orbax_raw -- "$CKB" convert -q "$W/ours.safetensors" "$W/ours_orbax" --to orbax --compression none
    rm -rf "$W/ours_orbax" "$W/ours.safetensors"
    for rep in 1 2; do
      rm -f "$W/merged.safetensors"
      $T ckb_merge_lora_f32 --cold -- "$CKB" merge-lora -q "$CK" -o "$W/merged.safetensors" --variant gemma_2b_lora,gemma_300m_lora
      $T raw_copy_fsync_merged_bytes -- dd if="$W/merged.safetensors" of="$W/copy.safetensors" bs=16M conv=fsync status=none
      rm -f "$W/copy.safetensors"
    done
    ;;
  openpi)
    mkdir -p "$W/pt"
    $T ckb_openpi_to_pytorch_merge_lora --cold -- "$CKB" convert -q "$CK" "$W/pt/model.safetensors" --recipe openpi --variant gemma_2b_lora,gemma_300m_lora
    ;;
  baseline)
    $T python_baseline_restore_merge_save --cold -- python3 "$HERE/python_baseline.py" "$CK/1000/params" "$W/baseline.safetensors"
    [ -f "$W/merged.safetensors" ] && python3 "$HERE/check_merge.py" "$W/merged.safetensors" "$W/baseline.safetensors"
    [ -f "$W/pt/model.safetensors" ] && python3 "$HERE/check_openpi.py" "$W/pt/model.safetensors" "$W/baseline.safetensors"
    rm -rf "$W/baseline.safetensors" "$W/merged.safetensors" "$W/pt"
    $T orbax_restore_then_save --cold -- python3 "$HERE/orbax_roundtrip.py" "$CK/1000/params" "$W/orbax_resaved"
    rm -rf "$W/orbax_resaved"
    $T python_orbax_to_safetensors --cold -- python3 "$HERE/orbax_to_safetensors.py" "$CK/1000/params" "$W/py.safetensors"
    rm -f "$W/py.safetensors"
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
