// openpi variant detection (profiles/openpi_variants.h): trees with the shapes openpi's
// shipped Gemma variants have (gemma.get_config, ../shared/research/openpi.md §2.1: gemma_2b
// 2048/18/16384/8/1/256, gemma_300m 1024/18/4096/8/1/256, LoRA r16/a16 and r32/a32), metadata
// only (no bytes: detection reads shapes), and the error for LoRA on an unshipped shape.
#include <gtest/gtest.h>

#include "core/errors.h"
#include "profiles/openpi_variants.h"

namespace ckb {
namespace {

const std::string L = "params/PaliGemma/llm/layers/";

void put_openpi_variants(Node& root, const std::string& path, Shape shape, DType dt = DType::BF16) {
  Node* cur = &root;
  std::size_t a = 0;
  for (std::size_t b; (b = path.find('/', a)) != std::string::npos; a = b + 1) {
    const std::string k = path.substr(a, b - a);
    Node* next = cur->find(k);
    cur = next ? next : &cur->add(k, Node::dict());
  }
  cur->add(path.substr(a), Node::tensor(Tensor{{dt, std::move(shape)}, nullptr}));
}

// One expert's stacked layer weights (openpi.md §3 shapes), LoRA factors of rank `r` when r > 0.
void expert(Node& root, const std::string& s, std::int64_t depth, std::int64_t width, std::int64_t mlp, std::int64_t heads,
            std::int64_t kv, std::int64_t hd, std::int64_t r, bool fused = false) {
  if (fused) {
    put_openpi_variants(root, L + "attn/qkv_einsum" + s + "/w", {depth, 3, heads, width, hd});
    if (r) put_openpi_variants(root, L + "attn/qkv_einsum" + s + "/lora_a", {depth, 3, heads, width, r}, DType::F32);
  } else {
    put_openpi_variants(root, L + "attn/q_einsum" + s + "/w", {depth, heads, width, hd});
    put_openpi_variants(root, L + "attn/kv_einsum" + s + "/w", {depth, 2, kv, width, hd});
    if (r) {
      put_openpi_variants(root, L + "attn/q_einsum" + s + "/lora_a", {depth, heads, width, r}, DType::F32);
      put_openpi_variants(root, L + "attn/kv_einsum" + s + "/lora_a", {depth, 2, kv, width, r}, DType::F32);
    }
  }
  put_openpi_variants(root, L + "attn/attn_vec_einsum" + s + "/w", {depth, heads, hd, width});
  put_openpi_variants(root, L + "mlp" + s + "/gating_einsum", {depth, 2, width, mlp});
  put_openpi_variants(root, L + "mlp" + s + "/linear", {depth, mlp, width});
  if (r) {
    put_openpi_variants(root, L + "attn/attn_vec_einsum" + s + "/lora_a", {depth, heads, hd, r}, DType::F32);
    put_openpi_variants(root, L + "mlp" + s + "/gating_einsum_lora_a", {depth, 2, width, r}, DType::F32);
    put_openpi_variants(root, L + "mlp" + s + "/linear_lora_a", {depth, mlp, r}, DType::F32);
  }
}

TEST(OpenpiVariants, Pi0LoraFinetuneIsDetectedWithItsAlpha) {
  Node root = Node::dict();
  expert(root, "", 18, 2048, 16384, 8, 1, 256, 16);
  expert(root, "_1", 18, 1024, 4096, 8, 1, 256, 32);
  put_openpi_variants(root, "params/action_time_mlp_in/kernel", {2048, 1024}, DType::F32);  // pi0's, not pi05's time_mlp_in
  const OpenpiDetection d = detect_openpi(root);
  ASSERT_EQ(d.experts.size(), 2u);
  EXPECT_EQ(d.experts[0].variant, "gemma_2b_lora");
  EXPECT_EQ(d.experts[1].variant, "gemma_300m_lora");
  EXPECT_FALSE(d.pi05);
  EXPECT_EQ(d.experts[1].lora.size(), 5u);
  const auto cfg = openpi_configs_from_detection(d, "ckpt");
  ASSERT_EQ(cfg.size(), 2u);
  EXPECT_EQ(cfg[0].attn->rank, 16);
  EXPECT_EQ(cfg[0].attn->alpha, 16.0);
  EXPECT_EQ(cfg[0].ffn->alpha, 16.0);
  EXPECT_EQ(cfg[1].attn->rank, 32);
  EXPECT_EQ(cfg[1].ffn->alpha, 32.0);
  EXPECT_EQ(d.summary()[0],
            "expert 0: gemma_2b_lora (width 2048, depth 18, mlp 16384, heads 8, kv heads 1, head dim 256, LoRA ranks "
            "attn_vec_einsum=16 gating_einsum=16 kv_einsum=16 linear=16 q_einsum=16)");
  EXPECT_EQ(d.summary()[2], "model: pi0");
}

TEST(OpenpiVariants, BaseVariantsAndPi05NeedNoConfig) {
  Node root = Node::dict();
  expert(root, "", 18, 2048, 16384, 8, 1, 256, 0);
  expert(root, "_1", 18, 1024, 4096, 8, 1, 256, 0);
  put_openpi_variants(root, L + "pre_attention_norm_1/Dense_0/kernel", {18, 1024, 3072}, DType::F32);  // adaRMS modulation
  put_openpi_variants(root, "params/time_mlp_in/kernel", {1024, 1024}, DType::F32);
  const OpenpiDetection d = detect_openpi(root);
  EXPECT_EQ(d.experts[0].variant, "gemma_2b");
  EXPECT_EQ(d.experts[1].variant, "gemma_300m");
  EXPECT_TRUE(d.pi05);
  EXPECT_FALSE(d.has_lora());
  const auto cfg = openpi_configs_from_detection(d, "ckpt");
  ASSERT_EQ(cfg.size(), 2u);
  EXPECT_FALSE(cfg[0].attn || cfg[0].ffn || cfg[1].attn || cfg[1].ffn);
  Node dummy = Node::dict();
  expert(dummy, "", 4, 64, 128, 8, 1, 16, 0);
  EXPECT_EQ(detect_openpi(dummy).experts.at(0).variant, "dummy");
}

TEST(OpenpiVariants, LoraOnOneExpertOrAnUnshippedShapeAsksForTheConfig) {
  // A rank the shipped gemma_2b_lora does not have (8), and a fused-qkv MHA expert with LoRA.
  Node root = Node::dict();
  expert(root, "", 18, 2048, 16384, 8, 1, 256, 8);
  expert(root, "_1", 2, 32, 96, 4, 4, 8, 0, /*fused=*/true);
  const OpenpiDetection d = detect_openpi(root);
  EXPECT_EQ(d.experts[0].variant, "");
  EXPECT_TRUE(d.experts[1].fused_qkv);
  EXPECT_EQ(d.experts[1].kv_heads, 4);
  try {
    openpi_configs_from_detection(d, "ckpt/params");
    ADD_FAILURE() << "no error";
  } catch (const MappingError& e) {
    const std::string m = e.what();
    EXPECT_EQ(e.path(), "ckpt/params");
    EXPECT_NE(m.find("expert 0: no shipped variant (width 2048, depth 18, mlp 16384, heads 8, kv heads 1, head dim 256, "
                     "LoRA ranks attn_vec_einsum=8 gating_einsum=8 kv_einsum=8 linear=8 q_einsum=8)"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("expert 1: no shipped variant (width 32, depth 2, mlp 96, heads 4, kv heads 4, head dim 8, fused "
                     "qkv_einsum, no LoRA)"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find("{\"experts\": [{\"attn\": {\"rank\": 8, \"alpha\": ALPHA, \"rslora\": false}, \"ffn\": {\"rank\": 8, "
                     "\"alpha\": ALPHA}}, {}]}"),
              std::string::npos)
        << m;
  }
}

}  // namespace
}  // namespace ckb
