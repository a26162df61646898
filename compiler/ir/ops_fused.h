// The second op table: ops made by fusion / training passes (fused_elementwise, ...).
//
// ops.cc's registry is its own explicit table followed by this one (no static registration).
// Add an entry to FusedOpDefs() in ops_fused.cc together with its type-inference function
// (helpers in op_util.h) and document the op in ops.h. Names must not repeat ops.cc's names
// (ptc_ir_tests checks this).
#ifndef PTC_COMPILER_IR_OPS_FUSED_H_
#define PTC_COMPILER_IR_OPS_FUSED_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "compiler/ir/ops.h"

namespace ptc::ir {

const std::vector<OpDef>& FusedOpDefs();

// The problem of an attention / attention_grad node: its q, k, v[, mask] operands' types and
// attributes, validated once (InferAttention's checks). Every backend derives its kernel's
// descriptor from this and adds only its own limits (the CPU kernel's dtypes, the flash
// kernels' head dims, cuDNN's masks).
struct AttentionProblem {
  int64_t b = 0, h = 0, tq = 0, tk = 0, d = 0, dv = 0;
  // k / v heads: h, or (grouped-query attention) a divisor of h; query head i reads kv head
  // i / (h / hkv) (HF repeat_kv order, i.e. repeat_interleave over the heads).
  int64_t hkv = 0;
  bool bthd = false;       // layout "bthd" ([B, T, H, D]); else "bhtd" ([B, H, T, D])
  // layout "bt3hd": q, k and v are each the one packed tensor [B, T, 3, H, D] (a QKV
  // projection's output as is: slot 0 q, 1 k, 2 v); bthd is set too (the output is [B, T, H, D]).
  bool packed = false;
  double scale = 0;        // the attribute, else 1 / sqrt(d)
  // Attribute softcap (default 0: none; Gemma 2's attn_logit_softcapping): each scaled score
  // s becomes softcap * tanh(s / softcap) before the mask is applied.
  double softcap = 0;
  bool causal = false;     // causal=1 (annotate-causal): the mask is the causal triangle
  DType dtype = DType::kF32;  // of q, k, v and the output
  int mask_kind = 0;       // 0: none, 1: bool (true = masked out), 2: added (q's dtype)
  Shape mask_shape;
  // Element strides of the mask over the scores [B, H, Tq, Tk]; 0 where it broadcasts.
  std::array<int64_t, 4> mask_strides{};
  Shape out_shape;         // q's shape with v's head dim
  // Attribute dropout (default 0; in [0, 1)) and seed: the probabilities go through
  // dropout {ratio=dropout, seed} before the product with v, its mask over the [B, H, Tq, Tk]
  // probabilities (element ((b H + h) Tq + t) Tk + j: the unfused softmax output's index), drawn
  // by compiler/ir/dropout.h with the counter operand (an integer scalar after the mask; 0
  // without one: AttentionCounter). The log-sum-exp output is the softmax's, before dropout.
  double dropout = 0;
  int64_t seed = 0;
};
// From the operand types q, k, v[, mask] and the node's attributes.
absl::StatusOr<AttentionProblem> DescribeAttention(const std::vector<TensorType>& operands,
                                                   const AttrMap& attrs);
// The operand types q, k, v[, mask] at inputs first.. of `node` (attention: 0; attention_grad:
// 1, after dy), with `trailing` inputs after the mask (attention_grad {saved_stats=1}: the
// forward's output and log-sum-exp).
std::vector<TensorType> AttentionOperandTypes(const Node& node, int first, int trailing = 0);
// DescribeAttention of those operands and the node's attributes; the error names the node.
absl::StatusOr<AttentionProblem> DescribeAttention(const Node& node, int first, int trailing = 0);
// Attention's optional operands among those (same first / trailing): the mask and the dropout
// counter; nullptr when absent. AttentionCounterInput: the counter's input index, -1 without.
Value* AttentionMask(const Node& node, int first, int trailing = 0);
Value* AttentionCounter(const Node& node, int first, int trailing = 0);
int AttentionCounterInput(const Node& node, int first, int trailing = 0);

// A fused_elementwise program (ops.h), parsed and checked against its operand types once: the
// type inference, the CPU kernel, the CUDA interpreter, the NVRTC generator and lower-fused all
// read it from here.
struct FusedDropout {
  double ratio = 0;  // in [0, 1)
  uint64_t seed = 0;
  int counter = -1;  // the operand holding the counter (an i32 / i64 scalar); -1: counter 0
};
struct FusedToken {
  enum Kind { kOperand, kConstant, kOp, kDropout };
  Kind kind = kOp;
  int index = 0;   // kOperand / kConstant / kDropout: which one
  std::string op;  // kOp: the op's name (add, gelu_tanh, ...)
  int arity = 0;   // values popped: 0 (loads), 1 (unary ops, dropout), 2 (binary ops)
};
struct FusedProgram {
  std::vector<FusedToken> tokens;
  std::vector<double> constants;
  std::vector<FusedDropout> dropouts;
  // Per operand: read only as a dropout counter (an integer scalar, never by an "xI" token).
  std::vector<bool> counter;
  int max_depth = 0;  // the deepest stack the program reaches
};
// The attributes program, constants, dropout_ratio / dropout_seed / dropout_counter of a
// fused_elementwise over operands of the given types (the error says what is wrong, the caller
// where).
absl::StatusOr<FusedProgram> ParseFusedProgram(const AttrMap& attrs,
                                               const std::vector<TensorType>& operands);
// The same for a node; the error names the node.
absl::StatusOr<FusedProgram> ParseFusedProgram(const Node& node);

// swiglu's / swiglu_grad's gate activation (attribute `activation`, default "silu"): 0 silu,
// 1 gelu_tanh, 2 gelu (erf); an error for another name.
enum class GateActivation { kSilu = 0, kGeluTanh = 1, kGelu = 2 };
absl::StatusOr<GateActivation> SwigluActivation(const AttrMap& attrs);

// fused_matmul's optional operands (ops_fused.cc): input 2 is the bias when it is rank 1 ([N]),
// the addend when it has the output's rank (a linear layer without a bias: fuse-residual-add);
// input 3, when present, is the addend. nullptr when absent.
Value* FusedMatMulBias(const Node& node);
Value* FusedMatMulAddend(const Node& node);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OPS_FUSED_H_
