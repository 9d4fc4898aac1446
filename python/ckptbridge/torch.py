"""PyTorch state dicts straight from any checkpoint, and back to any format.

    import ckptbridge.torch
    sd = ckptbridge.torch.load_state_dict("openpi/train/100", recipe="openpi")  # LoRA merged, f32
    model.load_state_dict(sd, strict=True)
    sd = ckptbridge.torch.load_state_dict("base/", adapter="adapter/")            # PEFT, merged
    ckptbridge.torch.save_state_dict(sd, "out/model.safetensors")               # any format we write

load_state_dict runs the engine's job into memory: each tensor is allocated once as a torch
tensor and the engine writes its bytes straight into that storage (all cores, the engine's
bounded window), so the extra memory is the window, not a second copy of the model."""

import numpy as np
import torch

from . import jobs
from ._lib import lib
from ._memory import MemoryTree
from .errors import UsageError

_TORCH = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
          "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool", "C64": "complex64", "C128": "complex128",
          "U16": "uint16", "U32": "uint32", "U64": "uint64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
          "F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz"}


def torch_dtype(name):
    t = getattr(torch, _TORCH.get(name, ""), None) if name in _TORCH else None
    if not isinstance(t, torch.dtype):
        raise UsageError(f"this PyTorch ({torch.__version__}) has no dtype for {name}")
    return t


def _engine_dtype(t):
    for k, v in _TORCH.items():
        if getattr(torch, v, None) == t:
            return k
    raise UsageError(f"no checkpoint dtype for {t}")


def load_state_dict(path, *, recipe=None, profile=None, dtype=None, adapter=None, progress=False, return_report=False,
                    **profile_args):
    """A ``dict[str, torch.Tensor]`` of the job's target: `path` mapped through `recipe` (e.g.
    "openpi": PI0Pytorch names, LoRA merged in float64 and rounded once to float32, other
    tensors in their stored dtype unless `dtype` is given) or a
    profile (``adapter=DIR``, ``(DIR, scale)`` or a list of those: PEFT adapters merged into the base
    at `path`), floats cast to
    `dtype`. Every source tensor is accounted for or the call raises MappingError naming
    them: the dict is ready for ``model.load_state_dict(sd, strict=True)``. With
    return_report=True: ``(state_dict, report)``, the engine's Report (ledger, casts, notes)."""
    if adapter is not None:
        profile_args["adapter"] = jobs.adapter_option(adapter)
        if profile is None:
            profile = jobs.call_json(lib.ckb_lora_merge_profile, b"", 1)
    job = jobs._make_job(path, None, recipe=recipe, profile=profile, dtype=dtype, **profile_args)
    out = {}

    def into(_index, name, dt, shape, nbytes):  # each tensor allocated once; the engine fills it
        t = torch.empty(shape, dtype=torch_dtype(dt))
        if t.numel() * t.element_size() != nbytes:
            raise UsageError(f"{name}: {nbytes} bytes do not fill a {dt} tensor of shape {tuple(t.shape)}")
        out[name] = t
        return t.data_ptr() if nbytes else None

    report = jobs.run_job(job, progress=progress, into=into, label="load_state_dict")
    return (out, report) if return_report else out


def save_state_dict(state_dict, path, *, to=None, metadata=None, overwrite=False, dtype=None, progress=False, **options):
    """Writes a ``dict[str, torch.Tensor]`` (or NumPy arrays) in any format ckptbridge writes:
    safetensors (``metadata`` as its ``__metadata__``), ``.pt``, ``.npz``, msgpack, Orbax
    (``to="orbax"``), sharded safetensors (``shard_size="5GB"``). Tensors that share memory are
    written once per name (as safetensors' save_model does). Returns the Report."""
    arrays = {}
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().contiguous()
            if t.dtype == torch.bfloat16:
                arrays[name] = (t.view(torch.int16).numpy(), "BF16")
            elif _engine_dtype(t.dtype).startswith("F8"):
                arrays[name] = (t.view(torch.uint8).numpy(), _engine_dtype(t.dtype))
            else:
                arrays[name] = (t.numpy(), None)
        elif isinstance(t, np.ndarray):
            arrays[name] = (t, None)
        else:
            raise UsageError(f"{name}: a state dict value must be a tensor, not {type(t).__name__}", path=name)
    tree = MemoryTree()
    for name, (a, dt) in arrays.items():  # flat: torch names keep their dots
        tree.add_array(name, a, dtype=dt)
    job = jobs._make_job("<state_dict>", path, to=to, metadata=metadata, overwrite=overwrite, dtype=dtype, **options)
    return jobs.run_job(job, progress=progress, memory={"<state_dict>": tree})
