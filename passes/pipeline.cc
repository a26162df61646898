// The pass pipeline: runs passes in order, verifies the IR after each one, records time and
// counters per pass, prints or dumps the IR after selected passes. Also the one explicit list
// of every pass (RegisteredPasses) and the default pipelines.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/support/status.h"
#include "passes/pass.h"
#include "passes/kv_cache.h"
#include "passes/passes.h"
#include "passes/remat.h"

namespace ptc::passes {
namespace {

absl::Status WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) {
    return absl::UnavailableError(
        absl::StrCat("cannot write IR dump '", path.string(), "': check that --dump-dir is a ",
                     "writable folder"));
  }
  return absl::OkStatus();
}

// Keeps the status code (an InvalidArgument from a pass stays one) and prefixes the message.
absl::Status Annotate(const absl::Status& s, const std::string& prefix) {
  return absl::Status(s.code(), absl::StrCat(prefix, s.message()));
}

}  // namespace

std::vector<std::string> Pipeline::PassNames() const {
  std::vector<std::string> names;
  for (const auto& p : passes_) names.emplace_back(p->name());
  return names;
}

absl::Status Pipeline::Run(ir::Module& module) {
  timings_.clear();
  std::optional<std::regex> print_re;
  if (!options_.print_ir_after.empty()) {
    try {
      print_re.emplace(options_.print_ir_after, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("--print-ir-after: invalid regex '",
                                                     options_.print_ir_after, "': ", e.what()));
    }
  }
  std::filesystem::path dump_dir;
  if (!options_.dump_dir.empty()) {
    dump_dir = options_.dump_dir;
    std::error_code ec;
    std::filesystem::create_directories(dump_dir, ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("cannot create --dump-dir '", dump_dir.string(),
                                                 "': ", ec.message()));
    }
    PTC_RETURN_IF_ERROR(WriteFile(dump_dir / "00-input.ir", ir::PrintModule(module)));
  }
  auto sink = options_.print_sink;
  if (!sink) {
    sink = [](const std::string& pass, const std::string& text) {
      std::fprintf(stderr, "// -----// IR Dump After %s //----- //\n%s\n", pass.c_str(),
                   text.c_str());
    };
  }

  for (size_t i = 0; i < passes_.size(); ++i) {
    Pass& pass = *passes_[i];
    const std::string name(pass.name());
    auto start = std::chrono::steady_clock::now();
    absl::StatusOr<bool> changed = pass.Run(module);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    timings_.push_back(PassTiming{name, seconds, changed.ok() && *changed, pass.counters()});
    if (!changed.ok()) {
      return Annotate(changed.status(), absl::StrCat("pass '", name, "' failed: "));
    }
    if (options_.verify_each) {
      absl::Status v = ir::Verify(module);
      if (!v.ok()) {
        // Pass bugs are internal errors; the message says which pass to blame.
        return absl::InternalError(absl::StrCat("pass '", name, "' produced invalid IR: ",
                                                v.message(),
                                                " (rerun with --print-ir-after=", name,
                                                " to see it)"));
      }
    }
    if (print_re && std::regex_match(name, *print_re)) sink(name, ir::PrintModule(module));
    if (!dump_dir.empty()) {
      PTC_RETURN_IF_ERROR(WriteFile(dump_dir / absl::StrFormat("%02d-%s.ir", i + 1, name),
                                    ir::PrintModule(module)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> FunctionPass::Run(ir::Module& module) {
  bool changed = false;
  for (const auto& fn : module.functions()) {
    PTC_ASSIGN_OR_RETURN(bool c, RunOnFunction(module, *fn));
    changed |= c;
  }
  return changed;
}

const std::vector<PassInfo>& RegisteredPasses() {
  static const auto* passes = new std::vector<PassInfo>{
      {"fold-param-casts",
       "inference: weights read only through casts (--precision) are stored converted",
       [] { return CreateFoldParamCastsPass(); }},
      {"fold-constants", "evaluate nodes whose inputs are all constants",
       [] { return CreateFoldConstantsPass(); }},
      {"simplify", "remove no-op shape ops, merge reshape/transpose chains",
       [] { return CreateSimplifyPass(); }},
      {"fold-gemm-transpose", "2-D transposes around a gemm -> its trans_a / trans_b flags",
       [] { return CreateFoldGemmTransposePass(); }},
      {"annotate-causal", "attention with a constant causal-triangle mask -> causal=1",
       [] { return CreateAnnotateCausalPass(); }},
      {"save-attention-stats",
       "training: attention outputs its log-sum-exp for attention_grad (no forward recompute)",
       [] { return CreateSaveAttentionStatsPass(); }},
      {"pack-qkv",
       "attention reads q, k, v as slots of the QKV projection's output (no split / concat)",
       [] { return CreatePackQkvPass(); }},
      {"unpack-qkv", "packed (bt3hd) forward attention back to split q, k, v (the KV-cache rules)",
       [] { return CreateUnpackQkvPass(); }},
      {"cse", "merge identical nodes (same op, inputs and attributes)",
       [] { return CreateCsePass(); }},
      {"dce", "remove nodes whose outputs are unused", [] { return CreateDcePass(); }},
      {"lower-fused", "expand fused ops into core ops with ONNX forms (for export)",
       [] { return CreateLowerFusedPass(); }},
      {"fuse-elementwise", "match gelu; fuse chains of elementwise ops (CPU)",
       [] { return CreateFuseElementwisePass(); }},
      {"remat", "training steps: recompute every block in the backward (per-block)",
       [] {
         RematOptions o;
         o.mode = "per-block";
         return CreateRematPass(o);
       }},
      {"schedule", "move pure nodes down to their first reader (lowers the peak)",
       [] { return CreateSchedulePass(); }},
      {"match-gelu",
       "match x*0.5*(1+erf(x/sqrt2)) into gelu, x*0.5*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) "
       "into gelu {approximate=tanh} (fuse-elementwise's first step)",
       [] {
         FuseElementwiseOptions o;
         o.fuse_chains = false;
         return CreateFuseElementwisePass(o);
       }},
      {"match-rms-norm",
       "match scale * x / sqrt(reduce_mean(x^2) + eps) (RMSNorm) into layer_norm {rms=1}",
       [] { return CreateMatchRmsNormPass(); }},
      {"match-rotary",
       "x1*cos - x2*sin, x2*cos + x1*sin concatenated (or x*cos + rotate_half(x)*sin) -> rotary",
       [] { return CreateMatchRotaryPass(); }},
      {"slices-as-split",
       "slices cutting one axis into parts that cover it -> one split (Phi-3's q | k | v: the "
       "gradient is one concat)",
       [] { return CreateSlicesAsSplitPass(); }},
      {"strip-dropout",
       "evaluation mode: dropout -> identity (the driver runs it on inference plans and @eval)",
       [] { return CreateStripDropoutPass(); }},
      {"match-swiglu", "g * sigmoid(g) * u (Llama's SwiGLU MLP gate) -> swiglu",
       [] { return CreateMatchSwigluPass(); }},
      {"fuse-matmul-bias", "matmul + transposed weight + bias + gelu/relu -> fused_matmul",
       [] { return CreateFuseMatMulBiasPass(); }},
      {"fold-matmul-casts",
       "--precision: a fused_matmul's output cast up to f32 -> the fused_matmul writes f32",
       [] { return CreateFoldMatMulCastsPass(); }},
      {"fuse-gelu-aux",
       "training: gelu into its fused_matmul (which keeps the gelu's input), gelu_grad into "
       "the gemm before it",
       [] { return CreateFuseGeluAuxPass(); }},
      {"fuse-residual-add",
       "add(residual, fused_matmul(..., bias)) -> fused_matmul's addend (one GEMM epilogue)",
       [] { return CreateFuseResidualAddPass(); }},
      {"fuse-attention", "softmax(q k^T * scale, mask) v (+ head transposes) -> attention",
       [] { return CreateFuseAttentionPass(); }},
      {"fuse-linear-ce", "LM head matmul + softmax_ce_loss -> linear_ce_loss (no N x V logits)",
       [] { return CreateFuseLinearCePass(); }},
      {"fuse-bias-grad",
       "training: a linear layer's weight-gradient gemm + bias-gradient reduce_sum -> gemm_bgrad",
       [] { return CreateFuseBiasGradPass(); }},
      {"fold-norm-casts",
       "--precision: casts of layer_norm's output / layer_norm_grad's dy -> the norms' dtypes",
       [] { return CreateFoldNormCastsPass(); }},
      {"fold-grad-casts",
       "--precision: linear_ce_loss's gradient parts cast up to f32 -> written in f32",
       [] { return CreateFoldGradCastsPass(); }},
      {"fuse-norm-grad-add",
       "training: add(other gradient, layer_norm_grad's dx) -> layer_norm_grad's addend",
       [] { return CreateFuseNormGradAddPass(); }},
      {"mixed-precision-bf16",
       "matmul-like ops in bf16, norms/softmax/reductions/losses in f32 (--precision bf16)",
       [] { return CreateMixedPrecisionPass({.low = ir::DType::kBF16}); }},
      {"mixed-precision-fp16",
       "matmul-like ops in f16, norms/softmax/reductions/losses in f32 (--precision fp16)",
       [] { return CreateMixedPrecisionPass({.low = ir::DType::kF16}); }},
      {"kv-cache", "add @decode: a one-token decoder of @main with a KV cache (passes/kv_cache.h)",
       [] { return CreateKvCachePass(); }},
  };
  return *passes;
}

std::vector<std::string> DefaultPassList(std::string_view target) {
  // fuse-bias-grad after cse: dW's and db's views of the output gradient are one value then.
  // fold-norm-casts: only --precision plans have the casts it folds; after fuse-norm-grad-add,
  // whose addend is part of the dx it casts.
  // match-rms-norm and match-swiglu after cse (one x under the square and the division, one g
  // under the sigmoid and the product) and before fuse-elementwise (which would take the
  // chains); training plans had them before autodiff.
  std::vector<std::string> list = {"fold-param-casts", "fold-constants", "simplify",
                                   "fold-gemm-transpose", "annotate-causal", "cse",
                                   "match-rms-norm", "match-swiglu", "fuse-bias-grad",
                                   "fuse-norm-grad-add", "fold-norm-casts", "fold-grad-casts",
                                   "dce"};
  if (target == "cpu") {
    // fuse-elementwise pays on CPU: a GPT-2-like MLP/residual block measured faster with it
    // (see tools/ptc_opt --bench and the passes report); it runs after cse so that duplicated
    // subexpressions are not fused twice, and dce cleans up the absorbed producers.
    // match-gelu first so that fuse-matmul-bias sees one gelu op; both fusions before
    // fuse-elementwise, which would otherwise take the bias adds and the attention scaling.
    // Measured on bench/ (GPT, batch 8 x 128): see bench/README.md.
    list.push_back("match-gelu");
    list.push_back("match-rotary");  // training plans matched it before autodiff already
    list.push_back("fuse-matmul-bias");
    list.push_back("fuse-residual-add");
    list.push_back("fold-matmul-casts");  // after fuse-residual-add: its f32 form first
    list.push_back("fuse-gelu-aux");      // after fuse-matmul-bias: its fused_matmul
    list.push_back("fuse-attention");
    list.push_back("fold-constants");  // the not() of a constant keep-mask (fuse-attention)
    list.push_back("fuse-elementwise");
    list.push_back("dce");
  }
  return list;
}

namespace {

// The entries of a comma-separated pass list, whitespace stripped.
std::vector<std::string> PassListEntries(std::string_view list) {
  std::vector<std::string> entries;
  for (absl::string_view part : absl::StrSplit(std::string(list), ',')) {
    entries.emplace_back(absl::StripAsciiWhitespace(part));
  }
  return entries;
}

}  // namespace

const std::vector<std::string>& PreAutodiffFusions() {
  static const std::vector<std::string>* names = new std::vector<std::string>{
      "match-gelu", "match-rms-norm", "match-rotary", "match-swiglu",
      "fuse-attention", "fuse-linear-ce", "slices-as-split"};
  return *names;
}

std::set<std::string> DroppedPasses(std::string_view list) {
  std::set<std::string> dropped;
  for (const std::string& e : PassListEntries(list)) {
    if (!e.empty() && e[0] == '-') dropped.insert(e.substr(1));
  }
  return dropped;
}

absl::StatusOr<std::vector<std::unique_ptr<Pass>>> CreatePasses(std::string_view list) {
  std::vector<std::unique_ptr<Pass>> out;
  std::vector<std::string> names;
  for (std::string name : PassListEntries(list)) {
    if (name.empty() || name == "none") continue;
    if (name == "default") {
      for (const std::string& n : DefaultPassList("cpu")) names.push_back(n);
      continue;
    }
    if (name[0] == '-') {  // "-NAME": drop NAME from the passes listed before it
      const std::string drop = name.substr(1);
      const size_t before = names.size();
      names.erase(std::remove(names.begin(), names.end(), drop), names.end());
      const std::vector<std::string>& pre = PreAutodiffFusions();
      if (names.size() == before && std::find(pre.begin(), pre.end(), drop) == pre.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'", name, "' in pass list '", std::string(list), "' drops a pass that is not in "
            "the list before it nor run before autodiff (e.g. 'default,-fuse-elementwise', "
            "'default,-fuse-linear-ce')"));
      }
      continue;
    }
    names.push_back(name);
  }
  for (const std::string& name : names) {
    const PassInfo* found = nullptr;
    for (const PassInfo& info : RegisteredPasses()) {
      if (info.name == name) found = &info;
    }
    if (found == nullptr) {
      std::vector<std::string> known;
      for (const PassInfo& info : RegisteredPasses()) known.emplace_back(info.name);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown pass '", name, "' in pass list '", std::string(list), "'; known passes: ",
                       absl::StrJoin(known, ", "), " (or 'default', 'none')"));
    }
    out.push_back(found->create());
  }
  return out;
}

}  // namespace ptc::passes
