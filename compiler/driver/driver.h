// The compile pipeline shared by the CLI, tests and benches: import -> passes -> memory plan.
#ifndef PTC_COMPILER_DRIVER_DRIVER_H_
#define PTC_COMPILER_DRIVER_DRIVER_H_

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "codegen/cuda/nvrtc_codegen.h"
#include "compiler/autodiff/training.h"
#include "passes/pass.h"
#include "passes/remat.h"
#include "runtime/plan/plan.h"

namespace ptc::driver {

struct CompileOptions {
  std::string target = "cpu";
  std::map<std::string, int64_t> dims;  // --dim NAME=N
  // fp32 (no change) | bf16 | fp16: passes/mixed_precision.cc places the casts right after
  // import (matmul-like ops in the low dtype, norms / softmax / losses in f32; parameters and
  // results keep their types). bf16 / fp16 need --target cuda.
  std::string precision = "fp32";
  std::string passes = "default";       // comma list, "default" or "none"
  std::string print_ir_after;           // regex over pass names
  std::function<void(const std::string& pass, const std::string& ir)> print_sink;
  std::string dump_dir;
  // Training: the forward graph becomes a training step (compiler/autodiff/training.h) before
  // the passes run.
  bool train = false;
  autodiff::TrainOptions train_options;
  // Memory (passes/remat.h, passes/schedule.h, passes/plan_memory.h; training steps only):
  // arena budget in bytes (0: none; infeasible -> error with the minimum feasible budget),
  // remat mode none | per-block | auto, optimizer updates written in place into the
  // parameter storage (memory plan buffers at offset -1 aliasing the parameter; the CPU and
  // CUDA executors bind them; with them the schedule also runs each update as early as it
  // can), and the trade-off sweep (CompileReport).
  int64_t mem_budget = 0;
  std::string remat = "auto";
  bool inplace_updates = true;
  bool mem_sweep = false;
  // --target cuda: every fused_elementwise becomes generated CUDA code compiled by NVRTC for
  // cuda_arch and stored in the plan (codegen/cuda/nvrtc_codegen.h). Without NVRTC the plan
  // has no kernels and the runtime interprets the programs. nvrtc_library: see GetNvrtc.
  std::string cuda_arch = "sm_90";
  bool cuda_codegen = true;
  // --target cuda: attention reads q, k, v as slots of the QKV projection's output
  // (passes/pack_qkv.cc); false keeps the split / concat (comparisons).
  bool pack_qkv = true;
  std::string nvrtc_library;
  // Training: every dropout of the model gets this ratio (0 removes them all); < 0 keeps the
  // model's own (`ptc model --dropout`, or Dropout nodes exported in training mode).
  double dropout = -1;
};

struct CompileReport {
  std::vector<passes::PassTiming> pass_timings;
  double import_seconds = 0;
  int64_t nodes_before = 0;
  int64_t nodes_after = 0;
  passes::RematResult remat;                // training steps
  std::vector<passes::SweepPoint> sweep;    // with CompileOptions::mem_sweep
  cuda::codegen::GenerateReport cuda_kernels;  // --target cuda
  // Training steps: the forward's dropouts, those on a softmax's output (attention
  // probabilities), and the attentions that fuse-attention made with such a dropout taken in
  // (the others stay unfused, their B x H x T x T probabilities stored).
  int64_t dropouts = 0;
  int64_t dropouts_after_softmax = 0;
  int64_t attention_dropouts = 0;
  // ... and the dropouts that fuse-elementwise took into fused_elementwise chains ("dropoutK"
  // tokens: GPT-2's residual adds), counted in the step's forward.
  int64_t elementwise_dropouts = 0;
};

absl::StatusOr<plan::Plan> CompileOnnxFile(const std::string& model_path,
                                           const CompileOptions& options,
                                           CompileReport* report = nullptr);
// Compiles an already-imported module (tests, `ptc model` builders).
absl::StatusOr<plan::Plan> CompileModule(std::unique_ptr<ir::Module> module,
                                         const CompileOptions& options,
                                         CompileReport* report = nullptr);

// One function of the module (`function`; empty: its main, a training plan's step) as an
// ONNX model (opset 17) that ONNX Runtime and Netron open: fused ops are expanded into
// standard ONNX ops first (passes lower-fused, dce); training ops keep the "ai.ptc" domain.
absl::StatusOr<std::string> ExportOnnx(const ir::Module& module, std::string_view function = "");

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_DRIVER_H_
