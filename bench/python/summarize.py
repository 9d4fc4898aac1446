#!/usr/bin/env python3
"""Reads a bench/python/device_run.sh log and prints the ratios of each pair measured in it
(above 1: ckptbridge is faster / smaller): other / ckptbridge for wall time (timed.py: the whole child process, interpreter start and
imports included), the in-process time of the operation itself, and peak RSS.
    summarize.py LOG"""
import collections
import re
import sys

TIMED = re.compile(r"^(?P<label>\w+?)_r(?P<rep>\d+)(?: cold)?(?: \(page cache not dropped[^)]*\))?: "
                   r"wall_s=(?P<wall>[\d.]+) peak_rss_gib=(?P<rss>[\d.]+) rc=(?P<rc>-?\d+)")
INPROC = re.compile(r"^(read_all|jax_restore|torch_sd) (\S+): (.*)$")
BASELINE = re.compile(r"^restore ([\d.]+)s\s+merge ([\d.]+)s\s+layout\+save ([\d.]+)s\s+total ([\d.]+)s\s+peak RSS ([\d.]+) GiB")

PAIRS = [
    ("read every tensor: ckptbridge.open get_tensor vs Orbax restore to NumPy (cold)",
     "ckb_open_read_all", "orbax_restore_numpy", ("read_all", "ckb"), ("read_all", "orbax"), "read_s"),
    ("jax: ckptbridge.jax.restore vs Orbax restore into the same abstract state (cold)",
     "ckb_jax_restore", "orbax_jax_restore", ("jax_restore", "ckb"), ("jax_restore", "orbax"), "restore_s"),
    ("torch: ckptbridge.torch.load_state_dict(recipe=openpi) vs bench/pi0/python_baseline.py without save (cold)",
     "ckb_load_state_dict_openpi", "python_baseline_state_dict", ("torch_sd", "ckb"), ("baseline", ""), "load_s"),
]


def main():
    timed = collections.defaultdict(list)
    inproc = collections.defaultdict(list)
    for line in open(sys.argv[1], errors="replace"):
        line = line.strip()
        m = TIMED.match(line)
        if m:
            timed[m["label"]].append((float(m["wall"]), float(m["rss"]), int(m["rc"])))
            continue
        m = INPROC.match(line)
        if m:
            fields = dict(kv.split("=", 1) for kv in m[3].split() if "=" in kv)
            inproc[(m[1], m[2])].append(fields)
            continue
        m = BASELINE.match(line)
        if m:  # python_baseline.py: restore + merge + layout (save skipped) total
            inproc[("baseline", "")].append({"load_s": m[4], "peak_rss_gib": m[5]})
    for title, ours, other, ip_ours, ip_other, key in PAIRS:
        print(f"== {title}")
        a, b = timed.get(ours, []), timed.get(other, [])
        for i, (x, y) in enumerate(zip(a, b), 1):
            print(f"  rep {i}: wall {x[0]:.2f} s (ours) vs {y[0]:.2f} s -> time ratio other/ours {y[0] / x[0]:.2f}; "
                  f"peak RSS {x[1]:.2f} vs {y[1]:.2f} GiB -> other/ours {y[1] / max(x[1], 1e-9):.2f} (rc {x[2]}/{y[2]})")
        for label, rows in ((ours, a), (other, b)):
            for i, x in enumerate(rows[min(len(a), len(b)):], min(len(a), len(b)) + 1):
                print(f"  unpaired {label} #{i}: wall {x[0]:.2f} s, peak RSS {x[1]:.2f} GiB (rc {x[2]})")
        c, d = inproc.get(ip_ours, []), inproc.get(ip_other, [])
        other_key = "load_s" if ip_other[0] == "baseline" else key
        for i, (x, y) in enumerate(zip(c, d), 1):
            try:
                t0, t1 = float(x[key]), float(y[other_key])
                print(f"  rep {i} in process: {key} {t0:.2f} s (ours) vs {t1:.2f} s -> other/ours {t1 / t0:.2f}")
            except (KeyError, ValueError, ZeroDivisionError):
                pass
            for f in ("checksum", "fingerprint"):
                if f in x and f in y:
                    print(f"  rep {i}: {f} {'equal' if x[f] == y[f] else 'DIFFERENT'} ({x[f]} / {y[f]})")
    paired = {p[1] for p in PAIRS} | {p[2] for p in PAIRS}
    for label, rows in timed.items():  # diagnostics and unpaired runs
        if label not in paired:
            for i, x in enumerate(rows, 1):
                print(f"== other timed run {label} #{i}: wall {x[0]:.2f} s, peak RSS {x[1]:.2f} GiB (rc {x[2]})")
    for (kind, mode), rows in inproc.items():
        if mode not in ("ckb", "orbax", ""):
            for x in rows:
                print(f"== in process {kind} {mode}: " + " ".join(f"{k}={v}" for k, v in x.items()))

if __name__ == "__main__":
    main()
