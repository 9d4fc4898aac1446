"""Bounded parallel maps for reads that release the GIL (every engine call does)."""
import collections
import concurrent.futures
import os


def bounded_map(fn, items, sizes, *, workers=None, window=1 << 30):
    """Yields fn(item) in order, running up to `workers` calls at once while the sizes of the
    results not yet yielded stay within `window` (an item larger than the window runs alone)."""
    workers = workers or os.cpu_count() or 1
    pending = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        ahead = 0
        for item, size in zip(items, sizes):
            while pending and (len(pending) >= workers or ahead + size > window):
                fut, done = pending.popleft()
                ahead -= done
                yield fut.result()
            pending.append((pool.submit(fn, item), size))
            ahead += size
        while pending:
            yield pending.popleft()[0].result()
