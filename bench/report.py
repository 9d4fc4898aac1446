#!/usr/bin/env python3
"""Turns bench/matrix.py's JSON lines into a Markdown table and a PNG plot (time and peak RSS
against size, ckptbridge against its baselines). Medians over repetitions.

    bench/report.py bench/report/vm.jsonl --md bench/report/vm.md --png bench/report/vm.png --title "2-core VM"

The table's `vs copy` is (durable copy time) / (our time): >= 1 means the conversion is as fast
as copying the larger of its input and output. `RSS limit` is 1 GiB + the job's largest tensor
(as written).
"""
import argparse, json, statistics
from collections import defaultdict

GIB, MIB = 2**30, 2**20


def load(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    groups = defaultdict(list)
    for r in rows:
        groups[(r["job"], r["size_gb"], r["who"])].append(r)
    return rows, groups


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def table(rows, groups):
    jobs = list(dict.fromkeys(r["job"] for r in rows))
    sizes = sorted({r["size_gb"] for r in rows})
    host = rows[0]
    out = [f"Host `{host['host']}`, {host['cores']} cores, {host['cache']} page cache before every run; medians "
           f"of {max(r['rep'] for r in rows) + 1} runs below the largest size.", "",
           "| job | size | in → out GB | ckptbridge s | GB/s | durable copy s | vs copy | Python s | vs Python | "
           "peak RSS MiB | RSS limit MiB | |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = []
    for job in jobs:
        for gb in sizes:
            ours = groups.get((job, gb, "ckptbridge"))
            if not ours:
                continue
            copy = groups.get((job, gb, "copy"))
            py = groups.get((job, gb, "python"))
            t = med(ours, "wall_s")
            rss = med(ours, "peak_rss")
            inb, outb = ours[0]["in_bytes"], ours[0]["out_bytes"]
            limit = GIB + ours[0]["largest_tensor"]
            ratio = med(copy, "wall_s") / t if copy else None
            ok = (ratio is None or ratio >= 0.9) and rss <= limit
            verdicts.append(ok)
            out.append(f"| {job} | {gb:g} | {inb / 1e9:.2f} → {outb / 1e9:.2f} | {t:.2f} | {max(inb, outb) / 1e9 / t:.2f} | "
                       + (f"{med(copy, 'wall_s'):.2f} | {ratio:.2f}x | " if copy else "- | - | ")
                       + (f"{med(py, 'wall_s'):.2f} | {med(py, 'wall_s') / t:.1f}x | " if py else "- | - | ")
                       + f"{rss / MIB:.0f} | {limit / MIB:.0f} | {'ok' if ok else '**below target**'} |")
    out.append("")
    out.append(f"{sum(verdicts)} of {len(verdicts)} rows meet both targets (≥ 0.9x a durable copy, peak RSS ≤ 1 GiB + "
               "largest tensor).")
    return "\n".join(out) + "\n"


def plot(rows, groups, png, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    jobs = list(dict.fromkeys(r["job"] for r in rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    cmap = plt.get_cmap("tab10")
    for i, job in enumerate(jobs):
        sizes = sorted({gb for (j, gb, w) in groups if j == job and w == "ckptbridge"})
        if not sizes:
            continue
        c = cmap(i % 10)
        ax1.plot(sizes, [med(groups[(job, gb, "ckptbridge")], "wall_s") for gb in sizes], "o-", color=c, label=job)
        cs = [gb for gb in sizes if (job, gb, "copy") in groups]
        ax1.plot(cs, [med(groups[(job, gb, "copy")], "wall_s") for gb in cs], "x:", color=c, alpha=0.7)
        ps = [gb for gb in sizes if (job, gb, "python") in groups]
        if ps:
            ax1.plot(ps, [med(groups[(job, gb, "python")], "wall_s") for gb in ps], "s--", color=c, alpha=0.5)
            ax2.plot(ps, [med(groups[(job, gb, "python")], "peak_rss") / GIB for gb in ps], "s--", color=c, alpha=0.5)
        ax2.plot(sizes, [med(groups[(job, gb, "ckptbridge")], "peak_rss") / GIB for gb in sizes], "o-", color=c, label=job)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("size class, GB (larger of input and output)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log", base=2)
    ax1.set_ylabel("seconds (o ckptbridge, x durable copy, s Python)")
    ax1.set_title("time")
    ax2.set_ylabel("peak RSS, GiB (o ckptbridge, s Python)")
    ax2.set_title("peak resident memory")
    ax2.set_ylim(bottom=0)
    ax1.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jsonl")
    ap.add_argument("--md", required=True)
    ap.add_argument("--png")
    ap.add_argument("--title", default="ckptbridge benchmark")
    a = ap.parse_args()
    rows, groups = load(a.jsonl)
    md = table(rows, groups)
    open(a.md, "w").write(md)
    print(md)
    if a.png:
        plot(rows, groups, a.png, a.title)


if __name__ == "__main__":
    main()
