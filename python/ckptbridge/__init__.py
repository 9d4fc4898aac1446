"""ckptbridge: open, convert and restore deep-learning checkpoints across frameworks.

A thin Python layer over libckptbridge.so, the native engine's stable C ABI
(capi/ckptbridge.h), loaded with ctypes: one build works with every Python 3 (Debian's
python3.11, a 3.12 with JAX and PyTorch) and needs no compiler at install time beyond the
engine's own; a pybind11 module would need a build per interpreter. NumPy carries buffers.

    import ckptbridge
    with ckptbridge.open("model.safetensors") as ck:   # any format ckptbridge reads
        w = ck["embed.weight"]                          # numpy, zero-copy where stored raw
    ckptbridge.convert("ckpt/", "out/model.safetensors", dtype="bf16")
    ckptbridge.save({"w": np.ones((2, 3), np.float32)}, "w.safetensors")  # any format we write
    ckptbridge.merge_lora("train/100", "merged/", openpi_config="model.json")
    sd = ckptbridge.torch.load_state_dict("ckpt/", recipe="openpi")    # import ckptbridge.torch
    state = ckptbridge.jax.restore("linen_ckpt/", abstract_nnx_state)   # import ckptbridge.jax
"""
from ._lib import version as _version
from .checkpoint import Checkpoint, TensorInfo, TensorSlice, open  # noqa: A004
from .errors import (Cancelled, CheckFailed, CkptbridgeError, FormatError, IOError, MappingError,  # noqa: A004
                     UsageError)
from .save import save
from .jobs import DiffResult, Progress, Report, adapt, convert, diff, formats, merge_lora, plan, profiles, target

__version__ = _version()

__all__ = ["open", "save", "Checkpoint", "TensorInfo", "TensorSlice", "convert", "merge_lora", "adapt", "plan", "diff",
           "target", "formats", "profiles", "Report", "DiffResult", "Progress", "CkptbridgeError", "FormatError",
           "IOError", "MappingError", "UsageError", "Cancelled", "CheckFailed"]
