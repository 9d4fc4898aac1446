#!/usr/bin/env python3
"""The benchmark matrix of issue #19: every conversion job at several sizes against baselines
measured in the same run, written as JSON lines (one per measurement) that bench/report.py turns
into a Markdown table and plots.

Jobs (NAME: input -> output): st = safetensors, pt = torch .pt, npz = NumPy; bf16/f32 is the
input dtype; a cast is --dtype. The size class S (GB) is the larger of a job's input and output
bytes, so a widening job reads S/2 and writes S.
  st-st        bf16 st  -> st            (layout only, byte-exact)
  st-st-fp32   bf16 st  -> st  fp32      (widening cast)
  st-st-bf16   f32  st  -> st  bf16      (narrowing cast, round-to-nearest-even, counted)
  st-pt        bf16 st  -> pt
  pt-st        bf16 pt  -> st
  pt-pt-fp32   bf16 pt  -> pt  fp32
  st-npz       f32  st  -> npz
  npz-st-bf16  f32  npz -> st  bf16
  st-orbax     bf16 st  -> Orbax (OCDBT, zarr v2, zstd as Orbax writes it)
Baselines, each measured right after the job it belongs to:
  copy     a durable copy (cp + sync) of the larger of the job's input and output files
  python   the Python path where the library is importable here: safetensors load_file/save_file
           (st-st*, through torch), torch.load/torch.save (pt-*), numpy load/savez (npz)
Every run starts from a cold page cache (sync + drop_caches) when this process may drop it (root),
otherwise from a warm one (the input is read once first); the report says which. Peak RSS is
the process tree's maximum resident set (wait4's ru_maxrss).

    bench/matrix.py --bin build/ckptbridge --work /tmp/ckb-matrix --sizes 1,4,16 \\
        --jobs all --reps 3 --out bench/report/vm.jsonl [--python]
"""
import argparse, json, os, platform, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = {  # name: (input kind, input dtype, output kind, cast)
    "st-st": ("st", "bf16", "st", None),
    "st-st-fp32": ("st", "bf16", "st", "fp32"),
    "st-st-bf16": ("st", "f32", "st", "bf16"),
    "st-pt": ("st", "bf16", "pt", None),
    "pt-st": ("pt", "bf16", "st", None),
    "pt-pt-fp32": ("pt", "bf16", "pt", "fp32"),
    "st-npz": ("st", "f32", "npz", None),
    "npz-st-bf16": ("npz", "f32", "st", "bf16"),
    "st-orbax": ("st", "bf16", "orbax", None),
}
EXT = {"st": ".safetensors", "pt": ".pt", "npz": ".npz", "orbax": ""}


def size_of(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    return os.path.getsize(path)


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


class Runner:
    def __init__(self, args):
        self.a = args
        self.cold = args.cache == "cold"
        if args.cache == "auto":
            self.cold = os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)

    def prepare_cache(self, warm_paths):
        subprocess.run(["sync"], check=True)
        if self.cold:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        else:
            for p in warm_paths:
                files = [p] if os.path.isfile(p) else [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs]
                for f in files:
                    with open(f, "rb") as fh:
                        while fh.read(64 << 20):
                            pass

    def timed(self, argv, warm_paths, env=None):
        """Runs argv from the chosen cache state; returns (wall s, user s, sys s, peak RSS bytes)."""
        self.prepare_cache(warm_paths)
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(argv)} failed:\n{err}")
        return wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss * 1024


def input_key(name, gb):
    kin, dtin, _, cast = JOBS[name]
    return (kin, dtin, gb / 2 if cast == "fp32" and dtin == "bf16" else gb)


def derived_from(key):
    """The input an input is made from (None for the generated bf16 safetensors)."""
    kind, dtype, gb = key
    if kind == "st" and dtype == "bf16":
        return None
    return ("st", "bf16", gb / 2) if kind == "st" else ("st", dtype, gb)


def make_inputs(a, work):
    """Returns get(kind, dtype, gb) -> path, creating inputs on demand (not timed), and the dict
    of inputs made so far."""
    made = {}

    def get(kind, dtype, gb):
        key = (kind, dtype, gb)
        if key in made and os.path.exists(made[key]):
            return made[key]
        path = os.path.join(work, f"in-{dtype}-{gb:g}{EXT[kind]}")
        if kind == "st" and dtype == "bf16":
            subprocess.run([sys.executable, os.path.join(HERE, "make_synthetic.py"), path, "--gb", str(gb)],
                           check=True, stdout=subprocess.DEVNULL)
        elif kind == "st" and dtype == "f32":  # widened from bf16 of half the bytes
            src = get("st", "bf16", gb / 2)
            subprocess.run([a.bin, "convert", src, path, "--dtype", "fp32", "-q"], check=True)
        else:
            src = get("st", dtype, gb)
            subprocess.run([a.bin, "convert", src, path, "-q"], check=True)
        made[key] = path
        return path

    return get, made


def largest_tensor_bytes(a, path, out_dtype):
    info = json.loads(subprocess.run([a.bin, "inspect", "--json", path], check=True, capture_output=True).stdout)
    width = {"fp32": 4, "bf16": 2}.get(out_dtype)
    best = 0
    for t in info["tensors"].values():
        n = 1
        for d in t["shape"]:
            n *= d
        es = width or {"BF16": 2, "F32": 4, "F16": 2, "F64": 8}.get(t["dtype"], 4)
        best = max(best, n * es, n * {"BF16": 2, "F32": 4}.get(t["dtype"], 4))
    return best


PY_SNIPPETS = {
    # Load everything into memory with the format's own library, convert, save durably.
    "st": "from safetensors.torch import load_file as L, save_file as S\nt=L(src)\n",
    "pt": "import torch\nt=torch.load(src, weights_only=True)\n",
    "npz": "import numpy as np, torch\nz=np.load(src)\nt={k: torch.from_numpy(z[k]) for k in z.files}\n",
}
PY_SAVE = {
    "st": "from safetensors.torch import save_file\nsave_file(t, dst)\n",
    "pt": "import torch\ntorch.save(t, dst)\n",
    "npz": "import numpy as np\nnp.savez(dst, **{k: v.numpy() for k, v in t.items()})\n",
}


def python_available(kind_in, kind_out):
    mods = {"st": "safetensors", "pt": "torch", "npz": "numpy"}
    for m in {mods[kind_in], mods[kind_out], "torch"}:
        if subprocess.run([sys.executable, "-c", f"import {m}"], capture_output=True).returncode != 0:
            return False
    return kind_out in PY_SAVE


def python_script(kind_in, kind_out, cast):
    conv = ""
    if cast:
        dt = {"fp32": "torch.float32", "bf16": "torch.bfloat16"}[cast]
        conv = f"import torch\nt={{k: v.to({dt}) for k, v in t.items()}}\n"
    return ("import os, sys\nsrc, dst = sys.argv[1], sys.argv[2]\n" + PY_SNIPPETS[kind_in] + conv + PY_SAVE[kind_out] +
            "fd=os.open(dst, os.O_RDONLY); os.fsync(fd); os.close(fd)\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "ckptbridge"))
    ap.add_argument("--work", default="/tmp/ckb-matrix")
    ap.add_argument("--sizes", default="1,4,16", help="size classes in GB (larger of input and output)")
    ap.add_argument("--jobs", default="all", help="comma-separated job names, or all")
    ap.add_argument("--big-jobs", default="st-st,st-st-fp32,st-pt,pt-st",
                    help="jobs run at sizes >= --big (disk space); all at smaller sizes")
    ap.add_argument("--big", type=float, default=16)
    ap.add_argument("--reps", type=int, default=3, help="repetitions below --big (medians); 1 at --big")
    ap.add_argument("--python", action="store_true", help="also time the Python path where importable")
    ap.add_argument("--cache", choices=["auto", "cold", "warm"], default="auto")
    ap.add_argument("--out", required=True, help="JSON lines file (appended)")
    ap.add_argument("--host", default=platform.node())
    a = ap.parse_args()
    a.bin = os.path.abspath(a.bin)
    os.makedirs(a.work, exist_ok=True)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    r = Runner(a)
    get, made = make_inputs(a, a.work)
    names = list(JOBS) if a.jobs == "all" else a.jobs.split(",")
    big = set(a.big_jobs.split(","))
    sizes = [float(s) for s in a.sizes.split(",")]
    host = {"host": a.host, "cores": os.cpu_count(), "cache": "cold" if r.cold else "warm"}
    out = open(a.out, "a")

    def record(**kw):
        kw.update(host)
        out.write(json.dumps(kw) + "\n")
        out.flush()
        print(json.dumps(kw), flush=True)

    for gb in sizes:
        todo = [n for n in names if gb < a.big or n in big]
        for i, name in enumerate(todo):
            kin, dtin, kout, cast = JOBS[name]
            # Disk space: inputs that neither this job nor a later one needs (directly or to make
            # an input not made yet) go first.
            needed = set()
            for later in todo[i:]:
                k = input_key(later, gb)
                while k is not None:
                    needed.add(k)
                    k = None if k in made else derived_from(k)
            for key in [k for k in made if k not in needed]:
                remove(made.pop(key))
            src = get(*input_key(name, gb))
            dst = os.path.join(a.work, "out" + EXT[kout])
            copy = os.path.join(a.work, "copy.bin")
            argv = [a.bin, "convert", src, dst, "-q"] + (["--dtype", cast] if cast else []) + \
                   (["--to", "orbax"] if kout == "orbax" else [])
            largest = largest_tensor_bytes(a, src, cast)
            reps = 1 if gb >= a.big else a.reps
            for rep in range(reps):
                remove(dst)
                w, u, s, m = r.timed(argv, [src])
                in_b, out_b = size_of(src), size_of(dst)
                record(job=name, size_gb=gb, rep=rep, who="ckptbridge", wall_s=w, user_s=u, sys_s=s, peak_rss=m,
                       in_bytes=in_b, out_bytes=out_b, largest_tensor=largest)
                # The copy baseline: the larger of input and output, durably.
                bigger = src if in_b >= out_b else dst
                if bigger == src:
                    remove(dst)
                if os.path.isdir(bigger):
                    cmd = ["sh", "-c", f"cp -r '{bigger}' '{copy}' && sync"]
                else:
                    cmd = ["sh", "-c", f"cp '{bigger}' '{copy}' && sync '{copy}'"]
                remove(copy)
                w, u, s, m = r.timed(cmd, [bigger])
                record(job=name, size_gb=gb, rep=rep, who="copy", wall_s=w, user_s=u, sys_s=s, peak_rss=m,
                       bytes=max(in_b, out_b))
                remove(copy)
                if a.python and kout != "orbax" and python_available(kin, kout):
                    py = os.path.join(a.work, "py" + EXT[kout])
                    remove(py)
                    w, u, s, m = r.timed([sys.executable, "-c", python_script(kin, kout, cast), src, py], [src])
                    record(job=name, size_gb=gb, rep=rep, who="python", wall_s=w, user_s=u, sys_s=s, peak_rss=m)
                    remove(py)
                remove(dst)
        # Inputs of this size are not needed again.
        for key, path in list(made.items()):
            remove(path)
            del made[key]
    out.close()


if __name__ == "__main__":
    main()
