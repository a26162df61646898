// The IR op set: names, operands, attributes, and type inference.
//
// IR ops are ONNX ops after normalization by the importer: operands that ONNX passes as
// (constant) inputs become attributes, negative axes are made non-negative, and shapes are
// static. Every op below is specified here; kernels (codegen/cpu), the importer
// (compiler/onnx) and passes follow this table.
//
// Broadcasting is numpy/ONNX multidirectional broadcasting. Unless said otherwise all inputs
// share one dtype and outputs have that dtype.
//
//   Elementwise binary (2 inputs, broadcast):  add sub mul div pow max min
//       div on integers truncates toward zero (C semantics).
//   Comparisons (2 inputs, broadcast, output bool): equal less greater less_equal greater_equal
//   Logical (bool): and or xor (2 inputs, broadcast), not (1 input)
//   where(cond: bool, a, b)                broadcast of all three; output dtype of a
//   Elementwise unary: neg abs sqrt reciprocal exp log erf tanh sigmoid relu identity floor ceil
//   gelu(x) {approximate="none"|"tanh"}    (made by fusion passes and the importer's Gelu)
//   cast(x) {to=DTYPE}                     ONNX Cast semantics (float->int truncates)
//   matmul(a, b)                           numpy matmul (rank >= 1, batch dims broadcast)
//   gemm(a, b [, c]) {alpha=1.0, beta=1.0, trans_a=0, trans_b=0, dtype?}   a, b rank 2; c
//       broadcasts; dtype: f32 for f16 / bf16 a and b without c (the product kept in f32)
//   softmax(x) {axis}  log_softmax(x) {axis}          opset-13 semantics (one axis)
//   layer_norm(x, scale [, bias]) {axis, epsilon, dtype?, rms=0} -> (y [, mean [, inv_std_dev]])
//       normalizes over dims [axis, rank); mean / inv_std_dev are f32 with those dims as 1.
//       y has x's dtype, or `dtype` = f16 / bf16 for an f32 x (computed in f32, rounded once).
//       rms=1: RMSNorm (Llama, T5): y = x / sqrt(mean(x^2) + epsilon) * scale, no centering
//       and no bias; `mean` is written as 0 and inv_std_dev is 1 / rms (made by
//       match-rms-norm; the ONNX exporter writes the Pow / ReduceMean / Add / Sqrt / Div / Mul
//       form).
//   reduce_sum / reduce_mean / reduce_max / reduce_min (x) {axes=[...], keepdims=0|1}
//       axes sorted, unique, non-negative; an empty list reduces every axis.
//   reshape(x) {shape=[...]}               final static shape (no 0 / -1); same element count
//       (the importer maps Reshape, Flatten, Squeeze and Unsqueeze to reshape)
//   expand(x) {shape=[...]}                final broadcast output shape
//   transpose(x) {perm=[...]}
//   split(x) {axis, sizes=[...]} -> one output per size
//   slice(x) {starts=[...], ends=[...], steps=[...]}   one entry per axis of x, normalized:
//       step > 0: 0 <= start <= end <= dim;  step < 0: -1 <= end <= start <= dim - 1;
//       output dim = max(0, ceil((end - start) / step)).
//   concat(x0, x1, ...) {axis}
//   gather(data, indices) {axis}           indices i32/i64; negative indices count from the end
//   trilu(x) {upper=1, k=0}                on the last two dims
//   constant() {value=TENSOR} or {ref="NAME"}   small values inline, large ones in Module::tensors()
//   softmax_ce_loss(scores, labels [, weights]) {reduction="mean"|"sum"|"none", ignore_index?}
//       -> (loss [, log_prob])                ONNX SoftmaxCrossEntropyLoss semantics
//   nll_loss(input, target [, weight]) {reduction, ignore_index?}   ONNX NegativeLogLikelihoodLoss
//   dropout(x [, counter: i32/i64 scalar]) {ratio, seed} -> (y [, mask: bool])
//       keeps x[i] / (1 - ratio) where dropout.h's hash of (seed, counter, i) passes
//       round(ratio * 2^16) (one hash per four elements), else 0: a pure
//       function of its inputs (a training step passes its `rng.step` state as the counter, so
//       each step draws a new mask and a recomputation draws the same one; the gradient is the
//       same dropout of dy). Training only: inference plans and @eval drop it (strip-dropout).
//
// Defaults where unspecified: epsilon=1e-5, keepdims=1, reduction="mean", ratio=0.5. A
// `constant {ref=...}` takes its type from Module::tensors() (op_util.h InferNodeTypes).
//
// Two more tables extend this one (documented at the top of their files):
//   compiler/ir/ops_fused.cc  fused_elementwise (an RPN program per element), made by passes
//   compiler/ir/ops_train.cc  gather_grad slice_grad softmax_ce_loss_grad nll_loss_grad
//                             layer_norm_grad gelu_grad lr_schedule adamw_update sgd_update
//                             assign (impure, no outputs: the runtime writes the value into a
//                             parameter after the step)
//   compiler/ir/ops_decode.cc kv_cache_write(cache, update, pos) {axis}: the cache with the slab
//                             at `pos` along `axis` replaced by update (KV-cache decoders made
//                             by passes/kv_cache.cc)
// New core ops go into this table and ops.cc's registry.
#ifndef PTC_COMPILER_IR_OPS_H_
#define PTC_COMPILER_IR_OPS_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::ir {

struct OpDef {
  std::string_view name;
  int min_inputs = 0;
  int max_inputs = 0;   // -1: variadic
  int min_outputs = 1;
  int max_outputs = 1;  // -1: variadic (split)
  // Output types from input types and attributes; an error names the problem (caller adds where).
  absl::StatusOr<std::vector<TensorType>> (*infer)(const std::vector<TensorType>& inputs,
                                                   const AttrMap& attrs, int num_outputs) = nullptr;
  bool elementwise = false;  // output[i] depends only on broadcast input[i] (fusion candidates)
  bool pure = true;          // no side effects: the same inputs give the same outputs
  // Evaluated at compile time when its inputs are constants (the importer, fold-constants);
  // dropout is not: a training step gives it a new counter, so each step draws a new mask.
  bool fold = true;
  // An input whose buffer the (single) output may take over when this node reads it last: the
  // kernel reads each element of it before writing the same output element (-1: none; every
  // same-typed input of an elementwise op qualifies anyway). plan-memory's
  // reuse_elementwise_inputs.
  int inplace_input = -1;
};

// nullptr if `op` is not an IR op.
const OpDef* FindOp(std::string_view op);
std::vector<std::string_view> AllOpNames();

// Infers the output types of `op` applied to `inputs` with `attrs`; num_outputs is the number
// of outputs requested (split, layer_norm, losses).
absl::StatusOr<std::vector<TensorType>> InferTypes(std::string_view op,
                                                   const std::vector<TensorType>& inputs,
                                                   const AttrMap& attrs, int num_outputs = 1);

// numpy broadcasting of two shapes; error when incompatible.
absl::StatusOr<Shape> BroadcastShapes(const Shape& a, const Shape& b);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OPS_H_
