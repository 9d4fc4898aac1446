"""Shared by the Python baselines: restore every leaf of an Orbax item as a NumPy array, as a user
of Orbax's PyTreeCheckpointer does today (stored dtypes unless `dtype` is given)."""
import numpy as np, jax
import orbax.checkpoint as ocp

def restore_numpy(src, dtype=None):
    with ocp.PyTreeCheckpointer() as c:
        meta = c.metadata(src)
        tree = meta.item_metadata.tree if hasattr(meta, "item_metadata") else meta
        if dtype is None:
            args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        else:
            args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(restore_type=np.ndarray, dtype=dtype), tree)
        return c.restore(src, args=ocp.args.PyTreeRestore(item=tree, restore_args=args))
