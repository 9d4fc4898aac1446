"""Trees built in Python for the engine: arrays to write (save_state_dict) and abstract
targets (shapes and dtypes only, for jax.restore). Array memory is borrowed, not copied: the
tree keeps a reference to every array it was given."""
import ctypes
import json

import numpy as np

from . import _dtypes
from ._lib import c_tree_p, check, lib


class MemoryTree:
    def __init__(self):
        ptr = c_tree_p()
        check(lib.ckb_tree_new(ctypes.byref(ptr)))
        self.ptr = ptr.value
        self._keep = []

    def add_array(self, path, array, dtype=None):
        """A tensor over `array`'s bytes (made C-contiguous; a copy only if it was not).
        `dtype`: the engine dtype name when the array holds another type's bits (bf16 as int16)."""
        a = np.ascontiguousarray(array)
        name = dtype or _dtypes.engine_name(a.dtype)
        shape = (ctypes.c_int64 * max(1, a.ndim))(*a.shape)
        self._keep.append(a)
        check(lib.ckb_tree_add_tensor(self.ptr, path.encode(), name.encode(), a.ndim, shape,
                                      a.ctypes.data if a.nbytes else None, a.nbytes))

    def add_abstract(self, path, shape, dtype):
        """A tensor with a shape and an engine dtype name and no bytes."""
        shape = tuple(int(d) for d in shape)
        cshape = (ctypes.c_int64 * max(1, len(shape)))(*shape)
        check(lib.ckb_tree_add_tensor(self.ptr, path.encode(), dtype.encode(), len(shape), cshape, None, 0))

    def add_value(self, path, value):
        """A non-tensor leaf: None, bool, int, float, str, or an empty dict/list."""
        check(lib.ckb_tree_add_value(self.ptr, path.encode(), json.dumps(value).encode()))

    def set_metadata(self, key, value):
        check(lib.ckb_tree_set_metadata(self.ptr, str(key).encode(), str(value).encode()))

    def __del__(self):
        if getattr(self, "ptr", None):
            lib.ckb_tree_free(self.ptr)
            self.ptr = None
