// The KV-cache decoder (passes/kv_cache.h) against the full-window plan it is built from:
// at every position p of a random token sequence, the decoder fed tokens 0..p one at a time
// must give the logits the full-window plan gives at row p. The full-window plans are checked
// against PyTorch elsewhere (tests/e2e, models/*_test.cc); here they are the independent
// reference. Covers the unfused attention of `ptc model gpt2|llama` graphs (learned position
// embeddings; rotary tables) and the fused `attention` op of the PyTorch-exported GPT (mask
// computed from a buffer).
#include <cmath>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "compiler/driver/driver.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "passes/kv_cache.h"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/generate.h"

namespace ptc {
namespace {

plan::Plan CompileFamily(const std::string& family, std::map<std::string, std::string> overrides,
                         int64_t T) {
  auto model = models::BuildModel(family, "tiny", overrides);
  EXPECT_TRUE(model.ok()) << model.status();
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 1}, {"seq", T}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", family, io);
  EXPECT_TRUE(module.ok()) << module.status();
  driver::CompileOptions co;
  co.dims = io.dims;
  auto plan = driver::CompileModule(*std::move(module), co);
  EXPECT_TRUE(plan.ok()) << plan.status();
  return *std::move(plan);
}

// Runs the decoder over `ids` one position at a time and compares with the full window.
void ExpectDecodeMatchesFullWindow(const plan::Plan& full, int64_t vocab, uint64_t seed) {
  const ir::Function* main = full.module->main();
  const ir::Value* ids_param = nullptr;
  for (const ir::Value* p : main->params()) {
    if (!p->is_param()) ids_param = p;
  }
  ASSERT_NE(ids_param, nullptr);
  const int64_t T = ids_param->type().shape[1];
  std::mt19937_64 rng(seed);
  std::vector<int64_t> ids(T);
  for (int64_t& t : ids) t = static_cast<int64_t>(rng() % vocab);
  auto full_exec = cpu::Executor::Create(full);
  ASSERT_TRUE(full_exec.ok()) << full_exec.status();
  auto want = (*full_exec)->Run({{ids_param->name(), ir::Tensor::FromVector(ir::DType::kI64, {1, T}, ids)}});
  ASSERT_TRUE(want.ok()) << want.status();
  const int64_t V = (*want)[0].shape()[2];

  passes::KvDecoderInfo info;
  auto dp = passes::MakeDecodePlan(full, &info);
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_EQ(info.max_positions, T);
  EXPECT_GE(info.caches.size(), 2u);
  // Every cache is written in place: its kv_cache_write output is bound to the cache.
  int inplace = 0;
  for (const auto& b : dp->memory.buffers) inplace += b.offset == -1 && absl::StartsWith(b.alias_of, "kv_cache.");
  EXPECT_EQ(inplace, static_cast<int>(info.caches.size()));

  const ir::Function* f = dp->module->main();
  cpu::ExecutorOptions eo;
  eo.function = f->name();
  for (const ir::Value* p : f->params()) {
    if (p->is_param()) eo.shared_state[p->name()] = dp->module->tensors().at(p->name());
  }
  auto exec = cpu::Executor::Create(*dp, eo);
  ASSERT_TRUE(exec.ok()) << exec.status();
  for (int64_t p = 0; p < T; ++p) {
    auto got = (*exec)->Run({{info.ids_input, ir::Tensor::FromVector(ir::DType::kI64, {1, 1}, std::vector<int64_t>{ids[p]})},
                             {info.pos_input, ir::Tensor::FromVector(ir::DType::kI64, {1}, std::vector<int64_t>{p})}});
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ((*got)[0].shape(), (ir::Shape{1, 1, V}));
    const float* g = (*got)[0].data_as<float>();
    const float* w = (*want)[0].data_as<float>() + p * V;
    double scale = 0;
    for (int64_t v = 0; v < V; ++v) scale = std::max(scale, std::fabs(double{w[v]}));
    for (int64_t v = 0; v < V; ++v) {
      ASSERT_LE(std::fabs(double{g[v]} - w[v]), 1e-4 * (std::fabs(double{w[v]}) + scale))
          << "position " << p << " logit " << v << ": decoder " << g[v] << ", full window " << w[v];
    }
  }
}

TEST(KvCacheTest, Gpt2TinyDecodeMatchesFullWindow) {
  plan::Plan full = CompileFamily("gpt2", {{"layers", "2"}}, 24);
  ExpectDecodeMatchesFullWindow(full, 256, 1);
}

TEST(KvCacheTest, LlamaTinyWithRotaryDecodeMatchesFullWindow) {
  plan::Plan full = CompileFamily("llama", {{"layers", "2"}}, 24);
  // match-rotary made one rotary per q and k; the decoder rotates at pos (tables gathered).
  auto count = [](const ir::Function& f) {
    int n = 0;
    for (const auto& node : f.nodes()) n += node->op() == "rotary";
    return n;
  };
  EXPECT_EQ(count(*full.module->main()), 2 * 2);
  auto dp = passes::MakeDecodePlan(full);
  ASSERT_TRUE(dp.ok()) << dp.status();
  EXPECT_EQ(count(*dp->module->main()), 2 * 2);
  ExpectDecodeMatchesFullWindow(full, 256, 2);
}

TEST(KvCacheTest, PytorchExportedGptDecodeMatchesFullWindow) {
  driver::CompileOptions co;
  co.dims = {{"batch", 1}, {"seq", 16}};
  auto full = driver::CompileOnnxFile(std::string(PTC_E2E_DATA_DIR) + "/gpt_opset17/model.onnx", co);
  ASSERT_TRUE(full.ok()) << full.status();
  int attention = 0;
  for (const auto& n : full->module->main()->nodes()) attention += n->op() == "attention";
  EXPECT_GT(attention, 0) << "expected the fused attention op in this graph";
  ExpectDecodeMatchesFullWindow(*full, 97, 3);
}

// Exports of torch 2.11's dynamo exporter (tests/e2e/README.md): ptc's GPT at opset 20 (SDPA
// decomposed, its batched k^T) and transformers' Llama at opset 23 with the exporter's
// optimizer (ONNX Attention, RMSNormalization, RotaryEmbedding, folded weight transposes).
TEST(KvCacheTest, DynamoExportsDecodeMatchesFullWindow) {
  for (const auto& [name, vocab] : {std::pair{"gpt_dynamo_opset20", 97},
                                    std::pair{"hf_llama_dynamo_opset23", 101}}) {
    SCOPED_TRACE(name);
    driver::CompileOptions co;
    co.dims = {{"batch", 1}, {"seq", 16}};
    auto full = driver::CompileOnnxFile(
        std::string(PTC_E2E_DATA_DIR) + "/" + name + "/model.onnx", co);
    ASSERT_TRUE(full.ok()) << full.status();
    int attention = 0;
    for (const auto& n : full->module->main()->nodes()) attention += n->op() == "attention";
    EXPECT_EQ(attention, 2) << "one fused attention per layer";
    ExpectDecodeMatchesFullWindow(*full, vocab, 5);
  }
}

TEST(KvCacheTest, GreedyTextIsTheSameWithAndWithoutTheCache) {
  for (const char* family : {"gpt2", "llama"}) {
    plan::Plan full = CompileFamily(family, {{"layers", "2"}}, 48);
    auto dp = passes::MakeDecodePlan(full);
    ASSERT_TRUE(dp.ok()) << dp.status();
    generate::GenerateOptions o;
    o.prompt = "The quick ";
    o.tokens = 30;  // prompt + output stay within the window of 48
    o.temperature = 0;
    auto plain = generate::Generate(full, o);
    ASSERT_TRUE(plain.ok()) << plain.status();
    o.decode_plan = &*dp;
    auto cached = generate::Generate(full, o);
    ASSERT_TRUE(cached.ok()) << cached.status();
    EXPECT_EQ(plain->size(), 30u);
    EXPECT_EQ(*cached, *plain) << family;
  }
}

TEST(KvCacheTest, SampledGenerationPastTheWindowRuns) {
  plan::Plan full = CompileFamily("gpt2", {{"layers", "1"}}, 16);
  auto dp = passes::MakeDecodePlan(full);
  ASSERT_TRUE(dp.ok()) << dp.status();
  generate::GenerateOptions o;
  o.prompt = "a prompt longer than the sixteen-token window";
  o.tokens = 40;  // the cache restarts with the last 8 tokens several times
  o.decode_plan = &*dp;
  auto text = generate::Generate(full, o);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->size(), 40u);
}

TEST(KvCacheTest, EncoderDecoderGivesAClearError) {
  auto model = models::BuildModel("seq2seq", "tiny", {});
  ASSERT_TRUE(model.ok()) << model.status();
  driver::CompileOptions co;
  co.dims = {{"batch", 1}, {"src_seq", 8}, {"tgt_seq", 8}, {"seq", 8}};
  onnx_import::ImportOptions io;
  io.dims = co.dims;
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "seq2seq", io);
  ASSERT_TRUE(module.ok()) << module.status();
  auto full = driver::CompileModule(*std::move(module), co);
  ASSERT_TRUE(full.ok()) << full.status();
  auto dp = passes::MakeDecodePlan(*full);
  ASSERT_FALSE(dp.ok());
  EXPECT_TRUE(absl::StartsWith(dp.status().message(), "cannot build a KV-cache decoder: "))
      << dp.status();
  EXPECT_TRUE(absl::StrContains(dp.status().message(), "more than one input")) << dp.status();
}

}  // namespace
}  // namespace ptc
