// Training on the GPU: a GPT-2-style training step compiled with --target cuda runs on the
// CUDA executor (parameters and AdamW state in device memory, assigns after the step) and
// matches the CPU executor's losses; bf16 mixed precision follows the fp32 loss curve.
// Without a GPU the device tests skip with "SKIPPED: no CUDA device"; the kernel-coverage test
// runs wherever ptc was built with CUDA.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compiler/driver/driver.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "passes/kv_cache.h"
#include "runtime/cpu/generate.h"
#include "runtime/cpu/executor.h"
#include "nlohmann/json.hpp"
#include "runtime/cuda/executor.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/e2e/tensor_proto_reader.h"
#include "tests/e2e/torch_training_cases.h"

#if PTC_HAVE_CUDA
#include "runtime/cuda/autotune.h"  // ClearTuneCache
#endif

namespace ptc::cuda {
namespace {

constexpr int64_t kVocab = 64, kBatch = 4, kSeq = 32, kDim = 64;

absl::StatusOr<plan::Plan> TinyGptTrainingPlan(const std::string& target,
                                               const std::string& precision = "fp32",
                                               bool keep_gradients = false,
                                               double grad_clip = 1.0, bool inplace = true,
                                               const std::string& passes = "default",
                                               double dropout = 0.0) {
  auto config = models::Gpt2Preset("tiny");
  if (!config.ok()) return config.status();
  config->vocab = kVocab;
  config->layers = 2;
  config->dim = kDim;
  config->heads = 4;
  config->seq = kSeq;
  config->with_loss = true;
  config->dropout = dropout;
  config->attn_dropout = dropout;  // fused into the attentions
  auto model = models::BuildGpt2(*config);
  if (!model.ok()) return model.status();
  onnx_import::ImportOptions io;
  io.dims = {{"batch", kBatch}, {"seq", kSeq}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-tiny", io);
  if (!module.ok()) return module.status();
  driver::CompileOptions o;
  o.target = target;
  o.precision = precision;
  o.train = true;
  o.dims = io.dims;
  o.train_options.optimizer = "adamw";
  o.train_options.lr = 3e-3;
  o.train_options.weight_decay = 0.01;
  o.train_options.grad_clip = grad_clip;
  o.train_options.keep_gradients = keep_gradients;
  o.inplace_updates = inplace;
  o.passes = passes;
  if (precision == "fp16") o.train_options.loss_scale = "dynamic";
  return driver::CompileModule(*std::move(module), o);
}

// A generation model's inference plan at batch 1 x kSeq for `target` in `precision`.
absl::StatusOr<plan::Plan> GenerationPlan(const onnx::ModelProto& model, const std::string& target,
                                          const std::string& precision = "fp32") {
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 1}, {"seq", kSeq}};
  auto module = onnx_import::ImportOnnxBytes(model.SerializeAsString(), "", "gpt2-gen", io);
  if (!module.ok()) return module.status();
  driver::CompileOptions o;
  o.target = target;
  o.precision = precision;
  o.dims = io.dims;
  return driver::CompileModule(*std::move(module), o);
}

// The byte-level GPT the generation tests sample from: vocab 256, 2 layers of 64, 4 heads,
// a window of kSeq.
absl::StatusOr<onnx::ModelProto> GenerationGpt() {
  auto config = models::Gpt2Preset("tiny");
  if (!config.ok()) return config.status();
  config->vocab = 256;
  config->layers = 2;
  config->dim = 64;
  config->heads = 4;
  config->seq = kSeq;
  return models::BuildGpt2(*config);
}

std::map<std::string, ir::Tensor> FixedBatch(const plan::Plan& plan, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> token(0, kVocab - 1);
  std::map<std::string, ir::Tensor> batch;
  for (const ir::Value* p : plan.module->main()->params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    ir::Tensor t(ir::DType::kI64, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<int64_t>()[i] = token(rng);
    batch[p->name()] = std::move(t);
  }
  return batch;
}

// A tiny Llama (vocab kVocab, 2 layers, `heads` heads of dim / heads with `kv_heads` KV heads,
// 0: one per head; SwiGLU `ffn`, 0: Llama's rule), ending in its loss.
absl::StatusOr<onnx::ModelProto> TinyLlama(int64_t dim, int64_t heads, int64_t kv_heads,
                                           int64_t ffn) {
  PTC_ASSIGN_OR_RETURN(models::LlamaConfig config, models::LlamaPreset("tiny"));
  config.vocab = kVocab;
  config.layers = 2;
  config.dim = dim;
  config.heads = heads;
  config.kv_heads = kv_heads;
  config.ffn = ffn;
  config.seq = kSeq;
  config.with_loss = true;
  return models::BuildLlama(config);
}

// `model` compiled into an AdamW (lr 3e-3 unless given) training plan for `target`.
absl::StatusOr<plan::Plan> CompileTraining(const onnx::ModelProto& model, const std::string& target,
                                           const std::string& precision,
                                           const std::string& passes, int64_t batch,
                                           double lr = 3e-3) {
  onnx_import::ImportOptions io;
  io.dims = {{"batch", batch}, {"seq", kSeq}};
  PTC_ASSIGN_OR_RETURN(auto module,
                       onnx_import::ImportOnnxBytes(model.SerializeAsString(), "", "llama", io));
  driver::CompileOptions o;
  o.target = target;
  o.precision = precision;
  o.train = true;
  o.dims = io.dims;
  o.train_options.optimizer = "adamw";
  o.train_options.lr = lr;
  o.passes = passes;
  return driver::CompileModule(std::move(module), o);
}

// Trains plans a and b `steps` steps on the device on the same batches (FixedBatch(seed + s));
// their losses must agree to `tol` (relative): a fused and an unfused form of one model.
void ExpectSameLosses(const plan::Plan& a, const plan::Plan& b, int steps, uint64_t seed,
                      double tol, const std::string& what) {
  auto x = Executor::Create(a);
  ASSERT_TRUE(x.ok()) << x.status();
  auto y = Executor::Create(b);
  ASSERT_TRUE(y.ok()) << y.status();
  for (int step = 0; step < steps; ++step) {
    auto batch = FixedBatch(a, seed + step);
    auto la = (*x)->Run(batch);
    ASSERT_TRUE(la.ok()) << la.status();
    auto lb = (*y)->Run(batch);
    ASSERT_TRUE(lb.ok()) << lb.status();
    const double u = la->at(0).GetDouble(0), v = lb->at(0).GetDouble(0);
    EXPECT_NEAR(u, v, tol * std::fabs(v)) << what << " step " << step + 1;
  }
}

// Trains the CPU and the device executor `steps` steps on the same batches (FixedBatch(seed +
// s)); the device's losses must be the CPU's to rtol 1e-4 (fp32, TF32 off), with no node on the
// host.
void ExpectDeviceLossesAreCpus(cpu::Executor& cpu, Executor& gpu, const plan::Plan& plan,
                               int steps, uint64_t seed) {
  EXPECT_TRUE(gpu.host_fallback_nodes().empty());
  for (int step = 0; step < steps; ++step) {
    auto batch = FixedBatch(plan, seed + step);
    auto c = cpu.Run(batch);
    ASSERT_TRUE(c.ok()) << c.status();
    auto g = gpu.Run(batch);
    ASSERT_TRUE(g.ok()) << g.status();
    const double lc = c->at(0).GetDouble(0), lg = g->at(0).GetDouble(0);
    EXPECT_NEAR(lg, lc, 1e-4 * std::fabs(lc)) << "step " << step + 1;
    std::printf("step %d: loss cpu %.7f cuda %.7f\n", step + 1, lc, lg);
  }
}

// Runs wherever ptc was built with CUDA: every node of the cuda training step (and of @eval)
// has a CUDA kernel, so the GPU run needs no host fallback.
TEST(CudaTraining, EveryNodeHasCudaKernel) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
  for (const char* precision : {"fp32", "bf16", "fp16"}) {
    auto plan = TinyGptTrainingPlan("cuda", precision);
    ASSERT_TRUE(plan.ok()) << plan.status();
    EXPECT_EQ(plan->target, "cuda");
    for (const auto& fn : plan->module->functions()) {
      for (const auto& n : fn->nodes()) {
        EXPECT_TRUE(n->op() == "constant" || n->op() == "assign" || HasDeviceKernel(n->op()))
            << precision << " @" << fn->name() << ": " << n->Describe();
      }
    }
  }
}

// fp32: 10 AdamW steps on the GPU give the CPU executor's losses (rtol 1e-4; TF32 off).
TEST(CudaTraining, TenStepsMatchCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto cpu_plan = TinyGptTrainingPlan("cpu");
  ASSERT_TRUE(cpu_plan.ok()) << cpu_plan.status();
  auto gpu_plan = TinyGptTrainingPlan("cuda");
  ASSERT_TRUE(gpu_plan.ok()) << gpu_plan.status();
  auto cpu = cpu::Executor::Create(*cpu_plan);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  auto gpu = Executor::Create(*gpu_plan);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  ASSERT_TRUE((*gpu)->is_training());
  ExpectDeviceLossesAreCpus(**cpu, **gpu, *cpu_plan, 10, 100);
  if (HasFatalFailure()) return;
  auto cs = (*cpu)->State();
  auto gs = (*gpu)->State();
  ASSERT_TRUE(gs.ok()) << gs.status();
  // The key third of the fused QKV bias has an exactly zero gradient (a per-query constant
  // added to every score of a row leaves the softmax unchanged), so its AdamW step is
  // m / sqrt(v) of pure rounding noise: up to lr per step in either direction on either
  // device. Those entries (and their moments) are not compared.
  for (const auto& [name, t] : cs) {
    ASSERT_TRUE(gs->count(name)) << name;
    const ir::Tensor& u = gs->at(name);
    const bool qkv_bias = absl::StrContains(name, "attn.c_attn.bias");
    double worst = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      if (qkv_bias && i >= kDim && i < 2 * kDim) continue;
      worst = std::max(worst, std::fabs(u.GetDouble(i) - t.GetDouble(i)) /
                                  (1e-3 + std::fabs(t.GetDouble(i))));
    }
    EXPECT_LT(worst, 1e-2) << name;  // weights and moments after 10 steps
  }
}

// The "dropoutK" tokens of f's fused_elementwise nodes (fuse-elementwise's dropouts).
int FusedDropouts(const ir::Function& f) {
  int n = 0;
  for (const auto& node : f.nodes()) {
    if (node->op() != "fused_elementwise") continue;
    auto p = ir::ParseFusedProgram(*node);
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) n += static_cast<int>(p->dropouts.size());
  }
  return n;
}

// Dropout 0.1 (compiler/ir/dropout.h), attention dropout too (fused into the attentions, whose
// flash kernels and the backward's redraw take the counter as their last operand, before
// save-attention-stats' O and log-sum-exp): the device draws the CPU's masks from the
// `rng.step` counter it reads on the device, so CUDA-graph replays (every step after the
// second) draw a new mask each step and the fp32 losses stay the CPU executor's (rtol 1e-4);
// the counter state counts the steps. The forward's dropouts run in fused_elementwise chains
// (the plan's generated kernels where NVRTC compiled them, their seeds launch arguments; under
// the emulation their source compiled for the host), the backward's as dropout kernels.
TEST(CudaTraining, DropoutStepsMatchCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto cpu_plan = TinyGptTrainingPlan("cpu", "fp32", false, 1.0, true, "default", 0.1);
  ASSERT_TRUE(cpu_plan.ok()) << cpu_plan.status();
  auto gpu_plan = TinyGptTrainingPlan("cuda", "fp32", false, 1.0, true, "default", 0.1);
  ASSERT_TRUE(gpu_plan.ok()) << gpu_plan.status();
  int dropouts = 0, attention = 0;
  const int in_chains = FusedDropouts(*gpu_plan->module->main());
  for (const auto& n : gpu_plan->module->main()->nodes()) {
    dropouts += n->op() == "dropout";
    if (n->op() == "attention" || n->op() == "attention_grad") {
      ++attention;
      EXPECT_GT(n->GetFloat("dropout", 0.0).value_or(0), 0.0) << n->Describe();
    }
  }
  EXPECT_EQ(in_chains, 5) << "the forward's, in the residual adds and the embeddings' add";
  EXPECT_EQ(dropouts, 5) << "the backward's";
  EXPECT_EQ(attention, 4) << "2 layers, forward and backward";
  int fused = 0;
  for (const auto& n : gpu_plan->module->main()->nodes()) fused += n->op() == "fused_elementwise";
  auto cpu = cpu::Executor::Create(*cpu_plan);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const GeneratedKernelStats before = GetGeneratedKernelStats();
  auto gpu = Executor::Create(*gpu_plan);
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  if (!gpu_plan->cuda_kernels.empty()) {
    EXPECT_EQ(GetGeneratedKernelStats().generated_nodes, before.generated_nodes + fused)
        << "every fused_elementwise on a generated kernel";
  }
  const int steps = 5;
  ExpectDeviceLossesAreCpus(**cpu, **gpu, *cpu_plan, steps, 300);
  if (HasFatalFailure()) return;
  auto gs = (*gpu)->State();
  ASSERT_TRUE(gs.ok()) << gs.status();
  ASSERT_TRUE(gs->count("rng.step"));
  EXPECT_EQ(gs->at("rng.step").GetInt(0), steps);
}

// Grouped-query attention on the device: a tiny Llama with kv_heads 2 < heads 4 trains 3
// AdamW steps with the CPU executor's losses, fp32 (the SIMT flash kernels with k / v per kv
// head) and bf16 (head dim 64: the tensor-core kernels, whose dK / dV blocks sum each kv
// head's group) against the fp32 CPU plan; no repeat of K / V is left in either plan.
TEST(CudaTraining, LlamaGroupedQueryAttentionMatchesCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto model = TinyLlama(256, 4, 2, 128);  // head dim 64, 2 KV heads
  ASSERT_TRUE(model.ok()) << model.status();
  auto compile = [&](const std::string& target, const std::string& precision) {
    return CompileTraining(*model, target, precision, "default", 2, 1e-3);
  };
  auto cpu_plan = compile("cpu", "fp32");
  ASSERT_TRUE(cpu_plan.ok()) << cpu_plan.status();
  auto cpu = cpu::Executor::Create(*cpu_plan);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::vector<double> want;
  for (int step = 0; step < 3; ++step) {
    auto c = (*cpu)->Run(FixedBatch(*cpu_plan, 300 + step));
    ASSERT_TRUE(c.ok()) << c.status();
    want.push_back(c->at(0).GetDouble(0));
  }
  for (const char* precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    auto plan = compile("cuda", precision);
    ASSERT_TRUE(plan.ok()) << plan.status();
    int gqa = 0;
    for (const auto& n : plan->module->main()->nodes()) {
      EXPECT_FALSE(n->op() == "expand" && n->output()->type().rank() == 5) << n->Describe();
      if (n->op() != "attention_grad") continue;
      // dk over the 2 kv heads, on the layout's head axis (bthd: the heads read in place).
      const bool bthd = n->GetString("layout", "bhtd").value_or("") == "bthd";
      gqa += n->output(1)->type().shape[bthd ? 2 : 1] == 2;
    }
    EXPECT_EQ(gqa, 2) << "attention_grad with dk over the 2 kv heads, per layer";
    auto gpu = Executor::Create(*plan);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_TRUE((*gpu)->host_fallback_nodes().empty());
    const double tol = std::string(precision) == "fp32" ? 1e-4 : 5e-3;
    for (int step = 0; step < 3; ++step) {
      auto g = (*gpu)->Run(FixedBatch(*plan, 300 + step));
      ASSERT_TRUE(g.ok()) << g.status();
      const double lg = g->at(0).GetDouble(0);
      EXPECT_NEAR(lg, want[step], tol * std::fabs(want[step])) << "step " << step + 1;
      std::printf("%s step %d: loss cpu %.7f cuda %.7f\n", precision, step + 1, want[step], lg);
    }
  }
}

// Models exported from PyTorch (tests/e2e/make_references.py) train on the device like
// torch.optim.AdamW: transformers' modeling_llama written out (rotary tables computed in the
// forward, repeat_kv, SwiGLU, an additive causal mask), and transformers' own LlamaForCausalLM
// and GPT2LMHeadModel with their shifted losses, each also as torch 2.11's dynamo exporter
// writes it (transformers 5.25). The default passes fuse them as ptc's own
// models (tests/train: TorchExportPlan), every node runs on a CUDA kernel, and 5 steps on one
// batch give torch's losses (fp32: rtol 1e-3, as the CPU test; bf16: within 2%).
class CudaTorchExport : public testing::TestWithParam<std::string> {};

TEST_P(CudaTorchExport, TrainsLikeTorch) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  const std::string dir = std::string(PTC_E2E_DATA_DIR) + "/" + GetParam() + "/";
  std::ifstream mf(dir + "meta.json");
  ASSERT_TRUE(mf) << dir << "meta.json";
  const nlohmann::json meta = nlohmann::json::parse(mf);
  const nlohmann::json& adam = meta["training"]["adamw"];
  std::map<std::string, ir::Tensor> batch;
  for (size_t i = 0; i < meta["inputs"].size(); ++i) {
    auto t = e2e::ReadTensorProtoFile(dir + "input_" + std::to_string(i) + ".pb");
    ASSERT_TRUE(t.ok()) << t.status();
    batch[meta["inputs"][i].get<std::string>()] = t->tensor;
  }
  for (const char* precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    driver::CompileOptions o;
    o.target = "cuda";
    o.precision = precision;
    o.train = true;
    for (auto& [k, v] : meta["dims"].items()) o.dims[k] = v.get<int64_t>();
    o.train_options.optimizer = "adamw";
    o.train_options.lr = adam["lr"].get<double>();
    o.train_options.beta1 = adam["beta1"].get<double>();
    o.train_options.beta2 = adam["beta2"].get<double>();
    o.train_options.eps = adam["eps"].get<double>();
    o.train_options.weight_decay = adam["weight_decay"].get<double>();
    auto plan = driver::CompileOnnxFile(dir + "model.onnx", o);
    ASSERT_TRUE(plan.ok()) << plan.status();
    std::map<std::string, int> ops;
    for (const auto& n : plan->module->main()->nodes()) ++ops[n->op()];
    const bool llama = GetParam().find("llama") != std::string::npos;
    for (const char* op : {"attention", "attention_grad", "linear_ce_loss", "layer_norm"}) {
      EXPECT_GT(ops[op], 0) << "no " << op << " in the plan of the PyTorch export";
    }
    if (llama) {
      EXPECT_GT(ops["rotary"], 0);
      EXPECT_GT(ops["swiglu"], 0);
    }
    // Phi's and GPT-NeoX's partial rotation and GPT-J's interleaved one: one rotary per q / k
    // (Phi's and GPT-NeoX's before the head transposes).
    if (GetParam().find("phi") != std::string::npos || GetParam().find("gptj") != std::string::npos ||
        GetParam().find("neox") != std::string::npos) {
      EXPECT_GT(ops["rotary"], 0);
      EXPECT_EQ(ops["neg"], 0) << "a rotation left as its slices and products";
    }
    for (const char* op : {"sigmoid", "softmax", "transpose", "expand", "sqrt", "cos"}) {
      EXPECT_EQ(ops[op], 0) << op << " left in the plan of the PyTorch export";
    }
    auto gpu = Executor::Create(*plan);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_TRUE((*gpu)->host_fallback_nodes().empty());
    const double tol = std::string(precision) == "fp32" ? 1e-3 : 2e-2;
    for (size_t step = 0; step < adam["losses"].size(); ++step) {
      auto g = (*gpu)->Run(batch);
      ASSERT_TRUE(g.ok()) << g.status();
      const double want = adam["losses"][step].get<double>(), got = g->at(0).GetDouble(0);
      EXPECT_NEAR(got, want, tol * std::fabs(want)) << "loss before update " << step + 1;
      std::printf("%s step %zu: loss torch %.7f cuda %.7f\n", precision, step + 1, want, got);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(E2e, CudaTorchExport,
                         testing::ValuesIn(e2e::WithDynamoTrainingCases(
                             {"gpt_loss_opset17", "llama_loss_opset17", "hf_llama_loss_opset17",
                              "hf_gpt2_loss_opset17"})));

// Autotuning (on by default): the first run times each distinct GEMM problem's cuBLASLt
// candidates (the accumulating ones from a snapshot of their output), later runs and the CUDA
// graphs captured at the second run launch the choices, and the losses stay those of an
// executor without autotuning (fp32: the candidates differ by rounding only).
TEST(CudaAutotune, ExecutorTunesAtTheFirstRunOnly) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto plan = TinyGptTrainingPlan("cuda");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExecutorOptions plain_options;
  plain_options.autotune = false;
  auto plain = Executor::Create(*plan, plain_options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->autotune_summary(), "autotune: off");
  auto tuned = Executor::Create(*plan);
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  std::vector<TuneRecord> after_first;
  for (int step = 0; step < 4; ++step) {
    auto batch = FixedBatch(*plan, 300 + step);
    auto p = (*plain)->Run(batch);
    ASSERT_TRUE(p.ok()) << p.status();
    auto t = (*tuned)->Run(batch);
    ASSERT_TRUE(t.ok()) << t.status();
    const double lp = p->at(0).GetDouble(0), lt = t->at(0).GetDouble(0);
    EXPECT_NEAR(lt, lp, 1e-4 * std::fabs(lp)) << "step " << step + 1;  // as TenStepsMatchCpu
    if (step == 0) after_first = (*tuned)->autotune_records();
  }
  const std::vector<TuneRecord> records = (*tuned)->autotune_records();
  ASSERT_FALSE(records.empty());
  ASSERT_EQ(records.size(), after_first.size());
  int64_t calls = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].key, after_first[i].key);
    EXPECT_EQ(records[i].calls, after_first[i].calls) << "tuned after the first run";
    EXPECT_TRUE(records[i].kind == "gemm" || records[i].kind == "gemm_bgrad" ||
                records[i].kind == "gemm_gelu_grad")
        << records[i].kind;
    EXPECT_GE(records[i].calls, 1);
    calls += records[i].calls;
    for (size_t j = 0; j < i; ++j) EXPECT_NE(records[i].key, records[j].key);
  }
  // Two layers of one shape: fewer problems than GEMM launches.
  EXPECT_GT(calls, static_cast<int64_t>(records.size()));
  EXPECT_NE((*tuned)->graph_status().find("cuda graphs"), std::string::npos)
      << (*tuned)->graph_status();
  const std::string summary = (*tuned)->autotune_summary(/*table=*/true);
  EXPECT_NE(summary.find("autotune: "), std::string::npos) << summary;
  std::printf("%s", summary.c_str());
}

// The tuning file (ExecutorOptions::tune_file): an executor's first run writes its choices, and
// an executor of a later process (here: after the process cache is emptied) reads them back
// instead of timing again, so it launches the same algorithms.
#if PTC_HAVE_CUDA
TEST(CudaAutotune, ChoicesPersistInTheTuningFile) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto plan = TinyGptTrainingPlan("cuda");
  ASSERT_TRUE(plan.ok()) << plan.status();
  const std::string file =
      absl::StrCat(::testing::TempDir(), "/ptc_tune_", ::getpid(), "/cuda-autotune.tsv");
  std::remove(file.c_str());
  ExecutorOptions options;
  options.tune_file = file;
  ClearTuneCache();
  std::vector<TuneRecord> first;
  {
    auto a = Executor::Create(*plan, options);
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE((*a)->Run(FixedBatch(*plan, 7)).ok());
    first = (*a)->autotune_records();
  }
  ASSERT_FALSE(first.empty());
  for (const TuneRecord& r : first) EXPECT_FALSE(r.reused) << r.key;
  std::ifstream in(file);
  int lines = 0;
  for (std::string line; std::getline(in, line);) lines += !line.empty() && line[0] != '#';
  EXPECT_EQ(lines, static_cast<int>(first.size()));
  ClearTuneCache();  // a new process
  auto b = Executor::Create(*plan, options);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE((*b)->Run(FixedBatch(*plan, 7)).ok());
  const std::vector<TuneRecord> second = (*b)->autotune_records();
  ASSERT_EQ(second.size(), first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    EXPECT_EQ(second[i].key, first[i].key);
    EXPECT_TRUE(second[i].reused) << second[i].key;
    EXPECT_EQ(second[i].chosen, first[i].chosen) << second[i].key;
  }
  EXPECT_NE((*b)->autotune_summary().find("reused"), std::string::npos);
  std::filesystem::remove_all(std::filesystem::path(file).parent_path());
}
#endif  // PTC_HAVE_CUDA

// CUDA graphs: an executor replaying the step as graphs (captured at its second run) gives the
// eager executor's losses and final state; a fetch mask leaves the unfetched results (the
// gradients) on the device and returns them empty.
TEST(CudaTraining, GraphReplayMatchesEagerAndFetchSkipsResults) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto plan = TinyGptTrainingPlan("cuda", "fp32", /*keep_gradients=*/true);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExecutorOptions eager_options;
  eager_options.cuda_graphs = false;
  auto eager = Executor::Create(*plan, eager_options);
  ASSERT_TRUE(eager.ok()) << eager.status();
  auto graphs = Executor::Create(*plan);
  ASSERT_TRUE(graphs.ok()) << graphs.status();
  const auto& results = plan->module->main()->results();
  std::vector<bool> fetch(results.size(), false);
  fetch[0] = true;
  for (int step = 0; step < 6; ++step) {
    auto batch = FixedBatch(*plan, 300 + step);
    auto e = (*eager)->Run(batch);
    ASSERT_TRUE(e.ok()) << e.status();
    auto g = step % 2 ? (*graphs)->Run(batch, fetch) : (*graphs)->Run(batch);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_EQ(g->size(), results.size());
    const double le = e->at(0).GetDouble(0), lg = g->at(0).GetDouble(0);
    EXPECT_NEAR(lg, le, 1e-5 * std::fabs(le)) << "step " << step + 1;
    for (size_t i = 1; i < results.size(); ++i) {
      if (step % 2) {
        EXPECT_EQ(g->at(i).nbytes(), 0u) << results[i]->name() << " was not fetched";
      } else {
        EXPECT_EQ(g->at(i).nbytes(), e->at(i).nbytes()) << results[i]->name();
      }
    }
    std::printf("step %d: loss eager %.7f graphs %.7f (%s)\n", step + 1, le, lg,
                (*graphs)->graph_status().c_str());
  }
  EXPECT_EQ((*graphs)->graph_status().rfind("cuda graphs", 0), 0u) << (*graphs)->graph_status();
  EXPECT_EQ((*eager)->graph_status().rfind("eager (cuda_graphs off)", 0), 0u)
      << (*eager)->graph_status();
  // The tiny GPT's adamw_update nodes run as multi-tensor launches.
  EXPECT_NE((*graphs)->graph_status().find("saved by multi-tensor batching"), std::string::npos)
      << (*graphs)->graph_status();
  auto es = (*eager)->State();
  auto gs = (*graphs)->State();
  ASSERT_TRUE(es.ok() && gs.ok());
  for (const auto& [name, t] : *es) {
    const ir::Tensor& u = gs->at(name);
    double worst = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      worst = std::max(worst, std::fabs(u.GetDouble(i) - t.GetDouble(i)) /
                                  (1e-3 + std::fabs(t.GetDouble(i))));
    }
    EXPECT_LT(worst, 1e-3) << name;
  }
  std::vector<bool> wrong(results.size() + 1, true);
  auto bad = (*graphs)->Run(FixedBatch(*plan, 1), wrong);
  EXPECT_FALSE(bad.ok());
}

// In-place optimizer updates (the update's outputs alias the weight / moment storage, no assign
// copies) run as early as their gradients allow (no clipping here, so they interleave with the
// backward): the same losses and final state bit for bit as copied updates at the end.
TEST(CudaTraining, InplaceEarlyUpdatesMatchCopiedUpdates) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto early = TinyGptTrainingPlan("cuda", "fp32", false, /*grad_clip=*/0.0, /*inplace=*/true);
  auto late = TinyGptTrainingPlan("cuda", "fp32", false, /*grad_clip=*/0.0, /*inplace=*/false);
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_LE(early->memory.arena_bytes, late->memory.arena_bytes);
  auto a = Executor::Create(*early);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Executor::Create(*late);
  ASSERT_TRUE(b.ok()) << b.status();
  for (int step = 0; step < 4; ++step) {
    auto batch = FixedBatch(*early, 700 + step);
    auto ra = (*a)->Run(batch);
    auto rb = (*b)->Run(batch);
    ASSERT_TRUE(ra.ok()) << ra.status();
    ASSERT_TRUE(rb.ok()) << rb.status();
    EXPECT_TRUE(ra->at(0).BitEquals(rb->at(0))) << "loss, step " << step + 1;
  }
  auto sa = (*a)->State();
  auto sb = (*b)->State();
  ASSERT_TRUE(sa.ok()) << sa.status();
  ASSERT_TRUE(sb.ok()) << sb.status();
  for (const auto& [name, t] : *sb) EXPECT_TRUE(t.BitEquals(sa->at(name))) << name;
  std::printf("arena: %lld bytes in-place and early, %lld copied at the end; %s\n",
              static_cast<long long>(early->memory.arena_bytes),
              static_cast<long long>(late->memory.arena_bytes), (*a)->graph_status().c_str());
}

// @eval reading the step's weights in place (shared_params) sees every update without a copy:
// after 3 steps it gives the loss of an @eval executor loaded with the step's state.
TEST(CudaTraining, EvalSharesTheStepsWeights) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto plan = TinyGptTrainingPlan("cuda");
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_NE(plan->module->FindFunction("eval"), nullptr);
  auto step = Executor::Create(*plan);
  ASSERT_TRUE(step.ok()) << step.status();
  const std::map<std::string, void*> weights = (*step)->DeviceParams();
  ExecutorOptions shared_options;
  shared_options.function = "eval";
  shared_options.shared_params = &weights;
  auto shared = Executor::Create(*plan, shared_options);
  ASSERT_TRUE(shared.ok()) << shared.status();
  ExecutorOptions own_options;
  own_options.function = "eval";
  auto own = Executor::Create(*plan, own_options);
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_LT((*shared)->memory().state_bytes, (*own)->memory().state_bytes);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*step)->Run(FixedBatch(*plan, 500 + i)).ok());
  auto state = (*step)->State();
  ASSERT_TRUE(state.ok()) << state.status();
  std::map<std::string, ir::Tensor> eval_weights;
  for (const ir::Value* p : plan->module->FindFunction("eval")->params()) {
    if (p->is_param()) eval_weights[p->name()] = state->at(p->name());
  }
  ASSERT_TRUE((*own)->SetState(eval_weights).ok());
  std::map<std::string, ir::Tensor> batch;
  for (const ir::Value* p : plan->module->FindFunction("eval")->params()) {
    if (p->is_param()) continue;
    ASSERT_EQ(p->type().dtype, ir::DType::kI64) << p->name();
    ir::Tensor t(ir::DType::kI64, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<int64_t>()[i] = i % kVocab;
    batch[p->name()] = std::move(t);
  }
  auto a = (*shared)->Run(batch);
  auto b = (*own)->Run(batch);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->at(0).GetDouble(0), b->at(0).GetDouble(0));
}

// Runs wherever ptc was built with CUDA: the KV-cache decoder of a bf16 (and fp32) CUDA
// inference plan can be made, and every node of it has a CUDA kernel (no host fallback).
TEST(CudaGenerate, DecoderOfCudaPlansHasCudaKernels) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
  auto config = models::Gpt2Preset("tiny");
  ASSERT_TRUE(config.ok());
  config->layers = 2;
  config->seq = kSeq;
  auto model = models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  for (const char* precision : {"fp32", "bf16"}) {
    auto plan = GenerationPlan(*model, "cuda", precision);
    ASSERT_TRUE(plan.ok()) << plan.status();
    auto decode = passes::MakeDecodePlan(*plan);
    ASSERT_TRUE(decode.ok()) << precision << ": " << decode.status();
    int writes = 0;
    for (const auto& n : decode->module->main()->nodes()) {
      writes += n->op() == "kv_cache_write";
      EXPECT_TRUE(n->op() == "constant" || n->op() == "assign" || HasDeviceKernel(n->op()))
          << precision << ": " << n->Describe();
    }
    EXPECT_EQ(writes, 2 * config->layers) << precision;
  }
}

// A bf16 inference plan for the device reads q, k, v packed (pack-qkv) and writes the f32
// logits from the LM head's GEMM (fold-matmul-casts; an odd vocabulary and 256 rows: the
// padded f32 path). Its logits are those of the plan without both (split q, k, v; bf16 logits
// cast up) but for the bf16 rounding of the logits the latter has, and near the CPU's fp32.
TEST(CudaInference, Bf16PackedPlanMatchesUnpacked) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto config = models::Gpt2Preset("tiny");
  ASSERT_TRUE(config.ok());
  config->vocab = 1021;
  config->layers = 2;
  config->dim = 64;
  config->heads = 4;
  config->seq = 64;
  auto model = models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  std::map<std::string, ir::Tensor> logits;
  for (const char* variant : {"packed", "unpacked", "cpu"}) {
    const std::string v = variant;
    onnx_import::ImportOptions io;
    io.dims = {{"batch", 4}, {"seq", 64}};
    auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-b16", io);
    ASSERT_TRUE(module.ok()) << module.status();
    driver::CompileOptions o;
    o.target = v == "cpu" ? "cpu" : "cuda";
    o.precision = v == "cpu" ? "fp32" : "bf16";
    o.dims = io.dims;
    if (v == "unpacked") {
      o.pack_qkv = false;
      o.passes = "default,-fold-matmul-casts";
    }
    auto plan = driver::CompileModule(*std::move(module), o);
    ASSERT_TRUE(plan.ok()) << plan.status();
    int packed = 0, casts_up = 0;
    for (const auto& n : plan->module->main()->nodes()) {
      packed += n->op() == "attention" && n->GetString("layout", "").value_or("") == "bt3hd";
      casts_up += n->op() == "cast" && n->output()->type().num_elements() > config->vocab;
    }
    EXPECT_EQ(packed, v == "packed" ? 2 : 0) << v;
    EXPECT_EQ(casts_up, v == "unpacked" ? 1 : 0) << v << ": the logits' cast up";
    std::map<std::string, ir::Tensor> inputs;
    for (const ir::Value* p : plan->module->main()->params()) {
      if (p->is_param()) continue;
      ir::Tensor t(ir::DType::kI64, p->type().shape);
      for (int64_t i = 0; i < t.num_elements(); ++i) {
        t.mutable_data_as<int64_t>()[i] = (i * 7919 + 3) % config->vocab;
      }
      inputs[p->name()] = std::move(t);
    }
    absl::StatusOr<std::vector<ir::Tensor>> r;
    if (v == "cpu") {
      auto exec = cpu::Executor::Create(*plan);
      ASSERT_TRUE(exec.ok()) << exec.status();
      r = (*exec)->Run(inputs);
    } else {
      auto exec = Executor::Create(*plan);
      ASSERT_TRUE(exec.ok()) << exec.status();
      r = (*exec)->Run(inputs);
    }
    ASSERT_TRUE(r.ok()) << v << ": " << r.status();
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].dtype(), ir::DType::kF32);
    logits[v] = (*r)[0];
  }
  auto worst = [&](const std::string& x, const std::string& y, bool relative) {
    const ir::Tensor &a = logits.at(x), &b = logits.at(y);
    double w = 0;
    for (int64_t i = 0; i < a.num_elements(); ++i) {
      const double d = std::fabs(a.GetDouble(i) - b.GetDouble(i));
      w = std::max(w, relative ? d / (1.0 + std::fabs(a.GetDouble(i))) : d);
    }
    return w;
  };
  ASSERT_EQ(logits["packed"].num_elements(), logits["unpacked"].num_elements());
  const double vs_unpacked = worst("packed", "unpacked", true);
  const double vs_cpu = worst("packed", "cpu", false);
  std::printf("bf16 logits: packed vs unpacked %.3g (relative), vs cpu fp32 %.3g\n", vs_unpacked,
              vs_cpu);
  EXPECT_LT(vs_unpacked, 1.0 / 128);  // the unpacked plan's bf16 rounding of the logits
  EXPECT_LT(vs_cpu, 0.1);             // bf16 activations and weights against fp32
}

// The KV-cache decoder of a CUDA plan, fed a sequence one token at a time, gives at each
// position the logits of the full-window plan for that sequence (fp32: to rounding; bf16: the
// two are GEMMs of other shapes, whose algorithms may round differently on a GPU). Until
// session 13 the bf16 decoder kept annotate-causal's causal=1, which the tensor-core attention
// takes by index: its one query read every slot of the cache (a difference of 0.32 on logits
// up to 1.04 at position 0); greedy generation of bf16 plans ran on wrong logits.
TEST(CudaGenerate, DecoderLogitsMatchTheFullWindow) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto gpt = GenerationGpt();
  ASSERT_TRUE(gpt.ok()) << gpt.status();
  // Llama: rotary tables indexed at pos, an untied LM head (fold-matmul-casts' matmul form).
  auto lconfig = models::LlamaPreset("tiny");
  ASSERT_TRUE(lconfig.ok());
  lconfig->vocab = 256;
  lconfig->layers = 2;
  lconfig->kv_heads = lconfig->heads / 2;  // grouped-query attention, its cache per kv head
  lconfig->seq = kSeq;
  auto llama = models::BuildLlama(*lconfig);
  ASSERT_TRUE(llama.ok()) << llama.status();
  for (const auto& [name, model] :
       {std::pair{"gpt2", &*gpt}, std::pair{"llama", &*llama}}) {
    for (const char* precision : {"fp32", "bf16"}) {
      SCOPED_TRACE(std::string(name) + " " + precision);
      auto plan = GenerationPlan(*model, "cuda", precision);
      ASSERT_TRUE(plan.ok()) << plan.status();
      passes::KvDecoderInfo info;
      auto decode = passes::MakeDecodePlan(*plan, &info);
      ASSERT_TRUE(decode.ok()) << decode.status();
      auto full = Executor::Create(*plan);
      ASSERT_TRUE(full.ok()) << full.status();
      auto step = Executor::Create(*decode);
      ASSERT_TRUE(step.ok()) << step.status();
      constexpr int64_t kN = 12;
      ir::Tensor window(ir::DType::kI64, {1, kSeq});
      for (int64_t t = 0; t < kSeq; ++t) {
        window.mutable_data_as<int64_t>()[t] = t < kN ? (t * 37 + 11) % 256 : 0;
      }
      std::string ids_name;
      for (const ir::Value* p : plan->module->main()->params()) {
        if (!p->is_param()) ids_name = p->name();
      }
      auto ref = (*full)->Run({{ids_name, window}});
      ASSERT_TRUE(ref.ok()) << ref.status();
      const int64_t v = 256;
      double worst = 0, scale = 0;
      for (int64_t t = 0; t < kN; ++t) {
        ir::Tensor id(ir::DType::kI64, {1, 1}), at(ir::DType::kI64, {1});
        id.mutable_data_as<int64_t>()[0] = window.data_as<int64_t>()[t];
        at.mutable_data_as<int64_t>()[0] = t;
        auto got = (*step)->Run({{info.ids_input, id}, {info.pos_input, at}});
        ASSERT_TRUE(got.ok()) << got.status();
        for (int64_t j = 0; j < v; ++j) {
          const double a = (*ref)[0].GetDouble(t * v + j), b = (*got)[0].GetDouble(j);
          worst = std::max(worst, std::fabs(a - b));
          scale = std::max(scale, std::fabs(a));
        }
      }
      std::printf("%s %s: decoder vs full window, worst logit difference %.3g (largest %.3g)\n",
                  name, precision, worst, scale);
      EXPECT_LT(worst, (std::string(precision) == "fp32" ? 1e-4 : 0.05) * std::max(scale, 1.0))
          << precision;
    }
  }
}

// Generation on the device (what `ptc generate` of a CUDA plan runs in ptc-cuda): the KV-cache
// decoder and the full window on the CUDA executor give the CPU's greedy text.
TEST(CudaGenerate, GreedyTextMatchesCpu) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto model = GenerationGpt();
  ASSERT_TRUE(model.ok()) << model.status();
  std::map<std::string, std::string> texts;
  for (const char* target : {"cpu", "cuda"}) {
    auto plan = GenerationPlan(*model, target);
    ASSERT_TRUE(plan.ok()) << plan.status();
    auto decode = passes::MakeDecodePlan(*plan);
    ASSERT_TRUE(decode.ok()) << decode.status();
    for (bool cache : {true, false}) {
      generate::GenerateOptions go;
      go.prompt = "The ";
      go.tokens = 40;  // past the window of 32: the cache restarts, the window slides
      go.temperature = 0;
      go.decode_plan = cache ? &*decode : nullptr;
      if (std::string(target) == "cuda") {
        go.runner_factory = [](const plan::Plan& p, bool) -> absl::StatusOr<generate::Runner> {
          auto exec = Executor::Create(p);
          if (!exec.ok()) return exec.status();
          std::shared_ptr<Executor> shared(*std::move(exec));
          return generate::Runner([shared](const std::map<std::string, ir::Tensor>& in) {
            return shared->Run(in);
          });
        };
      }
      auto text = generate::Generate(*plan, go);
      ASSERT_TRUE(text.ok()) << target << ": " << text.status();
      texts[absl::StrCat(target, cache ? " kv" : " full")] = *text;
    }
  }
  EXPECT_EQ(texts["cuda kv"], texts["cpu kv"]);
  EXPECT_EQ(texts["cuda full"], texts["cpu full"]);
}

// fuse-gelu-aux (the GELU in its up-projection's GELU_AUX_BIAS epilogue, gelu' in the DGELU
// epilogue of the gradient's GEMM) trains as the unfused step does: bf16 and fp32, 5 steps,
// losses within the rounding of the low dtype (the fused forms round once where the unfused
// ones round the product first).
TEST(CudaTraining, GeluAuxFusionMatchesUnfusedStep) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  for (const char* precision : {"fp32", "bf16"}) {
    auto fused = TinyGptTrainingPlan("cuda", precision);
    ASSERT_TRUE(fused.ok()) << fused.status();
    auto plain = TinyGptTrainingPlan("cuda", precision, false, 1.0, true,
                                     "default,-fuse-gelu-aux");
    ASSERT_TRUE(plain.ok()) << plain.status();
    int fused_grads = 0, plain_grads = 0;
    for (const auto& n : fused->module->main()->nodes()) fused_grads += n->op() == "gemm_gelu_grad";
    for (const auto& n : plain->module->main()->nodes()) plain_grads += n->op() == "gemm_gelu_grad";
    EXPECT_EQ(fused_grads, 2) << precision << ": one per layer";
    EXPECT_EQ(plain_grads, 0) << precision;
    ExpectSameLosses(*fused, *plain, 5, 50, std::string(precision) == "bf16" ? 5e-3 : 1e-5,
                     precision);
  }
}

// A bf16 step with dropout 0.1: the forward's dropouts in fused_elementwise chains
// (fuse-elementwise) and the backward's in layer_norm_grad's dx_low (fold-norm-casts) train as
// the plan with dropout kernels does (the same masks; fused values are rounded once instead of
// after each op: bf16's tolerance).
TEST(CudaTraining, Bf16DropoutFusionsMatchUnfusedStep) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto fused = TinyGptTrainingPlan("cuda", "bf16", false, 1.0, true, "default", 0.1);
  ASSERT_TRUE(fused.ok()) << fused.status();
  auto plain = TinyGptTrainingPlan("cuda", "bf16", false, 1.0, true,
                                   "default,-fuse-elementwise,-fold-norm-casts", 0.1);
  ASSERT_TRUE(plain.ok()) << plain.status();
  const int in_chains = FusedDropouts(*fused->module->main());
  int in_norms = 0, kernels = 0, plain_kernels = 0;
  for (const auto& n : fused->module->main()->nodes()) {
    kernels += n->op() == "dropout";
    in_norms += n->op() == "layer_norm_grad" && n->GetFloat("low_dropout", 0.0).value_or(0) > 0;
  }
  for (const auto& n : plain->module->main()->nodes()) plain_kernels += n->op() == "dropout";
  EXPECT_EQ(in_chains, 5) << "the forward's: the embeddings' and two residual adds per layer";
  EXPECT_EQ(in_norms, 3) << "the backward's through the layer norms' gradients";
  EXPECT_EQ(kernels, 2) << "the final norm's gradient (f32 dy) and the embeddings'";
  EXPECT_EQ(plain_kernels, 10);
  ExpectSameLosses(*fused, *plain, 5, 50, 5e-3, "bf16 with dropout");
}

// A batch of a learnable stream: each sequence follows x -> (5x + 1) mod V with probability
// 0.9 and jumps to a random token otherwise; labels are the inputs shifted by one. A model can
// only learn the rule, not memorize the batches (every step draws new ones), so the loss falls
// from ln V = 4.16 towards the stream's entropy (about 0.74) and the curve is smooth.
std::map<std::string, ir::Tensor> MarkovBatch(const plan::Plan& plan, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> token(0, kVocab - 1);
  std::bernoulli_distribution jump(0.1);
  std::vector<int64_t> x(kBatch * (kSeq + 1));
  for (int64_t b = 0; b < kBatch; ++b) {
    int64_t* r = x.data() + b * (kSeq + 1);
    r[0] = token(rng);
    for (int64_t t = 1; t <= kSeq; ++t) r[t] = jump(rng) ? token(rng) : (5 * r[t - 1] + 1) % kVocab;
  }
  std::map<std::string, ir::Tensor> batch;
  for (const ir::Value* p : plan.module->main()->params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    const int64_t shift = p->name() == "labels" ? 1 : 0;
    ir::Tensor t(ir::DType::kI64, p->type().shape);
    if (t.num_elements() != kBatch * kSeq) {
      ADD_FAILURE() << p->name() << " is not a [" << kBatch << ", " << kSeq << "] token input";
      continue;
    }
    for (int64_t b = 0; b < kBatch; ++b) {
      for (int64_t i = 0; i < kSeq; ++i) {
        t.mutable_data_as<int64_t>()[b * kSeq + i] = x[b * (kSeq + 1) + i + shift];
      }
    }
    batch[p->name()] = std::move(t);
  }
  return batch;
}

// 200 steps of an fp32 and a `precision` executor on the same batches (MarkovBatch, new ones
// every step); the worst relative difference of the two loss curves (means over windows of 10
// steps) from step `from` on, and the low-precision executor (for its final state).
struct CurveRun {
  double worst = 0;
  plan::Plan low_plan;  // used in place by `low`: declared first, destroyed last
  std::unique_ptr<Executor> low;
};
void RunCurves(const std::string& precision, int from, CurveRun* out) {
  auto fp32 = TinyGptTrainingPlan("cuda", "fp32");
  ASSERT_TRUE(fp32.ok()) << fp32.status();
  auto low = TinyGptTrainingPlan("cuda", precision);
  ASSERT_TRUE(low.ok()) << low.status();
  out->low_plan = *std::move(low);
  auto a = Executor::Create(*fp32);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = Executor::Create(out->low_plan);
  ASSERT_TRUE(b.ok()) << b.status();
  constexpr int kWindow = 10;
  double sum_a = 0, sum_b = 0;
  for (int step = 0; step < 200; ++step) {
    auto batch = MarkovBatch(*fp32, 1000 + step);
    auto la = (*a)->Run(batch);
    ASSERT_TRUE(la.ok()) << la.status();
    auto lb = (*b)->Run(batch);
    ASSERT_TRUE(lb.ok()) << lb.status();
    const double x = la->at(0).GetDouble(0), y = lb->at(0).GetDouble(0);
    ASSERT_TRUE(std::isfinite(y)) << precision << " step " << step + 1;
    sum_a += x;
    sum_b += y;
    if ((step + 1) % kWindow == 0) {
      if (step + 1 - kWindow >= from) {
        out->worst = std::max(out->worst, std::fabs(sum_b - sum_a) / std::fabs(sum_a));
      }
      if ((step + 1) % 50 == 0) {
        std::printf("steps %d-%d: mean loss fp32 %.5f %s %.5f\n", step + 2 - kWindow, step + 1,
                    sum_a / kWindow, precision.c_str(), sum_b / kWindow);
      }
      sum_a = sum_b = 0;
    }
  }
  out->low = *std::move(b);  // after the loop: ASSERTs above return early
}

// bf16 compute with fp32 master weights follows the fp32 loss curve within 2% over 200 steps
// (the issue's bf16 criterion; 10-step means of the same MarkovBatch stream).
TEST(CudaTraining, Bf16LossCurveWithinTwoPercentOfFp32) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  PTC_SKIP_UNDER_EMULATION("two 200-step training runs take minutes on the CPU");
  CurveRun run;
  RunCurves("bf16", 0, &run);
  if (HasFatalFailure()) return;
  EXPECT_LT(run.worst, 0.02);
  std::printf("bf16 vs fp32: worst relative loss difference %.4f over 200 steps\n", run.worst);
}

// fp16 with dynamic loss scaling (scale 65536 at the start): no step is lost for good, the
// loss curve stays within 3% of fp32's once the loss has come down (10-step means from step 50
// on), and the scale ends finite and positive. A step skipped while the scale settles shifts
// the curve by one step: 3% on the steep part (steps 21-30), and up to 1.5% later as the two
// runs see the stream from different weights (measured on the CPU with fp32 skipping step 1).
TEST(CudaTraining, Fp16LossScaledCurveWithinThreePercentOfFp32) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  PTC_SKIP_UNDER_EMULATION("two 200-step training runs take minutes on the CPU");
  CurveRun run;
  RunCurves("fp16", 50, &run);
  if (HasFatalFailure()) return;
  const double worst_late = run.worst;
  auto st = run.low->State();
  ASSERT_TRUE(st.ok()) << st.status();
  const double scale = st->at("opt.loss_scale").GetDouble(0);
  const double updates = st->at("opt.step").GetDouble(0);
  EXPECT_GT(scale, 0);
  EXPECT_TRUE(std::isfinite(scale));
  EXPECT_GE(updates, 190);  // a few skipped steps while the scale settles, at most
  EXPECT_LT(worst_late, 0.03);
  std::printf("fp16: loss scale %g after 200 steps, %g updates, worst relative loss diff %.4f\n",
              scale, updates, worst_late);
}

// match-rotary on the GPU: a tiny Llama's training step (fp32 and bf16, x bf16 with f32 cos /
// sin tables) has rotary nodes with CUDA kernels and no slice / concat, and trains as the step
// compiled with the exported chain does: fp32 to rounding, bf16 within its rounding (the chain
// rounds every product to bf16 and reads bf16 tables; rotary rounds once from f32 tables).
TEST(CudaTraining, RotaryMatchesTheExportedChain) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
  auto model = TinyLlama(kDim, 4, 0, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  auto compile = [&](const std::string& precision, bool rotary) {
    return CompileTraining(*model, "cuda", precision, rotary ? "default" : "default,-match-rotary",
                           kBatch);
  };
  for (const char* precision : {"fp32", "bf16"}) {
    auto fused = compile(precision, true);
    ASSERT_TRUE(fused.ok()) << fused.status();
    auto chain = compile(precision, false);
    ASSERT_TRUE(chain.ok()) << chain.status();
    int rotary = 0, copies = 0;
    for (const auto& n : fused->module->main()->nodes()) {
      EXPECT_TRUE(n->op() == "constant" || n->op() == "assign" || HasDeviceKernel(n->op()))
          << precision << ": " << n->Describe();
      if (n->op() != "rotary") {
        copies += n->op() == "slice" || n->op() == "concat" || n->op() == "slice_grad";
        continue;
      }
      ++rotary;
      EXPECT_EQ(n->input(1)->type().dtype, ir::DType::kF32) << n->Describe();
      EXPECT_EQ(n->input(0)->type().dtype,
                std::string(precision) == "bf16" ? ir::DType::kBF16 : ir::DType::kF32);
    }
    EXPECT_EQ(rotary, 2 * 2 * 2) << precision << ": layers x {q, k} x {forward, backward}";
    EXPECT_EQ(copies, 0) << precision;
    if (!::ptc::cuda::NoDeviceReason().empty()) continue;  // the structure checked, no device
    ExpectSameLosses(*fused, *chain, 3, 70, std::string(precision) == "bf16" ? 1e-2 : 1e-5,
                     precision);
  }
}

// match-swiglu on the GPU: a tiny Llama's training step (fp32 and bf16) has one swiglu per
// layer and one swiglu_grad each in the backward, of the step's activation dtype (bf16 stays
// bf16), no sigmoid, CUDA kernels for both; and trains as the step compiled with the exported
// chain does: fp32 to rounding, bf16 within its rounding (the chain's backward rounds dy * u
// and dy * silu(g) to bf16 on the way).
TEST(CudaTraining, SwigluMatchesTheExportedChain) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
  auto model = TinyLlama(kDim, 4, 0, 0);
  ASSERT_TRUE(model.ok()) << model.status();
  auto compile = [&](const std::string& precision, bool swiglu) {
    return CompileTraining(*model, "cuda", precision, swiglu ? "default" : "default,-match-swiglu",
                           kBatch);
  };
  for (const char* precision : {"fp32", "bf16"}) {
    const ir::DType act =
        std::string(precision) == "bf16" ? ir::DType::kBF16 : ir::DType::kF32;
    auto fused = compile(precision, true);
    ASSERT_TRUE(fused.ok()) << fused.status();
    auto chain = compile(precision, false);
    ASSERT_TRUE(chain.ok()) << chain.status();
    int fwd = 0, bwd = 0, sigmoid = 0;
    for (const auto& n : fused->module->main()->nodes()) {
      EXPECT_TRUE(n->op() == "constant" || n->op() == "assign" || HasDeviceKernel(n->op()))
          << precision << ": " << n->Describe();
      sigmoid += n->op() == "sigmoid";
      if (n->op() == "swiglu" || n->op() == "swiglu_grad") {
        (n->op() == "swiglu" ? fwd : bwd) += 1;
        for (const ir::Value* v : n->inputs()) EXPECT_EQ(v->type().dtype, act) << n->Describe();
      }
    }
    EXPECT_EQ(fwd, 2) << precision << ": one per layer";
    EXPECT_EQ(bwd, 2) << precision;
    EXPECT_EQ(sigmoid, 0) << precision;
    if (!::ptc::cuda::NoDeviceReason().empty()) continue;  // the structure checked, no device
    ExpectSameLosses(*fused, *chain, 3, 90, std::string(precision) == "bf16" ? 1e-2 : 1e-5,
                     precision);
  }
}

}  // namespace
}  // namespace ptc::cuda
