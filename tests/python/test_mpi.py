"""The package under `mpirun -np 2 python3 script.py` (issue #21): the library detects the launch
as the CLI does, every rank runs the same job, the output is the single-process one byte for
byte and rank 0's report holds every rank. Without mpi4py (not in Debian's Python here); a
program that imports mpi4py first hands the library its already initialised MPI."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

from conftest import CLI, FIXTURES, REPO

SOURCE = FIXTURES / "openpi_pi0_tiny_full" / "release" / "params"

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import ckptbridge
    r = ckptbridge.convert(sys.argv[1], sys.argv[2], shard_size="100KB", progress=False)
    rank = os.environ["OMPI_COMM_WORLD_RANK"]
    with open(os.path.join(sys.argv[3], "rank" + rank + ".json"), "w") as f:
        json.dump({"ranks": r.get("ranks"), "tensors": r["summary"]["tensors"]}, f)
""")


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_two_ranks_write_the_single_process_bytes(tmp_path):
    mpirun = shutil.which("mpirun")
    assert mpirun, "Open MPI's mpirun is missing: tools/setup.sh installs openmpi-bin"
    (tmp_path / "conv.py").write_text(SCRIPT)
    subprocess.run([str(CLI), "convert", str(SOURCE), str(tmp_path / "one") + "/", "--shard-size", "100KB", "-q"], check=True)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYTHONPATH=str(REPO / "python"))
    p = subprocess.run([mpirun, "--oversubscribe", "-np", "2", "-x", "PYTHONPATH", "-x", "CKPTBRIDGE_LIBRARY",
                        sys.executable, str(tmp_path / "conv.py"), str(SOURCE), str(tmp_path / "two") + "/", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    one, two = digests(tmp_path / "one"), digests(tmp_path / "two")
    assert len(one) == 10 and "model.safetensors.index.json" in one
    assert one == two
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["ranks"]["size"] == 2
    assert [x["rank"] for x in r0["ranks"]["per_rank"]] == [0, 1]
    assert sum(x["bytes"] for x in r0["ranks"]["per_rank"]) == 727840
    assert sum(x["tensors"] for x in r0["ranks"]["per_rank"]) == 50
    assert r1["ranks"] is None  # the other ranks' reports hold their share only
