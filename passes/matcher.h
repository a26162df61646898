// A small matcher for rewrite passes: use counts, constant lookups and fluent checks on a
// value's producer, so that a pattern reads as one chain of guards instead of nested ifs, and a
// failed match says why (the reason becomes a pass counter such as "declined.multi-use").
//
//   Matcher m(module, fn);
//   Match erf = m.Def(add->input(0)).Op("erf").Float().SingleUse();
//   if (!erf) { Count("declined." + erf.reason()); continue; }
//   std::optional<double> c = m.Splat(div->input(1));   // a constant whose elements are equal
#ifndef PTC_PASSES_MATCHER_H_
#define PTC_PASSES_MATCHER_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compiler/ir/ir.h"

namespace ptc::passes {

// The tensor of a `constant` op's output: its inline {value} or the Module::tensors() entry it
// references with {ref}. nullopt for anything else (including weights: they may change).
std::optional<ir::Tensor> ConstantTensor(const ir::Module& module, const ir::Value* v);
// The element value when `v` is a constant whose elements all equal one number (a splat).
std::optional<double> SplatValue(const ir::Module& module, const ir::Value* v);
bool IsConstantOp(const ir::Node& node);
// |a - b| <= rel_tol * max(|a|, |b|), or both zero.
bool ApproxEqual(double a, double b, double rel_tol);

class Matcher;

// Checks on one value and its producer. Every check is a no-op once one has failed; reason()
// names the first failure ("not-op:mul", "multi-use", "dtype", "shape", "not-constant", ...).
class Match {
 public:
  Match& Op(std::string_view op);
  Match& Float();                 // floating-point dtype
  Match& DType(ir::DType dtype);
  Match& Type(const ir::TensorType& type);
  Match& SingleUse();             // used by exactly one node operand, and not a result
  Match& Splat(double expected, double rel_tol = 1e-5);  // a constant splat ~= expected

  bool ok() const { return reason_.empty(); }
  explicit operator bool() const { return ok(); }
  ir::Node* node() const { return ok() ? node_ : nullptr; }  // the producer
  const ir::Value* value() const { return value_; }
  const std::string& reason() const { return reason_; }

 private:
  friend class Matcher;
  Match(const Matcher* m, const ir::Value* v);
  void Fail(std::string why) {
    if (reason_.empty()) reason_ = std::move(why);
  }
  const Matcher* m_;
  const ir::Value* value_;
  ir::Node* node_;
  std::string reason_;
};

class Matcher {
 public:
  Matcher(const ir::Module& module, const ir::Function& fn);
  // Recomputes use counts after the function was rewritten.
  void Refresh();

  Match Def(const ir::Value* v) const { return Match(this, v); }

  // Node operand uses plus function-result uses.
  int NumUses(const ir::Value* v) const;
  bool IsResult(const ir::Value* v) const { return results_.count(v) > 0; }
  // The nodes that use `v` (a node appears once per operand slot).
  std::vector<ir::Node*> Users(const ir::Value* v) const;
  // The only user of v when v has exactly one use and is not a result.
  ir::Node* SingleUser(const ir::Value* v) const;

  std::optional<double> Splat(const ir::Value* v) const { return SplatValue(module_, v); }
  // For a binary node (add, mul...) with `known` as one operand: the other one (nullptr if
  // `known` is not an operand). Either operand order matches, for commutative ops.
  static ir::Value* OtherOperand(const ir::Node& n, const ir::Value* known);

  const ir::Module& module() const { return module_; }
  const ir::Function& function() const { return fn_; }

 private:
  const ir::Module& module_;
  const ir::Function& fn_;
  std::map<const ir::Value*, std::vector<std::pair<ir::Node*, int>>> uses_;
  std::set<const ir::Value*> results_;
};

// The nodes of `fn` whose op is `op`, in order: a snapshot that stays valid while a pass adds
// and erases nodes around them.
std::vector<ir::Node*> NodesWithOp(const ir::Function& fn, std::string_view op);

// v = mul(x, c) | mul(c, x) | div(x, c) (op "mul" or "div") read once: the node (nullptr when v
// is no such op read once), x, and the factor c or 1 / c (nullopt unless c is a nonzero splat).
struct ConstantFactor {
  ir::Node* node = nullptr;
  ir::Value* x = nullptr;
  std::optional<double> factor;
};
ConstantFactor ConstantFactorOf(const Matcher& m, const ir::Value* v, std::string_view op);

// Softcapping (Gemma 2's attention scores and logits): v = mul(tanh(u), c) (either operand
// order; c a positive splat) or tanh(u) alone (c = 1: simplify drops a multiply by 1), with
// u = mul(x, f) | mul(f, x) | div(x, 1 / f) (f a splat) or x itself (f = 1), each node read
// once. Then v = cap * tanh(factor * x / cap) with cap = c and factor = f * c: 1 when the
// inner division undoes the cap (the model's own form), else a scale folded into it (a
// preceding scale multiply merged with the division by fold-constants / simplify). nullopt
// for anything else.
struct SoftcapMatch {
  std::vector<ir::Node*> nodes;  // the tanh, and the outer / inner multiplies that are there
  ir::Value* x = nullptr;
  double cap = 0;
  double factor = 1;
};
std::optional<SoftcapMatch> MatchSoftcap(const Matcher& m, const ir::Value* v);

// `v` (f16 / bf16) in f32 for a node at `before`: the f32 value a cast made v from (a master
// weight), else a new cast of v up named "<v>.f32" at `loc` (*added set then).
ir::Value* F32Of(const Matcher& m, ir::Function& fn, ir::Value* v, const std::string& loc,
                 const ir::Node* before, bool* added);

}  // namespace ptc::passes

#endif  // PTC_PASSES_MATCHER_H_
