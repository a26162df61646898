// Ops of training graphs. See ops_train.h. Documentation of every op (to be merged into ops.h):
//
//   Gradient ops (made by compiler/autodiff; "dy" is the gradient of the forward output):
//   gather_grad(dy, indices [, base]) {axis, shape=[...]}   scatter-add: the gradient of
//       gather(data, indices) {axis} w.r.t. data, data's shape given by `shape`; repeated
//       indices accumulate, negative indices count from the end; dtype of dy. With `base`
//       (the type of the result), the sum is added to it: the gradient of a weight that is also
//       read elsewhere (a tied embedding) without a second dense [V, D] buffer and an add.
//   slice_grad(dy) {starts, ends, steps, shape=[...]}  zeros of `shape` with dy written at the
//       positions slice(x) {starts, ends, steps} reads (same normalized attributes as slice).
//   softmax_ce_loss_grad(dloss, log_prob, labels [, weights]) {reduction, ignore_index?}
//       -> dscores (type of log_prob): dloss * w[label] * (exp(log_prob) - onehot(label)),
//       divided by sum(w) for reduction "mean"; dloss is f[] or f[N, d1...] for "none".
//   nll_loss_grad(dloss, input, target [, weight]) {reduction, ignore_index?} -> dinput
//       (type of input): -dloss * w[target] at the target class, 0 elsewhere ("mean": / sum w).
//   layer_norm_grad(dy, x, scale, mean, inv_std_dev [, addend] [, counter]) {axis, rms,
//                   low_dropout, low_seed} -> (dx, dscale, dbias [, dx_low])
//       scale has the normalized shape x.shape[axis:]; mean / inv_std_dev are the f32 outputs
//       of the forward layer_norm; dscale and dbias have scale's type. dy has x's type, or is
//       f16 / bf16 for an f32 x (widened exactly; dx is f32). With `addend` (x's type; made by
//       fuse-norm-grad-add from the add of another gradient of the same value), dx includes it.
//       dx_low (fold-norm-casts): dx rounded to dy's f16 / bf16 too (a cast of dx). With
//       low_dropout=R > 0 (fold-norm-casts taking in the dropout of dx_low, a training step's
//       gradient through GPT-2's residual dropout), dx_low is that dropout's result:
//       dropout(dx_low, counter) {ratio=R, seed=low_seed}, compiler/ir/dropout.h's mask over
//       dx_low's element index; each kept value is dx times 1 / (1 - R) rounded once to dy's
//       dtype (the unfused cast and dropout round twice: at most one unit in the last place
//       apart, as fused_elementwise's half ops computed in f32); counter: the dropout's
//       (absent: 0).
//       {rms=1}: the gradients of layer_norm {rms=1} (RMSNorm): no mean(dy * scale) term in
//       dx; the mean operand is the forward's (zeros); dbias is sum(dy), which nothing reads.
//   gelu_grad(dy, x) {approximate="none"|"tanh"}       dy * gelu'(x); type of x.
//   swiglu_grad(dy, g, u) {activation} -> (dg, du)   the gradients of swiglu(g, u) (ops_fused.cc)
//       with s = sigmoid(g) recomputed from g:  du = dy * g * s,
//       dg = dy * u * s * (1 + g * (1 - s)); with activation gelu_tanh / gelu, du = dy * gelu(g)
//       and dg = dy * u * gelu'(g). dy, g, u: one float type (that of dg and du);
//       computed in f32 (f64 for f64) and each output rounded once.
//   attention_grad(dy, q, k, v[, mask][, counter]) {scale, layout, dropout, seed}
//       -> (dq, dk, dv)
//       The gradients of attention(q, k, v[, mask][, counter]) (ops_fused.cc) for the output
//       gradient dy, same attributes; the softmax (and the dropout mask) is recomputed from q,
//       k (and the counter): nothing T x T is kept from the forward. Not differentiable in the mask. dk / dv have k's / v's shapes: with
//       grouped-query attention (fewer k / v heads than q heads) each kv head's gradient is the
//       sum over the query heads of its group.
//
//   Optimizer ops (made by compiler/autodiff/optimizer.cc); scalars are f32[]:
//   lr_schedule(step) {lr, schedule="constant"|"cosine", warmup=0, total_steps=0,
//       min_lr_ratio=0.0} -> f32[]   the learning rate of the update that follows `step`
//       updates: lr * (step+1)/warmup while step < warmup; then for "cosine" with
//       total_steps > warmup: lr * (r + (1-r) * 0.5 * (1 + cos(pi * p))), r = min_lr_ratio,
//       p = min(1, (step - warmup) / (total_steps - warmup)); else lr.
//   adamw_update(w, g, m, v, lr, step [, apply]) {beta1, beta2, eps, weight_decay} -> (w', m', v')
//       torch.optim.AdamW for one tensor; `step` is the 1-based step count t (after the
//       increment): w *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//       w -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps). w, g, m, v share one type.
//       With `apply` (bool[]) false the outputs are w, m, v unchanged (an accumulating
//       micro-step, a skipped fp16 step): the update stays conditional without selects after
//       it, so its outputs can still be written in place.
//   sgd_update(w, g, lr [, mom]) {momentum=0, weight_decay=0} -> (w' [, mom'])
//       torch.optim.SGD (dampening 0, no nesterov): g += wd*w; mom = momentum*mom + g (with a
//       zero-initialized buffer, identical to torch's first step); w -= lr * (mom or g).
//   assign(target, value)  -> ()   impure, no outputs. target is a parameter of the function;
//       the runtime writes value into target's storage after every other node of the step has
//       run. Types must be equal.
#include "compiler/ir/ops_train.h"

#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

using Types = std::vector<TensorType>;
using InferResult = absl::StatusOr<Types>;

absl::Status Invalid(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

absl::Status RequireFloat(const TensorType& t, std::string_view what) {
  if (!IsFloat(t.dtype)) {
    return Invalid(absl::StrCat(std::string(what), " ", t.ToString(), " must be a float type"));
  }
  return absl::OkStatus();
}

absl::Status RequireScalarF32(const TensorType& t, std::string_view what) {
  if (t != TensorType{DType::kF32, {}}) {
    return Invalid(absl::StrCat(std::string(what), " must be f32[], got ", t.ToString()));
  }
  return absl::OkStatus();
}

InferResult InferGatherGrad(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireFloat(in[0], "dy"));
  if (in[1].dtype != DType::kI32 && in[1].dtype != DType::kI64) {
    return Invalid(absl::StrCat("indices ", in[1].ToString(), " must be i32 or i64"));
  }
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_ASSIGN_OR_RETURN(Shape shape, GetIntsAttr(attrs, "shape"));
  TensorType data{in[0].dtype, shape};
  PTC_RETURN_IF_ERROR(CheckAxis(axis, data.rank(), "axis", data));
  Shape want(shape.begin(), shape.begin() + axis);
  want.insert(want.end(), in[1].shape.begin(), in[1].shape.end());
  want.insert(want.end(), shape.begin() + axis + 1, shape.end());
  if (want != in[0].shape) {
    return Invalid(absl::StrCat("dy ", in[0].ToString(), " must have shape ",
                                ShapeToString(want), " (gather of ", data.ToString(),
                                " by indices ", in[1].ToString(), " at axis ", axis, ")"));
  }
  if (data.num_elements() < 0) return Invalid("attribute 'shape' is invalid");
  if (in.size() == 3 && in[2] != data) {
    return Invalid(absl::StrCat("base ", in[2].ToString(), " must have the result's type ",
                                data.ToString()));
  }
  return Types{data};
}

InferResult InferSliceGrad(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(Shape shape, GetIntsAttr(attrs, "shape"));
  if (NumElements(shape) < 0) return Invalid("attribute 'shape' is invalid");
  TensorType x{in[0].dtype, shape};
  // The forward slice's output type must be dy's.
  PTC_ASSIGN_OR_RETURN(Types fwd, InferTypes("slice", {x}, attrs, 1));
  if (fwd[0] != in[0]) {
    return Invalid(absl::StrCat("dy ", in[0].ToString(), " is not the type ", fwd[0].ToString(),
                                " of the slice of ", x.ToString()));
  }
  return Types{x};
}

InferResult InferSoftmaxCeGrad(const Types& in, const AttrMap& attrs, int) {
  // Same checks as the forward loss on (log_prob, labels [, weights]).
  Types fwd_in = {in[1], in[2]};
  if (in.size() == 4) fwd_in.push_back(in[3]);
  PTC_ASSIGN_OR_RETURN(Types fwd, InferTypes("softmax_ce_loss", fwd_in, attrs, 1));
  if (in[0] != fwd[0]) {
    return Invalid(absl::StrCat("dloss ", in[0].ToString(), " must have the loss type ",
                                fwd[0].ToString()));
  }
  return Types{in[1]};
}

InferResult InferNllGrad(const Types& in, const AttrMap& attrs, int) {
  Types fwd_in = {in[1], in[2]};
  if (in.size() == 4) fwd_in.push_back(in[3]);
  PTC_ASSIGN_OR_RETURN(Types fwd, InferTypes("nll_loss", fwd_in, attrs, 1));
  if (in[0] != fwd[0]) {
    return Invalid(absl::StrCat("dloss ", in[0].ToString(), " must have the loss type ",
                                fwd[0].ToString()));
  }
  return Types{in[1]};
}

InferResult InferLayerNormGrad(const Types& in, const AttrMap& attrs, int num_outputs) {
  PTC_RETURN_IF_ERROR(RequireFloat(in[1], "x"));
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, in[1].rank(), "axis", in[1]));
  PTC_ASSIGN_OR_RETURN(int64_t rms, GetIntAttr(attrs, "rms", 0));
  if (rms != 0 && rms != 1) {
    return Invalid(absl::StrCat("attribute 'rms' must be 0 or 1, got ", rms));
  }
  // dy: x's type, or f16 / bf16 of x's shape for an f32 x (the cast of a --precision plan's
  // gradient up to f32, folded in by fold-norm-casts).
  const bool low_dy = in[1].dtype == DType::kF32 && IsHalfFloat(in[0].dtype);
  if (in[0].shape != in[1].shape || (in[0].dtype != in[1].dtype && !low_dy)) {
    return Invalid(absl::StrCat("dy ", in[0].ToString(), " must have x's type ",
                                in[1].ToString(), " (or f16 / bf16 for an f32 x)"));
  }
  Shape normalized(in[1].shape.begin() + axis, in[1].shape.end());
  TensorType scale{in[1].dtype, normalized};
  if (in[2] != scale) {
    return Invalid(absl::StrCat("scale ", in[2].ToString(), " must be ", scale.ToString()));
  }
  Shape stat(in[1].shape.begin(), in[1].shape.begin() + axis);
  stat.resize(in[1].shape.size(), 1);
  TensorType stat_type{DType::kF32, stat};
  if (in[3] != stat_type || in[4] != stat_type) {
    return Invalid(absl::StrCat("mean ", in[3].ToString(), " and inv_std_dev ",
                                in[4].ToString(), " must be ", stat_type.ToString()));
  }
  // After them: the addend (x's type), then dx_low's dropout counter (an integer scalar).
  size_t next = 5;
  if (in.size() > next && IsFloat(in[next].dtype)) {
    if (in[next] != in[1]) {
      return Invalid(absl::StrCat("addend ", in[next].ToString(), " must have x's type ",
                                  in[1].ToString()));
    }
    ++next;
  }
  const bool counter = in.size() > next;
  if (counter) {
    if ((in[next].dtype != DType::kI32 && in[next].dtype != DType::kI64) ||
        !in[next].shape.empty() || in.size() > next + 1) {
      return Invalid(absl::StrCat("input ", next, " ", in[next].ToString(),
                                  " must be the addend (x's type) or, last, the counter of "
                                  "dx_low's dropout (an i32 / i64 scalar)"));
    }
  }
  PTC_ASSIGN_OR_RETURN(double low_dropout, GetFloatAttr(attrs, "low_dropout", 0.0));
  PTC_RETURN_IF_ERROR(GetIntAttr(attrs, "low_seed", 0).status());
  if (!(low_dropout >= 0 && low_dropout < 1)) {
    return Invalid(absl::StrCat("attribute 'low_dropout' must be in [0, 1), got ", low_dropout));
  }
  // dx_low: dx (with the addend) rounded to dy's f16 / bf16 as well, the cast a --precision
  // plan's matmul gradient needs (fold-norm-casts folds it in).
  if (num_outputs == 4) {
    if (!low_dy) {
      return Invalid(absl::StrCat("a fourth output (dx in dy's dtype) needs an f32 x and an f16 "
                                  "/ bf16 dy, got x ", in[1].ToString(), " and dy ",
                                  in[0].ToString()));
    }
    return Types{in[1], scale, scale, in[0]};
  }
  if (counter || low_dropout > 0) {
    return Invalid("low_dropout and its counter apply to the fourth output (dx_low)");
  }
  return Types{in[1], scale, scale};
}

InferResult InferGeluGrad(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireFloat(in[1], "x"));
  if (in[0] != in[1]) {
    return Invalid(absl::StrCat("dy ", in[0].ToString(), " must have x's type ",
                                in[1].ToString()));
  }
  PTC_ASSIGN_OR_RETURN(Types t, InferTypes("gelu", {in[1]}, attrs, 1));
  return t;
}

InferResult InferSwigluGrad(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(SwigluActivation(attrs).status());
  PTC_RETURN_IF_ERROR(RequireFloat(in[1], "g"));
  if (in[0] != in[1] || in[2] != in[1]) {
    return Invalid(absl::StrCat("dy ", in[0].ToString(), ", g ", in[1].ToString(), " and u ",
                                in[2].ToString(), " must have one type"));
  }
  return Types{in[1], in[1]};
}

InferResult InferAttentionGrad(const Types& in, const AttrMap& attrs, int) {
  // dy must be what attention(q, k, v[, mask]) returns; the gradients have the operands' types.
  // saved_stats=1: the last two inputs are the forward's output and log-sum-exp
  // (attention's two outputs), so the backward does not recompute the forward.
  PTC_ASSIGN_OR_RETURN(int64_t saved, GetIntAttr(attrs, "saved_stats", 0));
  const size_t extra = saved ? 2 : 0;
  if (in.size() < 4 + extra || in.size() > 6 + extra) {
    return Invalid(absl::StrCat("attention_grad takes (dy, q, k, v[, mask][, counter]",
                                saved ? ", o, lse" : "", "), got ", in.size(), " inputs"));
  }
  Types fwd(in.begin() + 1, in.end() - extra);
  PTC_ASSIGN_OR_RETURN(Types o, InferTypes("attention", fwd, attrs, saved ? 2 : 1));
  if (in[0] != o[0]) {
    return Invalid(absl::StrCat("dy ", in[0].ToString(), " must have the attention output's type ",
                                o[0].ToString()));
  }
  if (saved && (in[in.size() - 2] != o[0] || in.back() != o[1])) {
    return Invalid(absl::StrCat("the saved output ", in[in.size() - 2].ToString(), " and lse ",
                                in.back().ToString(), " must be ", o[0].ToString(), " and ",
                                o[1].ToString()));
  }
  // bt3hd: one gradient, of the packed operand's type.
  PTC_ASSIGN_OR_RETURN(std::string layout, GetStringAttr(attrs, "layout", "bhtd"));
  if (layout == "bt3hd") return Types{in[1]};
  return Types{in[1], in[2], in[3]};
}

InferResult InferLrSchedule(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireScalarF32(in[0], "step"));
  PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, "lr").status());
  PTC_ASSIGN_OR_RETURN(std::string s, GetStringAttr(attrs, "schedule", "constant"));
  if (s != "constant" && s != "cosine") {
    return Invalid(absl::StrCat("attribute 'schedule' must be \"constant\" or \"cosine\", got \"",
                                s, "\""));
  }
  PTC_ASSIGN_OR_RETURN(int64_t warmup, GetIntAttr(attrs, "warmup", 0));
  PTC_ASSIGN_OR_RETURN(int64_t total, GetIntAttr(attrs, "total_steps", 0));
  if (warmup < 0 || total < 0) return Invalid("'warmup' and 'total_steps' must be >= 0");
  PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, "min_lr_ratio", 0.0).status());
  return Types{{DType::kF32, {}}};
}

InferResult InferAdamW(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireFloat(in[0], "w"));
  for (int i = 1; i < 4; ++i) {
    if (in[i] != in[0]) {
      return Invalid(absl::StrCat("input ", i, " ", in[i].ToString(), " must have w's type ",
                                  in[0].ToString()));
    }
  }
  PTC_RETURN_IF_ERROR(RequireScalarF32(in[4], "lr"));
  PTC_RETURN_IF_ERROR(RequireScalarF32(in[5], "step"));
  if (in.size() == 7 && (in[6].dtype != DType::kBool || in[6].rank() != 0)) {
    return Invalid(absl::StrCat("apply ", in[6].ToString(), " must be bool[]"));
  }
  for (const char* a : {"beta1", "beta2", "eps", "weight_decay"}) {
    PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, a).status());
  }
  return Types{in[0], in[0], in[0]};
}

InferResult InferSgd(const Types& in, const AttrMap& attrs, int num_outputs) {
  PTC_RETURN_IF_ERROR(RequireFloat(in[0], "w"));
  if (in[1] != in[0] || (in.size() == 4 && in[3] != in[0])) {
    return Invalid(absl::StrCat("g and mom must have w's type ", in[0].ToString()));
  }
  PTC_RETURN_IF_ERROR(RequireScalarF32(in[2], "lr"));
  if (num_outputs != static_cast<int>(in.size()) - 2) {
    return Invalid("sgd_update has 2 outputs with a momentum buffer input, else 1");
  }
  PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, "momentum", 0.0).status());
  PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, "weight_decay", 0.0).status());
  return Types(num_outputs, in[0]);
}

InferResult InferAssign(const Types& in, const AttrMap&, int) {
  if (in[0] != in[1]) {
    return Invalid(absl::StrCat("assign: value ", in[1].ToString(), " must have the target's type ",
                                in[0].ToString()));
  }
  return Types{};
}

}  // namespace

const std::vector<OpDef>& TrainOpDefs() {
  static const auto* defs = new std::vector<OpDef>{
      {.name = "gather_grad", .min_inputs = 2, .max_inputs = 3, .infer = InferGatherGrad,
       .inplace_input = 2},
      {.name = "slice_grad", .min_inputs = 1, .max_inputs = 1, .infer = InferSliceGrad},
      {.name = "softmax_ce_loss_grad", .min_inputs = 3, .max_inputs = 4,
       .infer = InferSoftmaxCeGrad},
      {.name = "nll_loss_grad", .min_inputs = 3, .max_inputs = 4, .infer = InferNllGrad},
      {.name = "layer_norm_grad", .min_inputs = 5, .max_inputs = 7, .min_outputs = 3,
       .max_outputs = 4, .infer = InferLayerNormGrad},
      {.name = "gelu_grad", .min_inputs = 2, .max_inputs = 2, .infer = InferGeluGrad,
       .elementwise = true},
      {.name = "swiglu_grad", .min_inputs = 3, .max_inputs = 3, .min_outputs = 2,
       .max_outputs = 2, .infer = InferSwigluGrad},
      {.name = "attention_grad", .min_inputs = 4, .max_inputs = 8, .min_outputs = 1,
       .max_outputs = 3, .infer = InferAttentionGrad},
      {.name = "lr_schedule", .min_inputs = 1, .max_inputs = 1, .infer = InferLrSchedule},
      {.name = "adamw_update", .min_inputs = 6, .max_inputs = 7, .min_outputs = 3,
       .max_outputs = 3, .infer = InferAdamW},
      {.name = "sgd_update", .min_inputs = 3, .max_inputs = 4, .min_outputs = 1,
       .max_outputs = 2, .infer = InferSgd},
      {.name = "assign", .min_inputs = 2, .max_inputs = 2, .min_outputs = 0, .max_outputs = 0,
       .infer = InferAssign, .pure = false},
  };
  return *defs;
}

Value* LayerNormGradAddend(const Node& node) {
  if (node.op() != "layer_norm_grad" || node.num_inputs() < 6) return nullptr;
  return IsFloat(node.input(5)->type().dtype) ? node.input(5) : nullptr;
}

Value* LayerNormGradCounter(const Node& node) {
  if (node.op() != "layer_norm_grad" || node.num_inputs() < 6) return nullptr;
  Value* last = node.input(node.num_inputs() - 1);
  return IsFloat(last->type().dtype) ? nullptr : last;
}

}  // namespace ptc::ir
