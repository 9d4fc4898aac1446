#!/usr/bin/env bash
# Installs everything ckptbridge needs to build and test on Debian 12 (bookworm), then
# builds the release binary into build/. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config git \
  libzstd-dev zlib1g-dev libssl-dev libblosc-dev libopenblas-dev libbz2-dev liblz4-dev \
  nlohmann-json3-dev libfmt-dev libcli11-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  python3 python3-numpy time zsh >/dev/null
# Optional: real PyTorch (Debian's 1.13) to prove torch.load(weights_only=True) reads our .pt files.
if [ "${CKB_WITH_TORCH:-1}" = 1 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends python3-torch >/dev/null || echo "python3-torch unavailable; torch load test will be skipped"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
