#!/usr/bin/env bash
# Packs Debian's Open MPI runtime (orterun/mpirun, its libraries, components and help files,
# and PMIx) as out/ompi.tgz, for running `mpirun ckptbridge ...` on a machine without Open MPI
# (the GPU host of the `run` tool). Relocated there with OPAL_PREFIX; components whose own
# libraries are missing (InfiniBand, UCX, OFI) are skipped by Open MPI, leaving shared memory and
# TCP. On the other machine:  mkdir -p /tmp/ompi && tar xzf out/ompi.tgz -C /tmp/ompi && source /tmp/ompi/env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
D=out/ompipkg
rm -rf "$D" && mkdir -p "$D/usr/bin" "$D/usr/lib/x86_64-linux-gnu" "$D/usr/share" "$D/libs"
cp -L /usr/bin/orterun "$D/usr/bin/orterun"
ln -s orterun "$D/usr/bin/mpirun"
cp -a /usr/lib/x86_64-linux-gnu/openmpi "$D/usr/lib/x86_64-linux-gnu/"
cp -a /usr/lib/x86_64-linux-gnu/pmix2 "$D/usr/lib/x86_64-linux-gnu/"
cp -a /usr/share/openmpi "$D/usr/share/"
[ -d /usr/share/pmix ] && cp -a /usr/share/pmix "$D/usr/share/" || true
for f in /usr/bin/orterun /usr/lib/x86_64-linux-gnu/openmpi/lib/*.so /usr/lib/x86_64-linux-gnu/pmix2/lib/*.so*; do
  ldd "$f" 2>/dev/null | awk '/=> \// {print $3}'
done | grep -vE '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' | sort -u |
  while read -r lib; do cp -Ln "$lib" "$D/libs/" 2>/dev/null || true; done
cat > "$D/env.sh" <<'ENV'
# source me: Open MPI relocated into this folder
H=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX="$H/usr" PMIX_INSTALL_PREFIX="$H/usr/lib/x86_64-linux-gnu/pmix2"
export PATH="$H/usr/bin:$PATH"
export LD_LIBRARY_PATH="$H/usr/lib/x86_64-linux-gnu/openmpi/lib:$H/usr/lib/x86_64-linux-gnu/pmix2/lib:$H/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMPI_MCA_mca_component_show_load_errors=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENV
tar czf out/ompi.tgz -C "$D" .
ls -la out/ompi.tgz
