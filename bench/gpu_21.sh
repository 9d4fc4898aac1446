#!/usr/bin/env bash
# Issue #21 on the GPU host: real Orbax restores multi-rank Orbax outputs, and the pi0-sized
# openpi job scales over 1, 2, 4, 8 MPI ranks (cold cache each run; per-rank bandwidth from the
# report). Needs out/dev.tgz (tools/pack_device.sh) and out/ompi.tgz (tools/pack_mpi.sh)
# unpacked and sourced, and out/mpi (4-rank outputs of fixtures made on the VM).
#   bash bench/gpu_21.sh verify scale      (phases in order; NP="1 4" picks the rank counts)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu21}
W=${W:-/tmp/pi0}
CK=$W/ckpt
T="python3 $ROOT/bench/pi0/timed.py"
MPIRUN="mpirun --oversubscribe --bind-to none -x PMIX_MCA_pcompress_base_silence_warning=1"
export PMIX_MCA_pcompress_base_silence_warning=1
mkdir -p "$OUT" "$W"
for phase in "$@"; do
  echo "### phase $phase ($(date -u +%T))"
  case $phase in
  verify)
    JAX_PLATFORMS=cpu python3 "$ROOT/tools/verify_mpi_orbax.py" out/mpi/st out/mpi/st-single out/mpi/pt out/mpi/pt-single \
      out/mpi/ocdbt3 out/mpi/ocdbt3-single 2>&1 | grep -v -i warn
    ;;
  pi0)
    [ -d "$CK/1000/params" ] || python3 "$ROOT/bench/pi0/make_pi0_sized.py" "$CK" > /dev/null
    echo "checkpoint: $(du -sb "$CK/1000/params" | cut -f1) bytes in params; cores $(nproc)"
    $T raw_read_params --cold -- sh -c "find '$CK/1000/params' -type f -exec cat {} + > /dev/null"
    ;;
  scale)
    rm -rf "$W/mpi_pt"
    $T openpi_merged_f32_single_process --cold -- ckptbridge convert -q "$CK/1000/params" "$W/mpi_pt" --recipe openpi \
      --shard-size 1GB --report "$OUT/scale_single.json"
    for n in ${NP:-1 2 4 8}; do
      rm -rf "$W/mpi_pt"
      $T "openpi_merged_f32_np$n" --cold -- $MPIRUN -np $n ckptbridge convert -q "$CK/1000/params" "$W/mpi_pt" \
        --recipe openpi --shard-size 1GB --report "$OUT/scale_np$n.json"
      python3 - "$OUT/scale_np$n.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ranks = r.get("ranks") or {}
s = r["summary"]
print(f"  engine {s['seconds']:.2f} s, {s['bytes']} bytes, window {s['peak_window_bytes'] >> 20} MiB; per rank (s, MB/s, GB):",
      " ".join(f"{p['seconds']:.1f}/{p['bytes_per_second'] / 1e6:.0f}/{p['bytes'] / 1e9:.2f}" for p in ranks.get("per_rank", [])),
      "slowest", ranks.get("slowest"))
PY
    done
    echo "output bytes $(du -sb "$W/mpi_pt" | cut -f1)"
    cat "$W"/mpi_pt/* > /dev/null
    $T durable_write_output_bytes -- sh -c "cat $W/mpi_pt/*.safetensors | dd of=$W/copy.bin bs=16M conv=fsync status=none"
    rm -f "$W/copy.bin"
    ;;
  s3scale)
    # The same job read from a local S3 server (bench/python/mini_s3.py over the checkpoint's
    # folder: ranged GETs with sendfile, one thread per connection) instead of the disk.
    python3 "$ROOT/bench/python/mini_s3.py" "$CK" bench > "$OUT/mini_s3.log" 2>&1 &
    SRV=$!
    sleep 1
    export AWS_ENDPOINT_URL="http://127.0.0.1:$(awk '{print $2; exit}' "$OUT/mini_s3.log")" AWS_REGION=us-east-1
    for n in ${NP:-1 2 4 8}; do
      rm -rf "$W/mpi_pt"
      $T "s3_openpi_merged_f32_np$n" --cold -- $MPIRUN -np $n -x AWS_ENDPOINT_URL -x AWS_REGION ckptbridge convert -q \
        s3://bench/1000/params "$W/mpi_pt" --recipe openpi --shard-size 1GB --report "$OUT/s3scale_np$n.json"
      python3 - "$OUT/s3scale_np$n.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ranks = r.get("ranks") or {}
s = r["summary"]
print(f"  engine {s['seconds']:.2f} s; per rank (s, MB/s, GB):",
      " ".join(f"{p['seconds']:.1f}/{p['bytes_per_second'] / 1e6:.0f}/{p['bytes'] / 1e9:.2f}" for p in ranks.get("per_rank", [])))
PY
    done
    kill $SRV
    ;;
  orbax4)
    [ -f "$W/stacked.safetensors" ] || ckptbridge convert -q "$CK/1000/params" "$W/stacked.safetensors"
    rm -rf "$W/mpi_orbax"
    $T orbax_np4 --cold -- $MPIRUN -np 4 ckptbridge convert -q "$W/stacked.safetensors" "$W/mpi_orbax" --to orbax
    ls "$W/mpi_orbax"
    JAX_PLATFORMS=cpu python3 "$ROOT/bench/python/orbax_matches_safetensors.py" "$W/mpi_orbax" "$W/stacked.safetensors" "the 4-rank output"
    rm -rf "$W/mpi_orbax"
    ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
  esac
done
