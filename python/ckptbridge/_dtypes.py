"""dtype names: the engine's (safetensors' spelling: F32, BF16, ...) <-> NumPy's.

bfloat16 and the float8 types have no NumPy dtype of their own: they come from ``ml_dtypes``
(what JAX uses) when it is importable. Without it, reading such a tensor asks for a choice:
``as_float32=True`` (an exact widening) or ``raw=True`` (the stored bits as unsigned ints)."""
import numpy as np

try:
    import ml_dtypes
except ImportError:  # optional
    ml_dtypes = None

_PLAIN = {"F64": "float64", "F32": "float32", "F16": "float16", "I64": "int64", "I32": "int32", "I16": "int16",
          "I8": "int8", "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
          "C64": "complex64", "C128": "complex128"}
_ML = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
       "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz"}
_RAW = {"BF16": "uint16", "F8_E4M3": "uint8", "F8_E5M2": "uint8", "F8_E8M0": "uint8", "F8_E4M3FNUZ": "uint8",
        "F8_E5M2FNUZ": "uint8"}
SUB_BYTE = {"F4", "F6_E2M3", "F6_E3M2"}
FLOATS_WIDENED = {"BF16", "F16", "F8_E4M3", "F8_E5M2"}  # as_float32 converts these exactly


def has_numpy_dtype(name):
    return name in _PLAIN or (name in _ML and ml_dtypes is not None and hasattr(ml_dtypes, _ML[name]))


def numpy_dtype(name, raw=False):
    """The NumPy dtype of engine dtype `name`; raw=True: the storage type of the bits."""
    if name in _PLAIN:
        return np.dtype(_PLAIN[name])
    if raw and name in _RAW:
        return np.dtype(_RAW[name])
    if raw and name in SUB_BYTE:
        return np.dtype("uint8")
    if name in _ML and ml_dtypes is not None and hasattr(ml_dtypes, _ML[name]):
        return np.dtype(getattr(ml_dtypes, _ML[name]))
    return None


def engine_name(dtype):
    """The engine's name for a NumPy (or ml_dtypes) dtype; raises UsageError if it has none."""
    from .errors import UsageError
    d = np.dtype(dtype)
    for k, v in _PLAIN.items():
        if d == np.dtype(v):
            return k
    if ml_dtypes is not None:
        for k, v in _ML.items():
            if hasattr(ml_dtypes, v) and d == np.dtype(getattr(ml_dtypes, v)):
                return k
    raise UsageError(f"no checkpoint dtype for NumPy dtype {d}")
