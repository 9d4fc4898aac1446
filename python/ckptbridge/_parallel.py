"""Bounded parallel maps for reads that release the GIL (every engine call does)."""
import collections
import concurrent.futures
import os


def bounded_map(fn, items, sizes, *, workers=None, window=1 << 30):
    """Yields fn(item) in order, running up to `workers` calls at once while the results not yet
    yielded hold at most `window` bytes plus the largest of them: one array larger than the
    window runs beside smaller ones instead of alone (a single-stream decode of a big array is
    then not the critical path), and memory stays at the window plus one array."""
    workers = workers or os.cpu_count() or 1
    pending = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        ahead = 0

        def fits(size):
            largest = max([size] + [s for _, s in pending])
            return ahead + size <= window + largest

        for item, size in zip(items, sizes):
            while pending and (len(pending) >= workers or not fits(size)):
                fut, done = pending.popleft()
                ahead -= done
                yield fut.result()
            pending.append((pool.submit(fn, item), size))
            ahead += size
        while pending:
            yield pending.popleft()[0].result()
