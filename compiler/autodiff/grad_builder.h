// Internal to compiler/autodiff: a small builder that appends typed nodes (types from
// ir::InferTypes) and the gradient-rule interface shared by grad_rules_*.cc.
#ifndef PTC_COMPILER_AUTODIFF_GRAD_BUILDER_H_
#define PTC_COMPILER_AUTODIFF_GRAD_BUILDER_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "compiler/ir/ir.h"

namespace ptc::autodiff::internal {

// Appends nodes at the end of `function`. The first failure (a type-inference error, which is
// a bug in a rule) is kept in status(); later calls then return nullptr without adding nodes,
// so that rules read linearly and check status() once.
class GradBuilder {
 public:
  GradBuilder(ir::Function& function, std::string name_base, std::string loc)
      : f_(function), base_(std::move(name_base)), loc_(std::move(loc)) {}

  ir::Function& function() { return f_; }
  const absl::Status& status() const { return status_; }
  void Fail(absl::Status s) {
    if (status_.ok()) status_ = std::move(s);
  }
  void set_name_base(std::string base) { base_ = std::move(base); }

  std::vector<ir::Value*> OpN(std::string_view op, std::vector<ir::Value*> inputs,
                              ir::AttrMap attrs, int num_outputs, std::string_view name = "");
  ir::Value* Op(std::string_view op, std::vector<ir::Value*> inputs, ir::AttrMap attrs = {},
                std::string_view name = "") {
    auto outs = OpN(op, std::move(inputs), std::move(attrs), 1, name);
    return outs.empty() ? nullptr : outs[0];
  }

  // Scalar constant of `dtype`.
  ir::Value* Const(ir::DType dtype, double value);
  ir::Value* Zeros(const ir::TensorType& type);  // expand of a scalar 0
  ir::Value* Add(ir::Value* a, ir::Value* b) { return Op("add", {a, b}); }
  ir::Value* Sub(ir::Value* a, ir::Value* b) { return Op("sub", {a, b}); }
  ir::Value* Mul(ir::Value* a, ir::Value* b) { return Op("mul", {a, b}); }
  ir::Value* Div(ir::Value* a, ir::Value* b) { return Op("div", {a, b}); }
  ir::Value* Neg(ir::Value* a) { return Op("neg", {a}); }
  ir::Value* Scale(ir::Value* a, double s);  // a * s (no node when s == 1)
  ir::Value* Reshape(ir::Value* v, const ir::Shape& shape);  // no node when already `shape`
  ir::Value* Transpose(ir::Value* v, std::vector<int64_t> perm);
  ir::Value* SwapLast2(ir::Value* v);
  // Sums `g` over the dims that numpy broadcasting added to reach g's shape from `target`.
  ir::Value* Unbroadcast(ir::Value* g, const ir::Shape& target);

 private:
  ir::Function& f_;
  std::string base_;
  std::string loc_;
  absl::Status status_;
};

// What a gradient rule sees: the forward node, the gradients of its outputs (nullptr where the
// loss does not depend on an output) and which inputs need a gradient. It sets dx[i] (of
// input i's type) for the inputs it can differentiate; entries left nullptr mean "zero".
struct RuleContext {
  GradBuilder& b;
  const ir::Node& node;
  std::vector<ir::Value*> dy;
  std::vector<bool> need;
  std::vector<ir::Value*> dx;

  ir::Value* in(size_t i) const { return node.input(i); }
  ir::Value* out(size_t i = 0) const { return node.output(i); }
};

using GradRule = absl::Status (*)(RuleContext& ctx);
using RuleMap = std::map<std::string, GradRule, std::less<>>;

// Registration, one function per rule file.
void AddElementwiseRules(RuleMap& rules);  // grad_rules_elementwise.cc
void AddLinalgRules(RuleMap& rules);       // grad_rules_linalg.cc (matmul, norms, losses)
void AddShapeRules(RuleMap& rules);        // grad_rules_shape.cc

}  // namespace ptc::autodiff::internal

#endif  // PTC_COMPILER_AUTODIFF_GRAD_BUILDER_H_
