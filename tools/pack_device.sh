#!/usr/bin/env bash
# Packs what a machine without a build needs to run ckptbridge and its Python package from a
# copy of this tree (the GPU host of the `run` tool): the stripped CLI and libckptbridge.so and
# the shared libraries they load except libc and libstdc++ (the host's own, newer one serves
# both, and Python processes that load jaxlib or torch need theirs), as out/dev.tgz (out/ is
# not tracked). On the other
# machine:  mkdir -p /tmp/ckb && tar xzf out/dev.tgz -C /tmp/ckb && source /tmp/ckb/env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
D=out/devpkg
rm -rf "$D" && mkdir -p "$D"
strip --strip-unneeded -o "$D/ckptbridge" "$B/ckptbridge"
strip --strip-unneeded -o "$D/libckptbridge.so" "$B/libckptbridge.so"
for f in "$B/ckptbridge" "$B/libckptbridge.so"; do
  ldd "$f" | awk '/=> \// {print $3}' | grep -vE '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' || true
done | sort -u | while read -r lib; do cp -L "$lib" "$D/"; done
cat > "$D/env.sh" <<'ENV'
# source me: the unpacked folder's CLI, library and the Python package of the tree copy
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LD_LIBRARY_PATH="$H${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$H:$PATH" CKPTBRIDGE_LIBRARY="$H/libckptbridge.so"
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
ENV
tar czf out/dev.tgz -C "$D" .
ls -la out/dev.tgz
