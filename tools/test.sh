#!/usr/bin/env bash
# The test command: builds and runs the whole suite twice, once optimised and once under
# AddressSanitizer + UndefinedBehaviorSanitizer. Assumes tools/setup.sh has been run.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="$(nproc)"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKB_UNITY_BUILD=ON >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS" --timeout 900
# The Python package's tests, against the tree just built (python/ over build/libckptbridge.so
# and build/ckptbridge), not an installed copy.
PYTHONPATH="$PWD/python" CKPTBRIDGE_LIBRARY="$PWD/build/libckptbridge.so" CKPTBRIDGE_CLI="$PWD/build/ckptbridge" \
  /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/python
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKB_SANITIZE=ON -DCKB_BUILD_BENCH=OFF -DCKB_UNITY_BUILD=ON >/dev/null
cmake --build build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$JOBS" --timeout 900
