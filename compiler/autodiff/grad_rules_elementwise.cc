// Gradient rules of elementwise ops: add sub mul div pow neg abs reciprocal sqrt exp log erf
// tanh sigmoid relu gelu identity where cast dropout trilu. Binary ops reduce the gradient
// over broadcast dims (GradBuilder::Unbroadcast).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "compiler/autodiff/grad_builder.h"
#include "compiler/support/status.h"

namespace ptc::autodiff::internal {
namespace {

using ir::Value;

ir::DType Dt(Value* v) { return v->type().dtype; }
const ir::Shape& Sh(Value* v) { return v->type().shape; }

absl::Status Add(RuleContext& c) {
  if (c.need[0]) c.dx[0] = c.b.Unbroadcast(c.dy[0], Sh(c.in(0)));
  if (c.need[1]) c.dx[1] = c.b.Unbroadcast(c.dy[0], Sh(c.in(1)));
  return absl::OkStatus();
}

absl::Status Sub(RuleContext& c) {
  if (c.need[0]) c.dx[0] = c.b.Unbroadcast(c.dy[0], Sh(c.in(0)));
  if (c.need[1]) c.dx[1] = c.b.Unbroadcast(c.b.Neg(c.dy[0]), Sh(c.in(1)));
  return absl::OkStatus();
}

absl::Status Mul(RuleContext& c) {
  if (c.need[0]) c.dx[0] = c.b.Unbroadcast(c.b.Mul(c.dy[0], c.in(1)), Sh(c.in(0)));
  if (c.need[1]) c.dx[1] = c.b.Unbroadcast(c.b.Mul(c.dy[0], c.in(0)), Sh(c.in(1)));
  return absl::OkStatus();
}

absl::Status Div(RuleContext& c) {
  if (c.need[0]) c.dx[0] = c.b.Unbroadcast(c.b.Div(c.dy[0], c.in(1)), Sh(c.in(0)));
  if (c.need[1]) {  // d(a/b)/db = -y / b
    Value* t = c.b.Mul(c.dy[0], c.b.Div(c.out(), c.in(1)));
    c.dx[1] = c.b.Unbroadcast(c.b.Neg(t), Sh(c.in(1)));
  }
  return absl::OkStatus();
}

// The scalar value of a constant, if `v` is a one-element inline constant.
std::optional<double> ConstScalar(Value* v) {
  const ir::Node* p = v->producer();
  if (p == nullptr || p->op() != "constant" || !p->has_attr("value")) return std::nullopt;
  auto t = p->GetTensor("value");
  if (!t.ok() || t->num_elements() != 1) return std::nullopt;
  return t->GetDouble(0);
}

absl::Status Pow(RuleContext& c) {
  Value* a = c.in(0);
  Value* e = c.in(1);
  if (c.need[0]) {
    Value* d;
    std::optional<double> k = ConstScalar(e);
    if (k.has_value() && *k == 2.0) {  // common case (variance): 2 * a
      d = c.b.Scale(a, 2.0);
    } else if (k.has_value() && *k == 1.0) {
      d = nullptr;
    } else {  // e * a^(e - 1)
      d = c.b.Mul(e, c.b.Op("pow", {a, c.b.Sub(e, c.b.Const(Dt(e), 1.0))}));
    }
    c.dx[0] = c.b.Unbroadcast(d ? c.b.Mul(c.dy[0], d) : c.dy[0], Sh(a));
  }
  if (c.need[1]) {  // y * log(a)
    Value* d = c.b.Mul(c.out(), c.b.Op("log", {a}));
    c.dx[1] = c.b.Unbroadcast(c.b.Mul(c.dy[0], d), Sh(e));
  }
  return absl::OkStatus();
}

absl::Status Neg(RuleContext& c) {
  c.dx[0] = c.b.Neg(c.dy[0]);
  return absl::OkStatus();
}

absl::Status Identity(RuleContext& c) {
  c.dx[0] = c.dy[0];
  return absl::OkStatus();
}

absl::Status Abs(RuleContext& c) {
  Value* neg = c.b.Op("less", {c.in(0), c.b.Const(Dt(c.in(0)), 0.0)});
  c.dx[0] = c.b.Op("where", {neg, c.b.Neg(c.dy[0]), c.dy[0]});
  return absl::OkStatus();
}

absl::Status Reciprocal(RuleContext& c) {  // -y^2
  c.dx[0] = c.b.Neg(c.b.Mul(c.dy[0], c.b.Mul(c.out(), c.out())));
  return absl::OkStatus();
}

absl::Status Sqrt(RuleContext& c) {  // 0.5 / y
  c.dx[0] = c.b.Div(c.b.Scale(c.dy[0], 0.5), c.out());
  return absl::OkStatus();
}

absl::Status Exp(RuleContext& c) {
  c.dx[0] = c.b.Mul(c.dy[0], c.out());
  return absl::OkStatus();
}

absl::Status Log(RuleContext& c) {
  c.dx[0] = c.b.Div(c.dy[0], c.in(0));
  return absl::OkStatus();
}

absl::Status Erf(RuleContext& c) {  // 2/sqrt(pi) * exp(-x^2)
  Value* x = c.in(0);
  Value* e = c.b.Op("exp", {c.b.Neg(c.b.Mul(x, x))});
  c.dx[0] = c.b.Mul(c.dy[0], c.b.Scale(e, 2.0 / std::sqrt(M_PI)));
  return absl::OkStatus();
}

absl::Status Cos(RuleContext& c) {  // -sin(x)
  c.dx[0] = c.b.Neg(c.b.Mul(c.dy[0], c.b.Op("sin", {c.in(0)})));
  return absl::OkStatus();
}

absl::Status Sin(RuleContext& c) {  // cos(x)
  c.dx[0] = c.b.Mul(c.dy[0], c.b.Op("cos", {c.in(0)}));
  return absl::OkStatus();
}

absl::Status Tanh(RuleContext& c) {  // 1 - y^2
  Value* y = c.out();
  c.dx[0] = c.b.Mul(c.dy[0], c.b.Sub(c.b.Const(Dt(y), 1.0), c.b.Mul(y, y)));
  return absl::OkStatus();
}

absl::Status Sigmoid(RuleContext& c) {  // y (1 - y)
  Value* y = c.out();
  c.dx[0] = c.b.Mul(c.dy[0], c.b.Mul(y, c.b.Sub(c.b.Const(Dt(y), 1.0), y)));
  return absl::OkStatus();
}

// dy where y > 0, read from the output (y > 0 exactly where x > 0, NaN neither): the step keeps
// relu(x), which the next layer reads anyway, instead of x too, and x is free to stay inside
// its GEMM's epilogue (fuse-matmul-bias's relu: OPT's MLP).
absl::Status Relu(RuleContext& c) {
  Value* y = c.out();
  Value* pos = c.b.Op("greater", {y, c.b.Const(Dt(y), 0.0)});
  c.dx[0] = c.b.Op("where", {pos, c.dy[0], c.b.Const(Dt(y), 0.0)});
  return absl::OkStatus();
}

absl::Status Gelu(RuleContext& c) {
  ir::AttrMap attrs;
  if (c.node.has_attr("approximate")) attrs["approximate"] = c.node.attrs().at("approximate");
  c.dx[0] = c.b.Op("gelu_grad", {c.dy[0], c.in(0)}, attrs);
  return absl::OkStatus();
}

absl::Status Where(RuleContext& c) {
  Value* cond = c.in(0);
  Value* zero = c.b.Const(Dt(c.out()), 0.0);
  if (c.need[1]) c.dx[1] = c.b.Unbroadcast(c.b.Op("where", {cond, c.dy[0], zero}), Sh(c.in(1)));
  if (c.need[2]) c.dx[2] = c.b.Unbroadcast(c.b.Op("where", {cond, zero, c.dy[0]}), Sh(c.in(2)));
  return absl::OkStatus();
}

absl::Status Cast(RuleContext& c) {
  if (!ir::IsFloat(Dt(c.out()))) return absl::OkStatus();  // float -> int: zero gradient
  c.dx[0] = c.b.Op("cast", {c.dy[0]}, {{"to", Dt(c.in(0))}});
  return absl::OkStatus();
}

// The same dropout of dy: its mask is a function of (seed, counter, index) alone, so the
// backward draws the forward's mask again instead of keeping it (no B x T x C bool per dropout).
absl::Status Dropout(RuleContext& c) {
  std::vector<Value*> ins = {c.dy[0]};
  if (c.node.num_inputs() > 1) ins.push_back(c.in(1));
  c.dx[0] = c.b.Op("dropout", ins, c.node.attrs());
  return absl::OkStatus();
}

absl::Status Trilu(RuleContext& c) {
  c.dx[0] = c.b.Op("trilu", {c.dy[0]}, c.node.attrs());
  return absl::OkStatus();
}

// rotary is a rotation of each (x1, x2) pair: its transpose, the rotation by the opposite
// angle, maps dy to dx. The cos / sin tables are treated as constants.
absl::Status Rotary(RuleContext& c) {
  if (c.need[1] || c.need[2]) {
    return absl::UnimplementedError(absl::StrCat(
        "autodiff: ", c.node.Describe(), ": the loss depends on rotary's cos / sin tables, "
        "which have no gradient rule (make them constants, or freeze what computes them)"));
  }
  const int64_t inverse = c.node.GetInt("inverse", 0).value_or(0);
  ir::AttrMap attrs = c.node.attrs();  // rotary_dim / interleaved: the same pairs
  attrs.erase("inverse");
  if (inverse == 0) attrs["inverse"] = int64_t{1};
  c.dx[0] = c.b.Op("rotary", {c.dy[0], c.in(1), c.in(2)}, std::move(attrs));
  return absl::OkStatus();
}

// swiglu(g, u) -> swiglu_grad(dy, g, u): one kernel computes both gradients, recomputing
// sigmoid(g) (or gelu(g): the activation attribute carried over), so the step keeps g and u
// only (not sigmoid(g) and g * sigmoid(g)).
absl::Status Swiglu(RuleContext& c) {
  auto outs = c.b.OpN("swiglu_grad", {c.dy[0], c.in(0), c.in(1)}, c.node.attrs(), 2);
  if (outs.size() != 2) return absl::OkStatus();  // the builder holds the error
  for (int i = 0; i < 2; ++i) {
    if (c.need[i]) c.dx[i] = outs[i];
  }
  return absl::OkStatus();
}

}  // namespace

void AddElementwiseRules(RuleMap& rules) {
  rules["add"] = Add;
  rules["sub"] = Sub;
  rules["mul"] = Mul;
  rules["div"] = Div;
  rules["pow"] = Pow;
  rules["neg"] = Neg;
  rules["identity"] = Identity;
  rules["abs"] = Abs;
  rules["reciprocal"] = Reciprocal;
  rules["sqrt"] = Sqrt;
  rules["exp"] = Exp;
  rules["log"] = Log;
  rules["erf"] = Erf;
  rules["tanh"] = Tanh;
  rules["cos"] = Cos;
  rules["sin"] = Sin;
  rules["sigmoid"] = Sigmoid;
  rules["relu"] = Relu;
  rules["gelu"] = Gelu;
  rules["where"] = Where;
  rules["cast"] = Cast;
  rules["dropout"] = Dropout;
  rules["trilu"] = Trilu;
  rules["rotary"] = Rotary;
  rules["swiglu"] = Swiglu;
}

}  // namespace ptc::autodiff::internal
