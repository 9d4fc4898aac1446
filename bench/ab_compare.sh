#!/usr/bin/env bash
# A/B comparison of two ckptbridge binaries on the same jobs, alternating A and B runs in one
# session (medians of N, warm page cache, durable outputs), so that a refactor can show its
# speed and memory bars unchanged. Prints one line per job: seconds and peak RSS for A and B.
# Usage: bench/ab_compare.sh BIN_A BIN_B [GB] [WORKDIR] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
A="$1"; B="$2"; GB="${3:-2}"; WORK="${4:-/tmp/ckb-ab}"; N="${5:-5}"
mkdir -p "$WORK"
SRC="$WORK/synthetic.safetensors"
[ -f "$SRC" ] || python3 bench/make_synthetic.py "$SRC" --gb "$GB"
cat "$SRC" > /dev/null
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
one() {  # BIN ARGS... -> "seconds rss_kib"
  rm -rf "$WORK/out"*; sync
  /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > /dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
  cat "$WORK/time.txt"
}
job() {  # NAME ARGS (with BIN as the first word)
  local name="$1"; shift
  local ta=() tb=() ma=() mb=()
  for i in $(seq "$N"); do
    read -r t m < <(one "$A" "$@"); ta+=("$t"); ma+=("$m")
    read -r t m < <(one "$B" "$@"); tb+=("$t"); mb+=("$m")
  done
  printf "%-28s A %6.2f s %6.0f MiB   B %6.2f s %6.0f MiB\n" "$name" \
    "$(printf '%s\n' "${ta[@]}" | median)" "$(( $(printf '%s\n' "${ma[@]}" | median) / 1024 ))" \
    "$(printf '%s\n' "${tb[@]}" | median)" "$(( $(printf '%s\n' "${mb[@]}" | median) / 1024 ))"
}
echo "source: $(du -h "$SRC" | cut -f1); A=$A B=$B; medians of $N alternating runs"
job identity convert "$SRC" "$WORK/out.safetensors" -q
job rename-cast-f32 convert "$SRC" "$WORK/out.safetensors" --recipe bench/rename_cast.json --dtype F32 -q
job to-orbax convert "$SRC" "$WORK/out_orbax" --to orbax -q
job to-discard convert "$SRC" "$WORK/out_x" --to discard -q
rm -rf "$WORK/out"*
