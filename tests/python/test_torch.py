"""ckptbridge.torch with Debian's PyTorch: load_state_dict equals the CLI's output tensor for tensor
(openpi recipe with LoRA, PEFT merge, dtype casts), and save_state_dict writes what the CLI writes
for the same data (bfloat16, a tied pair, views) and what torch.load reads back."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import ckptbridge
import ckptbridge.torch as ckt
from conftest import FIXTURES, REPO

F = FIXTURES
OPENPI_LORA = F / "openpi_pi0_tiny_lora"
PEFT = F / "peft_llama_lora"

_ENGINE_DTYPE = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                 torch.bool: "BOOL"}


def torch_bytes(t):
    """A tensor's bytes in C order (bfloat16 through an int16 view: NumPy cannot hold it)."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def assert_state_dict_equals_checkpoint(sd, path):
    """Every tensor of the checkpoint at `path` (read with ckptbridge.open) is in `sd` with the
    same name, dtype, shape and bytes, and `sd` holds nothing else."""
    with ckptbridge.open(path) as ck:
        assert list(sd) == ck.keys()
        for name in ck.keys():
            info, t = ck.info(name), sd[name]
            assert isinstance(t, torch.Tensor) and t.is_contiguous(), name
            assert (_ENGINE_DTYPE[t.dtype], tuple(t.shape)) == (info.dtype, info.shape), name
            assert torch_bytes(t) == ck.get_tensor(name, raw=True).tobytes(), name
    return len(sd)


def test_openpi_lora_train_checkpoint_equals_the_clis_safetensors(tmp, cli):
    # openpi_test.cpp / tools/demo.sh: the training layout needs the LoRA config (model.json).
    src, cfg = OPENPI_LORA / "train/checkpoints/100", OPENPI_LORA / "model.json"
    cli("convert", src, tmp / "out/model.safetensors", "--recipe", "openpi", "--openpi-config", cfg, "-q")
    sd = ckt.load_state_dict(src, recipe="openpi", openpi_config=cfg)
    assert assert_state_dict_equals_checkpoint(sd, tmp / "out/model.safetensors") == 90
    # PI0Pytorch names, no LoRA factor left, the merged attention weights in float32
    assert not any("lora" in n for n in sd)
    q = "paligemma_with_expert.paligemma.model.language_model.layers.0.self_attn.q_proj.weight"
    assert sd[q].dtype == torch.float32


def test_openpi_release_checkpoint_with_a_cast(tmp, cli):
    src = F / "openpi_pi0_tiny_full/release/params"
    cli("convert", src, tmp / "out/model.safetensors", "--recipe", "openpi", "--dtype", "bf16", "-q")
    sd = ckt.load_state_dict(src, recipe="openpi", dtype="bf16")
    assert assert_state_dict_equals_checkpoint(sd, tmp / "out/model.safetensors") == 90
    assert {t.dtype for t in sd.values()} == {torch.bfloat16}


def test_peft_adapter_merged_equals_the_clis_merge_lora(tmp, cli):
    base, adapter = PEFT / "base/model.safetensors", PEFT / "adapter"
    cli("merge-lora", base, "-o", tmp / "m.safetensors", "--adapter", adapter, "-q")
    sd = ckt.load_state_dict(base, adapter=adapter)
    assert assert_state_dict_equals_checkpoint(sd, tmp / "m.safetensors") == 21
    # the merge changed the adapted weights and kept the rest: against the base itself
    with ckptbridge.open(base) as ck:
        changed = [n for n in ck.keys() if torch_bytes(sd[n]) != ck.get_tensor(n, raw=True).tobytes()]
    assert len(changed) == 14  # peft_test.cpp: 14 LoRA modules merged
    assert all(n.endswith("_proj.weight") for n in changed)


def test_every_dtype_loads_as_its_torch_dtype():
    src = F / "safetensors_single/model.safetensors"
    sd = ckt.load_state_dict(src)
    assert assert_state_dict_equals_checkpoint(sd, src) == 16
    assert sd["mask"].dtype == torch.bool and sd["layers.0.attn.q.kernel"].dtype == torch.bfloat16
    assert sd["empty"].shape == (0, 4)


def test_non_tensor_leaves_must_be_dropped_explicitly():
    src = F / "torch_with_extras/checkpoint.pt"
    with pytest.raises(ckptbridge.MappingError) as e:
        ckt.load_state_dict(src)
    assert "drop_non_tensors" in str(e.value) and "epoch (int)" in str(e.value)
    sd = ckt.load_state_dict(src, drop_non_tensors=True)
    assert list(sd) == ["model/w"]
    assert torch.equal(sd["model/w"], torch.load(src)["model"]["w"])


def test_load_state_dict_many_times_does_not_crash():
    # Repeated runs into memory (a fresh cancel token and callbacks each time). Run in a child:
    # a crash there is a failure here, not the end of the test session.
    child = textwrap.dedent(f"""
        import ckptbridge.torch as ckt
        for _ in range(40):
            for src in ({str(F / "safetensors_single/model.safetensors")!r},
                        {str(F / "openpi_pi0_tiny_full/release/params")!r}):
                sd = ckt.load_state_dict(src)
        print("done", len(sd))
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=600,
                       env={"PYTHONPATH": str(REPO / "python"), **__import__("os").environ})
    assert (r.returncode, r.stdout) == (0, "done 50\n"), r.stderr[-2000:]


# ---- save_state_dict ----

def test_saved_safetensors_equal_the_clis_conversion_of_the_same_data(tmp, cli):
    # torch_zip/model.pt, loaded by real torch: a tied pair (embed.weight / lm_head.weight, one
    # storage), a view into a larger storage (big_rows_2_to_5), a transposed non-contiguous view
    # (embed_t), bfloat16, every integer type, an empty tensor.
    src = F / "torch_zip/model.pt"
    sd = torch.load(src)
    assert sd["embed.weight"].data_ptr() == sd["lm_head.weight"].data_ptr()
    assert not sd["embed_t"].is_contiguous()
    report = ckt.save_state_dict(sd, tmp / "py/model.safetensors")
    cli("convert", src, tmp / "cli/model.safetensors", "-q")
    assert (tmp / "py/model.safetensors").read_bytes() == (tmp / "cli/model.safetensors").read_bytes()
    assert len(report.tensors) == 19 and report.ok
    back = ckt.load_state_dict(tmp / "py/model.safetensors")
    assert list(back) == list(sd)
    for name, t in sd.items():
        assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
        assert torch_bytes(back[name]) == torch_bytes(t), name
    # each name of the tied pair is its own tensor in the file (safetensors cannot alias)
    assert back["embed.weight"].data_ptr() != back["lm_head.weight"].data_ptr()


def test_saved_formats_read_back_by_torch_and_numpy(tmp):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 4, generator=g)
    sd = {"w": w, "tied": w, "h": torch.randn(3, 5, generator=g).to(torch.bfloat16), "i": torch.arange(6).view(2, 3),
          "m": torch.tensor([True, False]), "t": torch.randn(4, 6, generator=g).t()}
    ckt.save_state_dict(sd, tmp / "m.pt")
    loaded = torch.load(tmp / "m.pt")  # Debian's PyTorch reads what we wrote
    assert list(loaded) == list(sd)
    for n, t in sd.items():
        assert loaded[n].dtype == t.dtype and torch_bytes(loaded[n]) == torch_bytes(t), n
    ckt.save_state_dict({k: v for k, v in sd.items() if k != "h"}, tmp / "m.npz")
    with np.load(tmp / "m.npz") as z:
        assert sorted(z.files) == sorted(k for k in sd if k != "h")
        for n in z.files:
            assert z[n].tobytes() == torch_bytes(sd[n]), n
    # metadata lands in safetensors' __metadata__
    ckt.save_state_dict(sd, tmp / "m.safetensors", metadata={"format": "pt", "who": "test"})
    with ckptbridge.open(tmp / "m.safetensors") as ck:
        assert ck.metadata == {"format": "pt", "who": "test"}
        assert ck.keys() == list(sd)


def test_save_state_dict_errors(tmp):
    with pytest.raises(ckptbridge.UsageError, match="must be a tensor") as e:
        ckt.save_state_dict({"a": [1, 2]}, tmp / "x.safetensors")
    assert e.value.path == "a"
    with pytest.raises(ckptbridge.MappingError):  # npz has no bfloat16
        ckt.save_state_dict({"h": torch.zeros(2, dtype=torch.bfloat16)}, tmp / "x.npz")
    ckt.save_state_dict({"a": torch.zeros(2)}, tmp / "x.safetensors")
    with pytest.raises(ckptbridge.UsageError, match="exists"):  # overwrite=True replaces it
        ckt.save_state_dict({"a": torch.ones(2)}, tmp / "x.safetensors")
    ckt.save_state_dict({"a": torch.ones(2)}, tmp / "x.safetensors", overwrite=True)
    assert torch.equal(ckt.load_state_dict(tmp / "x.safetensors")["a"], torch.ones(2))
    assert sorted(p.name for p in tmp.iterdir()) == ["x.safetensors"]
