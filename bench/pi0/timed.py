#!/usr/bin/env python3
"""Runs a command and prints `LABEL wall_s=.. peak_rss_gib=..` (peak RSS of the command's process
tree as reported by getrusage(RUSAGE_CHILDREN)). Optionally drops the page cache first so reads
come from disk.     timed.py LABEL [--cold] -- CMD ARGS..."""
import resource, subprocess, sys, time

label = sys.argv[1]
args = sys.argv[2:]
cold = False
if args and args[0] == "--cold":
    cold, args = True, args[1:]
if args and args[0] == "--":
    args = args[1:]
note = ""
if cold:
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        note = " cold"
    except OSError as e:
        note = f" (page cache not dropped: {e.strerror})"
t0 = time.time()
rc = subprocess.run(args).returncode
dt = time.time() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rss = ru.ru_maxrss / 2**20
print(f"{label}{note}: wall_s={dt:.2f} peak_rss_gib={rss:.2f} user_s={ru.ru_utime:.1f} sys_s={ru.ru_stime:.1f} rc={rc}",
      flush=True)
sys.exit(rc)
