#!/usr/bin/env bash
# Installs everything ckptbridge needs to build and test on Debian 12 (bookworm), builds the
# release binary into build/, and installs the Python package `ckptbridge` for Debian's
# /usr/bin/python3. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake ninja-build pkg-config git \
  libzstd-dev zlib1g-dev libssl-dev libblosc-dev libopenblas-dev libbz2-dev liblz4-dev libdeflate-dev \
  nlohmann-json3-dev libfmt-dev libcli11-dev \
  libgtest-dev libgmock-dev libbenchmark-dev \
  python3 python3-numpy python3-pytest python3-pip python3-setuptools python3-wheel time zsh \
  libcurl4-openssl-dev nginx-light nodejs openssl openmpi-bin libopenmpi-dev >/dev/null
# The remote-storage tests (tests/remote_*_test.cpp) start their own servers: nginx (above) and
# s3rver, an S3-compatible server from the npm registry, pinned with its dependencies in
# tools/test-servers/package-lock.json. npm comes with NodeSource's nodejs; Debian's nodejs
# needs Debian's npm package.
command -v npm >/dev/null || $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null
npm ci --prefix tools/test-servers --no-audit --no-fund --loglevel=error
# Optional: real PyTorch (Debian's 1.13) to prove torch.load(weights_only=True) reads our .pt files.
if [ "${CKB_WITH_TORCH:-1}" = 1 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends python3-torch >/dev/null || echo "python3-torch unavailable: the torch load test is skipped, tests/python/test_torch.py fails"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCKB_UNITY_BUILD=ON >/dev/null
cmake --build build -j"$(nproc)"
# The Python package, installed as a real wheel (setup.py builds libckptbridge.so in
# build/python-wheel and ships it stripped inside the package) rather than a .pth file pointing
# into this tree: the installed copy is self-contained, so `import ckptbridge` keeps working from
# any directory whatever later happens to build/ (a half-finished rebuild, a sanitizer build, a
# deleted tree), and pip can list and uninstall it. The tests never use it: tools/test.sh runs
# them against the tree just built. The wheel is built unprivileged and installed with $SUDO.
# Debian marks its Python "externally managed" (PEP 668), so pip needs --break-system-packages;
# it installs into /usr/local/lib/python3.X/dist-packages (on Debian's sys.path), never over
# apt's files in /usr/lib/python3. Offline: --no-build-isolation uses apt's setuptools and
# wheel, --no-index fetches nothing, --no-deps leaves apt's numpy alone. Re-running rebuilds
# incrementally and replaces the installed copy (--force-reinstall: the version is unchanged).
# The library just built in build/ goes into the wheel (CKB_PREBUILT_LIBRARY): no second compile.
rm -rf build/python-wheel/dist
CKB_PREBUILT_LIBRARY="$PWD/build/libckptbridge.so" /usr/bin/python3 -m pip wheel --quiet --no-build-isolation --no-index --no-deps -w build/python-wheel/dist .
$SUDO /usr/bin/python3 -m pip install --quiet --no-index --no-deps --force-reinstall --break-system-packages \
  --root-user-action=ignore build/python-wheel/dist/ckptbridge-*-py3-none-*.whl
(cd / && /usr/bin/python3 -c "import ckptbridge; print('Python package ckptbridge', ckptbridge.__version__, 'installed')")
