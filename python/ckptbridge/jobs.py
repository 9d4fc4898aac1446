"""The engine's jobs from Python: convert, merge_lora, adapt, plan, diff.

Each runs in the native engine (GIL released, all cores, bounded memory) and returns its
:class:`Report`. Keyword arguments beyond the named ones are the output format's write
options or the profile's options, spelled with underscores (``shard_size="5GB"``,
``zarr_version=3``, ``openpi_config="model.json"``, ``weights_only=True``): the same names,
meanings and checks as the CLI's ``--shard-size``, ``--zarr-version``, ...

Progress: ``progress=True`` shows a tqdm bar when tqdm is importable (else a line on a
terminal), ``False`` nothing, a callable is called with a :class:`Progress`. Ctrl-C (or a
callback raising) cancels the run: its temporaries are removed, the previous output (or none)
stays, and KeyboardInterrupt (or the callback's exception) is raised."""
import ctypes
import json
import math
import os
import re
import sys
import threading
from collections import namedtuple

from ._lib import INTO, PROGRESS, c_tree_p, call_json, check, enc, lib
from .errors import CheckFailed, UsageError

Progress = namedtuple("Progress", "bytes_done bytes_total tensors_done tensors_total")

_profiles_cache = None


def profiles():
    """The engine's profiles: [{name, description, options, recipe, ...}]."""
    global _profiles_cache
    if _profiles_cache is None:
        _profiles_cache = call_json(lib.ckb_profiles)
    return _profiles_cache


def formats():
    """The engine's formats: [{name, aliases, extensions, caps, write_options, ...}]."""
    return call_json(lib.ckb_formats)


class Report(dict):
    """The engine's JSON report as a dict, with attribute access to its top-level keys:
    ``source``, ``destination``, ``ledger``, ``tensors`` (name -> dtype, shape, stats, cast),
    ``notes``, ``files``, ``failures``, ``problems``, ``summary``, ``profile``, ..."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            if key in ("problems", "failures", "files", "notes"):
                return []
            raise AttributeError(key) from None

    @property
    def ok(self):
        return not self.get("problems") and not self.get("failures")


def _text(v):
    if isinstance(v, list):  # a repeated option (the C ABI joins the values)
        return [_text(x) for x in v]
    if v is True:
        return "1"
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return str(v)


def _split_options(kwargs, profile):
    """Routes keyword options to the profile (when one takes the name) or the output format."""
    taken = set()
    for p in profiles():
        if profile is None or p["name"] == profile:
            taken.update(o["name"] for o in p["options"])
    prof, fmt = {}, {}
    for k, v in kwargs.items():
        if v is None or v is False:
            continue
        name = k.replace("_", "-")
        (prof if name in taken else fmt)[name] = _text(v)
    return prof, fmt


def _make_job(src, dst=None, *, recipe=None, reverse=False, profile=None, dtype=None, to=None, overwrite=False,
              src_step=None, metadata=None, threads=0, max_memory=None, stats=False, drop_non_tensors=False,
              expect=None, sizes=None, strict_chunks=False, profile_options=None, **options):
    prof, fmt = _split_options(options, profile)
    prof.update({k: _text(v) for k, v in (profile_options or {}).items()})
    job = {"source": os.fspath(src), "src_step": src_step, "strict_chunks": bool(strict_chunks),
           "recipe": os.fspath(recipe) if recipe else None, "reverse": bool(reverse), "profile": profile,
           "profile_options": prof, "expect": os.fspath(expect) if expect else None, "sizes": sizes or {},
           "dtype": str(dtype) if dtype is not None else None, "drop_non_tensors": bool(drop_non_tensors),
           "threads": int(threads), "stats": bool(stats)}
    if max_memory is not None:
        job["max_memory"] = max_memory if isinstance(max_memory, str) else int(max_memory)
    if dst is not None:
        job["output"] = {"path": os.fspath(dst), "format": to, "options": fmt, "metadata": metadata or {},
                         "overwrite": bool(overwrite)}
    elif fmt:
        raise UsageError(f"options {', '.join(sorted(fmt))} apply to an output; no output given")
    return job


class _ProgressSink:
    def __init__(self, progress, total_label):
        self.error = None
        self.bar = None
        self.fn = None
        if callable(progress):
            self.fn = progress
        elif progress:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=0, unit="B", unit_scale=True, unit_divisor=1024, desc=total_label, leave=False)
            except ImportError:
                if sys.stderr.isatty():
                    self.fn = self._line
        self.last = 0

    def _line(self, p):
        if p.bytes_total:
            sys.stderr.write(f"\r{100.0 * p.bytes_done / p.bytes_total:5.1f}%  {p.tensors_done}/{p.tensors_total} tensors")
            sys.stderr.flush()

    def __call__(self, p):
        if self.bar is not None:
            if self.bar.total != p.bytes_total:
                self.bar.total = p.bytes_total
                self.bar.refresh()
            self.bar.update(p.bytes_done - self.last)
            self.last = p.bytes_done
        if self.fn is not None:
            self.fn(p)

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.fn == self._line:
            sys.stderr.write("\r\033[K")


def _memory_arrays(memory):
    names = list(memory or {})
    trees = (c_tree_p * max(1, len(names)))(*[memory[n].ptr for n in names])
    cnames = (ctypes.c_char_p * max(1, len(names)))(*[n.encode() for n in names])
    return trees, cnames, len(names)


def _call_cancellable(fn, cancel):
    """Runs fn() on a worker thread when called from the main thread, so that Ctrl-C reaches
    Python while the engine runs: the run is then cancelled and KeyboardInterrupt raised."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    result = {}

    def work():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            result["error"] = e

    # An Event, not Thread.join: once a join(timeout) is interrupted by KeyboardInterrupt,
    # Python 3.11 marks the thread stopped and a second join returns at once (the interpreter
    # could then exit while the engine still writes its temporaries).
    done = threading.Event()

    def run():
        try:
            work()
        finally:
            done.set()

    t = threading.Thread(target=run, name="ckptbridge-run", daemon=True)
    t.start()
    try:
        while not done.wait(0.05):
            pass
    except KeyboardInterrupt:
        lib.ckb_cancel_request(cancel)
        while not done.wait(0.05):
            pass
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]


def run_job(job, *, dry_run=False, progress=True, memory=None, label="ckptbridge", into=None):
    """Plans (dry_run) or runs a job dict (the C ABI's job JSON) and returns its Report.

    into: run into memory instead of an output (ckb_run_into): called once per target tensor as
    ``into(index, name, dtype, shape, nbytes)`` before any byte is read, it returns the address
    the tensor's bytes go to. An exception from it (or from a progress callback) cancels the
    run and is raised once the engine has stopped."""
    cancel = lib.ckb_cancel_new()
    sink = _ProgressSink(progress, label) if not dry_run else None
    errors = []  # the first exception raised by a callback

    def fail(e):
        errors.append(e)
        lib.ckb_cancel_request(cancel)

    try:
        def on_progress(_user, done, total, tdone, ttotal):
            if errors:
                return
            try:
                sink(Progress(done, total, tdone, ttotal))
            except BaseException as e:  # noqa: BLE001 - cancels the run, re-raised below
                fail(e)

        def on_into(_user, index, name, dt, ndim, shape, nbytes):
            try:
                return into(index, name.decode(), dt.decode(), tuple(shape[i] for i in range(ndim)), nbytes)
            except BaseException as e:  # noqa: BLE001 - fails the run, re-raised below
                fail(e)
                return None

        cb = PROGRESS(on_progress) if sink is not None and (sink.fn or sink.bar) else PROGRESS()
        cb_into = INTO(on_into) if into is not None else None
        trees, names, n = _memory_arrays(memory)
        payload = json.dumps(job).encode()

        def call():
            out = ctypes.c_void_p()
            if cb_into is not None:
                status = lib.ckb_run_into(payload, trees, names, n, cb_into, None, cb, None, cancel, ctypes.byref(out))
            else:
                status = lib.ckb_run(payload, trees, names, n, 1 if dry_run else 0, cb, None, cancel, ctypes.byref(out))
            if status != 0 and errors:
                raise errors[0]
            check(status)
            try:
                return json.loads(ctypes.string_at(out.value).decode("utf-8"))
            finally:
                lib.ckb_free(out)

        report = Report(_call_cancellable(call, cancel))
    finally:
        if sink is not None:
            sink.close()
        lib.ckb_cancel_free(cancel)
    if report.get("failures"):
        raise CheckFailed("the output was written but checks failed: " + "; ".join(report["failures"]),
                          report=report, failures=report["failures"])
    return report


def convert(src, dst, *, progress=True, dry_run=False, **kw):
    """Converts `src` into `dst` (format from ``to=`` or the extension), through a recipe or a
    profile, casting floats with ``dtype=`` ("bf16", "fp32", ...). Returns the Report; with
    dry_run=True, the plan (nothing read or written; problems listed instead of raised)."""
    return run_job(_make_job(src, dst, **kw), dry_run=dry_run, progress=progress)


_SCALE_SUFFIX = re.compile(r":[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def adapter_option(adapter):
    """``adapter=`` as the peft profile takes it: a folder, a ``(folder, scale)`` pair, or a list
    of those, merged in one pass (the scale multiplies that adapter's lora_alpha/r; default
    1). A str is read as on the CLI (``"DIR:0.5"``: a trailing ``:<number>`` is the scale); a
    pathlib path is always a folder, whatever its name ends in."""
    def one(a):
        if isinstance(a, tuple):
            if len(a) != 2:
                raise UsageError(f"adapter: expected (folder, scale), got {a!r}")
            scale = float(a[1])
            if not math.isfinite(scale):
                raise UsageError(f"adapter {os.fspath(a[0])}: the scale {scale} is not finite")
            return f"{os.fspath(a[0])}:{scale!r}"
        text = os.fspath(a)
        return text + ":1" if not isinstance(a, str) and _SCALE_SUFFIX.search(text) else text
    items = [one(a) for a in (adapter if isinstance(adapter, list) else [adapter])]
    if not items:
        raise UsageError("adapter: an empty list")
    return items[0] if len(items) == 1 else items


def merge_lora(src, dst, *, adapter=None, profile=None, progress=True, dry_run=False, **kw):
    """Merges LoRA as its runtime applied it, like ``ckptbridge merge-lora``: an openpi
    checkpoint's own LoRA (``profile="openpi"``, the default without an adapter), or PEFT
    adapter folders into their base (``adapter=DIR``, ``(DIR, scale)`` or a list of those,
    summed in one pass as ``--adapter A --adapter B:0.5``; ``profile="peft"``)."""
    # a PEFT adapter folder alone: its local base_model_name_or_path is the base (as the CLI)
    adapter_alone = adapter is None and profile is None and os.path.isfile(os.path.join(os.fspath(src), "adapter_config.json"))
    name = call_json(lib.ckb_lora_merge_profile, enc(profile or ""), 1 if adapter or adapter_alone else 0)
    if adapter:
        kw["adapter"] = adapter_option(adapter)
    return run_job(_make_job(src, dst, profile=name, **kw), dry_run=dry_run, progress=progress)


def adapt(src, dst, *, layout, like=None, progress=True, dry_run=False, **kw):
    """Flax Linen <-> NNX: ``layout="nnx"`` or ``"linen"`` (``"auto"``: the layout of ``like``);
    ``weights_only``, ``pure``, ``raw``, ``rng_fill``, ``rng_seed``, ``layers``, ``keep_rng``,
    ``optax``, ``opt_chain`` as on the CLI."""
    kw["layout"] = layout
    kw.setdefault("to", "orbax")  # as the CLI's adapt: a Flax layout is written as Orbax
    if like is not None:
        kw["like"] = like
    return run_job(_make_job(src, dst, profile="flax", **kw), dry_run=dry_run, progress=progress)


def plan(src, dst=None, **kw):
    """The plan of a convert (metadata only): the Report with its ledger and problems."""
    return run_job(_make_job(src, dst, **kw), dry_run=True, progress=False)


class DiffResult(dict):
    """diff's result: ``equal`` (every leaf within tolerance), ``leaves`` (per leaf status)."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def equal(self):
        return bool(self.get("within_tolerance"))

    def __bool__(self):
        return self.equal


def diff(a, b, *, ulp=0, abs=0.0, rel=0.0, ignore_dtype=False, b_step=None, **kw):  # noqa: A002 - the CLI's --abs
    """Compares checkpoint `a` (mapped through ``recipe=``/``profile=`` when given) with `b`, in
    any formats: exact, or within ULP / absolute / relative tolerances."""
    job = _make_job(a, None, **kw)
    opts = {"ulp": int(ulp), "abs": float(abs), "rel": float(rel), "ignore_dtype": bool(ignore_dtype), "b_step": b_step}
    return DiffResult(call_json(lib.ckb_diff, json.dumps(job).encode(), enc(b), json.dumps(opts).encode()))


def target(src, *, memory=None, allow_problems=False, **kw):
    """The job's target tree, lazily, as a Checkpoint (tensors computed when read): what
    torch.load_state_dict and jax.restore read from."""
    from .checkpoint import Checkpoint
    job = _make_job(src, None, **kw)
    trees, names, n = _memory_arrays(memory)
    ptr = c_tree_p()
    check(lib.ckb_target(json.dumps(job).encode(), trees, names, n, 1 if allow_problems else 0, ctypes.byref(ptr)))
    return Checkpoint(ptr.value)
