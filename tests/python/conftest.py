"""Shared fixtures of the Python package's tests (tests/python, run by tools/test.sh after ctest).

The suite tests the tree it sits in: python/ckptbridge over build/libckptbridge.so (and the CLI
build/ckptbridge for byte comparisons), never an older installed copy. tools/test.sh sets
PYTHONPATH and CKPTBRIDGE_LIBRARY; when run by hand (``/usr/bin/python3 -m pytest tests/python``)
the same defaults are set here. CKPTBRIDGE_CLI overrides the CLI binary.
"""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "data" / "fixtures"
BUILD = REPO / "build"

os.environ.setdefault("CKPTBRIDGE_LIBRARY", str(BUILD / "libckptbridge.so"))
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

import ckptbridge  # noqa: E402

CLI = Path(os.environ.get("CKPTBRIDGE_CLI", BUILD / "ckptbridge"))


def pytest_configure(config):
    here = Path(ckptbridge.__file__).resolve()
    if REPO / "python" not in here.parents:
        raise pytest.UsageError(f"ckptbridge imported from {here}, not from this tree ({REPO / 'python'})")
    for p in (Path(os.environ["CKPTBRIDGE_LIBRARY"]), CLI):
        if not p.exists():
            raise pytest.UsageError(f"{p} is missing: build the targets ckptbridge_c and ckptbridge first")


@pytest.fixture(scope="session")
def fixtures():
    """tests/data/fixtures (the reference checkpoints real frameworks wrote)."""
    return FIXTURES


@pytest.fixture
def tmp(tmp_path):
    """A fresh temporary folder per test."""
    return tmp_path


@pytest.fixture(scope="session")
def cli():
    """Runs the CLI binary: cli("convert", a, b, ...) -> CompletedProcess (text); asserts exit 0 unless check=False."""

    def run(*args, check=True):
        r = subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check:
            assert r.returncode == 0, f"ckptbridge {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr}"
        return r

    return run


def manifest(rel):
    """The tensors section of tests/data/fixtures/<rel>/manifest.json."""
    return json.loads((FIXTURES / rel / "manifest.json").read_text())


def sha256_of(array):
    """sha256 over an array's bytes in C order (the manifests' convention)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def files_under(folder):
    """{relative path: bytes} of every file under `folder` (a file: {name: bytes})."""
    folder = Path(folder)
    if folder.is_file():
        return {folder.name: folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def bf16_to_f32(bits):
    """bfloat16 bits (uint16) widened to float32 exactly, computed here without the engine."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


def leftovers(folder):
    """Temporary files the engine may leave behind (.ckb-tmp-*) anywhere under `folder`."""
    return sorted(str(p) for p in Path(folder).rglob("*") if ".ckb-tmp" in p.name)
