// Factories and option structs for the passes in this folder (one pass per .cc file). The
// pipeline's RegisteredPasses() list (pipeline.cc) is the one place that names them all.
#ifndef PTC_PASSES_PASSES_H_
#define PTC_PASSES_PASSES_H_

#include <cstdint>
#include <memory>

#include "passes/pass.h"

namespace ptc::passes {

struct FoldConstantsOptions {
  // Results at most this many elements become inline `constant {value=...}`; larger ones go to
  // Module::tensors() and are referenced with `constant {ref="..."}`.
  int64_t max_inline_elements = 16;
  // Nodes whose outputs together exceed this many bytes are not folded (counter
  // "declined.too-large"): folding would bloat the weights file for little gain.
  int64_t max_folded_bytes = int64_t{64} << 20;
};
std::unique_ptr<Pass> CreateFoldConstantsPass(FoldConstantsOptions options = {});

std::unique_ptr<Pass> CreateDcePass();
std::unique_ptr<Pass> CreateCsePass();
std::unique_ptr<Pass> CreateSimplifyPass();
std::unique_ptr<Pass> CreateFoldGemmTransposePass();  // fold_gemm_transpose.cc
std::unique_ptr<Pass> CreateAnnotateCausalPass();  // annotate_causal.cc
std::unique_ptr<Pass> CreateSaveAttentionStatsPass();  // save_attention_stats.cc
std::unique_ptr<Pass> CreatePackQkvPass();  // pack_qkv.cc
// The inverse on forward attention: each attention(p, p, p) {layout="bt3hd"} back to a split
// of the QKV projection's output into [B, T, H, D] q, k, v with layout "bthd" (the KV-cache
// decoder's rules, passes/kv_cache.h, take those). Returns how many it unpacked.
absl::StatusOr<int> UnpackQkv(ir::Function& fn);
std::unique_ptr<Pass> CreateUnpackQkvPass();  // the pass form (ptc-opt --passes=unpack-qkv)
std::unique_ptr<Pass> CreateFoldParamCastsPass();  // fold_param_casts.cc
std::unique_ptr<Pass> CreateFuseLinearCePass();  // fuse_linear_ce.cc
std::unique_ptr<Pass> CreateFuseBiasGradPass();  // fuse_bias_grad.cc
std::unique_ptr<Pass> CreateFoldNormCastsPass();  // fold_norm_casts.cc
std::unique_ptr<Pass> CreateFuseNormGradAddPass();  // fuse_norm_grad_add.cc

// Autocast-style cast placement (mixed_precision.cc): matmul-like ops compute in `low`,
// norms / softmax / reductions / losses / transcendentals in f32, the rest follows its
// operands; parameters and results keep their types. Pass name mixed-precision-bf16 / -fp16.
struct MixedPrecisionOptions {
  ir::DType low = ir::DType::kBF16;  // kBF16 or kF16
};
std::unique_ptr<Pass> CreateMixedPrecisionPass(MixedPrecisionOptions options);

struct FuseElementwiseOptions {
  // x*0.5*(1+erf(x/sqrt2)) -> gelu {approximate="none"};
  // x*0.5*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) -> gelu {approximate="tanh"}
  bool match_gelu = true;
  bool fuse_chains = true;     // chains of elementwise ops -> fused_elementwise
  int max_inputs = 8;          // operands of one fused_elementwise
  int max_program_length = 64; // tokens of its postfix program
  // f16 / bf16 chains (a --precision plan): computed in f32, widening casts absorbed, a final
  // narrowing cast as the output dtype (fused_elementwise's `dtype`).
  bool half = true;
  // Keep the rounding of every f16 / bf16 op inside a chain (such an op stays an operand), for
  // the op-by-op plan's exact bits; by default they are computed in f32 and rounded once.
  bool round_half_steps = false;
};
std::unique_ptr<Pass> CreateFuseElementwisePass(FuseElementwiseOptions options = {});

// scale * x / sqrt(mean(x^2) + eps) (RMSNorm as exported) -> layer_norm {rms=1}.
// match_rms_norm.cc.
std::unique_ptr<Pass> CreateMatchRmsNormPass();
// The exported rotate-half rotary embedding (slices / muls / sub / add / concat) -> rotary
// (match_rotary.cc).
std::unique_ptr<Pass> CreateMatchRotaryPass();

// Slices of one value cutting one axis into consecutive parts that cover it -> one split (its
// gradient one concat instead of zero-padded slice_grads and their sum) (slices_as_split.cc).
std::unique_ptr<Pass> CreateSlicesAsSplitPass();

// Evaluation mode: dropout -> identity (inference plans and a training step's @eval;
// strip_dropout.cc).
std::unique_ptr<Pass> CreateStripDropoutPass();
// `ptc compile --train --dropout R`: every dropout of the module gets ratio R (0 strips them);
// returns how many there were.
absl::StatusOr<int> SetDropoutRatio(ir::Module& module, double ratio);

// sigmoid(g) * g * u (Llama's SwiGLU, any grouping and operand order) -> swiglu
// (match_swiglu.cc).
std::unique_ptr<Pass> CreateMatchSwigluPass();

// matmul (+ transposed 2-D weight) (+ bias [N]) (+ gelu/relu) -> fused_matmul.
std::unique_ptr<Pass> CreateFuseMatMulBiasPass();
std::unique_ptr<Pass> CreateFuseResidualAddPass();
// cast(fused_matmul(...) low) to f32 -> fused_matmul(...) {dtype=f32} (the LM head's logits).
std::unique_ptr<Pass> CreateFoldMatMulCastsPass();
// Training: a linear layer's GELU into its fused_matmul (which also writes the GELU's input),
// the GELU's gradient into the gemm before it (gemm_gelu_grad). fuse_gelu_aux.cc.
std::unique_ptr<Pass> CreateFuseGeluAuxPass();
std::unique_ptr<Pass> CreateFoldGradCastsPass();

// softmax(q @ k^T * scale [masked]) @ v (+ the head transposes around it) -> attention.
std::unique_ptr<Pass> CreateFuseAttentionPass();

// Expands gelu / fused_elementwise / fused_matmul / attention into core ops with standard ONNX
// forms (for export; lower_to_onnx.cc).
std::unique_ptr<Pass> CreateLowerFusedPass();

// Memory passes (their option structs are in remat.h; schedule.h): remat with per-block
// recomputation by default, schedule (sink nodes to their first reader; with hoist_updates,
// also move optimizer updates up to as soon as they can run: only with in-place updates,
// PlanMemoryOptions::inplace_updates, since otherwise an update's outputs are arena values
// live to the end of the step and moving the update up would lengthen them).
struct RematOptions;
std::unique_ptr<Pass> CreateRematPass(RematOptions options);
// group_window > 0: hoisted optimizer updates within that many nodes of the next one are
// moved down next to it (multi-tensor batches on the GPU; see schedule.cc GroupUpdates).
std::unique_ptr<Pass> CreateSchedulePass(bool hoist_updates = true, int group_window = 0);

}  // namespace ptc::passes

#endif  // PTC_PASSES_PASSES_H_
