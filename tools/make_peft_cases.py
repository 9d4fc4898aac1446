#!/usr/bin/env python3
"""Writes PEFT golden cases for the merge-lora PEFT profile (tests/data/peft_cases/<case>/):
base/model.safetensors, adapter/ (adapter_config.json + adapter_model.safetensors) and
merged/model.safetensors = PEFT's own merge_and_unload. Needs torch, transformers, peft.

Cases cover what the bundled peft_llama_lora fixture does not: DoRA, rsLoRA with
rank_pattern/alpha_pattern, an Embedding LoRA, modules_to_save, and GPT-2's Conv1D layers
(fan_in_fan_out) with lora_bias. LoRA B (the embedding's A and B, DoRA magnitudes, biases) are randomised after
get_peft_model, since PEFT initialises them to zero and the merge would be the identity.
Usage: make_peft_cases.py OUT_DIR
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM


def tiny_llama(seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(seed):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=80, n_positions=32, n_embd=32, n_layer=2, n_head=4)
    return GPT2LMHeadModel(cfg).eval()


def randomise_adapter(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_embedding_A" in name or "lora_embedding_B" in name:  # PEFT zeros B, and A for embeddings
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif "lora_magnitude_vector" in name:
                p.mul_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif "modules_to_save" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)


def contiguous_state(model):
    out, seen = {}, {}
    for k, v in model.state_dict().items():
        ptr = v.data_ptr()
        if ptr in seen:  # tied weights: safetensors stores one
            continue
        seen[ptr] = k
        out[k] = v.detach().contiguous().clone()
    return out


def case(out, name, make_model, seed, **lora):
    d = os.path.join(out, name)
    for sub in ("base", "adapter", "merged"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    model = make_model(seed)
    save_file(contiguous_state(model), os.path.join(d, "base", "model.safetensors"))
    peft_model = get_peft_model(model, LoraConfig(**lora))
    randomise_adapter(peft_model, seed + 1)
    peft_model.save_pretrained(os.path.join(d, "adapter"))
    x = torch.randint(0, model.config.vocab_size, (2, 7), generator=torch.Generator().manual_seed(seed + 2))
    with torch.no_grad():
        online = peft_model(x).logits
        merged = peft_model.merge_and_unload()
        after = merged(x).logits
    save_file(contiguous_state(merged), os.path.join(d, "merged", "model.safetensors"))
    info = {"lora": {k: (list(v) if isinstance(v, (set, tuple)) else v) for k, v in lora.items()},
            "merged_vs_online_max_abs": float((after - online).abs().max())}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(name, info["merged_vs_online_max_abs"])


def main():
    out = sys.argv[1]
    lin = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    case(out, "llama_dora", tiny_llama, 10, r=4, lora_alpha=8, target_modules=lin, use_dora=True)
    case(out, "llama_rslora_patterns", tiny_llama, 20, r=4, lora_alpha=8, target_modules=lin + ["embed_tokens"],
         use_rslora=True, rank_pattern={"q_proj": 2, "layers.1.mlp.down_proj": 6}, alpha_pattern={"v_proj": 32},
         modules_to_save=["lm_head"])
    case(out, "gpt2_fan_in_fan_out_bias", tiny_gpt2, 30, r=4, lora_alpha=16, target_modules=["c_attn", "c_proj", "c_fc"],
         fan_in_fan_out=True, lora_bias=True)


if __name__ == "__main__":
    main()
