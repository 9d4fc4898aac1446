"""Loads libckptbridge.so (the engine's C ABI, capi/ckptbridge.h) with ctypes and declares
its functions. ctypes releases the GIL around every call, so the engine runs while other
Python threads continue.

Where the library is looked for: $CKPTBRIDGE_LIBRARY, then beside this file (an installed
package), then the source tree's build/ (a development checkout)."""
import ctypes
import json
import os

from . import errors

_HERE = os.path.dirname(os.path.abspath(__file__))


def _find():
    env = os.environ.get("CKPTBRIDGE_LIBRARY")
    if env:
        return env
    for cand in (os.path.join(_HERE, "libckptbridge.so"),
                 os.path.join(_HERE, "..", "..", "build", "libckptbridge.so")):
        if os.path.exists(cand):
            return os.path.abspath(cand)
    raise ImportError("libckptbridge.so not found: install the package (tools/setup.sh or pip install .), "
                      "build it (cmake --build build), or set CKPTBRIDGE_LIBRARY")


lib = ctypes.CDLL(_find())
ABI_VERSION = 1

c_tree_p = ctypes.c_void_p
c_cancel_p = ctypes.c_void_p
PROGRESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)
INTO = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p,
                        ctypes.c_size_t, ctypes.POINTER(ctypes.c_int64), ctypes.c_uint64)
_i64p = ctypes.POINTER(ctypes.c_int64)
_charpp = ctypes.POINTER(ctypes.c_char_p)
_out_str = ctypes.POINTER(ctypes.c_void_p)


def _decl(name, restype, *argtypes):
    """Every function is declared: an undeclared ctypes call passes ints as 32-bit C ints."""
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


_decl("ckb_version", ctypes.c_char_p)
_decl("ckb_last_error", ctypes.c_char_p)
_decl("ckb_free", None, ctypes.c_void_p)
_decl("ckb_open", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(c_tree_p))
_decl("ckb_tree_describe", ctypes.c_int, c_tree_p, _out_str)
_decl("ckb_tensor_pointer", ctypes.c_int, c_tree_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p))
_decl("ckb_tensor_read", ctypes.c_int, c_tree_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64,
      ctypes.c_uint)
_decl("ckb_tensor_read_region", ctypes.c_int, c_tree_p, ctypes.c_size_t, ctypes.c_size_t, _i64p, _i64p,
      ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint)
_decl("ckb_tensor_release", ctypes.c_int, c_tree_p, ctypes.c_size_t)
_decl("ckb_tree_free", None, c_tree_p)
_decl("ckb_tree_new", ctypes.c_int, ctypes.POINTER(c_tree_p))
_decl("ckb_tree_add_tensor", ctypes.c_int, c_tree_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, _i64p,
      ctypes.c_void_p, ctypes.c_uint64)
_decl("ckb_tree_add_value", ctypes.c_int, c_tree_p, ctypes.c_char_p, ctypes.c_char_p)
_decl("ckb_tree_set_metadata", ctypes.c_int, c_tree_p, ctypes.c_char_p, ctypes.c_char_p)
_decl("ckb_cancel_new", c_cancel_p)
_decl("ckb_cancel_request", None, c_cancel_p)
_decl("ckb_cancel_free", None, c_cancel_p)
_decl("ckb_run", ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(c_tree_p), _charpp, ctypes.c_size_t, ctypes.c_int,
      PROGRESS, ctypes.c_void_p, c_cancel_p, _out_str)
_decl("ckb_run_into", ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(c_tree_p), _charpp, ctypes.c_size_t, INTO,
      ctypes.c_void_p, PROGRESS, ctypes.c_void_p, c_cancel_p, _out_str)
_decl("ckb_target", ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(c_tree_p), _charpp, ctypes.c_size_t, ctypes.c_int,
      ctypes.POINTER(c_tree_p))
_decl("ckb_diff", ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, _out_str)
_decl("ckb_formats", ctypes.c_int, _out_str)
_decl("ckb_profiles", ctypes.c_int, _out_str)
_decl("ckb_lora_merge_profile", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, _out_str)
_decl("ckb_convert", ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_void_p)

_decl("ckb_abi_version", ctypes.c_int)
if lib.ckb_abi_version() != ABI_VERSION:
    raise ImportError(f"libckptbridge.so has ABI {lib.ckb_abi_version()}, this package needs {ABI_VERSION}")


def check(status):
    """Raises the typed exception for a failed call (the calling thread's last error)."""
    if status != 0:
        raw = lib.ckb_last_error() or b"{}"
        try:
            info = json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            info = {"kind": "InternalError", "message": raw.decode("utf-8", "replace")}
        raise errors.from_json(info)


def call_json(fn, *args):
    """Calls a function whose last argument receives a malloc'd JSON string; returns it parsed."""
    out = ctypes.c_void_p()
    check(fn(*args, ctypes.byref(out)))
    try:
        return json.loads(ctypes.string_at(out.value).decode("utf-8"))
    finally:
        lib.ckb_free(out)


def enc(s):
    return None if s is None else os.fsencode(s) if isinstance(s, os.PathLike) else str(s).encode("utf-8")


def version():
    return lib.ckb_version().decode()
