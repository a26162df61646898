#include "passes/matcher.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace ptc::passes {

bool IsConstantOp(const ir::Node& node) { return node.op() == "constant"; }

std::optional<ir::Tensor> ConstantTensor(const ir::Module& module, const ir::Value* v) {
  if (v == nullptr || v->producer() == nullptr || !IsConstantOp(*v->producer())) {
    return std::nullopt;
  }
  const ir::Node& n = *v->producer();
  auto it = n.attrs().find("value");
  if (it != n.attrs().end()) {
    if (const ir::Tensor* t = std::get_if<ir::Tensor>(&it->second)) return *t;
    return std::nullopt;
  }
  it = n.attrs().find("ref");
  if (it != n.attrs().end()) {
    if (const std::string* ref = std::get_if<std::string>(&it->second)) {
      auto t = module.tensors().find(*ref);
      if (t != module.tensors().end()) return t->second;
    }
  }
  return std::nullopt;
}

std::optional<double> SplatValue(const ir::Module& module, const ir::Value* v) {
  std::optional<ir::Tensor> t = ConstantTensor(module, v);
  if (!t || t->num_elements() < 1 || t->empty()) return std::nullopt;
  double first = t->GetDouble(0);
  for (int64_t i = 1; i < t->num_elements(); ++i) {
    double x = t->GetDouble(i);
    if (!(x == first) && !(std::isnan(x) && std::isnan(first))) return std::nullopt;
  }
  return first;
}

bool ApproxEqual(double a, double b, double rel_tol) {
  if (a == b) return true;
  return std::fabs(a - b) <= rel_tol * std::max(std::fabs(a), std::fabs(b));
}

Match::Match(const Matcher* m, const ir::Value* v) : m_(m), value_(v), node_(nullptr) {
  if (v == nullptr) {
    Fail("no-value");
  } else {
    node_ = v->producer();
  }
}

Match& Match::Op(std::string_view op) {
  if (!ok()) return *this;
  if (node_ == nullptr || node_->op() != op) Fail(absl::StrCat("not-", std::string(op)));
  return *this;
}

Match& Match::Float() {
  if (ok() && !ir::IsFloat(value_->type().dtype)) Fail("dtype");
  return *this;
}

Match& Match::DType(ir::DType dtype) {
  if (ok() && value_->type().dtype != dtype) Fail("dtype");
  return *this;
}

Match& Match::Type(const ir::TensorType& type) {
  if (ok() && value_->type() != type) Fail("type");
  return *this;
}

Match& Match::SingleUse() {
  if (ok() && (m_->NumUses(value_) != 1 || m_->IsResult(value_))) Fail("multi-use");
  return *this;
}

Match& Match::Splat(double expected, double rel_tol) {
  if (!ok()) return *this;
  std::optional<double> s = m_->Splat(value_);
  if (!s) {
    Fail("not-constant");
  } else if (!ApproxEqual(*s, expected, rel_tol)) {
    Fail("constant-value");
  }
  return *this;
}

Matcher::Matcher(const ir::Module& module, const ir::Function& fn) : module_(module), fn_(fn) {
  Refresh();
}

void Matcher::Refresh() {
  uses_ = fn_.ComputeUses();
  results_.clear();
  results_.insert(fn_.results().begin(), fn_.results().end());
}

int Matcher::NumUses(const ir::Value* v) const {
  int n = 0;
  auto it = uses_.find(v);
  if (it != uses_.end()) n += static_cast<int>(it->second.size());
  for (const ir::Value* r : fn_.results()) n += (r == v);
  return n;
}

std::vector<ir::Node*> Matcher::Users(const ir::Value* v) const {
  std::vector<ir::Node*> out;
  auto it = uses_.find(v);
  if (it != uses_.end()) {
    for (const auto& [node, idx] : it->second) out.push_back(node);
  }
  return out;
}

ir::Node* Matcher::SingleUser(const ir::Value* v) const {
  if (IsResult(v)) return nullptr;
  auto it = uses_.find(v);
  if (it == uses_.end() || it->second.size() != 1) return nullptr;
  return it->second[0].first;
}

ir::Value* Matcher::OtherOperand(const ir::Node& n, const ir::Value* known) {
  if (n.num_inputs() != 2) return nullptr;
  if (n.input(0) == known) return n.input(1);
  if (n.input(1) == known) return n.input(0);
  return nullptr;
}

std::vector<ir::Node*> NodesWithOp(const ir::Function& fn, std::string_view op) {
  std::vector<ir::Node*> out;
  for (const auto& n : fn.nodes()) {
    if (n->op() == op) out.push_back(n.get());
  }
  return out;
}

ConstantFactor ConstantFactorOf(const Matcher& m, const ir::Value* v, std::string_view op) {
  ConstantFactor f;
  Match d = m.Def(v).Op(op).SingleUse();
  if (!d || d.node()->num_inputs() != 2) return f;
  f.node = d.node();
  std::optional<double> c = m.Splat(f.node->input(1));
  f.x = f.node->input(0);
  if (!c && op == "mul") {
    c = m.Splat(f.node->input(0));
    f.x = f.node->input(1);
  }
  if (c && *c != 0.0) f.factor = op == "mul" ? *c : 1.0 / *c;
  return f;
}

std::optional<SoftcapMatch> MatchSoftcap(const Matcher& m, const ir::Value* v) {
  // mul / div by a splat, read once, of a non-constant operand.
  auto scaled = [&](const ir::Value* x) -> ConstantFactor {
    for (std::string_view op : {"mul", "div"}) {
      ConstantFactor f = ConstantFactorOf(m, x, op);
      if (f.node != nullptr && f.factor && !m.Splat(f.x)) return f;
    }
    return {};
  };
  SoftcapMatch r;
  const ir::Value* t = v;
  if (ConstantFactor outer = scaled(v); outer.node != nullptr && outer.node->op() == "mul") {
    if (!(*outer.factor > 0)) return std::nullopt;
    r.nodes.push_back(outer.node);
    r.cap = *outer.factor;
    t = outer.x;
  } else {
    r.cap = 1.0;
  }
  Match th = m.Def(t).Op("tanh").SingleUse();
  if (!th) return std::nullopt;
  r.nodes.push_back(th.node());
  r.x = th.node()->input(0);
  double f = 1.0;
  if (ConstantFactor inner = scaled(r.x); inner.node != nullptr) {
    r.nodes.push_back(inner.node);
    r.x = inner.x;
    f = *inner.factor;
  }
  r.factor = f * r.cap;
  // The graph's f32 constants: c * (1 / c) is 1 up to f32 rounding.
  if (std::fabs(r.factor - 1.0) <= 1e-6) r.factor = 1.0;
  return r;
}

ir::Value* F32Of(const Matcher& m, ir::Function& fn, ir::Value* v, const std::string& loc,
                 const ir::Node* before, bool* added) {
  *added = false;
  if (Match c = m.Def(v).Op("cast"); c && c.node()->input(0)->type().dtype == ir::DType::kF32) {
    return c.node()->input(0);
  }
  *added = true;
  return fn.AddNode("cast", {v}, {{ir::DType::kF32, v->type().shape}}, {{"to", ir::DType::kF32}},
                    loc, {v->name() + ".f32"}, before)
      ->output();
}

}  // namespace ptc::passes
