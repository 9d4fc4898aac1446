#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan), seeds a corpus per target from the test
# data and ../shared/fixtures, and runs every target in parallel for a given time.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]        default: 600 s, all targets
#
# Environment: BUILD (default build-fuzz), OUT (default fuzz-out: corpora, crashes, logs),
# JOBS (parallel build jobs, default 2), NO_BUILD=1 (use the existing $FUZZER, default
# $BUILD/fuzz/ckb_fuzz_multi), SEED_ONLY=1 (only build the seed corpora under $OUT/seeds),
# RSS_MB (default 2048). Every target runs as one process, so give it as many cores.
# A finding is written to $OUT/crashes/<target>/; fix it and copy the input to
# tests/data/fuzz_regressions/<target>/ so tests/fuzz_regress_test.cpp replays it in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-600}
shift || true
BUILD=${BUILD:-build-fuzz}
OUT=${OUT:-fuzz-out}
JOBS=${JOBS:-2}
RSS_MB=${RSS_MB:-2048}
FIX=tests/data/fixtures
SHARED=../shared/fixtures

ALL=(safetensors pickle torch zip npy npz msgpack ocdbt_manifest ocdbt_btree zarr_metadata zstd zlib blosc sharding
     orbax_metadata recipe)
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL[@]}")

if [ -z "${NO_BUILD:-}" ] && [ -z "${SEED_ONLY:-}" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCKB_BUILD_FUZZ=ON -DCKB_BUILD_TESTS=OFF \
    -DCKB_BUILD_BENCH=OFF >/dev/null
  ninja -C "$BUILD" -j"$JOBS" ckb_fuzz_multi
fi
FUZZER=${FUZZER:-$BUILD/fuzz/ckb_fuzz_multi}  # all targets in one binary; CKB_FUZZ_TARGET picks one

# --- seed corpora -----------------------------------------------------------------------
seed() {  # seed TARGET FILE...
  local dir="$OUT/seeds/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do
    [ -f "$f" ] || continue
    [ "$(stat -c %s "$f")" -le 1048576 ] || continue  # within -max_len
    cp "$f" "$dir/$(echo "$f" | sha1sum | cut -c1-16)"
  done
}
codec_seed() {  # codec_seed TARGET FILE...: prefixes the 2-byte limit header (limit = size rounded up)
  local t=$1; shift
  mkdir -p "$OUT/seeds/$t"
  python3 - "$OUT/seeds/$t" "$@" <<'PY'
import sys, os, hashlib, zlib
out = sys.argv[1]
for f in sys.argv[2:]:
    d = open(f, 'rb').read()
    if not d or len(d) > 1 << 20: continue
    for limit in (len(d) * 4, 1 << 22):
        units = min((limit + 127) // 128, 0x7fff)
        hdr = bytes([units & 0xff, (units >> 8) & 0x7f])
        open(os.path.join(out, hashlib.sha1(hdr + d).hexdigest()[:16]), 'wb').write(hdr + d)
PY
}
find_in() { find "$FIX" "$SHARED" "$@" 2>/dev/null || true; }
mapfile -t ST < <(find_in -name '*.safetensors')
mapfile -t PT < <(find_in -name '*.pt' -o -name '*.pth' -o -name '*.bin')
mapfile -t NPY < <(find_in -name '*.npy')
mapfile -t NPZ < <(find_in -name '*.npz')
mapfile -t MP < <(find_in -name '*.msgpack' -o -name 'checkpoint')
mapfile -t MAN < <(find_in -name 'manifest.ocdbt')
mapfile -t NODES < <(find_in -path '*ocdbt*/d/*' -type f)
mapfile -t ZA < <(find_in -name '.zarray' -o -name 'zarr.json')
mapfile -t META < <(find_in -name '_METADATA')
mapfile -t RECIPES < <(find tests bench docs -name '*.json' 2>/dev/null | xargs grep -l '"rules"\|"stages"' 2>/dev/null || true)
mapfile -t V2CHUNKS < <(find_in -path '*plain_zarr2*' -type f -not -name '.*' -not -name '_*' -not -name '*.json' -not -name '*.txt')
mapfile -t V3CHUNKS < <(find_in -path '*zarr3*' -path '*/c/*' -type f)
seed safetensors "${ST[@]}"
seed torch "${PT[@]}"
seed zip "${PT[@]}" "${NPZ[@]}"
seed npz "${NPZ[@]}"
seed msgpack "${MP[@]}"
seed ocdbt_manifest "${MAN[@]}"
seed ocdbt_btree "${NODES[@]}"
seed zarr_metadata "${ZA[@]}"
seed orbax_metadata "${META[@]}"
seed recipe "${RECIPES[@]}"
mkdir -p "$OUT/seeds/npy" "$OUT/seeds/pickle" "$OUT/seeds/sharding"
for f in "${NPY[@]}"; do  # npy target: first byte is the v2_as_bf16 flag
  { printf '\0'; cat "$f"; } > "$OUT/seeds/npy/$(basename "$f")"
done
python3 - "$OUT/seeds" "${PT[@]}" "${V2CHUNKS[@]}" "${V3CHUNKS[@]}" <<'PY'
import sys, os, zipfile, hashlib
out = sys.argv[1]
for f in sys.argv[2:]:
    data = open(f, 'rb').read()
    if f.endswith(('.pt', '.pth', '.bin')):
        # pickle target: data.pkl out of zip checkpoints; legacy files are pickles already
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                for n in z.namelist():
                    if n.endswith('.pkl'):
                        b = z.read(n)
                        open(os.path.join(out, 'pickle', hashlib.sha1(b).hexdigest()[:16]), 'wb').write(b)
        else:
            open(os.path.join(out, 'pickle', hashlib.sha1(data).hexdigest()[:16]), 'wb').write(data)
    elif len(data) <= 1 << 20:
        # sharding target: first byte picks the array configuration
        for cfg in range(5):
            b = bytes([cfg]) + data
            open(os.path.join(out, 'sharding', hashlib.sha1(b).hexdigest()[:16]), 'wb').write(b)
PY
codec_seed zstd "${V2CHUNKS[@]}"
codec_seed blosc "${V2CHUNKS[@]}"
# zlib: a few streams made here (the fixtures hold none)
python3 - "$OUT/seeds/zlib" <<'PY'
import sys, os, zlib, gzip
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
for i, raw in enumerate([b'', b'\0' * 4096, bytes(range(256)) * 8, b'ckptbridge' * 100]):
    for j, enc in enumerate([zlib.compress(raw, 1), gzip.compress(raw, 1)]):
        units = min((max(len(raw), 1) + 127) // 128, 0x7f)
        hdr = bytes([units & 0xff, (0x40 if j else 0) | ((units >> 8) & 0x3f)])
        open(os.path.join(out, f'seed{i}{j}'), 'wb').write(hdr + enc)
PY
for t in "${TARGETS[@]}"; do mkdir -p "$OUT/seeds/$t"; done
[ -n "${SEED_ONLY:-}" ] && { echo "seeds in $OUT/seeds"; exit 0; }

# --- run --------------------------------------------------------------------------------
mkdir -p "$OUT/corpus" "$OUT/crashes" "$OUT/logs"
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
  case $t in
    safetensors|zarr_metadata|orbax_metadata|recipe) d=json ;;
    pickle|torch) d=pickle ;;
    zip|npz) d=zip ;;
    npy) d=npy ;;
    *) d=none ;;
  esac
  dict=()
  [ -f "${DICTS:-fuzz/dicts}/$d.dict" ] && dict=(-dict="${DICTS:-fuzz/dicts}/$d.dict")
  CKB_FUZZ_TARGET=$t "$FUZZER" "$OUT/corpus/$t" "$OUT/seeds/$t" "${dict[@]}" -max_total_time="$SECS" -rss_limit_mb="$RSS_MB" \
    -timeout=10 -max_len=1048576 -print_final_stats=1 -artifact_prefix="$OUT/crashes/$t/" \
    > "$OUT/logs/$t.log" 2>&1 &
done
wait || true
printf '%-16s %14s %10s %s\n' target executions exec/s findings
for t in "${TARGETS[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$OUT/logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  n=$(find "$OUT/crashes/$t" -type f | wc -l)
  printf '%-16s %14s %10s %s\n' "$t" "$runs" "$eps" "$n"
done
