// Gradient rules of matmul, gemm, softmax, log_softmax, layer_norm, softmax_ce_loss and
// nll_loss. Matmul gradients are matmul / gemm ops on transposed operands (no new kernels);
// a weight [K, N] multiplied by activations [B, T, K] gets its gradient as one gemm over the
// flattened B*T rows.
#include "compiler/autodiff/grad_builder.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"

namespace ptc::autodiff::internal {
namespace {

using ir::Value;

int64_t Prod(const ir::Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

absl::Status MatMul(RuleContext& c) {
  GradBuilder& b = c.b;
  const ir::Shape a_shape = c.in(0)->type().shape, b_shape = c.in(1)->type().shape;
  const int64_t k = a_shape.back();
  Value* a2 = a_shape.size() == 1 ? b.Reshape(c.in(0), {1, k}) : c.in(0);
  Value* b2 = b_shape.size() == 1 ? b.Reshape(c.in(1), {k, 1}) : c.in(1);
  const ir::Shape& as = a2->type().shape;
  const ir::Shape& bs = b2->type().shape;
  const int64_t m = as[as.size() - 2], n = bs.back();
  ir::Shape y2 = c.out()->type().shape;
  if (a_shape.size() == 1) y2.insert(y2.end() - (b_shape.size() == 1 ? 0 : 1), 1);
  if (b_shape.size() == 1) y2.push_back(1);
  Value* dy = b.Reshape(c.dy[0], y2);
  const bool b_matrix = bs.size() == 2;
  if (c.need[0]) {
    Value* da;
    if (b_matrix && as.size() > 2) {  // [rows, N] x [K, N]^T as one gemm
      Value* dy_flat = b.Reshape(dy, {Prod(y2, 0, y2.size() - 1), n});
      da = b.Reshape(b.Op("gemm", {dy_flat, b2}, {{"trans_b", int64_t{1}}}), as);
    } else {
      da = b.Unbroadcast(b.Op("matmul", {dy, b.SwapLast2(b2)}), as);
    }
    c.dx[0] = b.Reshape(da, a_shape);
  }
  if (c.need[1]) {
    Value* db;
    if (b_matrix) {
      const int64_t rows = Prod(as, 0, as.size() - 1);
      Value* a_flat = b.Reshape(a2, {rows, k});
      Value* dy_flat = b.Reshape(dy, {Prod(y2, 0, y2.size() - 1), n});
      if (Prod(y2, 0, y2.size() - 1) != rows) {  // a broadcast against b's (absent) batch
        db = b.Unbroadcast(b.Op("matmul", {b.SwapLast2(a2), dy}), bs);
      } else {
        db = b.Op("gemm", {a_flat, dy_flat}, {{"trans_a", int64_t{1}}});
      }
    } else {
      db = b.Unbroadcast(b.Op("matmul", {b.SwapLast2(a2), dy}), bs);
    }
    c.dx[1] = b.Reshape(db, b_shape);
  }
  (void)m;
  return absl::OkStatus();
}

absl::Status Gemm(RuleContext& c) {
  GradBuilder& b = c.b;
  PTC_ASSIGN_OR_RETURN(double alpha, c.node.GetFloat("alpha", 1.0));
  PTC_ASSIGN_OR_RETURN(double beta, c.node.GetFloat("beta", 1.0));
  PTC_ASSIGN_OR_RETURN(int64_t ta, c.node.GetInt("trans_a", 0));
  PTC_ASSIGN_OR_RETURN(int64_t tb, c.node.GetInt("trans_b", 0));
  Value* dy = c.dy[0];
  Value* A = c.in(0);
  Value* B = c.in(1);
  auto gemm = [&](Value* x, Value* y, int64_t tx, int64_t ty) {
    return b.Op("gemm", {x, y}, {{"alpha", alpha}, {"trans_a", tx}, {"trans_b", ty}});
  };
  if (c.need[0]) c.dx[0] = ta ? gemm(B, dy, tb, 1) : gemm(dy, B, 0, 1 - tb);
  if (c.need[1]) c.dx[1] = tb ? gemm(dy, A, 1, ta) : gemm(A, dy, 1 - ta, 0);
  if (c.node.num_inputs() == 3 && c.need[2]) {
    c.dx[2] = b.Unbroadcast(b.Scale(dy, beta), c.in(2)->type().shape);
  }
  return absl::OkStatus();
}

absl::Status Softmax(RuleContext& c) {  // y * (dy - sum(dy * y))
  PTC_ASSIGN_OR_RETURN(int64_t axis, c.node.GetInt("axis"));
  Value* y = c.out();
  Value* s = c.b.Op("reduce_sum", {c.b.Mul(c.dy[0], y)},
                    {{"axes", std::vector<int64_t>{axis}}, {"keepdims", int64_t{1}}});
  c.dx[0] = c.b.Mul(y, c.b.Sub(c.dy[0], s));
  return absl::OkStatus();
}

Value* LogSoftmaxBackward(GradBuilder& b, Value* dy, Value* y, int64_t axis) {
  Value* s = b.Op("reduce_sum", {dy}, {{"axes", std::vector<int64_t>{axis}}, {"keepdims", int64_t{1}}});
  return b.Sub(dy, b.Mul(b.Op("exp", {y}), s));
}

absl::Status LogSoftmax(RuleContext& c) {  // dy - exp(y) * sum(dy)
  PTC_ASSIGN_OR_RETURN(int64_t axis, c.node.GetInt("axis"));
  c.dx[0] = LogSoftmaxBackward(c.b, c.dy[0], c.out(), axis);
  return absl::OkStatus();
}

absl::Status LayerNorm(RuleContext& c) {
  GradBuilder& b = c.b;
  if (c.node.num_outputs() < 3) return absl::InternalError("layer_norm without mean/inv_std");
  if (c.dy[1] != nullptr || c.dy[2] != nullptr) {
    return absl::UnimplementedError(absl::StrCat(
        "autodiff: ", c.node.Describe(), ": the loss depends on the mean / inv_std_dev outputs "
        "of layer_norm, which have no gradient rule"));
  }
  PTC_ASSIGN_OR_RETURN(int64_t axis, c.node.GetInt("axis"));
  Value* x = c.in(0);
  const ir::Shape& xs = x->type().shape;
  ir::Shape normalized(xs.begin() + axis, xs.end());
  Value* scale = c.in(1);
  if (scale->type().shape != normalized) {
    scale = b.Op("expand", {scale}, {{"shape", normalized}});
  }
  PTC_ASSIGN_OR_RETURN(int64_t rms, c.node.GetInt("rms", 0));
  ir::AttrMap attrs = {{"axis", axis}};
  if (rms != 0) attrs["rms"] = rms;  // RMSNorm: no mean(dy * scale) term (ops_train.cc)
  auto outs = b.OpN("layer_norm_grad", {c.dy[0], x, scale, c.out(1), c.out(2)}, attrs, 3);
  if (outs.size() != 3) return absl::OkStatus();  // the builder holds the error
  if (c.need[0]) c.dx[0] = outs[0];
  if (c.need[1]) c.dx[1] = b.Unbroadcast(outs[1], c.in(1)->type().shape);
  if (c.node.num_inputs() == 3 && c.need[2]) {
    c.dx[2] = b.Unbroadcast(outs[2], c.in(2)->type().shape);
  }
  return absl::OkStatus();
}

// attention(q, k, v[, mask][, counter]) -> attention_grad(dy, q, k, v[, mask][, counter]) with
// the same attributes: the backward recomputes the softmax (and the dropout mask) blockwise
// (flash-style), so training keeps only q, k, v and the output of each attention instead of
// the B x H x T x T probabilities.
absl::Status Attention(RuleContext& c) {
  if (ir::AttentionMask(c.node, 0) != nullptr && c.need[3]) {
    return absl::UnimplementedError(absl::StrCat(
        "autodiff: ", c.node.Describe(), ": the loss depends on the attention mask, which has "
        "no gradient rule (make the mask a constant)"));
  }
  std::vector<Value*> ins = {c.dy[0]};
  for (size_t i = 0; i < c.node.num_inputs(); ++i) ins.push_back(c.in(i));
  ir::AttrMap attrs;
  for (const char* k : {"scale", "softcap", "layout", "dropout", "seed"}) {
    if (c.node.has_attr(k)) attrs[k] = c.node.attrs().at(k);
  }
  auto outs = c.b.OpN("attention_grad", ins, std::move(attrs), 3);
  if (outs.size() != 3) return absl::OkStatus();  // the builder holds the error
  for (int i = 0; i < 3; ++i) {
    if (c.need[i]) c.dx[i] = outs[i];
  }
  return absl::OkStatus();
}

// linear_ce_loss computed the gradients for d loss = 1 in its forward (outputs 1 and 2, and 3
// for the bias): the backward scales them by the incoming scalar gradient.
absl::Status LinearCeLoss(RuleContext& c) {
  const bool bias = c.node.num_inputs() == 4;
  if (c.node.num_outputs() < (bias ? 4 : 3)) {
    return absl::InternalError("linear_ce_loss without gradients");
  }
  ir::Value* dy = c.dy[0];
  if (dy->type().dtype != c.out(1)->type().dtype) {  // bf16 / f16 inputs: the loss stays f32
    dy = c.b.Op("cast", {dy}, {{"to", c.out(1)->type().dtype}});
  }
  if (c.need[0]) c.dx[0] = c.b.Mul(c.out(1), dy);
  if (c.need[1]) c.dx[1] = c.b.Mul(c.out(2), dy);
  if (bias && c.need[3]) c.dx[3] = c.b.Mul(c.out(3), dy);
  return absl::OkStatus();
}

ir::AttrMap LossAttrs(const ir::Node& node) {
  ir::AttrMap a;
  for (const char* k : {"reduction", "ignore_index"}) {
    if (node.has_attr(k)) a[k] = node.attrs().at(k);
  }
  return a;
}

absl::Status SoftmaxCe(RuleContext& c) {
  GradBuilder& b = c.b;
  if (c.node.num_outputs() < 2) return absl::InternalError("softmax_ce_loss without log_prob");
  if (!c.need[0]) return absl::OkStatus();  // class weights are treated as constants
  Value* d = nullptr;
  if (c.dy[0] != nullptr) {
    std::vector<Value*> ins = {c.dy[0], c.out(1), c.in(1)};
    if (c.node.num_inputs() == 3) ins.push_back(c.in(2));
    d = b.Op("softmax_ce_loss_grad", ins, LossAttrs(c.node));
  }
  if (c.dy[1] != nullptr) {  // through log_prob = log_softmax(scores, axis=1)
    Value* e = LogSoftmaxBackward(b, c.dy[1], c.out(1), 1);
    d = d ? b.Add(d, e) : e;
  }
  c.dx[0] = d;
  return absl::OkStatus();
}

absl::Status Nll(RuleContext& c) {
  if (!c.need[0]) return absl::OkStatus();
  std::vector<Value*> ins = {c.dy[0], c.in(0), c.in(1)};
  if (c.node.num_inputs() == 3) ins.push_back(c.in(2));
  c.dx[0] = c.b.Op("nll_loss_grad", ins, LossAttrs(c.node));
  return absl::OkStatus();
}

}  // namespace

void AddLinalgRules(RuleMap& rules) {
  rules["matmul"] = MatMul;
  rules["gemm"] = Gemm;
  rules["softmax"] = Softmax;
  rules["log_softmax"] = LogSoftmax;
  rules["layer_norm"] = LayerNorm;
  rules["attention"] = Attention;
  rules["linear_ce_loss"] = LinearCeLoss;
  rules["softmax_ce_loss"] = SoftmaxCe;
  rules["nll_loss"] = Nll;
}

}  // namespace ptc::autodiff::internal
