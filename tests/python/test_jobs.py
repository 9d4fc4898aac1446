"""The engine's jobs from Python (convert, merge_lora, adapt, plan, diff): byte-identical output
to the CLI run with the same arguments, the same report, every error type, and cancellation
(a raising progress callback, Ctrl-C) that leaves neither an output nor a temporary."""
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ckptbridge
from conftest import FIXTURES, REPO, files_under, leftovers

F = FIXTURES
OPENPI_LORA = F / "openpi_pi0_tiny_lora"
MX = F / "maxtext_linen_nnx"
PEFT = F / "peft_llama_lora"


def _normalised(files, out_dir):
    """Orbax's two files that differ between any two runs, made comparable: the commit's
    timestamps in _CHECKPOINT_METADATA and the output path in commit_success.txt."""
    out = {}
    for name, data in files.items():
        if name.endswith("_CHECKPOINT_METADATA"):
            meta = json.loads(data)
            assert meta.pop("init_timestamp_nsecs") > 0 and meta.pop("commit_timestamp_nsecs") > 0
            data = json.dumps(meta, sort_keys=True).encode()
        elif name.endswith("commit_success.txt"):
            assert str(out_dir).encode() in data, data
            data = data.replace(str(out_dir).encode(), b"<out>")
        out[name] = data
    return out


# (id, python call given the output folder, the same job's CLI arguments given the output folder).
# Orbax outputs use no_ocdbt (one directory per array): an OCDBT data file has a random name, as in
# Orbax, so two runs of the CLI itself differ; OCDBT is compared by content below.
# convert/adapt with --report also record per-tensor stats (cli/options.cpp: stats_with_report),
# so the Python call passes stats=True; merge-lora does not (cli/merge_lora.cpp).
JOBS = [
    ("safetensors_to_pt",
     lambda o: ckptbridge.convert(F / "safetensors_single/model.safetensors", o / "model.pt", stats=True,
                                  progress=False),
     lambda o: ["convert", F / "safetensors_single/model.safetensors", o / "model.pt"]),
    ("orbax_to_safetensors_bf16",
     lambda o: ckptbridge.convert(F / "openpi_pi0_tiny_full/release/params", o / "model.safetensors", dtype="bf16",
                                  stats=True, progress=False),
     lambda o: ["convert", F / "openpi_pi0_tiny_full/release/params", o / "model.safetensors", "--dtype", "bf16"]),
    ("orbax_to_sharded_safetensors_with_metadata",
     lambda o: ckptbridge.convert(F / "orbax_ocdbt_zarr3/ckpt", f"{o}/sharded/", drop_non_tensors=True,
                                  shard_size="100KB", metadata={"note": "py"}, stats=True, progress=False),
     lambda o: ["convert", F / "orbax_ocdbt_zarr3/ckpt", f"{o}/sharded/", "--drop-non-tensors", "--shard-size",
                "100KB", "--metadata", "note=py"]),
    ("torch_to_orbax_zarr3_bf16",
     lambda o: ckptbridge.convert(F / "torch_with_extras/checkpoint.pt", o / "ob", to="orbax", zarr_version=3,
                                  no_ocdbt=True, dtype="bf16", stats=True, progress=False),
     lambda o: ["convert", F / "torch_with_extras/checkpoint.pt", o / "ob", "--to", "orbax", "--zarr-version", "3",
                "--no-ocdbt", "--dtype", "bf16"]),
    ("npz_to_msgpack",
     lambda o: ckptbridge.convert(F / "npz/arrays_compressed.npz", o / "p.msgpack", stats=True, progress=False),
     lambda o: ["convert", F / "npz/arrays_compressed.npz", o / "p.msgpack"]),
    ("openpi_recipe",
     lambda o: ckptbridge.convert(OPENPI_LORA / "train/checkpoints/100", o / "model.safetensors", recipe="openpi",
                                  openpi_config=OPENPI_LORA / "model.json", stats=True, progress=False),
     lambda o: ["convert", OPENPI_LORA / "train/checkpoints/100", o / "model.safetensors", "--recipe", "openpi",
                "--openpi-config", OPENPI_LORA / "model.json"]),
    ("openpi_merge_lora",  # tools/demo.sh
     lambda o: ckptbridge.merge_lora(OPENPI_LORA / "train/checkpoints/100", o / "merged.safetensors",
                                     openpi_config=OPENPI_LORA / "model.json", progress=False),
     lambda o: ["merge-lora", OPENPI_LORA / "train/checkpoints/100", "-o", o / "merged.safetensors", "--openpi-config",
                OPENPI_LORA / "model.json"]),
    ("peft_merge_lora_verified",
     lambda o: ckptbridge.merge_lora(PEFT / "base/model.safetensors", o / "m.safetensors", adapter=PEFT / "adapter",
                                     verify=True, progress=False),
     lambda o: ["merge-lora", PEFT / "base/model.safetensors", "-o", o / "m.safetensors", "--adapter",
                PEFT / "adapter", "--verify"]),
    ("adapt_linen_full_to_nnx",  # linen_nnx_test.cpp LinenFullToNnxRawAndPureMatchTheExpectedStates
     lambda o: ckptbridge.adapt(MX / "linen_full", o / "nnx", layout="nnx", like=MX / "nnx_fresh_raw",
                                rng_fill="deterministic", to="orbax", no_ocdbt=True, stats=True, progress=False),
     lambda o: ["adapt", MX / "linen_full", o / "nnx", "--layout", "nnx", "--like", MX / "nnx_fresh_raw",
                "--rng-fill", "deterministic", "--no-ocdbt"]),
    ("adapt_nnx_to_linen_pure",
     lambda o: ckptbridge.adapt(MX / "nnx_expected_raw", o / "linen", layout="linen", like=MX / "linen_full",
                                to="orbax", no_ocdbt=True, stats=True, progress=False),
     lambda o: ["adapt", MX / "nnx_expected_raw", o / "linen", "--layout", "linen", "--like", MX / "linen_full",
                "--no-ocdbt"]),
]


@pytest.mark.parametrize("name,py,args", JOBS, ids=[j[0] for j in JOBS])
def test_job_output_and_report_equal_the_clis(name, py, args, tmp, cli):
    (tmp / "py").mkdir()
    (tmp / "cli").mkdir()
    report = py(tmp / "py")
    cli(*args(tmp / "cli"), "-q", "--report", tmp / "cli.json")
    want = json.loads((tmp / "cli.json").read_text())
    got_files = _normalised(files_under(tmp / "py"), tmp / "py")
    want_files = _normalised(files_under(tmp / "cli"), tmp / "cli")
    assert sorted(got_files) == sorted(want_files)
    assert len(got_files) >= 1
    for f in want_files:
        assert got_files[f] == want_files[f], f
    assert isinstance(report, ckptbridge.Report) and report.ok
    assert report.tensors == want["tensors"]
    assert len(report.tensors) >= 1
    assert report.ledger == want["ledger"]
    assert report["source"] == want["source"]
    assert report.notes == want.get("notes", [])
    for key in ("merged", "profile", "adapt"):
        assert report.get(key) == want.get(key), key
    assert report.destination["path"] == str(tmp / "py" / os.path.relpath(want["destination"]["path"], tmp / "cli"))
    # the report's attribute access is its keys
    assert report.summary["tensors"] == want["summary"]["tensors"] == len(report.tensors)


def test_ocdbt_output_holds_what_the_cli_writes(tmp, cli):
    # OCDBT names its data file randomly (as Orbax does): compare tensors and leaves, not bytes.
    src = F / "orbax_ocdbt_zarr2/ckpt"
    ckptbridge.convert(src, tmp / "py", to="orbax", zarr_version=3, progress=False)
    cli("convert", src, tmp / "cli", "--to", "orbax", "--zarr-version", "3", "-q")
    assert sorted(p.name for p in (tmp / "py").iterdir()) == sorted(p.name for p in (tmp / "cli").iterdir())
    with ckptbridge.open(tmp / "py") as a, ckptbridge.open(tmp / "cli") as b, ckptbridge.open(src) as s:
        assert a.keys() == b.keys() == s.keys()
        assert a.tree.keys() == b.tree.keys()
        for n in a.keys():
            assert a.info(n).dtype == b.info(n).dtype == s.info(n).dtype
            assert a.get_tensor(n, raw=True).tobytes() == b.get_tensor(n, raw=True).tobytes() == \
                s.get_tensor(n, raw=True).tobytes(), n
    assert ckptbridge.diff(tmp / "py", tmp / "cli")
    assert ckptbridge.diff(src, tmp / "py").counts == {"equal": 20}


def test_adapt_writes_orbax_by_default_as_the_cli_does(tmp, cli):
    # cli/convert.cpp: "adapt is convert with the flax profile, written as Orbax unless --to says otherwise".
    cli("adapt", MX / "linen_params", tmp / "cli", "--layout", "nnx", "--like", MX / "nnx_fresh_raw", "-q")
    ckptbridge.adapt(MX / "linen_params", tmp / "py", layout="nnx", like=MX / "nnx_fresh_raw", progress=False)
    with ckptbridge.open(tmp / "py") as a, ckptbridge.open(tmp / "cli") as b:
        assert a.format == b.format == "orbax"
        assert a.keys() == b.keys()


def test_merge_lora_of_an_adapter_folder_alone_finds_its_base_as_the_cli_does(tmp, cli):
    # adapter_config.json's base_model_name_or_path names a local folder: the base
    import shutil
    adapter = tmp / "adapter"
    shutil.copytree(PEFT / "adapter", adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(PEFT / "base")
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    r = ckptbridge.merge_lora(adapter, tmp / "py/", progress=False)
    assert r.profile == "peft"
    cli("merge-lora", adapter, tmp / "cli/", "-q")
    py, cl = files_under(tmp / "py"), files_under(tmp / "cli")
    assert py.keys() == cl.keys() and "model.safetensors" in py and "config.json" in py
    for k in py:
        assert (tmp / "py" / k).read_bytes() == (tmp / "cli" / k).read_bytes(), k


def test_merge_lora_of_several_adapters_sums_them_as_the_cli_does(tmp, cli):
    # adapter B: the fixture's factors under lora_alpha 16 (s = 16/4 = 4; A's s = 8/4 = 2), so
    # A + 0.5 * B merges W + (2 + 0.5 * 4) * B A = W + 4 * B A
    import shutil
    second = tmp / "second"
    shutil.copytree(PEFT / "adapter", second)
    cfg = json.loads((second / "adapter_config.json").read_text())
    cfg["lora_alpha"] = 16
    (second / "adapter_config.json").write_text(json.dumps(cfg))
    r = ckptbridge.merge_lora(PEFT / "base", tmp / "py/", adapter=[PEFT / "adapter", (second, 0.5)], verify=True,
                              progress=False)
    assert [(a["path"], a["scale"], len(a["modules"])) for a in r.adapters] == [(str(PEFT / "adapter"), 1.0, 14),
                                                                                (str(second), 0.5, 14)]
    assert r.summary["verify"]["ok"] and r.ledger["ok"]
    cli("merge-lora", PEFT / "base", tmp / "cli/", "--adapter", PEFT / "adapter", "--adapter", f"{second}:0.5", "-q")
    py, cl = files_under(tmp / "py"), files_under(tmp / "cli")
    assert py.keys() == cl.keys() == {"model.safetensors", "config.json", "generation_config.json"}
    for k in py:
        assert (tmp / "py" / k).read_bytes() == (tmp / "cli" / k).read_bytes(), k
    # the numbers, from NumPy in float64: within one float32 rounding of W + 4 B A
    prefix = "base_model.model."
    with ckptbridge.open(PEFT / "base/model.safetensors") as base, ckptbridge.open(PEFT / "adapter") as ad, \
            ckptbridge.open(tmp / "py/model.safetensors") as out:
        for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
            m = name[: -len(".weight")]
            a = np.asarray(ad[prefix + m + ".lora_A.weight"], np.float64)
            b = np.asarray(ad[prefix + m + ".lora_B.weight"], np.float64)
            want = np.asarray(base[name], np.float64) + 4.0 * (b @ a)
            got = np.asarray(out[name], np.float64)
            assert np.all(np.abs(got - want) <= 2.0**-24 * np.abs(want))  # rounded once to float32
        assert np.array_equal(np.asarray(out["model.norm.weight"]), np.asarray(base["model.norm.weight"]))
    # the CLI's spelling as a str; a pathlib folder whose name ends in ':<number>' is a folder
    odd = tmp / "run:2"
    shutil.copytree(second, odd)
    r = ckptbridge.merge_lora(PEFT / "base", tmp / "py2/", adapter=[str(PEFT / "adapter"), f"{odd}:0.5"], progress=False)
    assert [a["scale"] for a in r.adapters] == [1.0, 0.5]
    assert (tmp / "py2/model.safetensors").read_bytes() == (tmp / "py/model.safetensors").read_bytes()
    r = ckptbridge.merge_lora(PEFT / "base", tmp / "py3/", adapter=odd, dry_run=True)
    assert [(a["path"], a["scale"]) for a in r.adapters] == [(str(odd), 1.0)]
    # DoRA merges alone only
    dora = REPO / "tests/data/peft_cases/llama_dora/adapter"
    with pytest.raises(ckptbridge.MappingError, match="uses DoRA, which cannot be merged together with other adapters"):
        ckptbridge.merge_lora(PEFT / "base", tmp / "py4/", adapter=[PEFT / "adapter", dora], progress=False)
    assert not (tmp / "py4").exists()
    with pytest.raises(ckptbridge.UsageError, match="empty list"):
        ckptbridge.jobs.adapter_option([])


def test_plan_and_dry_run_read_and_write_nothing(tmp):
    out = tmp / "x" / "o.pt"
    p = ckptbridge.plan(F / "safetensors_single/model.safetensors", out, dtype="fp16")
    assert p["dry_run"] is True and p.ok
    assert p.tensors["big"]["dtype"] == "F16" and p.tensors["i32"]["dtype"] == "I32"
    assert p.summary["bytes"] == 0
    r = ckptbridge.convert(F / "safetensors_single/model.safetensors", out, dry_run=True)
    assert r["dry_run"] is True
    assert not (tmp / "x").exists()
    # A plan with problems lists them instead of raising.
    (tmp / "r.json").write_text(json.dumps({"rules": [{"map": "big", "to": "w"}]}))
    bad = ckptbridge.plan(F / "safetensors_single/model.safetensors", out, recipe=tmp / "r.json")
    assert not bad.ok
    assert len(bad.problems) == 15 and any("'mask'" in p for p in bad.problems)


def test_diff_equals_the_clis_diff(tmp, cli):
    src = F / "safetensors_single/model.safetensors"
    cli("convert", src, tmp / "m.pt", "-q")
    d = ckptbridge.diff(src, tmp / "m.pt")
    assert d and d.equal and d.counts == {"equal": 16}
    assert all(v == {"status": "equal"} for v in d.leaves.values()) and len(d.leaves) == 16
    cli("convert", src, tmp / "h.safetensors", "--dtype", "fp16", "-q")
    for kw, flags in (({}, []), (dict(rel=0.00049, abs=1e-30, ignore_dtype=True),
                                 ["--rtol", "0.00049", "--atol", "1e-30", "--ignore-dtype"])):
        d = ckptbridge.diff(src, tmp / "h.safetensors", **kw)
        r = cli("diff", src, tmp / "h.safetensors", "--json", *flags, check=False)
        assert r.returncode == 1  # different
        want = json.loads(r.stdout)
        assert not d and d.leaves == want["leaves"] and d.counts == want["counts"]
        assert d.leaves["i32"] == {"status": "equal"} and d.leaves["big"]["status"] == "different"


def test_progress_callback_sees_the_runs_totals(tmp):
    seen = []
    src = F / "safetensors_single/model.safetensors"
    ckptbridge.convert(src, tmp / "o.pt", progress=seen.append)
    with ckptbridge.open(src) as ck:
        total = sum(i.nbytes for i in ck.infos())
        n = len(ck)
    assert seen, "the engine reports at least once (before commit)"
    assert all(isinstance(p, ckptbridge.Progress) for p in seen)
    assert seen[-1] == ckptbridge.Progress(total, total, n, n)
    assert [p.bytes_done for p in seen] == sorted(p.bytes_done for p in seen)


# ---- errors ----

def test_format_error_names_the_file_and_offset(tmp):
    data = (F / "safetensors_single/model.safetensors").read_bytes()
    bad = tmp / "truncated.safetensors"
    bad.write_bytes(data[:5000])
    with pytest.raises(ckptbridge.FormatError) as e:
        ckptbridge.open(bad)
    assert type(e.value).__name__ == "FormatError" and isinstance(e.value, ckptbridge.CkptbridgeError)
    assert e.value.path == str(bad)
    # the offset is where the tensor's data starts in the file: after the 8-byte length and the header
    hlen = struct.unpack("<Q", data[:8])[0]
    big = json.loads(data[8:8 + hlen])["big"]["data_offsets"]
    assert e.value.offset == 8 + hlen + big[0]
    assert str(bad) in str(e.value) and "'big'" in str(e.value) and "beyond the end of the file" in str(e.value)
    # the same from a conversion, which writes nothing
    with pytest.raises(ckptbridge.FormatError):
        ckptbridge.convert(bad, tmp / "o.pt", progress=False)
    assert not (tmp / "o.pt").exists()


def test_io_error_is_an_oserror_naming_the_path(tmp):
    missing = tmp / "missing.safetensors"
    with pytest.raises(ckptbridge.IOError) as e:
        ckptbridge.open(missing)
    assert isinstance(e.value, OSError) and type(e.value).__name__ == "IOError"
    assert e.value.path == str(missing) and str(e.value) == f"{missing}: no such file or directory"
    with pytest.raises(OSError):
        ckptbridge.convert(missing, tmp / "o.pt", progress=False)
    # writing: a parent that is a file
    (tmp / "afile").write_bytes(b"x")
    with pytest.raises(ckptbridge.IOError) as e:
        ckptbridge.convert(F / "safetensors_single/model.safetensors", tmp / "afile/o.pt", progress=False)
    assert e.value.path == str(tmp / "afile") and "Not a directory" in str(e.value)
    assert (tmp / "afile").read_bytes() == b"x"


def test_mapping_error_lists_every_unmapped_tensor(tmp):
    (tmp / "r.json").write_text(json.dumps({"rules": [{"map": "big", "to": "w"}]}))
    with ckptbridge.open(F / "safetensors_single/model.safetensors") as ck:
        others = [n for n in ck.keys() if n != "big"]
    with pytest.raises(ckptbridge.MappingError) as e:
        ckptbridge.convert(F / "safetensors_single/model.safetensors", tmp / "o.safetensors", recipe=tmp / "r.json",
                           progress=False)
    assert type(e.value).__name__ == "MappingError"
    assert len(e.value.problems) == len(others) == 15
    for name, line in zip(others, e.value.problems):
        assert line.startswith(f"unused source '{name}'"), line
    assert "no rule maps or drops it" in str(e.value)
    assert not (tmp / "o.safetensors").exists()
    # A format that cannot hold a leaf: safetensors and Orbax's non-tensor leaves.
    with pytest.raises(ckptbridge.MappingError) as e:
        ckptbridge.convert(F / "orbax_ocdbt_zarr3/ckpt", tmp / "o.safetensors", progress=False)
    assert e.value.path == str(tmp / "o.safetensors")
    assert "run_name (string)" in str(e.value) and "step (int)" in str(e.value)


def test_usage_errors_are_value_errors(tmp):
    src = F / "safetensors_single/model.safetensors"
    with pytest.raises(ckptbridge.UsageError) as e:
        ckptbridge.convert(src, tmp / "o.safetensors", bogus_option=3, progress=False)
    assert isinstance(e.value, ValueError) and type(e.value).__name__ == "UsageError"
    assert "--bogus-option" in str(e.value)
    with pytest.raises(ValueError) as e:
        ckptbridge.convert(src, tmp / "o.safetensors", dtype="fp7", progress=False)
    assert "'fp7'" in str(e.value) and isinstance(e.value, ckptbridge.UsageError)
    with pytest.raises(ckptbridge.UsageError, match="cannot tell the output format"):
        ckptbridge.convert(src, tmp / "o.xyz", progress=False)
    with pytest.raises(ckptbridge.MappingError, match="matches no shipped openpi variant"):
        ckptbridge.merge_lora(OPENPI_LORA / "train/checkpoints/100", tmp / "m.safetensors", progress=False)
    with pytest.raises(ckptbridge.UsageError, match="apply to an output"):
        ckptbridge.plan(src, None, shard_size="1MB")
    assert not any(tmp.iterdir())


def test_check_failed_carries_the_report(tmp, cli):
    # float8 e5m2 keeps 2 mantissa bits: the merged weights miss the online LoRA by more than
    # verify's 5e-2 tolerance (profiles/lora_outputs.cpp); the CLI exits 2 with the same failure.
    out = tmp / "m.safetensors"
    with pytest.raises(ckptbridge.CheckFailed) as e:
        ckptbridge.merge_lora(PEFT / "base/model.safetensors", out, adapter=PEFT / "adapter", verify=True,
                              dtype="f8_e5m2", progress=False)
    assert type(e.value).__name__ == "CheckFailed" and isinstance(e.value, ckptbridge.CkptbridgeError)
    assert len(e.value.failures) == 1 and "-- FAILED" in e.value.failures[0]
    assert e.value.report["summary"]["verify"]["ok"] is False
    assert e.value.report.failures == e.value.failures
    r = cli("merge-lora", PEFT / "base/model.safetensors", "-o", tmp / "c.safetensors", "--adapter", PEFT / "adapter",
            "--verify", "--dtype", "f8_e5m2", "-q", check=False)
    assert r.returncode == 2 and e.value.failures[0] in r.stderr
    assert out.read_bytes() == (tmp / "c.safetensors").read_bytes()  # written, then found wanting


def test_missing_tensor_is_a_key_error():
    with ckptbridge.open(F / "safetensors_single/model.safetensors") as ck:
        with pytest.raises(KeyError, match="did you mean 'big'"):
            ck["bi"]


# ---- cancellation ----

def _write_safetensors(path, n=50, elems=1 << 20):
    """A ~200 MB float32 safetensors file (n tensors of `elems` elements), written with NumPy."""
    rng = np.random.default_rng(0)
    header, off = {}, 0
    for i in range(n):
        header[f"t{i:03d}"] = {"dtype": "F32", "shape": [elems], "data_offsets": [off, off + 4 * elems]}
        off += 4 * elems
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for _ in range(n):
            f.write(rng.standard_normal(elems, dtype=np.float32).tobytes())
    return path


@pytest.fixture(scope="module")
def big_safetensors(tmp_path_factory):
    return _write_safetensors(tmp_path_factory.mktemp("big") / "big.safetensors")


class Stop(Exception):
    pass


def test_raising_progress_callback_cancels_a_large_run(big_safetensors, tmp):
    out = tmp / "out"
    out.mkdir()
    calls = []

    def cb(p):
        calls.append(p)
        raise Stop("enough")

    with pytest.raises(Stop, match="enough"):
        ckptbridge.convert(big_safetensors, out / "model.pt", progress=cb)
    assert len(calls) == 1  # not called again once it raised
    assert calls[0].bytes_total == 50 * 4 * (1 << 20) and calls[0].tensors_total == 50
    assert list(out.iterdir()) == [] and leftovers(tmp) == []
    # The same run without the exception writes the file (the folder was usable).
    ckptbridge.convert(big_safetensors, out / "model.pt", progress=False)
    assert (out / "model.pt").stat().st_size > 50 * 4 * (1 << 20)


def test_raising_progress_callback_cancels_even_at_the_final_report(tmp):
    # A run shorter than the engine's 200 ms progress period reports once, just before commit
    # (engine/execute.cpp): an exception there must still cancel, not be dropped.
    out = tmp / "out"
    out.mkdir()

    def cb(p):
        raise Stop("at the end")

    with pytest.raises(Stop):
        ckptbridge.convert(F / "safetensors_single/model.safetensors", out / "model.pt", progress=cb)
    assert list(out.iterdir()) == []


def test_ctrl_c_cancels_the_run_and_raises_keyboard_interrupt(big_safetensors, tmp):
    # The child blocks in its first progress callback so that SIGINT surely arrives while the run
    # is in flight: the engine cannot commit before the callback returns, and then finds the run
    # cancelled. (Orbax output with zstd: slow enough that the first report comes mid-run.)
    out = tmp / "out"
    out.mkdir()
    child = textwrap.dedent(f"""
        import sys, time
        import ckptbridge
        def cb(p):
            if cb.first:
                cb.first = False
                print("running", flush=True)
                time.sleep(2)
        cb.first = True
        ckptbridge.convert({str(big_safetensors)!r}, {str(out / "ob")!r}, to="orbax", progress=cb)
        print("finished", flush=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    assert p.stdout.readline() == "running\n"
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    out_text, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGINT, err  # Python's exit on an uncaught KeyboardInterrupt
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "finished" not in out_text
    assert time.monotonic() - t0 < 30
    assert list(out.iterdir()) == [] and leftovers(tmp) == []
