"""The package's view of the C ABI: every function capi/ckptbridge.h declares has a ctypes
prototype (an undeclared call passes pointers as 32-bit ints: the ckb_run_into crash), and the
engine runs with the GIL released."""
import re
import threading
import time

import numpy as np

from conftest import REPO

import ckptbridge
from ckptbridge import _lib


def test_every_c_function_has_a_prototype():
    header = (REPO / "capi" / "ckptbridge.h").read_text()
    names = sorted(set(re.findall(r"^\s*(?:[\w\*]+\s+)+\**(ckb_\w+)\(", header, re.M)))
    assert len(names) >= 25, names
    undeclared = [n for n in names if getattr(_lib.lib, n).restype is int and getattr(_lib.lib, n).argtypes is None]
    assert undeclared == []
    for n in names:
        f = getattr(_lib.lib, n)
        assert f.argtypes is not None, n


def test_the_gil_is_released_while_the_engine_reads(tmp_path):
    # One engine call that takes a while (read 128 MiB of bf16 and widen it to 256 MiB of f32);
    # another Python thread ticks every millisecond. With the GIL held through the call the
    # ticker could not run until it returned (a switch needs the holder to run bytecode).
    from ckptbridge._memory import MemoryTree
    bits = np.full((64, 1 << 20), 0x3F80, np.uint16)  # bf16 1.0
    tree = MemoryTree()
    tree.add_array("big", bits, dtype="BF16")
    job = ckptbridge.jobs._make_job("<bits>", str(tmp_path / "big.safetensors"))
    ckptbridge.jobs.run_job(job, progress=False, memory={"<bits>": tree})
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    with ckptbridge.open(str(tmp_path / "big.safetensors")) as ck:
        t = threading.Thread(target=tick)
        t.start()
        time.sleep(0.01)
        t0 = time.perf_counter()
        out = ck.get_tensor("big", as_float32=True)
        t1 = time.perf_counter()
        stop.set()
        t.join()
    assert out.dtype == np.float32 and float(out[0, 0]) == 1.0 and float(out[63, -1]) == 1.0
    during = [x for x in ticks if t0 < x < t1]
    # at least a tick per 10 ms of the call (a held GIL allows none)
    assert len(during) >= max(2, int((t1 - t0) / 0.01)), (len(during), t1 - t0)
