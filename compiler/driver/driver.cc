#include "compiler/driver/driver.h"

#include <chrono>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/exporter.h"
#include "compiler/onnx/importer.h"
#include "passes/passes.h"
#include "compiler/support/status.h"
#include "passes/plan_memory.h"
#include "passes/remat.h"
#include "passes/schedule.h"

namespace ptc::driver {
namespace {

// Nodes between the first and the last optimizer update of a multi-tensor group (schedule's
// GroupUpdates, CUDA plans).
constexpr int kUpdateGroupWindow = 32;


double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Workspace bytes of a node's CPU kernel (0 for constants, which have no kernel).
absl::StatusOr<int64_t> CpuWorkspaceBytes(const ir::Node& node) {
  if (node.op() == "constant") return 0;
  PTC_ASSIGN_OR_RETURN(auto kernel, cpu::CreateKernel(node));
  return static_cast<int64_t>(kernel->WorkspaceBytes());
}

// cuda plans: the CUDA executor sizes its kernels' scratch itself (runtime/cuda/executor.cc),
// and the CPU kernels may not exist for the plan's dtypes (bf16 attention).
absl::StatusOr<int64_t> NoWorkspace(const ir::Node&) { return 0; }

}  // namespace

absl::StatusOr<plan::Plan> CompileModule(std::unique_ptr<ir::Module> module,
                                         const CompileOptions& options, CompileReport* report) {
  if (options.target != "cpu" && options.target != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown target '", options.target, "'; use --target cpu or --target cuda"));
  }
  // Training on cuda: the same training step; the CUDA executor keeps parameters and optimizer
  // state in device memory and applies the assigns after the step (runtime/cuda/executor.h),
  // `ptc run` hands the plan to ptc-cuda, which runs the CPU trainer's loop on it.
  if (options.precision != "fp32" && options.precision != "bf16" &&
      options.precision != "fp16") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown --precision '", options.precision, "'; use fp32, bf16 or fp16"));
  }
  if (options.precision != "fp32" && options.target == "cpu") {
    // The CPU kernels widen f16/bf16 operands to f32 around the f32 kernel (codegen/cpu/
    // kernel.cc HalfWrapperKernel), and attention, fused_matmul and the training ops have no
    // half kernels at all: a low-precision CPU plan would be slower and could not run.
    return absl::InvalidArgumentError(absl::StrCat(
        "--precision ", options.precision, " needs --target cuda: the CPU kernels compute in "
        "f32 (f16/bf16 matmuls are only emulated by widening to f32, attention and the "
        "training ops have no f16/bf16 kernels); use --precision fp32 on cpu"));
  }
  if (options.target == "cuda" && options.cuda_codegen) {
    PTC_RETURN_IF_ERROR(cuda::codegen::ValidateCudaArch(options.cuda_arch));
  }
  ir::Function* main = module->main();
  if (main == nullptr) return absl::InvalidArgumentError("the model has no function to compile");
  if (report) report->nodes_before = static_cast<int64_t>(main->nodes().size());
  PTC_RETURN_IF_ERROR(ir::Verify(*module));
  // Pass timings and counters in the order the passes ran (--stats): the pre-autodiff clean-up,
  // mixed precision, then the pipeline.
  std::vector<passes::PassTiming> early_timings;
  // Inference: evaluation mode, dropout as the identity, before any pass sees the graph (a
  // dropout after a softmax would hide an attention from fuse-attention); with --passes none
  // too: it is what the plan computes. A training step keeps its dropouts (its @eval does not).
  if (!options.train) {
    PTC_RETURN_IF_ERROR(passes::CreateStripDropoutPass()->Run(*module).status());
  } else if (options.dropout >= 0) {
    PTC_RETURN_IF_ERROR(passes::SetDropoutRatio(*module, options.dropout).status());
  }
  if (report && options.train) {
    for (const auto& n : main->nodes()) {
      if (n->op() != "dropout") continue;
      ++report->dropouts;
      // Through casts (transformers' attn_weights.type(value.dtype), an f32 -> f32 cast
      // until simplify removes it).
      const ir::Node* p = n->input(0)->producer();
      while (p != nullptr && p->op() == "cast") p = p->input(0)->producer();
      report->dropouts_after_softmax += p != nullptr && p->op() == "softmax";
    }
  }
  if ((options.train || options.precision != "fp32") && options.passes != "none") {
    // Before autodiff: GELU as one op, so the backward keeps only its input (not the four
    // intermediates of x*0.5*(1+erf(x/sqrt2)), or the eight of the tanh form) and uses the
    // gelu_grad kernel.
    // Before mixed precision too (inference with --precision): the casts it places around
    // the f32 softmax would hide the attention pattern from fuse-attention (and the causal
    // mask from the KV-cache decoder's rules).
    // The fusions below honor "-NAME" in --passes ("default,-match-rotary"), as the pipeline
    // after autodiff does: a plan without one of them, for comparisons.
    const std::set<std::string> dropped = passes::DroppedPasses(options.passes);
    passes::Pipeline pre;
    // Each one of passes::PreAutodiffFusions() (which lets "-NAME" name it), in its order.
    size_t next_fusion = 0;
    auto fusion = [&](std::unique_ptr<passes::Pass> pass) {
      const std::vector<std::string>& order = passes::PreAutodiffFusions();
      if (next_fusion >= order.size() || order[next_fusion] != pass->name()) {
        return absl::InternalError(absl::StrCat("pre-autodiff fusion ", std::string(pass->name()),
                                                " is not passes::PreAutodiffFusions()'s next"));
      }
      ++next_fusion;
      if (!dropped.count(std::string(pass->name()))) pre.Add(std::move(pass));
      return absl::OkStatus();
    };
    pre.Add(passes::CreateFoldConstantsPass());
    pre.Add(passes::CreateSimplifyPass());
    pre.Add(passes::CreateCsePass());
    pre.Add(passes::CreateDcePass());
    passes::FuseElementwiseOptions gelu_only;
    gelu_only.fuse_chains = false;
    PTC_RETURN_IF_ERROR(fusion(passes::CreateFuseElementwisePass(gelu_only)));
    // RMSNorm as one layer_norm {rms=1}: one kernel each way instead of six ops and their
    // kept intermediates (Llama's two norms per layer).
    PTC_RETURN_IF_ERROR(fusion(passes::CreateMatchRmsNormPass()));
    // Rotary embeddings as one op: the backward is one inverse rotation per q / k instead of
    // slice_grad / concat / reduce chains (passes/match_rotary.cc).
    PTC_RETURN_IF_ERROR(fusion(passes::CreateMatchRotaryPass()));
    // SwiGLU as one op: its gradient recomputes sigmoid(g), so the step keeps only the gate and
    // up projections, not sigmoid(g) and silu(g) (passes/match_swiglu.cc).
    PTC_RETURN_IF_ERROR(fusion(passes::CreateMatchSwigluPass()));
    // Attention as one op before autodiff too: its gradient (attention_grad) recomputes the
    // softmax blockwise, so the step never keeps the B x H x T x T probabilities (GPT-2 small at
    // 16 x 1024: 9 GiB of the 26 GiB arena). fold-constants folds the not() that a keep-mask
    // (true = attend) gets.
    PTC_RETURN_IF_ERROR(fusion(passes::CreateFuseAttentionPass()));
    // The LM head and its loss as one op: neither the N x V logits nor their log-probs and
    // gradients are stored (passes/fuse_linear_ce.cc); with --precision bf16 / fp16 its GEMMs
    // run in the low dtype, the softmax in f32.
    PTC_RETURN_IF_ERROR(fusion(passes::CreateFuseLinearCePass()));
    // After the fusions (match-rotary reads a rotation's half slices as slices): slices that
    // partition an axis as one split, whose gradient is one concat instead of a zero-padded
    // slice_grad per part and their sum (Phi-3's q | k | v).
    PTC_RETURN_IF_ERROR(fusion(passes::CreateSlicesAsSplitPass()));
    pre.Add(passes::CreateFoldConstantsPass());
    pre.Add(passes::CreateDcePass());
    PTC_RETURN_IF_ERROR(pre.Run(*module));
    early_timings = pre.timings();
  }
  if (options.precision != "fp32") {
    // After the pre-autodiff clean-up (so that gelu is one op and constants are folded) and
    // before autodiff: the backward is built through the casts, so parameters, gradients and
    // optimizer state stay f32 (master weights) while the GEMMs run in the low dtype. Also with
    // --passes none: the precision is part of what the plan computes, not an optimization.
    // For inference it runs before the pipeline, whose fold-constants folds the casts of
    // constants.
    passes::PipelineOptions mp_opts;
    mp_opts.print_ir_after = options.print_ir_after;
    mp_opts.print_sink = options.print_sink;
    passes::Pipeline mp(mp_opts);
    passes::MixedPrecisionOptions mpo;
    mpo.low = options.precision == "bf16" ? ir::DType::kBF16 : ir::DType::kF16;
    mp.Add(passes::CreateMixedPrecisionPass(mpo));
    PTC_RETURN_IF_ERROR(mp.Run(*module));
    for (const auto& t : mp.timings()) early_timings.push_back(t);
  }
  if (options.train) {
    if (auto it = module->metadata().find("torch.folded_parameters");
        it != module->metadata().end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot train this model: torch.onnx's optimizer folded parameters into constants, "
          "which a training step could not update: ", it->second, ". Export for training "
          "without it: torch.onnx.export(model, args, path, dynamo=True, optimize=False); "
          "inference plans of this file are fine"));
    }
    // @eval (forward + loss) is copied before @main becomes the training step.
    std::unique_ptr<ir::Module> forward = module->Clone();
    PTC_RETURN_IF_ERROR(passes::CreateStripDropoutPass()->Run(*forward).status());
    PTC_RETURN_IF_ERROR(autodiff::BuildTrainingStep(*module, options.train_options));
    PTC_RETURN_IF_ERROR(
        autodiff::AddEvalFunction(*module, *forward->main(), options.train_options));
    PTC_RETURN_IF_ERROR(ir::Verify(*module));
  }

  passes::PipelineOptions popts;
  popts.print_ir_after = options.print_ir_after;
  popts.print_sink = options.print_sink;
  popts.dump_dir = options.dump_dir;
  passes::Pipeline pipeline(popts);
  PTC_ASSIGN_OR_RETURN(auto pass_list, passes::CreatePasses(options.passes));
  for (auto& p : pass_list) pipeline.Add(std::move(p));
  // The CUDA backward reads each attention's saved log-sum-exp instead of running the flash
  // forward again; the CPU one recomputes its probabilities from the scores either way.
  // And attention reads q, k, v in place from the QKV projection's output, its gradient
  // written packed (no split / concat per layer); in inference plans too (their KV-cache
  // decoder is built from an unpacked copy: passes::MakeDecodePlan).
  if (options.target == "cuda" && options.passes != "none") {
    if (options.train) pipeline.Add(passes::CreateSaveAttentionStatsPass());
    if (options.pack_qkv) pipeline.Add(passes::CreatePackQkvPass());
  }
  PTC_RETURN_IF_ERROR(pipeline.Run(*module));
  if (report) {
    report->pass_timings = early_timings;
    for (const auto& t : pipeline.timings()) report->pass_timings.push_back(t);
    report->nodes_after = static_cast<int64_t>(main->nodes().size());
    for (const auto& n : main->nodes()) {
      report->attention_dropouts +=
          n->op() == "attention" && n->GetFloat("dropout", 0.0).value_or(0) > 0;
      // The forward's (before remat, which runs below): the gradients' dropouts ("d." values,
      // compiler/autodiff) draw the same masks again.
      if (n->op() == "fused_elementwise" && n->has_attr("dropout_ratio") &&
          !absl::StartsWith(n->output()->name(), "d.")) {
        absl::StatusOr<ir::FusedProgram> p = ir::ParseFusedProgram(*n);
        if (p.ok()) report->elementwise_dropouts += static_cast<int64_t>(p->dropouts.size());
      }
    }
  }

  const bool memory_passes = options.train || options.remat == "per-block" || options.mem_budget > 0;
  const bool inplace = options.inplace_updates && options.train;
  // Elementwise outputs in a dying input's buffer: the CPU kernels read each element before
  // writing it (the CUDA kernels' __restrict__ operands have not been checked on a device).
  const bool cpu = options.target == "cpu";
  const auto workspace = cpu ? CpuWorkspaceBytes : NoWorkspace;
  if (memory_passes) {
    // Order first (a shorter-lived schedule), then remat on that order; plan-memory last.
    // CUDA: the early updates of one layer's parameters back to back (multi-tensor AdamW
    // launches); the CPU runs updates one by one either way.
    const int group_window = cpu ? 0 : kUpdateGroupWindow;
    PTC_RETURN_IF_ERROR(passes::CreateSchedulePass(/*hoist_updates=*/inplace, group_window)
                            ->Run(*module)
                            .status());
    passes::RematOptions ropts;
    ropts.mode = options.remat;
    ropts.budget = options.mem_budget;
    ropts.workspace_bytes = workspace;
    ropts.inplace_updates = inplace;
    ropts.reuse_elementwise_inputs = cpu;
    if (options.mem_sweep) {
      PTC_ASSIGN_OR_RETURN(auto sweep, passes::RematSweep(*module, ropts, 8));
      if (report) report->sweep = std::move(sweep);
    }
    PTC_ASSIGN_OR_RETURN(passes::RematResult rr, passes::Rematerialize(*module, ropts));
    if (report) report->remat = rr;
    main = module->main();  // remat replaces the module's functions
    PTC_RETURN_IF_ERROR(ir::Verify(*module));
    if (report) report->nodes_after = static_cast<int64_t>(main->nodes().size());
  }

  passes::PlanMemoryOptions mopts;
  mopts.workspace_bytes = workspace;
  mopts.inplace_updates = inplace;
  mopts.reuse_elementwise_inputs = cpu;
  // CUDA: every arena buffer 256-byte aligned, as cudaMalloc's, which cuBLASLt assumes unless
  // told otherwise (runtime/cuda/gemm.cc GuaranteedAlign) and the 16-byte vector paths need.
  if (!cpu) mopts.alignment = 256;
  PTC_ASSIGN_OR_RETURN(plan::MemoryPlan memory, passes::PlanMemory(*main, mopts));
  if (options.mem_budget > 0 && memory.arena_bytes > options.mem_budget) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the planned arena of ", memory.arena_bytes, " bytes exceeds --mem-budget ",
        options.mem_budget, " (remat ", options.remat, "); raise the budget or use --remat auto"));
  }

  plan::Plan plan;
  plan.module = std::move(module);
  plan.target = options.target;
  plan.memory = std::move(memory);
  plan.options["passes"] = options.passes;
  plan.options["precision"] = options.precision;
  if (options.train) {
    const autodiff::TrainOptions& t = options.train_options;
    plan.options["train"] = "1";
    plan.options["optimizer"] = t.optimizer;
    plan.options["lr"] = absl::StrCat(t.lr);
    plan.options["weight_decay"] = absl::StrCat(t.weight_decay);
    plan.options["schedule"] = t.schedule;
    plan.options["accumulate"] = absl::StrCat(t.accumulate);
    if (!t.loss.empty()) plan.options["loss"] = t.loss;
  }
  for (const auto& [name, value] : options.dims) {
    plan.options[absl::StrCat("dim.", name)] = absl::StrCat(value);
  }
  if (options.target == "cuda" && options.cuda_codegen) {
    cuda::codegen::GenerateOptions gopts;
    gopts.arch = options.cuda_arch;
    gopts.nvrtc_library = options.nvrtc_library;
    cuda::codegen::GenerateReport grep;
    PTC_ASSIGN_OR_RETURN(plan.cuda_kernels,
                         cuda::codegen::GenerateCudaKernels(*plan.module, gopts, &grep));
    plan.options["cuda_arch"] = options.cuda_arch;
    if (report) report->cuda_kernels = grep;
  }
  return plan;
}

absl::StatusOr<plan::Plan> CompileOnnxFile(const std::string& model_path,
                                           const CompileOptions& options, CompileReport* report) {
  onnx_import::ImportOptions iopts;
  iopts.dims = options.dims;
  double t0 = Now();
  PTC_ASSIGN_OR_RETURN(auto module, onnx_import::ImportOnnxFile(model_path, iopts));
  if (report) report->import_seconds = Now() - t0;
  return CompileModule(std::move(module), options, report);
}

absl::StatusOr<std::string> ExportOnnx(const ir::Module& module, std::string_view function) {
  const ir::Function* fn = function.empty() ? module.main() : module.FindFunction(function);
  if (fn == nullptr) {
    std::vector<std::string> names;
    for (const auto& f : module.functions()) names.push_back(f->name());
    return absl::NotFoundError(absl::StrCat("export: no function '", std::string(function),
                                            "'; the module has: ", absl::StrJoin(names, ", ")));
  }
  // An ONNX model is one graph: a copy of the module with that function alone (a training
  // plan's @eval is exported on its own with --function eval).
  auto copy = std::make_unique<ir::Module>();
  copy->tensors() = module.tensors();
  copy->metadata() = module.metadata();
  copy->CopyFunction(*fn, fn->name());
  passes::Pipeline pipeline;
  pipeline.Add(passes::CreateLowerFusedPass());
  pipeline.Add(passes::CreateDcePass());
  PTC_RETURN_IF_ERROR(pipeline.Run(*copy));
  return onnx_import::ExportOnnxBytes(*copy);
}

}  // namespace ptc::driver
