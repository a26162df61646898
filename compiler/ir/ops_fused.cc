// Ops made by fusion and training passes. See ops_fused.h.
//
//   fused_elementwise(x0, x1, ...) {program=[...], constants=[...], shape=[...]}
//       One elementwise expression evaluated per output element (made by passes/
//       fuse_elementwise.cc; CPU kernel codegen/cpu/fused_elementwise.cc). All operands share
//       one float dtype and broadcast (numpy) to `shape`, the output shape; or, with the
//       attribute `dtype` (the output's), they are any of f16 / bf16 / f32 (f64 only with an
//       f64 dtype): each is widened exactly, the program runs in f32 (f64) and the result is
//       rounded once to `dtype` (what a --precision plan's casts around f32 ops compute).
//       `program` is a
//       postfix (RPN) token list over a stack: "xI" pushes operand I, "cI" pushes constants[I],
//       a unary op (neg abs sqrt reciprocal exp log erf tanh sigmoid relu floor ceil identity
//       gelu gelu_tanh) pops one value, a binary op (add sub mul div pow max min) pops b then a
//       and pushes a OP b. The program leaves exactly one value. `constants` may be absent.
//       "dropoutK" (passes/fuse_elementwise.cc absorbing a training step's dropout) pops a and
//       pushes dropout(a) of the K-th entry of the lists dropout_ratio (floats in [0, 1)),
//       dropout_seed and dropout_counter (ints; the counter's operand index, -1: counter 0):
//       compiler/ir/dropout.h's mask over the output's element index i (the dropout's own
//       index: what it absorbs has the output's shape), a * 1 / (1 - ratio) where kept, else 0.
//       A counter operand is an i32 / i64 scalar that no "xI" token reads (ir::
//       ParseFusedProgram checks all of it for every backend).
//   Example (bias add + exact gelu):
//       %y = fused_elementwise(%h, %b) {program=["x0", "x1", "add", "gelu"], shape=[8,1024]}
//            : f32[8,1024]
//   Example (a residual add of a dropped-out projection, GPT-2 training, bf16 in an f32 stream):
//       %y = fused_elementwise(%x, %h, %rng.step) {dropout_counter=[2], dropout_ratio=[0.1],
//              dropout_seed=[3], dtype=f32, program=["x0", "x1", "dropout0", "add"],
//              shape=[16,1024,768]} : f32[16,1024,768]
//            (%x: f32[16,1024,768], %h: bf16[16,1024,768], %rng.step: i64[])
//
//   fused_matmul(x, w[, bias[, addend]]) {trans_b=0|1, activation="none"|"gelu"|"gelu_tanh"|
//                                         "relu", dtype}
//       A linear layer: y = activation(x @ op(w) + bias) [+ addend], made by
//       passes/fuse_matmul_bias.cc (CPU kernel: codegen/cpu/linalg.cc, the bias and activation
//       applied per GEMM tile while it is in cache). x: [..., M, K] (rank >= 2, float); w:
//       [K, N], or [N, K] with trans_b=1 (the PyTorch nn.Linear weight read without a
//       transpose); bias: [N] (absent: none). Output [..., M, N]. trans_b defaults to 0 and
//       activation to "none". "gelu" is the exact erf form, "gelu_tanh" the tanh approximation.
//       addend (passes/fuse_residual_add.cc: a residual stream): the output's type, added last;
//       only with activation "none"; without a bias it is the third operand (told from a bias
//       by its rank: the output's, >= 2; FusedMatMulBias / FusedMatMulAddend in ops_fused.h
//       read them). dtype (default x's): the output's dtype; f32
//       for f16 / bf16 x and w (the product accumulated and the result kept in f32, never
//       rounded to x's dtype), with an f32 bias.
//       A second output (passes/fuse_gelu_aux.cc, training with activation gelu / gelu_tanh):
//       the activation's input x @ op(w) + bias, of the output's type, written by the same
//       node for the backward's gelu' (the CUDA kernel: cuBLASLt's GELU_AUX_BIAS epilogue).
//   Example (nn.Linear + GELU):
//       %y = fused_matmul(%x, %w, %b) {activation="gelu", trans_b=1} : f32[8,128,1024]
//            (%x: f32[8,128,256], %w: f32[1024,256], %b: f32[1024])
//   Example (a training step's MLP up-projection, its GELU input kept):
//       %g, %h = fused_matmul(%x, %w, %b) {activation="gelu_tanh"} : bf16[16384,3072],
//            bf16[16384,3072]
//
//   attention(q, k, v[, mask][, counter]) {scale=F, layout="bhtd"|"bthd", dropout=0, seed=0}
//       Scaled dot-product attention, softmax(q @ k^T * scale [masked]) @ v, per batch and
//       head, made by passes/fuse_attention.cc (CPU kernel codegen/cpu/attention.cc: blocked
//       online softmax, flash-style, never materializes Tq x Tk scores).
//       layout "bhtd" (default): q [B,H,Tq,D], k [B,Hkv,Tk,D], v [B,Hkv,Tk,Dv] -> [B,H,Tq,Dv].
//       layout "bthd": q [B,Tq,H,D], k [B,Tk,Hkv,D], v [B,Tk,Hkv,Dv] -> [B,Tq,H,Dv] (the layout
//       of the projection's output, so that the usual head transposes disappear).
//       Hkv = H, or grouped-query attention (Llama's kv_heads < heads): Hkv divides H and query
//       head h reads k / v head h / (H / Hkv), the order of HF's repeat_kv (repeat_interleave),
//       which fuse-attention folds into the op instead of materializing the repeated K / V.
//       layout "bt3hd" (passes/pack_qkv.cc): q, k and v are each a packed [B,T,3,H,D], in
//       practice one value (the QKV projection's output read in place, no split): q is slot
//       0 of the q operand, k slot 1 of k, v slot 2 of v -> [B,T,H,D]; attention_grad then has
//       one output, the packed gradient [B,T,3,H,D] (dq, dk, dv in slots 0, 1, 2).
//       mask (optional) broadcasts (numpy) to [B,H,Tq,Tk] in either layout: bool, where true
//       masks the position out (its score is -inf: the where(mask, -inf, scores) that ONNX
//       exports produce), or of q's dtype, added to the scaled scores. scale defaults to
//       1/sqrt(D). A row whose keys are all masked gives NaN, as softmax of all -inf does.
//       dropout > 0 (a training step's attention dropout, fused by fuse-attention): the
//       probabilities go through dropout(p, counter) {ratio=dropout, seed} before the product
//       with v, the mask of compiler/ir/dropout.h over the [B,H,Tq,Tk] probabilities (the
//       unfused softmax output's element index, whatever the layout), drawn from the counter
//       operand (i32 / i64 scalar, the step's `rng.step`; 0 when absent), so the fused and
//       unfused graphs drop the same elements and the backward redraws the forward's mask.
//   Example (GPT causal self-attention, 4 heads of 64):
//       %o = attention(%q, %k, %v, %masked) {layout="bthd", scale=0.125} : f32[8,128,4,64]
//            (%q, %k, %v: f32[8,128,4,64], %masked: bool[1,1,128,128])
//   Example (Llama grouped-query attention, 4 query heads sharing 2 kv heads):
//       %o = attention(%q, %k, %v, %m) {causal=1, scale=0.125} : f32[2,4,128,64]
//            (%q: f32[2,4,128,64], %k, %v: f32[2,2,128,64], %m: bool[1,1,128,128])
//
//   linear_ce_loss(x, w, labels [, bias]) {trans_b=0|1, reduction="mean"|"sum", ignore_index?,
//                                 grad_dtype?} -> loss f32[] [, dx_unit, dw_unit [, db_unit]]
//       Softmax cross-entropy of the logits x @ op(w) (+ bias) (x [N, D] f32 / bf16 / f16, w of
//       x's dtype [D, V], or [V, D] with trans_b=1, labels i32/i64 [N], bias of x's dtype [V]:
//       an LM head with a bias, as Phi's and GPT-J's; the logits and the loss are f32
//       whatever the inputs), made by passes/fuse_linear_ce.cc from an LM head and
//       its loss. The CPU kernel works on blocks of rows: the N x V logits never exist at once.
//       With 3 outputs (4 with a bias; autodiff asks for them) the same pass also writes the
//       gradients for d loss = 1: dx_unit (x's type), dw_unit (w's type) and db_unit (the
//       bias's: the column sums of softmax - onehot), so the backward is scalings and nothing
//       of size N x V is kept for it. grad_dtype=f32 (f16 / bf16 x and w;
//       passes/fold_grad_casts.cc): the gradient parts in f32, never rounded to x's dtype.
//   Example (tied GPT-2 LM head, 1024 tokens, vocab 8192):
//       %loss = linear_ce_loss(%h, %wte, %labels) {trans_b=1} : f32[]
//            (%h: f32[1024,256], %wte: f32[8192,256], %labels: i64[1024])
//
//   gemm_bgrad(a, b) {trans_a=0|1, dtype?, bias_dtype?, bias_of="b"|"a"} -> y, db
//       A weight gradient and its bias gradient in one node, made by passes/fuse_bias_grad.cc
//       from gemm(x, dy) {trans_a=1} and the reduce_sum of the same dy over its rows:
//       y = op(a) @ b (gemm with alpha 1, no c, b never transposed) and db[n] = sum over k of
//       b[k, n] (the column sums of b). a, b: rank 2, one float dtype; y [M, N], db [N]. y and
//       db have b's dtype, or f32 for f16 / bf16 operands with `dtype` = f32 (y's) and
//       `bias_dtype` = f32 (db's): accumulated in f32 and never rounded to the low dtype (the
//       casts a --precision plan puts on gradients bound for the f32 master weights, folded
//       in). The CUDA kernel sums db in the cuBLASLt epilogue (BGRAD) while the GEMM reads dy.
//       bias_of="a" (with trans_a=1): db[m] = sum over k of a[k, m], the column sums of a, db
//       [M]: nn.Linear's [out, in] weight gradient dW = dy^T x as gemm_bgrad(dy, x) with its
//       bias gradient from dy (cuBLASLt's BGRADB), no transpose of dW^T.
//   Example (GPT-2 c_proj weight and bias gradients, 1024 tokens, bf16):
//       %dw, %db = gemm_bgrad(%x, %dy) {bias_dtype=f32, dtype=f32, trans_a=1}
//            : f32[768,768], f32[768]  (%x: bf16[1024,768], %dy: bf16[1024,768])
//
//   gemm_gelu_grad(a, b, pre) {trans_a=0|1, trans_b=0|1, approximate="none"|"tanh"}
//       The gradient through a GELU of the product that feeds it, made by
//       passes/fuse_gelu_aux.cc from gemm(a, b) and the gelu_grad that reads it:
//       y = (op(a) @ op(b)) * gelu'(pre), i.e. gelu_grad(gemm(a, b), pre). a, b: rank 2;
//       pre [M, N] (the GELU's input: the forward's fused_matmul second output); a, b, pre and
//       y one float dtype. The product is not rounded before the multiply. The CUDA kernel is
//       one cuBLASLt GEMM with the DGELU epilogue (tanh form) reading pre.
//   Example (GPT-2's MLP: dh from the down-projection's output gradient, bf16):
//       %dh = gemm_gelu_grad(%dy, %w, %h) {approximate="tanh", trans_b=1} : bf16[16384,3072]
//            (%dy: bf16[16384,768], %w: bf16[3072,768], %h: bf16[16384,3072])
//
//   rotary(x, cos, sin) {inverse=0|1, rotary_dim?, interleaved=0|1}
//       Rotary position embedding in the rotate-half form (Llama, GPT-NeoX): with
//       x1 = x[..., :D/2] and x2 = x[..., D/2:],
//         y = concat(x1 * cos - x2 * sin, x2 * cos + x1 * sin, axis=-1)
//       made by passes/match_rotary.cc from the exported slice / mul / sub / add / concat chain.
//       inverse=1 rotates by the opposite angle (sin negated): the transpose of the rotation,
//       hence its gradient, dx = rotary(dy, cos, sin) {inverse=1}. rotary_dim=R (even, 0 < R
//       <= D; default D): only x[..., :R] rotates (in the same form, halves of R), x[..., R:]
//       passes through (GPT-NeoX, Phi: partial_rotary_factor). interleaved=1: the rotated
//       pairs are (x[2i], x[2i+1]) instead of (x[i], x[R/2+i]) (GPT-J, ONNX RotaryEmbedding's
//       interleaved). x: [..., D] float, D even;
//       cos, sin: one type, f32 or x's dtype, broadcasting (numpy) to x[..., :R/2]'s shape
//       (typically [T, R/2] against [B, H, T, D]). Output: x's type; computed in f32 (f64 for
//       f64 x) and rounded once. inverse defaults to 0. Kernels: codegen/cpu/rotary.cc,
//       codegen/cuda/rotary.cu.
//   Example (Llama attention, 4 heads of 64, positions 0..127):
//       %q.rot = rotary(%q, %cos, %sin) : bf16[8,4,128,64]
//            (%q: bf16[8,4,128,64], %cos, %sin: f32[128,32])
//
//   swiglu(g, u) {activation="silu"|"gelu_tanh"|"gelu"}
//       The gated activation of Llama's MLP: y = silu(g) * u = g * sigmoid(g) * u, made by
//       passes/match_swiglu.cc from the exported sigmoid / mul / mul. g, u: one float type
//       (f32, f64, f16, bf16), no broadcasting; output of that type, computed in f32 (f64 for
//       f64) and rounded once. Its gradient is swiglu_grad(dy, g, u) (ops_train.cc), which
//       recomputes sigmoid(g): a training step keeps only g and u (the two projections), not
//       sigmoid(g) and silu(g). activation="gelu_tanh" / "gelu": GeGLU, y = gelu(g) * u (Gemma's
//       MLP, gelu's tanh form / exact erf form; from mul(gelu(g), u)), its backward keeping g
//       and u, not gelu(g). Kernels: codegen/cpu/swiglu.cc, codegen/cuda/swiglu.cu.
//   Example (Llama's MLP, ffn 5632):
//       %y = swiglu(%g, %u) : bf16[4,2048,5632]   (%g, %u: bf16[4,2048,5632])
#include "compiler/ir/ops_fused.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

constexpr int kMaxFusedProgram = 256;


absl::StatusOr<std::vector<TensorType>> InferFusedElementwise(
    const std::vector<TensorType>& inputs, const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 1) return absl::InvalidArgumentError("fused_elementwise has one output");
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, GetIntsAttr(attrs, "shape"));
  if (NumElements(shape) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attribute 'shape' ", ShapeToString(shape), " is not a valid shape"));
  }
  PTC_ASSIGN_OR_RETURN(FusedProgram program, ParseFusedProgram(attrs, inputs));
  // Mixed dtypes (attribute `dtype`, the output's): f16 / bf16 / f32 operands computed in f32;
  // f64 only with f64. Dropout counters (integer scalars) are no values of the program.
  const bool mixed = attrs.count("dtype") > 0;
  int first = 0;
  while (first < static_cast<int>(inputs.size()) && program.counter[first]) ++first;
  if (first == static_cast<int>(inputs.size())) {
    return absl::InvalidArgumentError("a fused_elementwise needs an operand besides counters");
  }
  DType out_dtype = inputs[first].dtype;
  if (mixed) {
    PTC_ASSIGN_OR_RETURN(out_dtype, GetDTypeAttr(attrs, "dtype"));
    if (!IsFloat(out_dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("attribute 'dtype' must be a float type, got ",
                                                     std::string(DTypeName(out_dtype))));
    }
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (program.counter[i]) continue;
    if (!mixed && inputs[i].dtype != inputs[first].dtype) {
      return absl::InvalidArgumentError(absl::StrCat("operand ", i, " is ",
                                                     inputs[i].ToString(), " but operand ", first,
                                                     " is ", inputs[first].ToString(),
                                                     "; dtypes must match"));
    }
    if (mixed && (!IsFloat(inputs[i].dtype) ||
                  (inputs[i].dtype == DType::kF64) != (out_dtype == DType::kF64))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "operand ", i, " is ", inputs[i].ToString(), ": with dtype=", std::string(DTypeName(out_dtype)),
          " operands must be f16 / bf16 / f32 (f64 only with f64)"));
    }
    absl::StatusOr<Shape> b = BroadcastShapes(inputs[i].shape, shape);
    if (!b.ok() || *b != shape) {
      return absl::InvalidArgumentError(absl::StrCat("operand ", i, " ", inputs[i].ToString(),
                                                     " does not broadcast to shape ",
                                                     ShapeToString(shape)));
    }
  }
  if (!IsFloat(inputs[first].dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("operands must be floating point, got ", inputs[first].ToString()));
  }
  return std::vector<TensorType>{TensorType{out_dtype, shape}};
}

// An output dtype attribute: absent (the operands' dtype `dt`), `dt`, or f32 for f16 / bf16
// operands (fused_matmul's and gemm_bgrad's results kept in f32).
absl::StatusOr<DType> SameOrF32DType(const AttrMap& attrs, const char* name, DType dt) {
  if (attrs.count(name) == 0) return dt;
  PTC_ASSIGN_OR_RETURN(DType t, GetDTypeAttr(attrs, name));
  if (t != dt && !(IsHalfFloat(dt) && t == DType::kF32)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute '", name, "' must be the operands' dtype, or f32 for f16 / bf16 operands; "
        "got ", std::string(DTypeName(t)), " with ", std::string(DTypeName(dt))));
  }
  return t;
}

absl::StatusOr<std::vector<TensorType>> InferFusedMatMul(const std::vector<TensorType>& inputs,
                                                         const AttrMap& attrs, int num_outputs) {
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, GetIntAttr(attrs, "trans_b", 0));
  PTC_ASSIGN_OR_RETURN(DType out_dt, SameOrF32DType(attrs, "dtype", inputs[0].dtype));
  PTC_ASSIGN_OR_RETURN(std::string act, GetStringAttr(attrs, "activation", "none"));
  if (num_outputs == 2 && act != "gelu" && act != "gelu_tanh") {
    return absl::InvalidArgumentError(absl::StrCat(
        "fused_matmul's second output (the activation's input) needs activation gelu or "
        "gelu_tanh, got '", act, "'"));
  }
  if (num_outputs != 1 && num_outputs != 2) {
    return absl::InvalidArgumentError(
        "fused_matmul has one output, or two (with the activation's input)");
  }
  if (trans_b != 0 && trans_b != 1) {
    return absl::InvalidArgumentError(absl::StrCat("attribute 'trans_b' must be 0 or 1, got ",
                                                   trans_b));
  }
  if (act != "none" && act != "gelu" && act != "gelu_tanh" && act != "relu") {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'activation' must be none, gelu, gelu_tanh or relu, got '", act, "'"));
  }
  const TensorType& x = inputs[0];
  const TensorType& w = inputs[1];
  if (!IsFloat(x.dtype) || w.dtype != x.dtype) {
    return absl::InvalidArgumentError(absl::StrCat("x and w must share a float dtype, got ",
                                                   x.ToString(), " and ", w.ToString()));
  }
  if (x.rank() < 2 || w.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("x must have rank >= 2 and w rank 2, got ",
                                                   x.ToString(), " and ", w.ToString()));
  }
  const int64_t k = trans_b ? w.shape[1] : w.shape[0], n = trans_b ? w.shape[0] : w.shape[1];
  if (x.shape.back() != k) {
    return absl::InvalidArgumentError(absl::StrCat("inner dimensions differ: ", x.ToString(),
                                                   " x ", w.ToString(), " (trans_b=", trans_b,
                                                   ")"));
  }
  Shape out = x.shape;
  out.back() = n;
  const TensorType y{out_dt, out};
  // Input 2: the bias [N], or (rank >= 2, no bias) the addend; input 3: the addend.
  const bool bias = inputs.size() == 4 || (inputs.size() == 3 && inputs[2].rank() == 1);
  if (bias && (inputs[2].dtype != out_dt || inputs[2].shape != Shape{n})) {
    return absl::InvalidArgumentError(absl::StrCat("bias must be ", std::string(DTypeName(out_dt)), "[", n,
                                                   "], got ", inputs[2].ToString()));
  }
  if (inputs.size() == 4 || (inputs.size() == 3 && !bias)) {
    const TensorType& addend = inputs.back();
    if (act != "none") {
      return absl::InvalidArgumentError(absl::StrCat(
          "an addend needs activation \"none\", got '", act, "'"));
    }
    if (addend != y) {
      return absl::InvalidArgumentError(absl::StrCat("addend must be the output's type ",
                                                     y.ToString(), ", got ",
                                                     addend.ToString()));
    }
  }
  if (num_outputs == 2) return std::vector<TensorType>{y, y};
  return std::vector<TensorType>{y};
}

absl::StatusOr<std::vector<TensorType>> InferAttention(const std::vector<TensorType>& inputs,
                                                       const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 1 && num_outputs != 2) {
    return absl::InvalidArgumentError("attention has one output, or two (with the log-sum-exp)");
  }
  PTC_ASSIGN_OR_RETURN(AttentionProblem p, DescribeAttention(inputs, attrs));
  std::vector<TensorType> types = {TensorType{p.dtype, p.out_shape}};
  // The second output: each query row's log-sum-exp of its scaled, masked scores (natural log,
  // f32 [B, H, Tq] in either layout), what attention_grad {saved_stats=1} reads instead of
  // recomputing the forward.
  if (num_outputs == 2) types.push_back(TensorType{DType::kF32, {p.b, p.h, p.tq}});
  return types;
}

absl::StatusOr<std::vector<TensorType>> InferLinearCeLoss(const std::vector<TensorType>& in,
                                                          const AttrMap& attrs, int num_outputs) {
  const bool has_bias = in.size() == 4;
  if (num_outputs != 1 && num_outputs != (has_bias ? 4 : 3)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "linear_ce_loss has 1 output (loss) or ", has_bias ? 4 : 3, " (with the gradient parts",
        has_bias ? " of x, w and the bias)" : " of x and w)"));
  }
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, GetIntAttr(attrs, "trans_b", 0));
  PTC_ASSIGN_OR_RETURN(std::string red, GetStringAttr(attrs, "reduction", "mean"));
  if (red != "mean" && red != "sum") {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'reduction' must be mean or sum, got '", red, "'"));
  }
  // scale (Cohere's logit_scale, Granite's 1 / logits_scaling): the logits x w (+ bias) times
  // scale; then softcap (Gemma 2's final_logit_softcapping): each logit z becomes softcap *
  // tanh(z / softcap) before the softmax; 0: none.
  PTC_ASSIGN_OR_RETURN(double scale, GetFloatAttr(attrs, "scale", 1.0));
  if (!std::isfinite(scale) || scale == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'scale' must be finite and nonzero, got ", scale));
  }
  PTC_ASSIGN_OR_RETURN(double softcap, GetFloatAttr(attrs, "softcap", 0.0));
  if (!(softcap >= 0) || std::isinf(softcap)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'softcap' must be finite and >= 0 (0: no capping), got ", softcap));
  }
  const TensorType& x = in[0];
  const TensorType& w = in[1];
  const TensorType& labels = in[2];
  const bool float_ok = x.dtype == DType::kF32 || x.dtype == DType::kBF16 ||
                        x.dtype == DType::kF16;
  if (!float_ok || w.dtype != x.dtype || x.rank() != 2 || w.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "x and w must be f32, bf16 or f16 matrices of one dtype, got ", x.ToString(), " and ",
        w.ToString()));
  }
  const int64_t d = trans_b ? w.shape[1] : w.shape[0];
  if (x.shape[1] != d) {
    return absl::InvalidArgumentError(absl::StrCat("inner dimensions differ: ", x.ToString(),
                                                   " x ", w.ToString(), " (trans_b=", trans_b,
                                                   ")"));
  }
  if ((labels.dtype != DType::kI64 && labels.dtype != DType::kI32) ||
      labels.shape != Shape{x.shape[0]}) {
    return absl::InvalidArgumentError(absl::StrCat("labels must be i32 or i64 [", x.shape[0],
                                                   "], got ", labels.ToString()));
  }
  const int64_t v = trans_b ? w.shape[0] : w.shape[1];
  if (has_bias && (in[3].dtype != x.dtype || in[3].shape != Shape{v})) {
    return absl::InvalidArgumentError(absl::StrCat("bias must be ",
                                                   std::string(DTypeName(x.dtype)), "[", v,
                                                   "], got ", in[3].ToString()));
  }
  // grad_dtype: the gradient parts' dtype, x's or f32 for f16 / bf16 (fold-grad-casts).
  PTC_ASSIGN_OR_RETURN(DType g, SameOrF32DType(attrs, "grad_dtype", x.dtype));
  std::vector<TensorType> out = {TensorType{DType::kF32, {}}};
  if (num_outputs > 1) {
    out.push_back(TensorType{g, x.shape});
    out.push_back(TensorType{g, w.shape});
    if (has_bias) out.push_back(TensorType{g, {v}});
  }
  return out;
}

absl::StatusOr<std::vector<TensorType>> InferGemmBgrad(const std::vector<TensorType>& in,
                                                       const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 2) return absl::InvalidArgumentError("gemm_bgrad has 2 outputs (y, db)");
  PTC_ASSIGN_OR_RETURN(int64_t ta, GetIntAttr(attrs, "trans_a", 0));
  if (ta != 0 && ta != 1) {
    return absl::InvalidArgumentError(absl::StrCat("attribute 'trans_a' must be 0 or 1, got ", ta));
  }
  const TensorType& a = in[0];
  const TensorType& b = in[1];
  if (!IsFloat(a.dtype) || b.dtype != a.dtype || a.rank() != 2 || b.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a and b must be float matrices of one dtype, got ", a.ToString(), " and ",
        b.ToString()));
  }
  const int64_t m = ta ? a.shape[1] : a.shape[0];
  const int64_t k = ta ? a.shape[0] : a.shape[1];
  if (k != b.shape[0]) {
    return absl::InvalidArgumentError(absl::StrCat("inner dimensions differ: ", a.ToString(),
                                                   " (trans_a=", ta, ") x ", b.ToString()));
  }
  PTC_ASSIGN_OR_RETURN(std::string of, GetStringAttr(attrs, "bias_of", "b"));
  if ((of != "a" && of != "b") || (of == "a" && ta != 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'bias_of' must be \"b\", or \"a\" with trans_a=1, got \"", of, "\""));
  }
  // y's and db's dtypes: the operands', or f32 for f16 / bf16 operands.
  PTC_ASSIGN_OR_RETURN(DType y, SameOrF32DType(attrs, "dtype", a.dtype));
  PTC_ASSIGN_OR_RETURN(DType bias, SameOrF32DType(attrs, "bias_dtype", a.dtype));
  return std::vector<TensorType>{TensorType{y, {m, b.shape[1]}},
                                 TensorType{bias, {of == "a" ? m : b.shape[1]}}};
}

absl::StatusOr<std::vector<TensorType>> InferGemmGeluGrad(const std::vector<TensorType>& in,
                                                          const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 1) return absl::InvalidArgumentError("gemm_gelu_grad has one output");
  PTC_ASSIGN_OR_RETURN(int64_t ta, GetIntAttr(attrs, "trans_a", 0));
  PTC_ASSIGN_OR_RETURN(int64_t tb, GetIntAttr(attrs, "trans_b", 0));
  PTC_ASSIGN_OR_RETURN(std::string approx, GetStringAttr(attrs, "approximate", "none"));
  for (auto [name, v] : {std::pair{"trans_a", ta}, std::pair{"trans_b", tb}}) {
    if (v != 0 && v != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("attribute '", name, "' must be 0 or 1, got ", v));
    }
  }
  if (approx != "none" && approx != "tanh") {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'approximate' must be \"none\" or \"tanh\", got \"", approx, "\""));
  }
  const TensorType& a = in[0];
  const TensorType& b = in[1];
  const TensorType& pre = in[2];
  if (!IsFloat(a.dtype) || b.dtype != a.dtype || a.rank() != 2 || b.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a and b must be float matrices of one dtype, got ", a.ToString(), " and ",
        b.ToString()));
  }
  const int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const int64_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (k != kb) {
    return absl::InvalidArgumentError(absl::StrCat("inner dimensions differ: ", a.ToString(),
                                                   " (trans_a=", ta, ") x ", b.ToString(),
                                                   " (trans_b=", tb, ")"));
  }
  const TensorType y{a.dtype, {m, n}};
  if (pre != y) {
    return absl::InvalidArgumentError(absl::StrCat("pre (the GELU's input) must be ",
                                                   y.ToString(), ", got ", pre.ToString()));
  }
  return std::vector<TensorType>{y};
}

absl::StatusOr<std::vector<TensorType>> InferRotary(const std::vector<TensorType>& in,
                                                    const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 1) return absl::InvalidArgumentError("rotary has one output");
  PTC_ASSIGN_OR_RETURN(int64_t inverse, GetIntAttr(attrs, "inverse", 0));
  if (inverse != 0 && inverse != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("attribute 'inverse' must be 0 or 1, got ", inverse));
  }
  const TensorType& x = in[0];
  const TensorType& cos = in[1];
  const TensorType& sin = in[2];
  if (!IsFloat(x.dtype) || x.rank() < 1 || x.shape.back() % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "x must be a float tensor whose last dim (the head size) is even, got ", x.ToString()));
  }
  PTC_ASSIGN_OR_RETURN(int64_t rdim, GetIntAttr(attrs, "rotary_dim", x.shape.back()));
  if (rdim <= 0 || rdim % 2 != 0 || rdim > x.shape.back()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'rotary_dim' must be even and in (0, ", x.shape.back(), "], got ", rdim));
  }
  PTC_ASSIGN_OR_RETURN(int64_t interleaved, GetIntAttr(attrs, "interleaved", 0));
  if (interleaved != 0 && interleaved != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("attribute 'interleaved' must be 0 or 1, got ", interleaved));
  }
  if (cos != sin) {
    return absl::InvalidArgumentError(absl::StrCat("cos and sin must have one type, got ",
                                                   cos.ToString(), " and ", sin.ToString()));
  }
  if (cos.dtype != x.dtype && cos.dtype != DType::kF32) {
    return absl::InvalidArgumentError(absl::StrCat("cos and sin must be f32 or x's dtype ",
                                                   std::string(DTypeName(x.dtype)), ", got ",
                                                   cos.ToString()));
  }
  Shape half = x.shape;
  half.back() = rdim / 2;
  absl::StatusOr<Shape> b = BroadcastShapes(half, cos.shape);
  if (!b.ok() || *b != half) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cos and sin ", cos.ToString(), " must broadcast to x's half ", ShapeToString(half),
        " (x ", x.ToString(), "): one value per position and rotated pair"));
  }
  return std::vector<TensorType>{x};
}

absl::StatusOr<std::vector<TensorType>> InferSwiglu(const std::vector<TensorType>& in,
                                                    const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(SwigluActivation(attrs).status());
  if (!IsFloat(in[0].dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("g must be a float tensor, got ", in[0].ToString()));
  }
  if (in[0] != in[1]) {
    return absl::InvalidArgumentError(absl::StrCat(
        "g ", in[0].ToString(), " and u ", in[1].ToString(),
        " must have one type (swiglu does not broadcast: expand u, or keep the mul chain)"));
  }
  return std::vector<TensorType>{in[0]};
}

// A dropout counter: an i32 / i64 scalar (dropout's second operand, attention's last).
bool IsIndexCounter(const TensorType& t) {
  return (t.dtype == DType::kI32 || t.dtype == DType::kI64) && t.shape.empty();
}

}  // namespace

absl::StatusOr<AttentionProblem> DescribeAttention(const std::vector<TensorType>& operands,
                                                   const AttrMap& attrs) {
  const bool counter = operands.size() > 3 && IsIndexCounter(operands.back());
  const size_t masks = operands.size() - 3 - (counter ? 1 : 0);
  if (operands.size() < 3 || masks > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention takes q, k, v, an optional mask and an optional dropout counter (an i32 / "
        "i64 scalar), got ", operands.size(), " operands"));
  }
  PTC_ASSIGN_OR_RETURN(std::string layout, GetStringAttr(attrs, "layout", "bhtd"));
  if (layout != "bhtd" && layout != "bthd" && layout != "bt3hd") {
    return absl::InvalidArgumentError(
        absl::StrCat("attribute 'layout' must be bhtd, bthd or bt3hd, got '", layout, "'"));
  }
  const bool packed = layout == "bt3hd";
  // bt3hd: each operand is the packed [B, T, 3, H, D]; the problem is that of its slots.
  TensorType slot;
  if (packed) {
    const TensorType& qkv = operands[0];
    if (operands[1] != qkv || operands[2] != qkv || qkv.rank() != 5 || qkv.shape[2] != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layout bt3hd takes one packed [B, T, 3, H, D] tensor as q, k and v, got ",
          qkv.ToString(), ", ", operands[1].ToString(), ", ", operands[2].ToString()));
    }
    slot = TensorType{qkv.dtype, {qkv.shape[0], qkv.shape[1], qkv.shape[3], qkv.shape[4]}};
  }
  const TensorType& q = packed ? slot : operands[0];
  const TensorType& k = packed ? slot : operands[1];
  const TensorType& v = packed ? slot : operands[2];
  auto describe = [&] {
    return absl::StrCat("q ", q.ToString(), ", k ", k.ToString(), ", v ", v.ToString(),
                        " (layout ", layout, ")");
  };
  if (!IsFloat(q.dtype) || k.dtype != q.dtype || v.dtype != q.dtype) {
    return absl::InvalidArgumentError("q, k, v must share a float dtype: " + describe());
  }
  if (q.rank() != 4 || k.rank() != 4 || v.rank() != 4) {
    return absl::InvalidArgumentError("q, k, v must have rank 4: " + describe());
  }
  AttentionProblem p;
  p.packed = packed;
  p.bthd = layout == "bthd" || packed;
  p.dtype = q.dtype;
  const int t_axis = p.bthd ? 1 : 2, h_axis = p.bthd ? 2 : 1;
  p.b = q.shape[0];
  p.h = q.shape[h_axis];
  p.tq = q.shape[t_axis];
  p.tk = k.shape[t_axis];
  p.d = q.shape[3];
  p.dv = v.shape[3];
  p.hkv = k.shape[h_axis];
  if (k.shape[0] != p.b || v.shape[0] != p.b || v.shape[h_axis] != p.hkv ||
      v.shape[t_axis] != p.tk || k.shape[3] != p.d) {
    return absl::InvalidArgumentError("q, k, v shapes do not match: " + describe());
  }
  // Grouped-query attention: k / v heads divide q's (each kv head serves h / hkv query heads).
  if (p.hkv == 0 ? p.h != 0 : p.h % p.hkv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "k / v have ", p.hkv, " heads, which must divide q's ", p.h, ": ", describe()));
  }
  PTC_ASSIGN_OR_RETURN(p.scale,
                       GetFloatAttr(attrs, "scale", 1.0 / std::sqrt(static_cast<double>(p.d))));
  PTC_ASSIGN_OR_RETURN(p.softcap, GetFloatAttr(attrs, "softcap", 0.0));
  if (!(p.softcap >= 0) || std::isinf(p.softcap)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'softcap' must be finite and >= 0 (0: no capping), got ", p.softcap));
  }
  PTC_ASSIGN_OR_RETURN(int64_t causal, GetIntAttr(attrs, "causal", 0));
  if (causal != 0 && causal != 1) {
    return absl::InvalidArgumentError(absl::StrCat("attribute 'causal' must be 0 or 1, got ",
                                                   causal));
  }
  p.causal = causal == 1;
  PTC_ASSIGN_OR_RETURN(p.dropout, GetFloatAttr(attrs, "dropout", 0.0));
  if (!(p.dropout >= 0 && p.dropout < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'dropout' must be in [0, 1) (0: none), got ", p.dropout));
  }
  PTC_ASSIGN_OR_RETURN(p.seed, GetIntAttr(attrs, "seed", 0));
  if (masks == 1) {
    const TensorType& m = operands[3];
    if (m.dtype != DType::kBool && m.dtype != q.dtype) {
      return absl::InvalidArgumentError(absl::StrCat("mask must be bool or ",
                                                     std::string(DTypeName(q.dtype)), ", got ",
                                                     m.ToString()));
    }
    const Shape scores{p.b, p.h, p.tq, p.tk};
    absl::StatusOr<Shape> bs = BroadcastShapes(m.shape, scores);
    if (!bs.ok() || *bs != scores) {
      return absl::InvalidArgumentError(absl::StrCat("mask ", m.ToString(),
                                                     " does not broadcast to the scores ",
                                                     ShapeToString(scores)));
    }
    p.mask_kind = m.dtype == DType::kBool ? 1 : 2;
    p.mask_shape = m.shape;
    int64_t stride = 1;
    for (int i = 0; i < m.rank(); ++i) {  // m's last dim lines up with Tk (numpy broadcasting)
      const int64_t dim = m.shape[m.rank() - 1 - i];
      if (dim != 1) p.mask_strides[3 - i] = stride;
      stride *= dim;
    }
  }
  p.out_shape = q.shape;
  p.out_shape[3] = p.dv;
  return p;
}

std::vector<TensorType> AttentionOperandTypes(const Node& node, int first, int trailing) {
  const int n = static_cast<int>(node.num_inputs()) - first - trailing;
  std::vector<TensorType> operands;
  for (int i = 0; i < n && first + i < static_cast<int>(node.num_inputs()); ++i) {
    operands.push_back(node.input(first + i)->type());
  }
  return operands;
}

namespace {

// The operands' count at inputs first.. of `node` (AttentionOperandTypes), and whether the
// last is the dropout counter.
std::pair<int, bool> AttentionOperands(const Node& node, int first, int trailing) {
  const int n = static_cast<int>(node.num_inputs()) - first - trailing;
  const bool counter = n > 3 && IsIndexCounter(node.input(first + n - 1)->type());
  return {n, counter};
}

}  // namespace

Value* AttentionMask(const Node& node, int first, int trailing) {
  const auto [n, counter] = AttentionOperands(node, first, trailing);
  return n - (counter ? 1 : 0) == 4 ? node.input(first + 3) : nullptr;
}

int AttentionCounterInput(const Node& node, int first, int trailing) {
  const auto [n, counter] = AttentionOperands(node, first, trailing);
  return counter ? first + n - 1 : -1;
}

Value* AttentionCounter(const Node& node, int first, int trailing) {
  const int at = AttentionCounterInput(node, first, trailing);
  return at >= 0 ? node.input(at) : nullptr;
}

absl::StatusOr<AttentionProblem> DescribeAttention(const Node& node, int first, int trailing) {
  absl::StatusOr<AttentionProblem> p =
      DescribeAttention(AttentionOperandTypes(node, first, trailing), node.attrs());
  if (!p.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", p.status().message()));
  }
  return p;
}

const std::vector<OpDef>& FusedOpDefs() {
  static const std::vector<OpDef>* defs = new std::vector<OpDef>{
      {.name = "fused_elementwise",
       .min_inputs = 1,
       .max_inputs = -1,
       .infer = InferFusedElementwise,
       .elementwise = true},
      {.name = "fused_matmul", .min_inputs = 2, .max_inputs = 4, .min_outputs = 1,
       .max_outputs = 2, .infer = InferFusedMatMul},
      {.name = "attention", .min_inputs = 3, .max_inputs = 5, .min_outputs = 1, .max_outputs = 2,
       .infer = InferAttention},
      {.name = "linear_ce_loss", .min_inputs = 3, .max_inputs = 4, .min_outputs = 1,
       .max_outputs = 4, .infer = InferLinearCeLoss},
      {.name = "gemm_bgrad", .min_inputs = 2, .max_inputs = 2, .min_outputs = 2,
       .max_outputs = 2, .infer = InferGemmBgrad},
      {.name = "gemm_gelu_grad", .min_inputs = 3, .max_inputs = 3, .infer = InferGemmGeluGrad},
      {.name = "rotary", .min_inputs = 3, .max_inputs = 3, .infer = InferRotary},
      {.name = "swiglu", .min_inputs = 2, .max_inputs = 2, .infer = InferSwiglu,
       .elementwise = true},
  };
  return *defs;
}

Value* FusedMatMulBias(const Node& node) {
  if (node.num_inputs() == 4 || (node.num_inputs() == 3 && node.input(2)->type().rank() == 1)) {
    return node.input(2);
  }
  return nullptr;
}

Value* FusedMatMulAddend(const Node& node) {
  if (node.num_inputs() == 4) return node.input(3);
  if (node.num_inputs() == 3 && node.input(2)->type().rank() != 1) return node.input(2);
  return nullptr;
}

absl::StatusOr<GateActivation> SwigluActivation(const AttrMap& attrs) {
  PTC_ASSIGN_OR_RETURN(std::string act, GetStringAttr(attrs, "activation", "silu"));
  if (act == "silu") return GateActivation::kSilu;
  if (act == "gelu_tanh") return GateActivation::kGeluTanh;
  if (act == "gelu") return GateActivation::kGelu;
  return absl::InvalidArgumentError(absl::StrCat(
      "attribute 'activation' must be \"silu\", \"gelu_tanh\" or \"gelu\", got \"", act, "\""));
}

namespace {
// "dropoutK" -> K (-1 for another token).
int DropoutTokenIndex(std::string_view t) {
  constexpr std::string_view kPrefix = "dropout";
  if (t.size() <= kPrefix.size() || t.substr(0, kPrefix.size()) != kPrefix) return -1;
  const std::string_view digits = t.substr(kPrefix.size());
  if (digits.size() > 4) return -1;
  int k = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
    k = 10 * k + (c - '0');
  }
  return k;
}

// Stack pops of a fused_elementwise program token that names an op: 1 (unary, and a dropout
// token "dropoutK"), 2 (binary), -1 for anything else (operand / constant loads, unknown
// names).
int FusedTokenArity(std::string_view t) {
  if (DropoutTokenIndex(t) >= 0) return 1;
  for (std::string_view u : {"neg", "abs", "sqrt", "reciprocal", "exp", "log", "erf", "tanh",
                             "sigmoid", "relu", "floor", "ceil", "cos", "sin", "identity", "gelu",
                             "gelu_tanh"}) {
    if (t == u) return 1;
  }
  for (std::string_view b : {"add", "sub", "mul", "div", "pow", "max", "min"}) {
    if (t == b) return 2;
  }
  return -1;
}

// A list attribute of numbers (integers are accepted for floats); absent: empty.
absl::StatusOr<std::vector<double>> NumberList(const AttrMap& attrs, const char* name) {
  auto it = attrs.find(name);
  if (it == attrs.end()) return std::vector<double>{};
  if (const auto* d = std::get_if<std::vector<double>>(&it->second)) return *d;
  if (const auto* i = std::get_if<std::vector<int64_t>>(&it->second)) {
    return std::vector<double>(i->begin(), i->end());
  }
  return absl::InvalidArgumentError(absl::StrCat("attribute '", name,
                                                 "' must be a list of numbers, got ",
                                                 std::string(AttrKindName(it->second))));
}

}  // namespace

absl::StatusOr<FusedProgram> ParseFusedProgram(const AttrMap& attrs,
                                               const std::vector<TensorType>& operands) {
  FusedProgram p;
  PTC_ASSIGN_OR_RETURN(p.constants, NumberList(attrs, "constants"));
  // Dropouts: three lists of one length.
  PTC_ASSIGN_OR_RETURN(std::vector<double> ratios, NumberList(attrs, "dropout_ratio"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> seeds,
                       GetIntsAttr(attrs, "dropout_seed", std::vector<int64_t>{}));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> counters,
                       GetIntsAttr(attrs, "dropout_counter", std::vector<int64_t>{}));
  if (seeds.size() != ratios.size() || counters.size() != ratios.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attributes 'dropout_ratio', 'dropout_seed' and 'dropout_counter' must have one length, "
        "got ", ratios.size(), ", ", seeds.size(), " and ", counters.size()));
  }
  p.counter.assign(operands.size(), false);
  for (size_t k = 0; k < ratios.size(); ++k) {
    FusedDropout d;
    d.ratio = ratios[k];
    d.seed = static_cast<uint64_t>(seeds[k]);
    if (!(d.ratio >= 0 && d.ratio < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("dropout_ratio[", k, "] must be in [0, 1), got ", d.ratio));
    }
    if (counters[k] < -1 || counters[k] >= static_cast<int64_t>(operands.size())) {
      return absl::InvalidArgumentError(absl::StrCat("dropout_counter[", k, "] = ", counters[k],
                                                     " is not an operand (or -1)"));
    }
    d.counter = static_cast<int>(counters[k]);
    if (d.counter >= 0) {
      const TensorType& c = operands[d.counter];
      if ((c.dtype != DType::kI32 && c.dtype != DType::kI64) || !c.shape.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("operand ", d.counter, " ", c.ToString(),
                                                       " (dropout ", k, "'s counter) must be an "
                                                       "i32 or i64 scalar"));
      }
      p.counter[d.counter] = true;
    }
    p.dropouts.push_back(d);
  }
  auto it = attrs.find("program");
  const auto* program =
      it == attrs.end() ? nullptr : std::get_if<std::vector<std::string>>(&it->second);
  if (program == nullptr || program->empty() || program->size() > kMaxFusedProgram) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attribute 'program' must be a non-empty list of at most ", kMaxFusedProgram,
        " strings"));
  }
  int depth = 0;
  for (const std::string& t : *program) {
    FusedToken tok;
    uint32_t idx = 0;
    // "ceil" and "cos" start with 'c' too: only c / x followed by digits is a load.
    if (t.size() >= 2 && (t[0] == 'x' || t[0] == 'c') && t[1] >= '0' && t[1] <= '9') {
      const size_t limit = t[0] == 'x' ? operands.size() : p.constants.size();
      if (!absl::SimpleAtoi(t.substr(1), &idx) || idx >= limit) {
        return absl::InvalidArgumentError(absl::StrCat(
            "program token '", t, "' refers to a missing ",
            t[0] == 'x' ? "operand" : "constant", " (", operands.size(), " operands, ",
            p.constants.size(), " constants)"));
      }
      if (t[0] == 'x' && p.counter[idx]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "program token '", t, "' reads a dropout counter as a value"));
      }
      tok.kind = t[0] == 'x' ? FusedToken::kOperand : FusedToken::kConstant;
      tok.index = static_cast<int>(idx);
    } else if (const int k = DropoutTokenIndex(t); k >= 0) {
      if (k >= static_cast<int>(p.dropouts.size())) {
        return absl::InvalidArgumentError(absl::StrCat("program token '", t, "' refers to a "
                                                       "missing dropout (", p.dropouts.size(),
                                                       " in dropout_ratio)"));
      }
      tok.kind = FusedToken::kDropout;
      tok.index = k;
      tok.arity = 1;
    } else {
      tok.arity = FusedTokenArity(t);
      if (tok.arity < 0) {
        return absl::InvalidArgumentError(absl::StrCat("unknown program token '", t, "'"));
      }
      tok.op = t;
    }
    if (depth < tok.arity) {
      return absl::InvalidArgumentError(absl::StrCat("program token '", t, "' pops ", tok.arity,
                                                     " values from a stack of ", depth));
    }
    depth = depth - tok.arity + 1;
    p.max_depth = std::max(p.max_depth, depth);
    p.tokens.push_back(std::move(tok));
  }
  if (depth != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("program leaves ", depth, " values on the stack; it must leave one"));
  }
  return p;
}

absl::StatusOr<FusedProgram> ParseFusedProgram(const Node& node) {
  absl::StatusOr<FusedProgram> p = ParseFusedProgram(node.attrs(), InputTypes(node));
  if (!p.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", p.status().message()));
  }
  return p;
}

}  // namespace ptc::ir
