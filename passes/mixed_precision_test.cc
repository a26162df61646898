// mixed-precision-bf16 / -fp16 on a real exported model (tests/data/e2e/gpt_opset17, PyTorch's
// GPT export imported with batch=2 seq=16): where the casts land, that the verifier accepts
// the result, and that parameters and results keep their types. The small placement cases
// are text tests in tests/passes/mixed-precision/.
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "codegen/cpu/kernel.h"
#include "compiler/ir/op_util.h"
#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "passes/pass.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

std::string SourceDir() {
  const char* env = std::getenv("PTC_SOURCE_DIR");
  return env ? env : ".";
}

std::unique_ptr<ir::Module> ImportGpt() {
  onnx_import::ImportOptions opts;
  opts.dims = {{"batch", 2}, {"seq", 16}};
  auto module =
      onnx_import::ImportOnnxFile(SourceDir() + "/tests/data/e2e/gpt_opset17/model.onnx", opts);
  EXPECT_TRUE(module.ok()) << module.status();
  return module.ok() ? std::move(*module) : nullptr;
}

struct Snapshot {
  std::vector<ir::TensorType> params, results;
  int matmuls = 0;
};

Snapshot Take(const ir::Function& f) {
  Snapshot s;
  for (const ir::Value* p : f.params()) s.params.push_back(p->type());
  for (const ir::Value* r : f.results()) s.results.push_back(r->type());
  for (const auto& n : f.nodes()) s.matmuls += n->op() == "matmul" || n->op() == "gemm";
  return s;
}

void CheckPlacement(ir::DType low, const std::string& pass_name) {
  std::unique_ptr<ir::Module> module = ImportGpt();
  ASSERT_NE(module, nullptr);
  const Snapshot before = Take(*module->main());
  ASSERT_GT(before.matmuls, 8);  // 2 layers x 4 projections + 2 attention products + LM head

  auto passes = CreatePasses(pass_name);
  ASSERT_TRUE(passes.ok()) << passes.status();
  ASSERT_EQ(passes->size(), 1u);
  EXPECT_EQ((*passes)[0]->name(), pass_name);
  Pipeline pipeline;  // verifies after the pass
  pipeline.Add(std::move((*passes)[0]));
  ASSERT_TRUE(pipeline.Run(*module).ok());
  ASSERT_TRUE(ir::Verify(*module).ok());

  const ir::Function& f = *module->main();
  const Snapshot after = Take(f);
  EXPECT_EQ(after.params, before.params);    // f32 master weights, i64 ids
  EXPECT_EQ(after.results, before.results);  // f32 logits
  EXPECT_EQ(after.matmuls, before.matmuls);
  int low_matmuls = 0, f32_ops = 0, casts = 0;
  std::set<const ir::Value*> cast_sources[2];
  for (const auto& n : f.nodes()) {
    const std::string& op = n->op();
    if (op == "matmul" || op == "gemm" || op == "fused_matmul" || op == "attention") {
      for (const ir::Value* in : n->inputs()) {
        EXPECT_EQ(in->type().dtype, low) << n->Describe();
      }
      EXPECT_EQ(n->output()->type().dtype, low) << n->Describe();
      ++low_matmuls;
    } else if (op == "layer_norm" || op == "softmax" || op == "log_softmax" ||
               op.rfind("reduce_", 0) == 0 || op == "erf") {
      for (const ir::Value* in : n->inputs()) {
        EXPECT_EQ(in->type().dtype, ir::DType::kF32) << n->Describe();
      }
      EXPECT_EQ(n->output()->type().dtype, ir::DType::kF32) << n->Describe();
      ++f32_ops;
    } else if (op == "cast") {
      ++casts;
      // One cast per value and direction.
      const bool down = n->output()->type().dtype == low;
      EXPECT_TRUE(cast_sources[down].insert(n->input(0)).second)
          << "second cast of %" << n->input(0)->name() << ": " << n->Describe();
    }
    // Every node's types are what the registry infers (the verifier checks this too).
    auto types = ir::InferNodeTypes(*n, module.get());
    ASSERT_TRUE(types.ok()) << n->Describe() << ": " << types.status();
    EXPECT_EQ(*types, ir::OutputTypes(*n)) << n->Describe();
  }
  EXPECT_EQ(low_matmuls, before.matmuls);
  EXPECT_GE(f32_ops, 2 * 3 + 1);  // 2 layers x (2 layer_norm + softmax) + the final layer_norm
  EXPECT_GT(casts, 0);
  // The logits are the LM-head matmul's output cast back under their own name.
  const ir::Value* logits = f.results()[0];
  ASSERT_NE(logits->producer(), nullptr);
  EXPECT_EQ(logits->producer()->op(), "cast");
  EXPECT_EQ(logits->producer()->input(0)->producer()->op(), "matmul");

  const auto& counters = pipeline.timings()[0].counters;
  EXPECT_EQ(counters.at("low.matmul"), before.matmuls);
  EXPECT_GT(counters.at("cast.down"), 0);
  EXPECT_GT(counters.at("cast.up"), 0);
  EXPECT_EQ(counters.count("kept-f32.matmul"), 0u);
}

TEST(MixedPrecisionTest, GptBf16) { CheckPlacement(ir::DType::kBF16, "mixed-precision-bf16"); }
TEST(MixedPrecisionTest, GptFp16) { CheckPlacement(ir::DType::kF16, "mixed-precision-fp16"); }

TEST(MixedPrecisionTest, SecondRunChangesNothing) {
  std::unique_ptr<ir::Module> module = ImportGpt();
  ASSERT_NE(module, nullptr);
  ASSERT_TRUE(CreateMixedPrecisionPass({})->Run(*module).ok());
  const size_t nodes = module->main()->nodes().size();
  auto again = CreateMixedPrecisionPass({})->Run(*module);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(*again);
  EXPECT_EQ(module->main()->nodes().size(), nodes);
}

TEST(MixedPrecisionTest, LowDtypeMustBeHalf) {
  std::unique_ptr<ir::Module> module = ImportGpt();
  ASSERT_NE(module, nullptr);
  auto r = CreateMixedPrecisionPass({.low = ir::DType::kF64})->Run(*module);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("bf16 or f16"), std::string::npos) << r.status();
}

// fold-param-casts after mixed-precision-bf16 (an inference plan): the matmul weights become
// bf16 parameters holding exactly the cast's values, no cast reads a parameter any more, and
// a training step (assign nodes) is left alone.
TEST(FoldParamCastsTest, InferenceWeightsStoredInTheLowDtype) {
  std::unique_ptr<ir::Module> module = ImportGpt();
  ASSERT_NE(module, nullptr);
  const std::map<std::string, ir::Tensor> f32_weights = module->tensors();
  auto passes = CreatePasses("mixed-precision-bf16,fold-param-casts,dce");
  ASSERT_TRUE(passes.ok()) << passes.status();
  Pipeline pipeline;
  for (auto& p : *passes) pipeline.Add(std::move(p));
  ASSERT_TRUE(pipeline.Run(*module).ok());
  ASSERT_TRUE(ir::Verify(*module).ok());
  int bf16_params = 0;
  for (const ir::Value* p : module->main()->params()) {
    if (!p->is_param() || p->type().dtype != ir::DType::kBF16) continue;
    ++bf16_params;
    const ir::Tensor& now = module->tensors().at(p->name());
    EXPECT_EQ(now.type(), p->type()) << p->name();
    const ir::Tensor& before = f32_weights.at(p->name());
    for (int64_t i = 0; i < now.num_elements(); i += 97) {
      const double want = before.GetDouble(i);
      EXPECT_NEAR(now.GetDouble(i), want, 1e-2 * std::fabs(want) + 1e-30) << p->name() << " " << i;
    }
  }
  EXPECT_GE(bf16_params, 8) << "the 2 layers' 4 projection weights";
  for (const auto& n : module->main()->nodes()) {
    if (n->op() == "cast") EXPECT_FALSE(n->input(0)->is_param()) << n->Describe();
  }
  // A function with an assign (a training step) keeps its f32 master weights.
  ir::Module train;
  ir::Function* fn = train.AddFunction("main");
  ir::Value* w = fn->AddParam("w", {ir::DType::kF32, {4}}, {"param"});
  train.tensors()["w"] = ir::Tensor(ir::DType::kF32, {4});
  ir::Node* c = fn->AddNode("cast", {w}, {{ir::DType::kBF16, {4}}}, {{"to", ir::DType::kBF16}});
  ir::Node* back = fn->AddNode("cast", {c->output()}, {{ir::DType::kF32, {4}}},
                               {{"to", ir::DType::kF32}});
  fn->AddNode("assign", {w, back->output()}, {}, {});
  fn->set_results({c->output()});
  auto fold = CreatePasses("fold-param-casts");
  ASSERT_TRUE(fold.ok());
  auto changed = (*fold)[0]->Run(train);
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_FALSE(*changed);
  EXPECT_EQ(w->type().dtype, ir::DType::kF32);
}

// Runs `fn` node by node on the CPU kernels (params from `module.tensors()` or `inputs`).
std::vector<ir::Tensor> RunOnCpu(const ir::Module& module, const ir::Function& fn,
                                 const std::map<std::string, ir::Tensor>& inputs) {
  std::map<const ir::Value*, ir::Tensor> env;
  for (const ir::Value* p : fn.params()) {
    env.emplace(p, p->is_param() ? module.tensors().at(p->name()) : inputs.at(p->name()));
  }
  for (const auto& n : fn.nodes()) {
    std::vector<ir::Tensor> ins;
    for (const ir::Value* v : n->inputs()) ins.push_back(env.at(v));
    auto outs = cpu::EvaluateNode(*n, ins);
    EXPECT_TRUE(outs.ok()) << n->Describe() << ": " << outs.status();
    if (!outs.ok()) return {};
    for (size_t i = 0; i < outs->size(); ++i) env.emplace(n->output(i), (*outs)[i]);
  }
  std::vector<ir::Tensor> results;
  for (const ir::Value* r : fn.results()) results.push_back(env.at(r));
  return results;
}

// A tied LM head after mixed-precision-bf16: the table is read by the embedding gather and, through
// a transpose, by the LM head's cast. Both fold: one bf16 table, the transpose giving bf16, the
// gathered rows widened by a cast; the logits are the same bits (rounding twice to bf16 is
// rounding once).
TEST(FoldParamCastsTest, TiedEmbeddingFoldsThroughGatherAndTranspose) {
  auto parsed = ir::ParseModule(R"(module {}

func @main(%ids: i64[2,4], %wte: f32[16,8] {param}) -> (bf16[2,4,16], f32[2,4,8]) {
  %e = gather(%wte, %ids) {axis=0} : f32[2,4,8]
  %eb = cast(%e) {to=bf16} : bf16[2,4,8]
  %wt = transpose(%wte) {perm=[1, 0]} : f32[8,16]
  %wtb = cast(%wt) {to=bf16} : bf16[8,16]
  %logits = matmul(%eb, %wtb) : bf16[2,4,16]
  return %logits, %e
}
)");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ir::Module& m = **parsed;
  std::vector<float> table(16 * 8);
  for (size_t i = 0; i < table.size(); ++i) table[i] = 0.37f * std::sin(1.3f * i) + 1e-3f * i;
  m.tensors()["wte"] = ir::Tensor::FromVector(ir::DType::kF32, {16, 8}, table);
  const std::map<std::string, ir::Tensor> in = {
      {"ids", ir::Tensor::FromVector(ir::DType::kI64, {2, 4},
                                     std::vector<int64_t>{0, 3, 15, 7, 7, 1, 2, 9})}};
  const std::vector<ir::Tensor> before = RunOnCpu(m, *m.main(), in);
  ASSERT_EQ(before.size(), 2u);
  auto fold = CreatePasses("fold-param-casts,dce");
  ASSERT_TRUE(fold.ok());
  Pipeline pipeline;
  for (auto& p : *fold) pipeline.Add(std::move(p));
  ASSERT_TRUE(pipeline.Run(m).ok());
  ASSERT_TRUE(ir::Verify(m).ok()) << ir::PrintModule(m);
  EXPECT_EQ(m.tensors().at("wte").dtype(), ir::DType::kBF16);
  const std::string text = ir::PrintModule(m);
  EXPECT_NE(text.find("transpose(%wte) {perm=[1, 0]} : bf16[8,16]"), std::string::npos) << text;
  EXPECT_NE(text.find("gather(%wte, %ids) {axis=0} : bf16[2,4,8]"), std::string::npos) << text;
  EXPECT_EQ(text.find("cast(%wt)"), std::string::npos) << text;
  const std::vector<ir::Tensor> after = RunOnCpu(m, *m.main(), in);
  ASSERT_EQ(after.size(), 2u);
  EXPECT_TRUE(after[0].BitEquals(before[0]));
  // The embedding output keeps its f32 type and now holds the bf16-rounded rows.
  EXPECT_EQ(after[1].type(), before[1].type());
  for (int64_t i = 0; i < after[1].num_elements(); ++i) {
    EXPECT_NEAR(after[1].GetDouble(i), before[1].GetDouble(i),
                4e-3 * std::fabs(before[1].GetDouble(i)));
  }
}

}  // namespace
}  // namespace ptc::passes
