#!/usr/bin/env bash
# End-to-end throughput and memory benchmark. Prints ratios against baselines measured in the
# same run on the same machine (warm page cache, median of 3):
#   cp            copying the same bytes
#   convert       safetensors -> safetensors with renames (recipe) and a bf16 -> f32 cast
#   convert-copy  safetensors -> safetensors, identity (pure streaming)
# Usage: bench/run_bench.sh [GB] [WORKDIR]   (default 4 GB in /tmp/ckb-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
GB="${1:-4}"
WORK="${2:-/tmp/ckb-bench}"
BIN="${CKB_BIN:-build/ckptbridge}"
mkdir -p "$WORK"
SRC="$WORK/synthetic.safetensors"
[ -f "$SRC" ] || /usr/bin/python3 bench/make_synthetic.py "$SRC" --gb "$GB"
SIZE=$(stat -c %s "$SRC")
cat "$SRC" > /dev/null  # warm the page cache

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# run NAME OUTBYTES CMD...: prints "seconds peak_rss_kib" medians over 3 runs
run() {
  local name="$1"; shift
  local times=() rss=()
  for i in 1 2 3; do
    rm -rf "$WORK/out"*
    sync
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > /dev/null 2>&1
    read -r t m < "$WORK/time.txt"
    times+=("$t"); rss+=("$m")
  done
  local t m
  t=$(printf '%s\n' "${times[@]}" | median)
  m=$(printf '%s\n' "${rss[@]}" | median)
  echo "$name $t $m"
}

NT=$("$BIN" inspect --json "$SRC" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tensors"]))')
echo "source: $SRC ($(awk -v b="$SIZE" 'BEGIN{printf "%.2f GiB", b/2^30}'), $NT tensors)"
# Baselines copy the same bytes with the same durability as ckptbridge (which fsyncs before
# its atomic rename): cp followed by sync of the copied file.
F32="$WORK/f32.safetensors"
[ -f "$F32" ] || "$BIN" convert "$SRC" "$F32" --dtype F32 -q
F32_SIZE=$(stat -c %s "$F32")
LARGEST=$("$BIN" inspect --json "$SRC" | /usr/bin/python3 -c 'import json,sys; t=json.load(sys.stdin)["tensors"]; print(max(2*eval("*".join(map(str,v["shape"])) or "1") for v in t.values()))')
read -r _ T_CP M_CP < <(run cp-in sh -c "cp '$SRC' '$WORK/out.safetensors' && sync '$WORK/out.safetensors'")
read -r _ T_ID M_ID < <(run identity "$BIN" convert "$SRC" "$WORK/out.safetensors" -q)
read -r _ T_CO M_CO < <(run cp-out sh -c "cp '$F32' '$WORK/out.safetensors' && sync '$WORK/out.safetensors'")
read -r _ T_RC M_RC < <(run rename-cast "$BIN" convert "$SRC" "$WORK/out.safetensors" --recipe bench/rename_cast.json --dtype F32 -q)
awk -v s="$SIZE" -v s2="$F32_SIZE" -v big="$LARGEST" -v tcp="$T_CP" -v tid="$T_ID" -v tco="$T_CO" -v trc="$T_RC" \
    -v mid="$M_ID" -v mrc="$M_RC" 'BEGIN {
  gib = s / 2^30; gib2 = s2 / 2^30; lim = 1024 + 2 * big / 2^20;
  printf "%-40s %8s %9s %8s %12s\n", "job", "seconds", "GiB/s", "ratio", "peak RSS";
  printf "%-40s %8.2f %9.2f %8s %12s\n", "cp+sync of the input (baseline A)", tcp, gib/tcp, "1.00x", "-";
  printf "%-40s %8.2f %9.2f %7.2fx %8.0f MiB\n", "convert, identity (vs A)", tid, gib/tid, tcp/tid, mid/1024;
  printf "%-40s %8.2f %9.2f %8s %12s\n", "cp+sync of the f32 output (baseline B)", tco, gib2/tco, "1.00x", "-";
  printf "%-40s %8.2f %9.2f %7.2fx %8.0f MiB\n", "convert, rename + bf16->f32 (vs B)", trc, gib2/trc, tco/trc, mrc/1024;
  printf "targets: ratio >= 0.80; peak RSS < 1 GiB + largest tensor (%.0f MiB as f32)\n", lim;
}'
rm -rf "$WORK/out"*
