#!/usr/bin/env python3
"""Issue #20 benchmark: reading a multi-GB checkpoint from a local S3 server vs from disk.

Starts the tests' S3 server (tools/test-servers/s3-server.js: s3rver behind a SigV4 check, under
Debian's nodejs; `npm ci --prefix tools/test-servers` first), uploads a synthetic safetensors
checkpoint with ckptbridge itself, then, with a cold page cache before every run (as root),
converts it to a local safetensors file:
  - from disk (the same file), the baseline;
  - from s3:// with --remote-parallel 1, 4, 16 (a parameter: --parallel 1,4,16);
and, as a second baseline, the raw fetch of the same object by `curl` (one stream, no
signature: the server's own rate). With --orbax, the same tensors also go up as an Orbax
checkpoint (OCDBT, zstd chunks: what JAX users keep in buckets) and are read the same two ways.
Prints a Markdown table (time, GB/s, peak RSS) and writes JSON lines with --out.

    python3 bench/remote_read.py --gb 2 --cli build/ckptbridge --out bench/report/remote.jsonl
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def drop_caches():
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def timed(cmd, env=None):
    """(seconds, peak RSS MiB) of cmd under /usr/bin/time -v."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    return dt, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "ckptbridge"))
    ap.add_argument("--parallel", default="1,4,16")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--out", default=None, help="append JSON lines here")
    ap.add_argument("--orbax", action="store_true", help="also read an Orbax (zstd) copy from disk and from s3://")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="ckb-remote-bench-")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "s3-data")
    os.makedirs(data, exist_ok=True)
    src = os.path.join(work, "model.safetensors")
    subprocess.run([sys.executable, os.path.join(HERE, "make_synthetic.py"), src, "--gb", str(a.gb)], check=True)
    size = os.path.getsize(src)

    server = subprocess.Popen(["node", "--openssl-legacy-provider", os.path.join(ROOT, "tools/test-servers/s3-server.js"),
                               data, "bench"], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        m = re.match(r"LISTENING (\d+)", line)
        if not m:
            sys.exit(f"the S3 server did not start: {line!r}")
        endpoint = f"http://127.0.0.1:{m.group(1)}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID="S3RVER", AWS_SECRET_ACCESS_KEY="S3RVER", AWS_REGION="us-east-1",
                   AWS_ENDPOINT_URL=endpoint)
        url = "s3://bench/model.safetensors"
        up_t, up_rss = timed([a.cli, "convert", src, url, "-q", "--overwrite"], env)
        rows = [{"job": "upload (disk -> s3)", "seconds": up_t, "rss_mib": up_rss}]
        inputs = [("", src, url)]
        if a.orbax:
            orbax_dir, orbax_url = os.path.join(work, "orbax"), "s3://bench/orbax"
            subprocess.run([a.cli, "convert", src, orbax_dir, "--to", "orbax", "-q", "--overwrite"], env=env, check=True)
            subprocess.run([a.cli, "convert", src, orbax_url, "--to", "orbax", "-q", "--overwrite"], env=env, check=True)
            inputs.append(("orbax ", orbax_dir, orbax_url))
        out = os.path.join(work, "out.safetensors")
        cold = True
        for rep in range(a.repeat):
            runs = []
            for kind, local, remote in inputs:
                runs.append((f"{kind}disk -> disk", [a.cli, "convert", local, out, "-q", "--overwrite"]))
                for p in [int(x) for x in a.parallel.split(",")]:
                    runs.append((f"{kind}s3 -> disk, {p} parallel", [a.cli, "convert", remote, out, "-q",
                                                                      "--overwrite", "--remote-parallel", str(p)]))
            runs.append(("curl s3 object -> /dev/null", ["curl", "-s", "-o", "/dev/null",
                                                          f"{endpoint}/bench/model.safetensors"]))
            for name, cmd in runs:
                cold = drop_caches() and cold
                t, rss = timed(cmd, env)
                rows.append({"job": name, "seconds": t, "rss_mib": rss, "rep": rep})
                if os.path.exists(out):
                    os.remove(out)
        for r in rows:
            r["gb_per_s"] = size / r["seconds"] / 1e9
            r["bytes"] = size
            r["cold_cache"] = cold
        print(f"\n{size / 1e9:.2f} GB safetensors, {os.cpu_count()} cores, cold cache: {cold}\n")
        print("| job | time (s) | GB/s | peak RSS (MiB) |\n|---|---:|---:|---:|")
        for r in rows:
            print(f"| {r['job']} | {r['seconds']:.2f} | {r['gb_per_s']:.2f} | {r['rss_mib']:.0f} |")
        if a.out:
            with open(a.out, "a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
    finally:
        server.terminate()
        server.wait()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
