// Training through the REAL pipeline: ptc::driver::CompileOnnxFile / CompileModule with
// CompileOptions.train (autodiff -> default passes -> memory plan) and the CPU executor
// (runtime/cpu), checked against PyTorch (tests/e2e/make_references.py):
//   (a) the step-1 gradient of every parameter (the grad.<weight> results) matches torch
//       autograd (tests/data/e2e/<case>/grads/*.pb) within rtol 1e-4;
//   (b) 5 AdamW steps (hyperparameters from meta.json) on the same batch give torch.optim.AdamW's
//       losses within rtol 1e-3;
//   (c) smoke: seq2seq and llama from ptc::models with --loss train (loss falls over 20 steps);
//   (d) passes "none" and the default passes give the same 5-step run bit for bit;
// for the GPT-2 style case (gpt_loss) and transformers' Llama written out (llama_loss).
// The references are read with tests/e2e's TensorProto reader (independent of ptc's importer).
#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "compiler/driver/driver.h"
#include "compiler/ir/ir.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/onnx/importer.h"
#include "compiler/support/status.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/file_util.h"
#include "runtime/cpu/trainer.h"
#include "runtime/plan/plan.h"
#include "tests/e2e/tensor_proto_reader.h"
#include "tests/e2e/torch_training_cases.h"

namespace ptc {
namespace {

// The tests run with WORKING_DIRECTORY = the source root.
const char kDataDir[] = "tests/data/e2e/";

struct Reference {
  std::string dir;
  nlohmann::json meta;
  std::map<std::string, ir::Tensor> inputs;  // by graph input name
};

void LoadReference(const std::string& name, Reference& ref) {
  ref.dir = std::string(kDataDir) + name + "/";
  std::ifstream mf(ref.dir + "meta.json");
  ASSERT_TRUE(mf) << "missing " << ref.dir << "meta.json (run from the source root; regenerate "
                  << "with /usr/bin/python3 tests/e2e/make_references.py)";
  ref.meta = nlohmann::json::parse(mf);
  ASSERT_TRUE(ref.meta.contains("training")) << ref.dir << "meta.json has no training section";
  int i = 0;
  for (const auto& in : ref.meta["inputs"]) {
    auto t = e2e::ReadTensorProtoFile(ref.dir + "input_" + std::to_string(i++) + ".pb");
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->name, in.get<std::string>());
    ref.inputs[in.get<std::string>()] = t->tensor;
  }
}

driver::CompileOptions TrainCompileOptions(const Reference& ref, const std::string& passes) {
  driver::CompileOptions o;
  o.train = true;
  o.passes = passes;
  for (auto& [k, v] : ref.meta["dims"].items()) o.dims[k] = v.get<int64_t>();
  const auto& adam = ref.meta["training"]["adamw"];
  autodiff::TrainOptions& t = o.train_options;
  t.optimizer = "adamw";
  t.lr = adam["lr"].get<double>();
  t.beta1 = adam["beta1"].get<double>();
  t.beta2 = adam["beta2"].get<double>();
  t.eps = adam["eps"].get<double>();
  t.weight_decay = adam["weight_decay"].get<double>();
  t.keep_gradients = true;
  return o;
}

// Element-wise |got - want| <= atol + rtol * |want|; reports the count and the worst ratio.
void ExpectClose(const ir::Tensor& got, const ir::Tensor& want, double rtol, double atol,
                 const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what << ": shape " << ir::ShapeToString(got.shape())
                                       << " vs reference " << ir::ShapeToString(want.shape());
  int64_t bad = 0, worst_i = -1;
  double worst = 0;
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const double g = got.GetDouble(i), w = want.GetDouble(i);
    const double allowed = atol + rtol * std::fabs(w);
    const double ratio = std::fabs(g - w) / allowed;
    if (!(ratio <= 1.0)) ++bad;
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_i = i;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << got.num_elements()
                    << " elements out of tolerance; worst at " << worst_i << ": got "
                    << (worst_i >= 0 ? got.GetDouble(worst_i) : 0.0) << ", want "
                    << (worst_i >= 0 ? want.GetDouble(worst_i) : 0.0) << " (" << worst
                    << "x the allowed error)";
}

struct Run {
  std::vector<double> losses;
  std::vector<ir::Tensor> first_outputs;  // outputs of step 1
  std::map<std::string, ir::Tensor> final_state;
};

// Runs `steps` training steps on the same batch through the CPU executor.
absl::StatusOr<Run> TrainSteps(const plan::Plan& plan,
                               const std::map<std::string, ir::Tensor>& batch, int steps) {
  PTC_ASSIGN_OR_RETURN(auto exec, cpu::Executor::Create(plan));
  if (!exec->is_training()) return absl::InternalError("plan is not a training step");
  Run run;
  for (int s = 0; s < steps; ++s) {
    PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> outs, exec->Run(batch));
    if (outs.empty()) return absl::InternalError("training step returned no results");
    run.losses.push_back(outs[0].GetDouble(0));
    if (s == 0) run.first_outputs = std::move(outs);
  }
  run.final_state = exec->State();
  return run;
}

class TorchLossReference : public ::testing::TestWithParam<std::string> {};

// (a) every parameter's gradient of step 1 against torch autograd.
TEST_P(TorchLossReference, GradientsMatchTorchAutograd) {
  Reference ref;
  LoadReference(GetParam(), ref);
  if (HasFatalFailure()) return;
  auto plan = driver::CompileOnnxFile(ref.dir + "model.onnx", TrainCompileOptions(ref, "default"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  auto run = TrainSteps(*plan, ref.inputs, 1);
  ASSERT_TRUE(run.ok()) << run.status();

  // Gradients by position (training.h contract: results loss, grad_norm, lr, then one gradient
  // per trainable weight in parameter order), not by result name: the default passes do not
  // keep the "grad.<weight>" names yet (see GradientResultsKeepTheirNames).
  const ir::Function& main = *plan->module->main();
  ASSERT_EQ(main.results().size(), run->first_outputs.size());
  std::vector<const ir::Value*> trainable;
  for (const ir::Value* p : main.params()) {
    if (p->is_param() && !p->flags().count("frozen")) trainable.push_back(p);
  }
  ASSERT_EQ(main.results().size(), 3 + trainable.size());
  std::map<std::string, const ir::Tensor*> grads;
  for (size_t i = 0; i < trainable.size(); ++i) {
    grads[trainable[i]->name()] = &run->first_outputs[3 + i];
  }
  const double rtol = 1e-4, atol = 1e-6;
  const auto& want_grads = ref.meta["training"]["grads"];
  ASSERT_GT(want_grads.size(), 0u);
  EXPECT_EQ(grads.size(), want_grads.size()) << "one grad.<weight> result per trainable weight";
  for (auto& [weight, file] : want_grads.items()) {
    auto want = e2e::ReadTensorProtoFile(ref.dir + file.get<std::string>());
    ASSERT_TRUE(want.ok()) << want.status();
    auto it = grads.find(weight);
    if (it == grads.end()) {
      ADD_FAILURE() << "no grad." << weight << " result in the compiled training step";
      continue;
    }
    ExpectClose(*it->second, want->tensor, rtol, atol, "d loss / d " + weight);
  }
  // The loss of step 1 is the forward loss torch computed.
  const double want_loss = ref.meta["training"]["adamw"]["losses"][0].get<double>();
  EXPECT_NEAR(run->losses[0], want_loss, 1e-5 * std::fabs(want_loss));
}

// The trainer finds gradients (--dump-gradients) by the "grad.<weight>" result names. KNOWN
// BUG: the `simplify` pass replaces the `grad.<w> = identity(d.<w>)` results by their operands,
// so with the default passes the results are named "d.<...>" and `ptc run --dump-gradients`
// finds none. Enable once passes keep result names.
TEST_P(TorchLossReference, GradientResultsKeepTheirNames) {
  Reference ref;
  LoadReference(GetParam(), ref);
  if (HasFatalFailure()) return;
  auto plan = driver::CompileOnnxFile(ref.dir + "model.onnx", TrainCompileOptions(ref, "default"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const ir::Function& main = *plan->module->main();
  for (auto& [weight, file] : ref.meta["training"]["grads"].items()) {
    bool found = false;
    for (const ir::Value* r : main.results()) found = found || r->name() == "grad." + weight;
    EXPECT_TRUE(found) << "no result named grad." << weight;
  }
}

// (b) 5 AdamW steps against torch.optim.AdamW's losses.
TEST_P(TorchLossReference, AdamWLossesMatchTorch) {
  Reference ref;
  LoadReference(GetParam(), ref);
  if (HasFatalFailure()) return;
  auto plan = driver::CompileOnnxFile(ref.dir + "model.onnx", TrainCompileOptions(ref, "default"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  const auto& want = ref.meta["training"]["adamw"]["losses"];
  ASSERT_EQ(want.size(), ref.meta["training"]["adamw"]["steps"].get<size_t>());
  auto run = TrainSteps(*plan, ref.inputs, static_cast<int>(want.size()));
  ASSERT_TRUE(run.ok()) << run.status();
  for (size_t s = 0; s < want.size(); ++s) {
    const double w = want[s].get<double>();
    EXPECT_NEAR(run->losses[s], w, 1e-3 * std::fabs(w)) << "loss before update " << s + 1;
  }
  // The losses must actually move (guards against a no-op optimizer matching step 1 only):
  // by far more than the tolerance (transformers' 0.02-std init moves them least, ~0.2).
  EXPECT_LT(run->losses.back(), run->losses.front() - 0.1);
  EXPECT_EQ(run->final_state.at("opt.step").GetDouble(0), static_cast<double>(want.size()));
}

// (d) the optimizing passes (fusion, remat, scheduling, in-place) do not change the numbers
// beyond rounding: with "default", GELU is one op (its own kernel and gelu_grad) instead of the
// exported erf chain, so the last bits differ. Losses agree to rtol 1e-6; the final weights and
// optimizer state to 1e-6 + 1e-4 relative, except that an element whose true gradient is 0
// (e.g. the key part of c_attn.bias: softmax ignores a constant added to every key) gets
// rounding noise that AdamW normalizes to steps of up to lr, so the bound there is
// steps * 2 * lr. (Remat alone is bit-exact: compiler/driver/memory_report_test.cc.)
TEST_P(TorchLossReference, DefaultPassesMatchNoPasses) {
  Reference ref;
  LoadReference(GetParam(), ref);
  if (HasFatalFailure()) return;
  const std::string model = ref.dir + "model.onnx";
  auto plan_none = driver::CompileOnnxFile(model, TrainCompileOptions(ref, "none"));
  ASSERT_TRUE(plan_none.ok()) << plan_none.status();
  auto plan_default = driver::CompileOnnxFile(model, TrainCompileOptions(ref, "default"));
  ASSERT_TRUE(plan_default.ok()) << plan_default.status();
  auto a = TrainSteps(*plan_none, ref.inputs, 5);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = TrainSteps(*plan_default, ref.inputs, 5);
  ASSERT_TRUE(b.ok()) << b.status();
  for (size_t s = 0; s < a->losses.size(); ++s) {
    EXPECT_NEAR(a->losses[s], b->losses[s], 1e-6 * std::fabs(a->losses[s]))
        << "loss of step " << s + 1;
  }
  ASSERT_EQ(a->final_state.size(), b->final_state.size());
  for (const auto& [name, ta] : a->final_state) {
    auto it = b->final_state.find(name);
    ASSERT_NE(it, b->final_state.end()) << name;
    const ir::Tensor& tb = it->second;
    ASSERT_EQ(ta.shape(), tb.shape()) << name;
    ASSERT_EQ(ta.dtype(), tb.dtype()) << name;
    ASSERT_EQ(ta.dtype(), ir::DType::kF32) << name;
    const double lr = ref.meta["training"]["adamw"]["lr"].get<double>();
    const bool weight = name.rfind("adam.", 0) != 0 && name.rfind("opt.", 0) != 0;
    int64_t differ = 0;
    double worst = 0;
    for (int64_t i = 0; i < ta.num_elements(); ++i) {
      const double x = ta.data_as<float>()[i], y = tb.data_as<float>()[i];
      const double err = std::fabs(x - y);
      worst = std::max(worst, err);
      const double noise = weight ? 5 * 2 * lr : 0.0;  // see above; moments: relative only
      if (err > 1e-6 + 1e-4 * std::fabs(x) && err > noise) ++differ;
    }
    EXPECT_EQ(differ, 0) << name << ": " << differ << " of " << ta.num_elements()
                         << " elements differ beyond 1e-6 + 1e-4 rel between passes none and "
                         << "default after 5 steps (worst abs " << worst << ")";
  }
}

// Models exported from PyTorch get the plan of ptc's own builder of the same shape
// (models/*.cc, as `ptc model` writes them): the same ops, node for node, on the CPU in f32 and
// for CUDA in bf16. The cases:
//   - llama_loss: transformers' modeling_llama written out (RMSNorm as pow / mean / rsqrt,
//     rotary tables computed in the forward from inv_freq and the positions, rotate_half,
//     repeat_kv, F.silu, an additive triu(full(min)) mask, nn.Linear's transposed weights,
//     where the bf16 plan's casts go before the transposes so they fold into the GEMMs);
//   - hf_llama_loss: transformers' LlamaForCausalLM itself (If nodes for squeeze of a dynamic
//     dim, its shifted loss);
//   - hf_gpt2_loss: transformers' GPT2LMHeadModel (Conv1D as Gemm on flattened activations, a
//     bool causal buffer filled with finfo(f32).min, its shifted loss);
//   - *_dynamo: the same models exported by torch 2.11's dynamo exporter (opset 20; ptc's
//     Llama and transformers 5.25's models: torch's SDPA decomposition with its safe softmax
//     and a batched k^T through [B*H, T, D], a mask with the batch dim, whole-tensor slices,
//     the labels shifted instead of the logits), at opset 23, where SDPA is one ONNX
//     Attention op, and with the exporter's optimizer (nn.Linear's w.T and the tied LM head
//     folded into copies, parameters again after the importer; the Llama at opset 23 with
//     RMSNormalization and RotaryEmbedding).
// A bias-free projection is a matmul in ptc's Llama ([in, out] weights) and a fused_matmul
// {trans_b=1} in the exports' ([out, in]): counted as one. The shifted loss adds its slices
// (the rows before the LM head, the labels) and the rows' slice_grad; reshapes are views and
// not compared.
struct OwnModelCase {
  std::string reference;
  std::string family;  // "llama" | "gpt2"
  bool shifted_loss;
};

class TorchExportPlan : public ::testing::TestWithParam<OwnModelCase> {};

TEST_P(TorchExportPlan, IsThePlanOfPtcsOwnModel) {
  const OwnModelCase& tc = GetParam();
  Reference ref;
  LoadReference(tc.reference, ref);
  if (HasFatalFailure()) return;
  absl::StatusOr<onnx::ModelProto> own;
  if (tc.family == "llama") {
    auto config = models::LlamaPreset("tiny");
    ASSERT_TRUE(config.ok()) << config.status();
    config->vocab = 101, config->layers = 2, config->dim = 32, config->heads = 4;
    config->kv_heads = 2, config->ffn = 88, config->with_loss = true;
    own = models::BuildLlama(*config);
  } else {
    auto config = models::Gpt2Preset("tiny");
    ASSERT_TRUE(config.ok()) << config.status();
    config->vocab = 101, config->layers = 2, config->dim = 32, config->heads = 4;
    config->seq = 64, config->with_loss = true;
    own = models::BuildGpt2(*config);
  }
  ASSERT_TRUE(own.ok()) << own.status();
  for (const auto& [target, precision] : {std::pair{"cpu", "fp32"}, std::pair{"cuda", "bf16"}}) {
    SCOPED_TRACE(absl::StrCat(target, " ", precision));
    driver::CompileOptions o = TrainCompileOptions(ref, "default");
    o.target = target;
    o.precision = precision;
    o.cuda_codegen = false;
    auto histogram = [](const plan::Plan& plan) {
      std::map<std::string, int> ops;
      for (const auto& n : plan.module->main()->nodes()) {
        std::string op = n->op();
        if (op == "reshape") continue;
        if (op == "matmul") op = "fused_matmul";
        if (op == "layer_norm" && n->GetInt("rms", 0).value_or(0) == 1) op = "layer_norm{rms}";
        ++ops[op];
      }
      return ops;
    };
    auto exported = driver::CompileOnnxFile(ref.dir + "model.onnx", o);
    ASSERT_TRUE(exported.ok()) << exported.status();
    onnx_import::ImportOptions io;
    io.dims = o.dims;
    auto module = onnx_import::ImportOnnxBytes(own->SerializeAsString(), "", "own", io);
    ASSERT_TRUE(module.ok()) << module.status();
    auto ours = driver::CompileModule(*std::move(module), o);
    ASSERT_TRUE(ours.ok()) << ours.status();
    std::map<std::string, int> got = histogram(*exported), want = histogram(*ours);
    if (tc.shifted_loss) {
      EXPECT_GT(got["slice"], 0) << "the shifted loss's slices";
      got.erase("slice");
      got.erase("slice_grad");
      // transformers 5 shifts the labels instead of the logits (pad with -100, then [:, 1:]):
      // a concat and its fill constant more.
      auto count = [](const std::map<std::string, int>& h, const std::string& op) {
        auto it = h.find(op);
        return it == h.end() ? 0 : it->second;
      };
      if (count(got, "concat") == count(want, "concat") + 1 &&
          count(got, "constant") == count(want, "constant") + 1) {
        --got["concat"];
        --got["constant"];
        if (got["concat"] == 0) got.erase("concat");
      }
      // In bf16 the LM head's rows are cast after their slice (the final norm then writes f32
      // and the cast is a node of its own, [B, T-1, D]), and so is their gradient: at most two
      // more casts than the unshifted loss.
      EXPECT_LE(got["cast"] - want["cast"], 2);
      EXPECT_GE(got["cast"], want["cast"]);
      got.erase("cast");
      want.erase("cast");
    }
    EXPECT_EQ(got, want);
    EXPECT_GT(got["linear_ce_loss"], 0);
    EXPECT_GT(got["attention_grad"], 0);
  }
}

INSTANTIATE_TEST_SUITE_P(
    E2e, TorchExportPlan,
    ::testing::Values(OwnModelCase{"llama_loss_opset17", "llama", false},
                      OwnModelCase{"hf_llama_loss_opset17", "llama", true},
                      OwnModelCase{"hf_gpt2_loss_opset17", "gpt2", true},
                      OwnModelCase{"llama_loss_dynamo_opset20", "llama", false},
                      OwnModelCase{"hf_llama_loss_dynamo_opset20", "llama", true},
                      OwnModelCase{"hf_gpt2_loss_dynamo_opset20", "gpt2", true},
                      OwnModelCase{"hf_llama_loss_dynamo_opset23", "llama", true},
                      OwnModelCase{"hf_gpt2_loss_dynamo_opset23", "gpt2", true},
                      OwnModelCase{"hf_gpt2_loss_dynamo_optimized_opset20", "gpt2", true},
                      OwnModelCase{"hf_llama_loss_dynamo_optimized_opset23", "llama", true}),
    [](const ::testing::TestParamInfo<OwnModelCase>& info) {
      const std::string& r = info.param.reference;
      // hf_gpt2_loss_dynamo_opset23 -> hf_gpt2_loss_dynamo_23; opset 14 / 17 / 20 dropped.
      const size_t at = r.find("_opset");
      return r.substr(at) == "_opset23" ? r.substr(0, at) + "_23" : r.substr(0, at);
    });

// LlamaForCausalLM's shifted loss, cross_entropy(logits[..., :-1, :], labels[..., 1:]): the
// slice goes before the LM head (simplify's slice.before-matmul), so the head and its loss
// still become one linear_ce_loss: no B x T x V logits in the step.
TEST(TorchExportPlan, ShiftedLossKeepsTheLmHeadFused) {
  Reference ref;
  LoadReference("llama_shifted_loss_opset17", ref);
  if (HasFatalFailure()) return;
  auto plan = driver::CompileOnnxFile(ref.dir + "model.onnx", TrainCompileOptions(ref, "default"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  int fused = 0;
  const int64_t vocab = 101;
  for (const auto& n : plan->module->main()->nodes()) {
    fused += n->op() == "linear_ce_loss";
    EXPECT_NE(n->op(), "softmax_ce_loss") << n->Describe();
    for (const ir::Value* out : n->outputs()) {
      const ir::Shape& shape = out->type().shape;
      const int64_t rows = shape.empty() ? 0 : out->type().num_elements() / shape.back();
      EXPECT_FALSE(shape.size() >= 2 && shape.back() == vocab && (rows == 2 * 16 || rows == 2 * 15))
          << "logits-sized (B x T x V or B x (T-1) x V) " << n->Describe();
    }
  }
  EXPECT_GE(fused, 1);
}

// A model whose parameters torch's ONNX optimizer folded into constants (the importer's
// "torch.folded_parameters", opset_adapter_test.cc) compiles for inference, not for training.
TEST(TorchExportPlan, FoldedParametersRefuseToTrain) {
  Reference ref;
  LoadReference("gpt_loss_dynamo_opset20", ref);
  if (HasFatalFailure()) return;
  driver::CompileOptions o = TrainCompileOptions(ref, "default");
  for (bool train : {true, false}) {
    onnx_import::ImportOptions io;
    io.dims = o.dims;
    auto module = onnx_import::ImportOnnxFile(ref.dir + "model.onnx", io);
    ASSERT_TRUE(module.ok()) << module.status();
    (*module)->metadata()["torch.folded_parameters"] = "1 parameters of the signature ...";
    o.train = train;
    auto plan = driver::CompileModule(*std::move(module), o);
    if (train) {
      ASSERT_FALSE(plan.ok());
      EXPECT_EQ(plan.status().code(), absl::StatusCode::kFailedPrecondition);
      EXPECT_NE(std::string(plan.status().message()).find("optimize=False"), std::string::npos)
          << plan.status();
    } else {
      EXPECT_TRUE(plan.ok()) << plan.status();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(E2e, TorchLossReference,
                         ::testing::ValuesIn(e2e::WithDynamoTrainingCases(
                             {"gpt_loss_opset17", "gpt_loss_opset14", "llama_loss_opset17",
                              "llama_loss_opset14", "llama_shifted_loss_opset17",
                              "hf_gpt2_loss_opset17", "hf_llama_loss_opset17",
                              "gpt_loss_dynamo_opset20", "llama_shifted_loss_dynamo_opset20"})));

// ---------------------------------------------------------------------------------------------
// (c) Smoke: the seq2seq and llama builders with --loss train end to end.

absl::StatusOr<plan::Plan> CompileBuilt(const onnx::ModelProto& model, const std::string& label,
                                        const std::map<std::string, int64_t>& dims,
                                        const std::string& passes = "default") {
  onnx_import::ImportOptions io;
  io.dims = dims;
  PTC_ASSIGN_OR_RETURN(auto module,
                       onnx_import::ImportOnnxBytes(model.SerializeAsString(), "", label, io));
  driver::CompileOptions o;
  o.train = true;
  o.passes = passes;
  o.dims = dims;
  o.train_options.optimizer = "adamw";
  o.train_options.lr = 3e-3;
  o.train_options.weight_decay = 0.01;
  o.train_options.grad_clip = 1.0;
  o.passes = passes;
  return driver::CompileModule(std::move(module), o);
}

// The tiny Llama of the tests below (vocab 64, 2 layers, dim 32, 4 heads with `kv_heads` KV
// heads (0: one per head), SwiGLU 64, seq 16), ending in its loss.
absl::StatusOr<onnx::ModelProto> TinyLlama(int64_t kv_heads) {
  PTC_ASSIGN_OR_RETURN(models::LlamaConfig config, models::LlamaPreset("tiny"));
  config.vocab = 64;
  config.dim = 32;
  config.heads = 4;
  config.kv_heads = kv_heads;
  config.ffn = 64;
  config.layers = 2;
  config.seq = 16;
  config.with_loss = true;
  return models::BuildLlama(config);
}

// A fixed random batch for every data input (plain parameters of @main): token ids / labels.
std::map<std::string, ir::Tensor> RandomBatch(const plan::Plan& plan, int64_t vocab) {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  std::map<std::string, ir::Tensor> batch;
  for (const ir::Value* p : plan.module->main()->params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    EXPECT_EQ(p->type().dtype, ir::DType::kI64) << p->name();
    ir::Tensor t(ir::DType::kI64, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<int64_t>()[i] = token(rng);
    batch[p->name()] = std::move(t);
  }
  return batch;
}

// Trains plans a and b `steps` AdamW steps on the same random batch; their losses must agree
// to rtol 1e-5 (the fused and the exported forms of the same model). The runs in *ra / *rb.
void SameLosses(const plan::Plan& a, const plan::Plan& b, int steps, std::optional<Run>* ra,
                std::optional<Run>* rb, int64_t vocab = 64) {
  const auto batch = RandomBatch(a, vocab);
  auto x = TrainSteps(a, batch, steps);
  ASSERT_TRUE(x.ok()) << x.status();
  auto y = TrainSteps(b, batch, steps);
  ASSERT_TRUE(y.ok()) << y.status();
  ASSERT_EQ(x->losses.size(), y->losses.size());
  for (size_t s = 0; s < x->losses.size(); ++s) {
    EXPECT_NEAR(x->losses[s], y->losses[s], 1e-5 * std::fabs(x->losses[s])) << "step " << s + 1;
  }
  *ra = *std::move(x);
  *rb = *std::move(y);
}

void ExpectLossFalls(const plan::Plan& plan, int64_t vocab, const std::string& what) {
  const auto batch = RandomBatch(plan, vocab);
  EXPECT_GE(batch.size(), 2u) << what << ": ids and labels";
  auto run = TrainSteps(plan, batch, 20);
  ASSERT_TRUE(run.ok()) << what << ": " << run.status();
  const std::vector<double>& l = run->losses;
  for (size_t s = 0; s < l.size(); ++s) ASSERT_TRUE(std::isfinite(l[s])) << what << " step " << s;
  // Random init: the first loss is about ln(vocab).
  EXPECT_NEAR(l.front(), std::log(static_cast<double>(vocab)), 0.5) << what;
  // Memorizing one fixed batch: the loss falls clearly, and the last 5 steps are all below the
  // first 5.
  EXPECT_LT(l.back(), 0.75 * l.front()) << what << ": first " << l.front() << " last "
                                        << l.back();
  for (int i = 0; i < 5; ++i) {
    EXPECT_LT(l[l.size() - 1 - i], l[4]) << what << ": step " << l.size() - i;
  }
}

TEST(TrainSmoke, Seq2SeqLossFalls) {
  auto config = models::Seq2SeqPreset("tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  config->src_vocab = config->tgt_vocab = 64;
  config->dim = 32;
  config->heads = 4;
  config->ffn = 64;
  config->encoder_layers = config->decoder_layers = 1;
  config->seq = 16;
  config->with_loss = true;
  auto model = models::BuildSeq2Seq(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = CompileBuilt(*model, "seq2seq", {{"batch", 4}, {"src_seq", 12}, {"tgt_seq", 10}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectLossFalls(*plan, 64, "seq2seq");
}

TEST(TrainSmoke, LlamaLossFalls) {
  auto model = TinyLlama(2);  // grouped KV heads in the backward too
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = CompileBuilt(*model, "llama", {{"batch", 4}, {"seq", 16}});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectLossFalls(*plan, 64, "llama");
}

// match-rotary (passes/match_rotary.cc): a tiny Llama's training step has one rotary per q and
// k (forward) and one inverse rotary each in the backward, no slice / concat / slice_grad left,
// and trains as the plan compiled without the pass does (the kernels compute the same products;
// only contraction into FMAs may differ in the last bits).
TEST(TrainRotary, FusedRotaryMatchesTheExportedChain) {
  auto model = TinyLlama(0);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::map<std::string, int64_t> dims = {{"batch", 4}, {"seq", 16}};
  auto fused = CompileBuilt(*model, "llama", dims, "default");
  ASSERT_TRUE(fused.ok()) << fused.status();
  auto chain = CompileBuilt(*model, "llama", dims, "default,-match-rotary");
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto count = [](const plan::Plan& p) {
    std::map<std::string, int> n;
    for (const auto& node : p.module->main()->nodes()) ++n[node->op()];
    return n;
  };
  std::map<std::string, int> f = count(*fused), c = count(*chain);
  EXPECT_EQ(f["rotary"], 2 * 2 * 2) << "layers x {q, k} x {forward, backward}";
  EXPECT_EQ(f["slice"] + f["concat"] + f["slice_grad"], 0);
  EXPECT_EQ(c["rotary"], 0);
  EXPECT_GT(c["slice"] + c["slice_grad"] + c["split"], 0);  // the halves (slices-as-split)
  int inverse = 0;
  for (const auto& node : fused->module->main()->nodes()) {
    inverse += node->op() == "rotary" && node->GetInt("inverse", 0).value_or(0) == 1;
  }
  EXPECT_EQ(inverse, 2 * 2);

  std::optional<::ptc::Run> a, b;
  SameLosses(*fused, *chain, 5, &a, &b);
  if (HasFatalFailure()) return;
  EXPECT_LT(a->losses.back(), a->losses.front());
}

// match-swiglu (passes/match_swiglu.cc): a tiny Llama's default training step has one swiglu
// per layer and one swiglu_grad in its backward, no sigmoid left (as an op or a token of a
// fused_elementwise), and trains as the plan compiled without the pass does: losses of 5 AdamW
// steps to rtol 1e-5 (the forward computes the same products; the backward's expression is
// factored differently).
TEST(TrainSwiglu, FusedSwigluMatchesTheExportedChain) {
  auto model = TinyLlama(0);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::map<std::string, int64_t> dims = {{"batch", 4}, {"seq", 16}};
  auto fused = CompileBuilt(*model, "llama", dims, "default");
  ASSERT_TRUE(fused.ok()) << fused.status();
  auto chain = CompileBuilt(*model, "llama", dims, "default,-match-swiglu");
  ASSERT_TRUE(chain.ok()) << chain.status();
  auto count = [](const plan::Plan& p) {
    std::map<std::string, int> n;
    for (const auto& node : p.module->main()->nodes()) {
      ++n[node->op()];
      if (node->op() != "fused_elementwise") continue;
      auto it = node->attrs().find("program");
      if (it == node->attrs().end()) continue;
      if (auto* program = std::get_if<std::vector<std::string>>(&it->second)) {
        for (const std::string& t : *program) n["token:sigmoid"] += t == "sigmoid";
      }
    }
    return n;
  };
  std::map<std::string, int> f = count(*fused), c = count(*chain);
  EXPECT_EQ(f["swiglu"], 2) << "one per layer";
  EXPECT_EQ(f["swiglu_grad"], 2);
  EXPECT_EQ(f["sigmoid"] + f["token:sigmoid"], 0);
  EXPECT_EQ(c["swiglu"] + c["swiglu_grad"], 0);
  EXPECT_GT(c["sigmoid"] + c["token:sigmoid"], 0);

  std::optional<::ptc::Run> a, b;
  SameLosses(*chain, *fused, 5, &a, &b);
  if (HasFatalFailure()) return;
  EXPECT_LT(b->losses.back(), b->losses.front());
}

// Llama's fused forms (match-rms-norm: RMSNorm as layer_norm {rms=1}, one layer_norm_grad
// {rms=1} in the backward; and whatever else the default passes fuse) train the same numbers as
// the exported op-by-op graph: losses of 5 AdamW steps to rtol 1e-5.
TEST(TrainFused, LlamaDefaultPassesMatchNoPasses) {
  auto model = TinyLlama(2);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::map<std::string, int64_t> dims = {{"batch", 4}, {"seq", 16}};
  auto fused = CompileBuilt(*model, "llama", dims, "default");
  ASSERT_TRUE(fused.ok()) << fused.status();
  auto plain = CompileBuilt(*model, "llama", dims, "none");
  ASSERT_TRUE(plain.ok()) << plain.status();
  int rms = 0, rms_grad = 0;
  for (const auto& n : fused->module->main()->nodes()) {
    if (n->op() == "layer_norm" && n->GetInt("rms", 0).value_or(0) == 1) ++rms;
    if (n->op() == "layer_norm_grad" && n->GetInt("rms", 0).value_or(0) == 1) ++rms_grad;
  }
  EXPECT_EQ(rms, 5) << "two norms per layer and the final one";
  EXPECT_EQ(rms_grad, 5);
  std::optional<::ptc::Run> a, b;
  SameLosses(*plain, *fused, 5, &a, &b);
  if (HasFatalFailure()) return;
}

// Grouped-query attention (kv_heads 2 < heads 4): the default passes give attention the
// 2 kv heads directly (fuse-attention folds HF's repeat_kv), so no repeat of K / V is left in
// the step and attention_grad's dk / dv have the kv heads; its losses and final
// weights match those of the plan without passes, which repeats K / V as exported and reduces
// their gradients over each group (autodiff of the expand).
TEST(TrainSmoke, LlamaGroupedQueryAttentionMatchesUnfused) {
  auto model = TinyLlama(2);
  ASSERT_TRUE(model.ok()) << model.status();
  const std::map<std::string, int64_t> dims = {{"batch", 2}, {"seq", 16}};
  auto fused = CompileBuilt(*model, "llama", dims);
  ASSERT_TRUE(fused.ok()) << fused.status();
  auto unfused = CompileBuilt(*model, "llama", dims, "none");
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  int attention = 0, grads = 0, expands_unfused = 0;
  for (const auto& np : fused->module->main()->nodes()) {
    const ir::Node& n = *np;
    // repeat_kv's expand is rank 5 ([B, Hkv, rep, T, D]; the RMS norms' backward has others).
    EXPECT_FALSE(n.op() == "expand" && n.output()->type().rank() == 5) << n.Describe();
    const int first = n.op() == "attention" ? 1 : n.op() == "attention_grad" ? 2 : -1;
    if (first < 0) continue;
    (first == 1 ? attention : grads) += 1;
    // 4 query heads; k / v (and dk / dv) with 2. The heads are read in place ("bthd": the
    // rotary embeddings go before the head transposes, match-rotary).
    EXPECT_EQ(n.GetString("layout", "bhtd").value_or(""), "bthd") << n.Describe();
    const int ha = 2;
    EXPECT_EQ(n.input(first - 1)->type().shape[ha], 4) << n.Describe();
    EXPECT_EQ(n.input(first)->type().shape[ha], 2) << n.Describe();
    EXPECT_EQ(n.input(first + 1)->type().shape[ha], 2) << n.Describe();
    if (first == 2) {
      EXPECT_EQ(n.output(1)->type().shape[ha], 2) << n.Describe();
      EXPECT_EQ(n.output(2)->type().shape[ha], 2) << n.Describe();
    }
  }
  EXPECT_EQ(attention, 2);
  EXPECT_EQ(grads, 2);
  for (const auto& n : unfused->module->main()->nodes()) {
    expands_unfused += n->op() == "expand" && n->output()->type().rank() == 5;
  }
  EXPECT_GE(expands_unfused, 4) << "the unfused plan repeats k and v of each layer";
  std::optional<::ptc::Run> a, b;
  SameLosses(*unfused, *fused, 4, &a, &b);
  if (HasFatalFailure()) return;
  ASSERT_EQ(a->final_state.size(), b->final_state.size());
  for (const auto& [name, ta] : a->final_state) {
    auto it = b->final_state.find(name);
    ASSERT_NE(it, b->final_state.end()) << name;
    ASSERT_EQ(ta.shape(), it->second.shape()) << name;
    if (name.rfind("adam.", 0) == 0 || name.rfind("opt.", 0) == 0) continue;  // moments
    int64_t differ = 0;
    for (int64_t i = 0; i < ta.num_elements(); ++i) {
      const double x = ta.GetDouble(i), y = it->second.GetDouble(i);
      // AdamW's normalized steps (lr 3e-3) can turn the rounding of a near-zero gradient
      // into up to 2 lr per step (as DefaultPassesMatchNoPasses allows).
      const double err = std::fabs(x - y);
      if (err > 1e-5 + 1e-4 * std::fabs(x) && err > 4 * 2 * 3e-3) ++differ;
    }
    EXPECT_EQ(differ, 0) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// (e) Dropout (compiler/ir/dropout.h): a tiny GPT-2 built with dropout 0.1 (`ptc model gpt2
// --dropout 0.1`) trains with a new mask each step (its `rng.step` state as the counter), a
// recomputation draws the forward's mask again, and @eval / inference plans have none.

absl::StatusOr<onnx::ModelProto> TinyGpt2(double dropout, bool with_loss = true,
                                          double attn_dropout = 0.0) {
  PTC_ASSIGN_OR_RETURN(models::Gpt2Config c, models::Gpt2Preset("tiny"));
  c.vocab = 64;
  c.dim = 32;
  c.heads = 4;
  c.layers = 2;
  c.seq = 16;
  c.with_loss = with_loss;
  c.dropout = dropout;
  c.attn_dropout = attn_dropout;
  return models::BuildGpt2(c);
}

absl::StatusOr<onnx::ModelProto> TinySeq2Seq(double dropout) {
  PTC_ASSIGN_OR_RETURN(models::Seq2SeqConfig c, models::Seq2SeqPreset("tiny"));
  c.src_vocab = c.tgt_vocab = 64;
  c.dim = 32;
  c.heads = 4;
  c.ffn = 64;
  c.encoder_layers = c.decoder_layers = 1;
  c.seq = 16;
  c.with_loss = true;
  c.dropout = dropout;
  return models::BuildSeq2Seq(c);
}

const std::map<std::string, int64_t> kGpt2Dims = {{"batch", 4}, {"seq", 16}};
const std::map<std::string, int64_t> kSeq2SeqDims = {{"batch", 4}, {"src_seq", 12},
                                                     {"tgt_seq", 10}};

absl::StatusOr<plan::Plan> CompileWith(const onnx::ModelProto& model,
                                       const std::map<std::string, int64_t>& dims, bool train,
                                       double lr, const std::string& remat,
                                       double dropout = -1,
                                       driver::CompileReport* report = nullptr,
                                       const std::string& passes = "default") {
  onnx_import::ImportOptions io;
  io.dims = dims;
  PTC_ASSIGN_OR_RETURN(auto module,
                       onnx_import::ImportOnnxBytes(model.SerializeAsString(), "", "model", io));
  driver::CompileOptions o;
  o.train = train;
  o.dims = dims;
  o.remat = remat;
  o.dropout = dropout;
  o.train_options.lr = lr;
  o.passes = passes;
  return driver::CompileModule(std::move(module), o, report);
}

int CountOp(const ir::Function& f, const std::string& op) {
  int n = 0;
  for (const auto& node : f.nodes()) n += node->op() == op;
  return n;
}

// A step's dropouts wherever they are: dropout nodes and the dropout tokens of
// fused_elementwise nodes (fuse-elementwise), each with its ratio and counter operand.
struct StepDropout {
  const ir::Node* node;
  double ratio;
  const ir::Value* counter;  // nullptr: none
};
std::vector<StepDropout> Dropouts(const ir::Function& f) {
  std::vector<StepDropout> out;
  for (const auto& n : f.nodes()) {
    if (n->op() == "dropout") {
      out.push_back({n.get(), *n->GetFloat("ratio", 0.5),
                     n->num_inputs() > 1 ? n->input(1) : nullptr});
    } else if (n->op() == "fused_elementwise") {
      auto p = ir::ParseFusedProgram(*n);
      EXPECT_TRUE(p.ok()) << p.status();
      if (!p.ok()) continue;
      for (const ir::FusedDropout& d : p->dropouts) {
        out.push_back({n.get(), d.ratio, d.counter >= 0 ? n->input(d.counter) : nullptr});
      }
    }
  }
  return out;
}
int CountDropouts(const ir::Function& f) { return static_cast<int>(Dropouts(f).size()); }

// With lr 0 the weights stay, so the losses of steps 1-3 on one batch differ only by their
// masks: they differ with dropout and not without; the counter state counts the steps; the
// backward is the same dropout of dy (no mask output is kept: no bool [B, T, C] in the step).
TEST(TrainDropout, EachStepDrawsANewMask) {
  auto with = TinyGpt2(0.1), without = TinyGpt2(0.0);
  ASSERT_TRUE(with.ok() && without.ok());
  auto a = CompileWith(*with, kGpt2Dims, true, 0.0, "none");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = CompileWith(*without, kGpt2Dims, true, 0.0, "none");
  ASSERT_TRUE(b.ok()) << b.status();
  const ir::Function& step = *a->module->main();
  // The embeddings' dropout and two per layer, forward and backward.
  EXPECT_EQ(CountDropouts(step), 2 * (1 + 2 * 2));
  for (const StepDropout& d : Dropouts(step)) {
    EXPECT_EQ(d.node->num_outputs(), 1u) << d.node->Describe();
    ASSERT_NE(d.counter, nullptr) << d.node->Describe();
    EXPECT_EQ(d.counter->name(), "rng.step") << d.node->Describe();
  }
  EXPECT_EQ(CountDropouts(*b->module->main()), 0);
  ASSERT_NE(a->module->FindFunction("eval"), nullptr);
  EXPECT_EQ(CountDropouts(*a->module->FindFunction("eval")), 0) << "@eval: no dropout";
  const auto batch = RandomBatch(*a, 64);
  auto ra = TrainSteps(*a, batch, 3);
  ASSERT_TRUE(ra.ok()) << ra.status();
  auto rb = TrainSteps(*b, batch, 3);
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_NE(ra->losses[0], ra->losses[1]);
  EXPECT_NE(ra->losses[1], ra->losses[2]);
  EXPECT_NE(ra->losses[0], rb->losses[0]);
  EXPECT_EQ(rb->losses[0], rb->losses[1]);
  // Dropout 0.1 changes the loss near ln(64) by little.
  EXPECT_NEAR(ra->losses[0], rb->losses[0], 0.1);
  ASSERT_TRUE(ra->final_state.count("rng.step"));
  EXPECT_EQ(ra->final_state.at("rng.step").GetInt(0), 3);
  EXPECT_EQ(rb->final_state.count("rng.step"), 0u);
}

// fuse-elementwise takes the forward's dropouts into the chains around them (GPT-2's residual
// adds x + dropout(h), the embeddings' dropout(wte + wpe)) as "dropoutK" tokens drawing the
// dropout's own mask: the step trains with the losses of the plan without that fusion.
TEST(TrainDropout, ResidualDropoutIsFusedIntoTheAdd) {
  auto model = TinyGpt2(0.1);
  ASSERT_TRUE(model.ok()) << model.status();
  auto fused = CompileWith(*model, kGpt2Dims, true, 3e-3, "none");
  ASSERT_TRUE(fused.ok()) << fused.status();
  int in_chains = 0, residual_adds = 0;
  for (const StepDropout& d : Dropouts(*fused->module->main())) {
    if (d.node->op() != "fused_elementwise") continue;
    ++in_chains;
    const auto& program = std::get<std::vector<std::string>>(d.node->attrs().at("program"));
    residual_adds += program.size() == 4 && program[2] == "dropout0" && program[3] == "add";
  }
  EXPECT_EQ(in_chains, 1 + 2 * 2) << "every forward dropout sits in a chain";
  EXPECT_EQ(residual_adds, 2 * 2);
  auto unfused = CompileWith(*model, kGpt2Dims, true, 3e-3, "none", -1, nullptr,
                             "default,-fuse-elementwise");
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_EQ(CountOp(*unfused->module->main(), "dropout"), 2 * (1 + 2 * 2));
  std::optional<::ptc::Run> a, b;
  SameLosses(*fused, *unfused, 4, &a, &b);
  if (HasFatalFailure()) return;
  EXPECT_NE(a->losses[1], a->losses[0]);
}

// Remat recomputes dropouts (pure: a function of x and the counter) with the forward's masks:
// the seq2seq model's FFN dropout feeds its second linear, whose weight gradient reads it, so
// per-block recomputation redraws it in the backward, and that plan trains exactly as the plan
// that keeps it; and a model with dropout still memorizes a batch.
TEST(TrainDropout, RecomputedDropoutDrawsTheForwardsMask) {
  auto with = TinySeq2Seq(0.1);
  ASSERT_TRUE(with.ok());
  auto kept = CompileWith(*with, kSeq2SeqDims, true, 3e-3, "none");
  ASSERT_TRUE(kept.ok()) << kept.status();
  auto remat = CompileWith(*with, kSeq2SeqDims, true, 3e-3, "per-block");
  ASSERT_TRUE(remat.ok()) << remat.status();
  EXPECT_GT(CountDropouts(*remat->module->main()), CountDropouts(*kept->module->main()))
      << "per-block remat recomputes dropouts";
  // and attentions with their fused dropout (nn.MultiheadAttention's), the counter read again.
  EXPECT_GT(CountOp(*remat->module->main(), "attention"),
            CountOp(*kept->module->main(), "attention"));
  const auto batch = RandomBatch(*kept, 64);
  auto x = TrainSteps(*kept, batch, 4);
  ASSERT_TRUE(x.ok()) << x.status();
  auto y = TrainSteps(*remat, batch, 4);
  ASSERT_TRUE(y.ok()) << y.status();
  for (size_t s = 0; s < x->losses.size(); ++s) {
    EXPECT_NEAR(x->losses[s], y->losses[s], 1e-6 * std::fabs(x->losses[s])) << "step " << s + 1;
  }
  ExpectLossFalls(*kept, 64, "seq2seq with dropout 0.1");
}

// Inference plans strip dropout: the logits of the model built with dropout are those of the
// model built without (the same weights: dropout draws none at build time).
TEST(TrainDropout, InferencePlansHaveNone) {
  auto with = TinyGpt2(0.1, false), without = TinyGpt2(0.0, false);
  ASSERT_TRUE(with.ok() && without.ok());
  auto a = CompileWith(*with, kGpt2Dims, false, 0.0, "none");
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = CompileWith(*without, kGpt2Dims, false, 0.0, "none");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(CountDropouts(*a->module->main()), 0);
  const auto batch = RandomBatch(*a, 64);
  auto ea = cpu::Executor::Create(*a);
  ASSERT_TRUE(ea.ok()) << ea.status();
  auto eb = cpu::Executor::Create(*b);
  ASSERT_TRUE(eb.ok()) << eb.status();
  auto oa = (*ea)->Run(batch);
  ASSERT_TRUE(oa.ok()) << oa.status();
  auto ob = (*eb)->Run(batch);
  ASSERT_TRUE(ob.ok()) << ob.status();
  ASSERT_EQ(oa->size(), 1u);
  ASSERT_EQ((*oa)[0].num_elements(), (*ob)[0].num_elements());
  for (int64_t i = 0; i < (*oa)[0].num_elements(); ++i) {
    ASSERT_EQ((*oa)[0].GetDouble(i), (*ob)[0].GetDouble(i)) << i;
  }
}

// GPT-2's attn_pdrop (dropout on the attention probabilities) is fused into both attentions
// (attribute dropout, the step's counter as the last operand): no softmax is left, and the
// fused step trains as the unfused one (-fuse-attention, the B x H x T x T probabilities
// stored), whose dropout nodes draw the same masks. --dropout 0 removes every dropout;
// --dropout R sets every ratio, the fused ones too.
TEST(TrainDropout, AttentionDropoutIsFused) {
  auto model = TinyGpt2(0.1, true, 0.1);
  ASSERT_TRUE(model.ok()) << model.status();
  driver::CompileReport kept_report;
  auto kept = CompileWith(*model, kGpt2Dims, true, 3e-3, "none", -1, &kept_report);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept_report.dropouts, 1 + 3 * 2);
  EXPECT_EQ(kept_report.dropouts_after_softmax, 2);
  EXPECT_EQ(kept_report.attention_dropouts, 2);
  EXPECT_EQ(CountOp(*kept->module->main(), "softmax"), 0);
  int fused = 0;
  for (const auto& n : kept->module->main()->nodes()) {
    if (n->op() != "attention" && n->op() != "attention_grad") continue;
    ++fused;
    EXPECT_FLOAT_EQ(*n->GetFloat("dropout"), 0.1) << n->Describe();
    EXPECT_NE(ir::AttentionCounter(*n, n->op() == "attention" ? 0 : 1,
                                   n->GetInt("saved_stats", 0).value_or(0) ? 2 : 0),
              nullptr)
        << n->Describe();
  }
  EXPECT_EQ(fused, 2 * 2);
  auto unfused = CompileWith(*model, kGpt2Dims, true, 3e-3, "none", -1, nullptr,
                             "default,-fuse-attention");
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_EQ(CountOp(*unfused->module->main(), "attention"), 0);
  std::optional<::ptc::Run> a, b;
  SameLosses(*kept, *unfused, 4, &a, &b);
  if (HasFatalFailure()) return;
  EXPECT_NE(a->losses[1], a->losses[0]);  // a new mask each step (lr 3e-3 moves little)

  driver::CompileReport none_report;
  auto none = CompileWith(*model, kGpt2Dims, true, 3e-3, "none", 0.0, &none_report);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none_report.dropouts, 0);
  EXPECT_EQ(CountDropouts(*none->module->main()), 0);
  EXPECT_EQ(CountOp(*none->module->main(), "attention"), 2);

  auto other = CompileWith(*model, kGpt2Dims, true, 3e-3, "none", 0.25);
  ASSERT_TRUE(other.ok()) << other.status();
  int dropouts = 0;
  for (const auto& n : other->module->main()->nodes()) {
    if (n->op() == "attention") {
      ++dropouts;
      EXPECT_DOUBLE_EQ(*n->GetFloat("dropout"), 0.25) << n->Describe();
    }
  }
  for (const StepDropout& d : Dropouts(*other->module->main())) {
    ++dropouts;
    EXPECT_DOUBLE_EQ(d.ratio, 0.25) << d.node->Describe();
  }
  EXPECT_EQ(dropouts, 2 * 5 + 2);  // 5 in the forward and their gradients; 2 attentions
  EXPECT_FALSE(CompileWith(*model, kGpt2Dims, true, 3e-3, "none", 1.0).ok());
}

// A run with dropout resumed from a checkpoint is the uninterrupted run, bit for bit: the
// `rng.step` counter is state, saved and restored with the weights, so the resumed steps draw
// the masks the straight run drew.
TEST(TrainDropout, ResumeIsBitExact) {
  auto model = TinyGpt2(0.1);
  ASSERT_TRUE(model.ok()) << model.status();
  auto plan = CompileWith(*model, kGpt2Dims, true, 3e-3, "none");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/ptc_dropout_resume_", ::getpid());
  (void)fileutil::RemoveTree(dir);
  ASSERT_TRUE(fileutil::MakeDirs(dir).ok());
  std::string text;
  std::mt19937 rng(5);
  for (int i = 0; i < 6000; ++i) text.push_back(static_cast<char>(32 + rng() % 32));  // < 64
  std::ofstream(dir + "/text.txt") << text;
  train::TrainerOptions o;
  o.data = dir + "/text.txt";
  o.progress_style = train::ProgressStyle::kNone;
  o.seed = 3;
  o.steps = 8;
  o.vocab_size = 64;
  std::ostringstream log;
  auto straight = train::Train(*plan, o, log);
  ASSERT_TRUE(straight.ok()) << straight.status();
  ASSERT_EQ(straight->final_state.at("rng.step").GetInt(0), 8);
  o.checkpoint_dir = dir + "/ckpt";
  o.checkpoint_every = 2;
  o.stop_after = 5;  // "killed" after step 5; the last checkpoint is step 4
  ASSERT_TRUE(train::Train(*plan, o, log).ok());
  o.stop_after = 0;
  o.resume = true;
  auto second = train::Train(*plan, o, log);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->first_step, 4);
  for (size_t i = 0; i < second->losses.size(); ++i) {
    EXPECT_EQ(second->losses[i], straight->losses[4 + i]) << "step " << 5 + i;
  }
  for (const auto& [name, t] : straight->final_state) {
    EXPECT_TRUE(t.BitEquals(second->final_state.at(name))) << name;
  }
  (void)fileutil::RemoveTree(dir);
}

// torch.nn.Transformer (dropout 0.1) exported by torch 1.13 in training mode (the e2e case
// seq2seq_train_mode_opset17, whose inference plans match torch's eval-mode logits): its 20
// Dropout nodes train as ptc's dropouts; the 6 on attention probabilities (encoder, decoder
// and cross attention) are fused into those attentions (nn.MultiheadAttention's [B*H, T, D]
// heads, fuse-attention's "rank3" form), which train as the plan without fuse-attention does,
// with dropout and with --dropout 0.
TEST(TrainDropout, TorchTrainingModeExportTrains) {
  const std::string dir = std::string(kDataDir) + "seq2seq_train_mode_opset17/";
  driver::CompileOptions o;
  o.train = true;
  o.dims = {{"batch", 2}, {"src_seq", 12}, {"tgt_seq", 10}};
  o.train_options.loss = "softmax-ce";
  o.train_options.labels = "labels";
  o.train_options.lr = 1e-3;
  driver::CompileReport report;
  auto plan = driver::CompileOnnxFile(dir + "model.onnx", o, &report);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(report.dropouts, 2 * 4 + 2 * 6);
  EXPECT_EQ(report.dropouts_after_softmax, 2 + 2 * 2);
  EXPECT_EQ(report.attention_dropouts, 6);
  EXPECT_EQ(CountOp(*plan->module->main(), "attention"), 6);
  {
    driver::CompileOptions uo = o;
    uo.passes = "default,-fuse-attention";
    auto unfused_dropout = driver::CompileOnnxFile(dir + "model.onnx", uo);
    ASSERT_TRUE(unfused_dropout.ok()) << unfused_dropout.status();
    EXPECT_EQ(CountOp(*unfused_dropout->module->main(), "attention"), 0);
    std::optional<::ptc::Run> f, u;
    SameLosses(*plan, *unfused_dropout, 3, &f, &u, 47);
    if (HasFatalFailure()) return;
  }
  o.dropout = 0;
  auto fused = driver::CompileOnnxFile(dir + "model.onnx", o);
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(CountDropouts(*fused->module->main()), 0);
  EXPECT_EQ(CountOp(*fused->module->main(), "attention"), 6);
  o.passes = "default,-fuse-attention";
  auto unfused = driver::CompileOnnxFile(dir + "model.onnx", o);
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_EQ(CountOp(*unfused->module->main(), "attention"), 0);
  std::optional<::ptc::Run> f, u;
  SameLosses(*fused, *unfused, 4, &f, &u, 47);
  if (HasFatalFailure()) return;
  const auto batch = RandomBatch(*plan, 47);
  auto a = TrainSteps(*plan, batch, 3);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = TrainSteps(*fused, batch, 3);
  ASSERT_TRUE(b.ok()) << b.status();
  for (size_t s = 0; s < a->losses.size(); ++s) {
    ASSERT_TRUE(std::isfinite(a->losses[s])) << "step " << s + 1;
    // Dropout 0.1 moves the loss near ln(47) a little, not a lot.
    EXPECT_NEAR(a->losses[s], b->losses[s], 0.05 * b->losses[s]) << "step " << s + 1;
  }
  EXPECT_NE(a->losses[0], b->losses[0]);
  EXPECT_EQ(a->final_state.at("rng.step").GetInt(0), 3);
}

// transformers' GPT2LMHeadModel with GPT-2's dropout 0.1 (embd_pdrop, resid_pdrop, attn_pdrop),
// exported by torch 1.13 in training mode (the e2e case hf_gpt2_train_mode_opset17, whose
// inference plans match torch's eval-mode loss): its 7 Dropout nodes train as ptc's dropouts,
// the 2 on the attention probabilities (after HF's finfo.min causal fill) fused into the
// attentions; the step trains as the one without fuse-attention (which keeps them as dropout
// nodes and stores the probabilities), the same masks.
TEST(TrainDropout, HfGpt2TrainingModeExportFusesAttentionDropout) {
  const std::string dir = std::string(kDataDir) + "hf_gpt2_train_mode_opset17/";
  driver::CompileOptions o;
  o.train = true;
  o.dims = {{"batch", 2}, {"seq", 16}};
  o.train_options.lr = 1e-3;
  driver::CompileReport report;
  auto plan = driver::CompileOnnxFile(dir + "model.onnx", o, &report);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(report.dropouts, 1 + 2 * 3);
  EXPECT_EQ(report.dropouts_after_softmax, 2);
  EXPECT_EQ(report.attention_dropouts, 2);
  // The export's Dropouts carry (unread) mask outputs: dce trims them, so the embeddings' and
  // the residual dropouts go into elementwise chains as ptc's own GPT-2's do.
  EXPECT_EQ(report.elementwise_dropouts, 1 + 2 * 2);
  for (const StepDropout& d : Dropouts(*plan->module->main())) {
    EXPECT_EQ(d.node->num_outputs(), 1u) << d.node->Describe();
  }
  EXPECT_EQ(CountOp(*plan->module->main(), "softmax"), 0);
  o.passes = "default,-fuse-attention,-fuse-elementwise";
  auto unfused = driver::CompileOnnxFile(dir + "model.onnx", o);
  ASSERT_TRUE(unfused.ok()) << unfused.status();
  EXPECT_EQ(CountOp(*unfused->module->main(), "attention"), 0);
  std::optional<::ptc::Run> f, u;
  SameLosses(*plan, *unfused, 4, &f, &u, 101);
  if (HasFatalFailure()) return;
  EXPECT_NE(f->losses[1], f->losses[0]);
}

}  // namespace
}  // namespace ptc
