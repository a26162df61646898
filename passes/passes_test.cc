// Pass behaviour that FileCheck tests cannot show: numerics of rewritten graphs (evaluated with
// the CPU kernels before and after), Module::tensors() handling, option-driven declines.
#include <cmath>
#include <random>

#include "codegen/cpu/kernel.h"
#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/exporter.h"
#include "compiler/onnx/importer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "passes/matcher.h"
#include "passes/pass.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<ir::Module> Parse(const std::string& text) {
  auto m = ir::ParseModule(text);
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : std::make_unique<ir::Module>();
}

// Runs the main function node by node with EvaluateNode (constants from the module).
std::vector<ir::Tensor> Evaluate(const ir::Module& m, const std::vector<ir::Tensor>& args) {
  const ir::Function& fn = *m.main();
  std::map<const ir::Value*, ir::Tensor> env;
  for (size_t i = 0; i < fn.params().size(); ++i) env[fn.params()[i]] = args[i];
  for (const auto& n : fn.nodes()) {
    if (n->op() == "constant") {
      auto t = ConstantTensor(m, n->output());
      EXPECT_TRUE(t.has_value()) << n->Describe();
      env[n->output()] = *t;
      continue;
    }
    std::vector<ir::Tensor> ins;
    for (const ir::Value* v : n->inputs()) ins.push_back(env.at(v));
    auto outs = cpu::EvaluateNode(*n, ins);
    EXPECT_TRUE(outs.ok()) << outs.status();
    if (!outs.ok()) return {};
    for (size_t i = 0; i < n->num_outputs(); ++i) env[n->output(i)] = (*outs)[i];
  }
  std::vector<ir::Tensor> results;
  for (const ir::Value* r : fn.results()) results.push_back(env.at(r));
  return results;
}

ir::Tensor RandomTensor(const ir::Shape& shape, uint32_t seed) {
  ir::Tensor t(ir::DType::kF32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-3.f, 3.f);
  for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<float>()[i] = d(rng);
  return t;
}

absl::Status RunPasses(ir::Module& m, const std::string& list) {
  auto passes = CreatePasses(list);
  if (!passes.ok()) return passes.status();
  Pipeline p;
  for (auto& pass : *passes) p.Add(std::move(pass));
  return p.Run(m);
}

// A GPT MLP block tail as PyTorch exports it: bias add, erf GELU, second bias, residual.
constexpr char kMlp[] = R"(func @main(%h: f32[4,64], %b1: f32[64], %p: f32[4,64], %b2: f32[64], %x: f32[4,64]) -> (f32[4,64], f32[4,64]) {
  %c1 = constant() {value=dense<f32[]: 1.4142135>} : f32[]
  %c2 = constant() {value=dense<f32[]: 1.0>} : f32[]
  %c3 = constant() {value=dense<f32[]: 0.5>} : f32[]
  %u = add(%h, %b1) : f32[4,64]
  %d = div(%u, %c1) : f32[4,64]
  %e = erf(%d) : f32[4,64]
  %a = add(%e, %c2) : f32[4,64]
  %m = mul(%u, %a) : f32[4,64]
  %g = mul(%m, %c3) : f32[4,64]
  %q = add(%p, %b2) : f32[4,64]
  %r = add(%x, %q) : f32[4,64]
  return %g, %r
}
)";

TEST(FuseElementwiseTest, FusedGraphComputesTheSameValues) {
  auto before = Parse(kMlp);
  auto after = Parse(kMlp);
  ASSERT_TRUE(RunPasses(*after, "fuse-elementwise,dce").ok());
  std::string text = ir::PrintModule(*after);
  ASSERT_THAT(text, HasSubstr("\"gelu\""));  // the gelu was matched and fused with its bias
  int fused = 0;
  for (const auto& n : after->main()->nodes()) fused += n->op() == "fused_elementwise";
  EXPECT_EQ(fused, 2) << text;
  std::vector<ir::Tensor> args = {RandomTensor({4, 64}, 1), RandomTensor({64}, 2),
                                  RandomTensor({4, 64}, 3), RandomTensor({64}, 4),
                                  RandomTensor({4, 64}, 5)};
  auto want = Evaluate(*before, args);
  auto got = Evaluate(*after, args);
  ASSERT_EQ(want.size(), 2u);
  ASSERT_EQ(got.size(), 2u);
  for (int r = 0; r < 2; ++r) {
    for (int64_t i = 0; i < want[r].num_elements(); ++i) {
      double w = want[r].GetDouble(i), g = got[r].GetDouble(i);
      ASSERT_NEAR(g, w, 1e-5 * (1 + std::fabs(w))) << "result " << r << " element " << i;
    }
  }
}

// RMSNorm as models/llama.cc exports it, with its result also read by a residual add.
constexpr char kRmsNorm[] = R"(func @main(%x: f32[6,40], %w: f32[40]) -> (f32[6,40]) {
  %two = constant() {value=dense<f32[]: 2.0>} : f32[]
  %eps = constant() {value=dense<f32[]: 1e-05>} : f32[]
  %sq = pow(%x, %two) : f32[6,40]
  %ms = reduce_mean(%sq) {axes=[1], keepdims=1} : f32[6,1]
  %a = add(%ms, %eps) : f32[6,1]
  %r = sqrt(%a) : f32[6,1]
  %n = div(%x, %r) : f32[6,40]
  %y = mul(%w, %n) : f32[6,40]
  %z = add(%x, %y) : f32[6,40]
  return %z
}
)";

// match-rms-norm: the CPU kernel of layer_norm {rms=1} computes what the six ops did; the ONNX
// export of the fused op (its ops at opset 17) imports back into a graph that the pass
// matches again and that computes the same.
TEST(MatchRmsNormTest, SameValuesAndExportRoundTrip) {
  auto before = Parse(kRmsNorm);
  auto after = Parse(kRmsNorm);
  ASSERT_TRUE(RunPasses(*after, "match-rms-norm,dce").ok());
  std::string text = ir::PrintModule(*after);
  ASSERT_THAT(text, HasSubstr("rms=1"));
  EXPECT_EQ(after->main()->nodes().size(), 2u) << text;
  std::vector<ir::Tensor> args = {RandomTensor({6, 40}, 7), RandomTensor({40}, 8)};
  auto want = Evaluate(*before, args);
  auto got = Evaluate(*after, args);
  ASSERT_EQ(want.size(), 1u);
  ASSERT_EQ(got.size(), 1u);
  for (int64_t i = 0; i < want[0].num_elements(); ++i) {
    const double w = want[0].GetDouble(i), g = got[0].GetDouble(i);
    ASSERT_NEAR(g, w, 1e-5 * (1 + std::fabs(w))) << "element " << i;
  }
  auto bytes = onnx_import::ExportOnnxBytes(*after);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto back = onnx_import::ImportOnnxBytes(*bytes, "", "rms.onnx");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_THAT(ir::PrintModule(**back), ::testing::Not(HasSubstr("layer_norm")));
  auto again = Evaluate(**back, args);
  ASSERT_EQ(again.size(), 1u);
  for (int64_t i = 0; i < want[0].num_elements(); ++i) {
    const double w = want[0].GetDouble(i), g = again[0].GetDouble(i);
    ASSERT_NEAR(g, w, 1e-5 * (1 + std::fabs(w))) << "element " << i;
  }
  ASSERT_TRUE(RunPasses(**back, "fold-constants,cse,match-rms-norm,dce").ok());
  EXPECT_THAT(ir::PrintModule(**back), HasSubstr("rms=1"));
}

TEST(FuseElementwiseTest, DeclinesAreCounted) {
  auto m = Parse(R"(func @main(%x: f32[4], %y: f32[4]) -> (f32[4], f32[4]) {
  %a = add(%x, %y) : f32[4]
  %b = exp(%a) : f32[4]
  return %b, %a
}
)");
  auto pass = CreateFuseElementwisePass();
  auto changed = pass->Run(*m);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(pass->counters().at("declined.multi-use"), 1);
}

TEST(FoldConstantsTest, LargeResultsGoToModuleTensors) {
  auto m = Parse(R"(func @main(%w: f32[4,8] {param}) -> (f32[8,4], f32[4,8]) {
  %c = constant() {ref="table"} : f32[4,8]
  %t = transpose(%c) {perm=[1, 0]} : f32[8,4]
  %n = neg(%w) : f32[4,8]
  return %t, %n
}
)");
  ir::Tensor table(ir::DType::kF32, {4, 8});
  for (int i = 0; i < 32; ++i) table.mutable_data_as<float>()[i] = static_cast<float>(i);
  m->tensors()["table"] = table;
  m->tensors()["w"] = ir::Tensor(ir::DType::kF32, {4, 8});
  ASSERT_TRUE(ir::Verify(*m).ok());
  ASSERT_TRUE(RunPasses(*m, "fold-constants,dce").ok());
  // 32 elements > 16: a new tensor referenced by a {ref} constant; the consumed "table" is
  // dropped by dce, the weight stays.
  ASSERT_EQ(m->tensors().count("table"), 0u);
  ASSERT_EQ(m->tensors().count("w"), 1u);
  ASSERT_EQ(m->tensors().count("fold.t"), 1u);
  const ir::Tensor& t = m->tensors().at("fold.t");
  ASSERT_EQ(t.shape(), (ir::Shape{8, 4}));
  for (int i = 0; i < 8; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_EQ(t.GetDouble(i * 4 + j), j * 8 + i);
  }
  EXPECT_THAT(ir::PrintModule(*m), HasSubstr("constant() {ref=\"fold.t\"} : f32[8,4]"));
}

TEST(FoldConstantsTest, SizeCapDeclinesAndCounts) {
  auto m = Parse(R"(func @main() -> (f32[64]) {
  %c = constant() {value=dense<f32[]: 1.5>} : f32[]
  %e = expand(%c) {shape=[64]} : f32[64]
  return %e
}
)");
  FoldConstantsOptions o;
  o.max_folded_bytes = 255;  // 64 x f32 = 256 bytes
  auto pass = CreateFoldConstantsPass(o);
  auto changed = pass->Run(*m);
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
  EXPECT_EQ(pass->counters().at("declined.too-large"), 1);
  o.max_folded_bytes = 256;
  auto pass2 = CreateFoldConstantsPass(o);
  auto changed2 = pass2->Run(*m);
  ASSERT_TRUE(changed2.ok());
  EXPECT_TRUE(*changed2);
}

TEST(DefaultPipelineTest, KeepsGptLikeGraphValid) {
  auto m = Parse(kMlp);
  ASSERT_TRUE(RunPasses(*m, "default").ok());
  EXPECT_TRUE(ir::Verify(*m).ok());
}

}  // namespace
}  // namespace ptc::passes
