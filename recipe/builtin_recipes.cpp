// The built-in recipes' JSON text.
#include "recipe/builtin_recipes.h"

#include <map>

namespace ckb {
namespace {
const std::map<std::string, std::string>& table() {
  static const std::map<std::string, std::string> t = {
      {"identity", R"({"recipe": "identity",
        "description": "every leaf to the same name, unchanged",
        "rules": [{"map": "{path:*}", "to": "{path}"}]})"},
      // openpi JAX -> PI0Pytorch (openpi.md §4.2); see profiles/openpi.h for what runs first.
      {"openpi", R"json({
 "recipe": "openpi",
 "description": "openpi JAX parameters (pi0 / pi05, released or training layout after value unwrapping and LoRA merge) -> PI0Pytorch state dict (openpi.md \u00a74.2)",
 "stages": [
  {
   "recipe": "openpi-root",
   "description": "drop the 'params' root of openpi's parameter tree",
   "rules": [
    {
     "map": "params/{p:*}",
     "to": "{p}"
    }
   ]
  },
  {
   "recipe": "openpi-split",
   "description": "split fused kv and gate/up projections",
   "rules": [
    {
     "split": "PaliGemma/llm/layers/attn/kv_einsum/w",
     "axis": 1,
     "to": [
      "PaliGemma/llm/layers/attn/kv_einsum/k",
      "PaliGemma/llm/layers/attn/kv_einsum/v"
     ]
    },
    {
     "split": "PaliGemma/llm/layers/mlp/gating_einsum",
     "axis": 1,
     "to": [
      "PaliGemma/llm/layers/mlp/gate",
      "PaliGemma/llm/layers/mlp/up"
     ]
    },
    {
     "split": "PaliGemma/llm/layers/attn/kv_einsum_1/w",
     "axis": 1,
     "to": [
      "PaliGemma/llm/layers/attn/kv_einsum_1/k",
      "PaliGemma/llm/layers/attn/kv_einsum_1/v"
     ]
    },
    {
     "split": "PaliGemma/llm/layers/mlp_1/gating_einsum",
     "axis": 1,
     "to": [
      "PaliGemma/llm/layers/mlp_1/gate",
      "PaliGemma/llm/layers/mlp_1/up"
     ]
    },
    {
     "map": "{p:*}",
     "to": "{p}"
    }
   ]
  },
  {
   "recipe": "openpi-pytorch-names",
   "description": "unstack layers and lay out every tensor as PI0Pytorch names it",
   "sizes": {
    "c": 1,
    "one": 1
   },
   "rules": [
    {
     "map": "PaliGemma/img/embedding/kernel",
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.embeddings.patch_embedding.weight",
     "ops": [
      {
       "rearrange": "kh kw ch o -> o ch kh kw"
      }
     ]
    },
    {
     "map": "PaliGemma/img/embedding/bias",
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.embeddings.patch_embedding.bias"
    },
    {
     "map": "PaliGemma/img/pos_embedding",
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.embeddings.position_embedding.weight",
     "ops": [
      {
       "rearrange": "one n d -> (one n) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/LayerNorm_0/scale",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.layer_norm1.weight"
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/LayerNorm_0/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.layer_norm1.bias"
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/LayerNorm_1/scale",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.layer_norm2.weight"
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/LayerNorm_1/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.layer_norm2.bias"
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MlpBlock_0/Dense_0/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.mlp.fc1.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MlpBlock_0/Dense_0/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.mlp.fc1.bias"
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MlpBlock_0/Dense_1/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.mlp.fc2.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MlpBlock_0/Dense_1/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.mlp.fc2.bias"
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.q_proj.weight",
     "ops": [
      {
       "rearrange": "d vn vh -> (vn vh) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/query/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.q_proj.bias",
     "ops": [
      {
       "rearrange": "vn vh -> (vn vh)"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.k_proj.weight",
     "ops": [
      {
       "rearrange": "d vn vh -> (vn vh) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/key/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.k_proj.bias",
     "ops": [
      {
       "rearrange": "vn vh -> (vn vh)"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/value/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.v_proj.weight",
     "ops": [
      {
       "rearrange": "d vn vh -> (vn vh) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/value/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.v_proj.bias",
     "ops": [
      {
       "rearrange": "vn vh -> (vn vh)"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/out/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.out_proj.weight",
     "ops": [
      {
       "rearrange": "vn vh d -> d (vn vh)"
      }
     ]
    },
    {
     "unstack": "PaliGemma/img/Transformer/encoderblock/MultiHeadDotProductAttention_0/out/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.encoder.layers.{i}.self_attn.out_proj.bias"
    },
    {
     "map": "PaliGemma/img/Transformer/encoder_norm/scale",
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.post_layernorm.weight"
    },
    {
     "map": "PaliGemma/img/Transformer/encoder_norm/bias",
     "to": "paligemma_with_expert.paligemma.model.vision_tower.vision_model.post_layernorm.bias"
    },
    {
     "map": "PaliGemma/img/head/kernel",
     "to": "paligemma_with_expert.paligemma.model.multi_modal_projector.linear.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "map": "PaliGemma/img/head/bias",
     "to": "paligemma_with_expert.paligemma.model.multi_modal_projector.linear.bias"
    },
    {
     "map": "PaliGemma/llm/embedder/input_embedding",
     "to": "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/q_einsum/w",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.self_attn.q_proj.weight",
     "ops": [
      {
       "rearrange": "n0 d h0 -> (n0 h0) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/kv_einsum/k",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.self_attn.k_proj.weight",
     "ops": [
      {
       "rearrange": "c k0 d h0 -> (c k0 h0) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/kv_einsum/v",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.self_attn.v_proj.weight",
     "ops": [
      {
       "rearrange": "c k0 d h0 -> (c k0 h0) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/attn_vec_einsum/w",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.self_attn.o_proj.weight",
     "ops": [
      {
       "rearrange": "n0 h0 d -> d (n0 h0)"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/mlp/gate",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.mlp.gate_proj.weight",
     "ops": [
      {
       "rearrange": "c d f -> (c f) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/mlp/up",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.mlp.up_proj.weight",
     "ops": [
      {
       "rearrange": "c d f -> (c f) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/mlp/linear",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.mlp.down_proj.weight",
     "ops": [
      {
       "rearrange": "f d -> d f"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_attention_norm/scale",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.input_layernorm.weight"
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_ffw_norm/scale",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.post_attention_layernorm.weight"
    },
    {
     "map": "PaliGemma/llm/final_norm/scale",
     "to": "paligemma_with_expert.paligemma.model.language_model.norm.weight"
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_attention_norm/Dense_0/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.input_layernorm.dense.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_attention_norm/Dense_0/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.input_layernorm.dense.bias"
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_ffw_norm/Dense_0/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.post_attention_layernorm.dense.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_ffw_norm/Dense_0/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.paligemma.model.language_model.layers.{i}.post_attention_layernorm.dense.bias"
    },
    {
     "map": "PaliGemma/llm/final_norm/Dense_0/kernel",
     "to": "paligemma_with_expert.paligemma.model.language_model.norm.dense.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "map": "PaliGemma/llm/final_norm/Dense_0/bias",
     "to": "paligemma_with_expert.paligemma.model.language_model.norm.dense.bias"
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/q_einsum_1/w",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.self_attn.q_proj.weight",
     "ops": [
      {
       "rearrange": "n1 d h1 -> (n1 h1) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/kv_einsum_1/k",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.self_attn.k_proj.weight",
     "ops": [
      {
       "rearrange": "c k1 d h1 -> (c k1 h1) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/kv_einsum_1/v",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.self_attn.v_proj.weight",
     "ops": [
      {
       "rearrange": "c k1 d h1 -> (c k1 h1) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/attn/attn_vec_einsum_1/w",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.self_attn.o_proj.weight",
     "ops": [
      {
       "rearrange": "n1 h1 d -> d (n1 h1)"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/mlp_1/gate",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.mlp.gate_proj.weight",
     "ops": [
      {
       "rearrange": "c d f -> (c f) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/mlp_1/up",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.mlp.up_proj.weight",
     "ops": [
      {
       "rearrange": "c d f -> (c f) d"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/mlp_1/linear",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.mlp.down_proj.weight",
     "ops": [
      {
       "rearrange": "f d -> d f"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_attention_norm_1/scale",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.input_layernorm.weight"
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_ffw_norm_1/scale",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.post_attention_layernorm.weight"
    },
    {
     "map": "PaliGemma/llm/final_norm_1/scale",
     "to": "paligemma_with_expert.gemma_expert.model.norm.weight"
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_attention_norm_1/Dense_0/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.input_layernorm.dense.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_attention_norm_1/Dense_0/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.input_layernorm.dense.bias"
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_ffw_norm_1/Dense_0/kernel",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.post_attention_layernorm.dense.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "unstack": "PaliGemma/llm/layers/pre_ffw_norm_1/Dense_0/bias",
     "over": "i",
     "axis": 0,
     "to": "paligemma_with_expert.gemma_expert.model.layers.{i}.post_attention_layernorm.dense.bias"
    },
    {
     "map": "PaliGemma/llm/final_norm_1/Dense_0/kernel",
     "to": "paligemma_with_expert.gemma_expert.model.norm.dense.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "map": "PaliGemma/llm/final_norm_1/Dense_0/bias",
     "to": "paligemma_with_expert.gemma_expert.model.norm.dense.bias"
    },
    {
     "map": "{proj}/kernel",
     "to": "{proj}.weight",
     "ops": [
      {
       "rearrange": "a b -> b a"
      }
     ]
    },
    {
     "map": "{proj}/bias",
     "to": "{proj}.bias"
    },
    {
     "fill": "paligemma_with_expert.paligemma.lm_head.weight",
     "copy_of": "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight"
    },
    {
     "fill": "paligemma_with_expert.gemma_expert.lm_head.weight",
     "value": 0.0,
     "dtype": "F32",
     "shape": [
      "vocab",
      "width_1"
     ]
    }
   ]
  }
 ]
})json"},
  };
  return t;
}
}  // namespace

std::optional<std::string> builtin_recipe(const std::string& name) {
  auto it = table().find(name);
  if (it == table().end()) return std::nullopt;
  return it->second;
}

std::string builtin_recipe_names() {
  std::string s;
  for (const auto& [k, v] : table()) s += (s.empty() ? "" : ", ") + k;
  return s;
}

}  // namespace ckb
