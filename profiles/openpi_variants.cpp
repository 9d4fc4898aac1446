// openpi variant detection from shapes (profiles/openpi_variants.h).
#include "profiles/openpi_variants.h"

#include <algorithm>

#include "core/errors.h"

namespace ckb {
namespace {

const std::string kLayers = "params/PaliGemma/llm/layers/";

struct Variant {
  const char* name;
  std::int64_t width, depth, mlp_dim, heads, kv_heads, head_dim;
  std::int64_t lora_rank;  // 0: no LoRA
  double alpha;
};

// openpi's gemma.get_config (research/openpi.md §2.1).
const Variant kVariants[] = {
    {"dummy", 64, 4, 128, 8, 1, 16, 0, 0},
    {"gemma_300m", 1024, 18, 4096, 8, 1, 256, 0, 0},
    {"gemma_300m_lora", 1024, 18, 4096, 8, 1, 256, 32, 32.0},
    {"gemma_2b", 2048, 18, 16384, 8, 1, 256, 0, 0},
    {"gemma_2b_lora", 2048, 18, 16384, 8, 1, 256, 16, 16.0},
};

const Shape* leaf_shape(const Node& root, const std::string& path) {
  const Node* n = find_path(root, path);
  return n && n->is_tensor() ? &n->tensor().info.shape : nullptr;
}

bool is_attn(const std::string& module) { return module.find("einsum") != std::string::npos && module != "gating_einsum"; }

const Variant* match(const OpenpiExpertShape& e) {
  std::int64_t attn = 0, ffn = 0;
  bool uniform = true;
  for (const auto& [m, r] : e.lora) {
    std::int64_t& slot = is_attn(m) ? attn : ffn;
    if (slot && slot != r) uniform = false;
    slot = r;
  }
  for (const auto& v : kVariants) {
    if (v.width != e.width || v.depth != e.depth || v.mlp_dim != e.mlp_dim || v.heads != e.heads ||
        v.kv_heads != e.kv_heads || v.head_dim != e.head_dim || e.fused_qkv)
      continue;
    if (e.lora.empty() && v.lora_rank == 0) return &v;
    // openpi's shipped LoRA variants put factors on every attention einsum and both MLP weights.
    if (!e.lora.empty() && uniform && v.lora_rank && attn == v.lora_rank && ffn == v.lora_rank && e.lora.size() == 5)
      return &v;
  }
  return nullptr;
}

}  // namespace

nlohmann::ordered_json OpenpiExpertShape::to_json() const {
  nlohmann::ordered_json j;
  j["expert"] = suffix.empty() ? 0 : std::stoi(suffix.substr(1));
  j["variant"] = variant.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(variant);
  j["width"] = width;
  j["depth"] = depth;
  j["mlp_dim"] = mlp_dim;
  j["num_heads"] = heads;
  j["num_kv_heads"] = kv_heads;
  j["head_dim"] = head_dim;
  j["attention"] = fused_qkv ? "qkv_einsum" : "q_einsum + kv_einsum";
  j["lora_ranks"] = lora;
  return j;
}

bool OpenpiDetection::has_lora() const {
  return std::any_of(experts.begin(), experts.end(), [](const auto& e) { return !e.lora.empty(); });
}

std::vector<std::string> OpenpiDetection::summary() const {
  std::vector<std::string> out;
  for (const auto& e : experts) {
    std::string s = "expert " + std::string(e.suffix.empty() ? "0" : e.suffix.substr(1)) + ": " +
                    (e.variant.empty() ? std::string("no shipped variant") : e.variant) + " (width " +
                    std::to_string(e.width) + ", depth " + std::to_string(e.depth) + ", mlp " + std::to_string(e.mlp_dim) +
                    ", heads " + std::to_string(e.heads) + ", kv heads " + std::to_string(e.kv_heads) + ", head dim " +
                    std::to_string(e.head_dim) + (e.fused_qkv ? ", fused qkv_einsum" : "");
    if (e.lora.empty()) {
      s += ", no LoRA)";
    } else {
      s += ", LoRA ranks";
      for (const auto& [m, r] : e.lora) s += " " + m + "=" + std::to_string(r);
      s += ")";
    }
    out.push_back(s);
  }
  out.push_back(std::string("model: ") + (pi05 ? "pi05 (adaRMS time conditioning)" : "pi0"));
  return out;
}

nlohmann::ordered_json OpenpiDetection::to_json() const {
  nlohmann::ordered_json j;
  j["pi05"] = pi05;
  j["experts"] = nlohmann::ordered_json::array();
  for (const auto& e : experts) j["experts"].push_back(e.to_json());
  return j;
}

OpenpiDetection detect_openpi(const Node& root) {
  OpenpiDetection d;
  for (const std::string s : {"", "_1"}) {
    OpenpiExpertShape e;
    e.suffix = s;
    const Shape* q = leaf_shape(root, kLayers + "attn/q_einsum" + s + "/w");      // [L, N, D, H]
    const Shape* kv = leaf_shape(root, kLayers + "attn/kv_einsum" + s + "/w");    // [L, 2, K, D, H]
    const Shape* qkv = leaf_shape(root, kLayers + "attn/qkv_einsum" + s + "/w");  // [L, 3, N, D, H]
    const Shape* gate = leaf_shape(root, kLayers + "mlp" + s + "/gating_einsum"); // [L, 2, D, F]
    if (q && q->size() == 4 && kv && kv->size() == 5) {
      e.depth = (*q)[0];
      e.heads = (*q)[1];
      e.width = (*q)[2];
      e.head_dim = (*q)[3];
      e.kv_heads = (*kv)[2];
    } else if (qkv && qkv->size() == 5) {
      e.fused_qkv = true;
      e.depth = (*qkv)[0];
      e.heads = e.kv_heads = (*qkv)[2];
      e.width = (*qkv)[3];
      e.head_dim = (*qkv)[4];
    } else {
      continue;
    }
    if (gate && gate->size() == 4) e.mlp_dim = (*gate)[3];
    // LoRA: the rank is the last axis of every lora_a (the einsums' `.../lora_a`, the MLP's `*_lora_a`)
    for (const char* m : {"q_einsum", "kv_einsum", "qkv_einsum", "attn_vec_einsum"})
      if (const Shape* a = leaf_shape(root, kLayers + "attn/" + m + s + "/lora_a"); a && !a->empty())
        e.lora[m] = a->back();
    for (const char* m : {"gating_einsum", "linear"})
      if (const Shape* a = leaf_shape(root, kLayers + "mlp" + s + "/" + m + "_lora_a"); a && !a->empty())
        e.lora[m] = a->back();
    if (const Variant* v = match(e)) e.variant = v->name;
    d.experts.push_back(std::move(e));
  }
  // pi05: adaRMS modulation (`Dense_0` inside the LLM) or pi05's own `time_mlp_in` (pi0 has
  // `action_time_mlp_in`: whole path components are compared, not substrings).
  visit_leaves(root, [&](const Path& p, const Node&) {
    bool in_llm = false;
    for (const auto& k : p) {
      in_llm |= k == "llm";
      d.pi05 |= (in_llm && k == "Dense_0") || k == "time_mlp_in";
    }
  });
  return d;
}

std::vector<OpenpiExpertConfig> openpi_configs_from_detection(const OpenpiDetection& d, const std::string& source) {
  std::vector<OpenpiExpertConfig> out;
  bool unknown = false;
  for (const auto& e : d.experts) {
    OpenpiExpertConfig c;
    if (!e.lora.empty()) {
      const Variant* v = nullptr;
      for (const auto& x : kVariants)
        if (e.variant == x.name) v = &x;
      if (!v) {
        unknown = true;
      } else {
        c.attn = LoraModuleConfig{v->lora_rank, v->alpha, false};
        c.ffn = LoraModuleConfig{v->lora_rank, v->alpha, false};
      }
    }
    out.push_back(c);
  }
  if (!unknown) return out;
  // What to fill in: the measured ranks, alpha left to the user (openpi never stores it).
  std::string msg = "LoRA factors on a shape that matches no shipped openpi variant; openpi does not store LoRA alpha, "
                    "so it must be given. Measured:";
  for (const auto& line : d.summary()) msg += "\n  " + line;
  std::string cfg = "{\"experts\": [";
  for (std::size_t i = 0; i < d.experts.size(); ++i) {
    const auto& e = d.experts[i];
    std::int64_t attn = 0, ffn = 0;
    for (const auto& [m, r] : e.lora) (is_attn(m) ? attn : ffn) = r;
    cfg += i ? ", {" : "{";
    if (attn) cfg += "\"attn\": {\"rank\": " + std::to_string(attn) + ", \"alpha\": ALPHA, \"rslora\": false}";
    if (ffn) cfg += std::string(attn ? ", " : "") + "\"ffn\": {\"rank\": " + std::to_string(ffn) + ", \"alpha\": ALPHA}";
    cfg += "}";
  }
  cfg += "]}";
  msg += "\nWrite this to a file with each ALPHA set to your training config's LoRAConfig alpha (openpi's default "
         "alpha is 1.0; the shipped variants use alpha = rank) and pass it as --openpi-config FILE:\n  " + cfg;
  throw MappingError(source, msg);
}

}  // namespace ckb
