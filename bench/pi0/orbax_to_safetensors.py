"""Today's Python path for issue #5's comparison: restore an Orbax item with Orbax (every leaf as a
NumPy array in its stored dtype) and write it with `safetensors.torch.save_file` (bfloat16 arrays go
through torch as bfloat16, nothing is cast). Prints the time of each phase; run it under
timed.py for wall time and peak RSS.

    python3 orbax_to_safetensors.py ITEM_DIR OUT.safetensors
"""
import os, sys, time
import numpy as np, jax, torch
from orbax_restore import restore_numpy
from safetensors.torch import save_file

src, out = os.path.abspath(sys.argv[1]), sys.argv[2]
t0 = time.time()
t = restore_numpy(src)
t1 = time.time()
flat = {}
for path, x in jax.tree_util.tree_flatten_with_path(t)[0]:
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    if x.dtype.name == "bfloat16":
        flat[name] = torch.from_numpy(np.ascontiguousarray(x).view(np.uint16)).view(torch.bfloat16)
    else:
        flat[name] = torch.from_numpy(np.ascontiguousarray(x))
save_file(flat, out)
t2 = time.time()
print(f"orbax restore: {t1-t0:.2f}s  safetensors.torch.save_file: {t2-t1:.2f}s  "
      f"{sum(v.numel() * v.element_size() for v in flat.values()) / 2**30:.2f} GiB", flush=True)
