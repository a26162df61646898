// fuse-elementwise: CPU elementwise fusion, in two steps.
//
// 1. GELU recognition. The erf form that PyTorch exports for nn.GELU(),
//      x * 0.5 * (1 + erf(x / sqrt(2)))      (also x * (1/sqrt2), and the 0.5 on either side)
//    becomes one `gelu(x) {approximate="none"}` (5 ops, 5 passes over memory -> 1).
// 2. Chain fusion. A tree of elementwise ops whose intermediates each have one use and the
//    root's shape (no intermediate is broadcast, so nothing is computed twice) becomes one
//    `fused_elementwise` whose postfix program the CPU kernel (codegen/cpu/fused_elementwise.cc)
//    evaluates per tile: bias add + gelu, residual add chains, scale-shift... Splat constants
//    become program constants; other leaves become operands. A single op stays as it is (its own
//    kernel is as good), so the pattern-specific gelu from step 1 survives unless it sits in a
//    chain.
//
// Preconditions / when it declines (counters):
//   - intermediates used more than once, or returned, are not absorbed  "declined.multi-use"
//   - intermediates smaller than the root (would be recomputed)        "declined.broadcast"
//   - an intermediate whose dtype is not the chain's compute type (f32, or f64 for f64
//     chains): a f16 / bf16 op rounds its result, so it stays an operand  "declined.dtype"
//   f16 / bf16 (a --precision plan): operands of any of f16 / bf16 / f32 are read widened,
//   the chain runs in f32, casts up (exact) are absorbed, and a chain may end in a cast down
//   to f16 / bf16, which becomes the fused op's `dtype` (the one rounding, as unfused).
//   - ops without a program token (cast, where, comparisons...)        (leaves, not counted)
//   - more than max_inputs operands or max_program_length tokens       "declined.too-big"
// Run after fold-constants / simplify / cse (so constants are splats and duplicates merged)
// and before memory planning. Absorbed nodes are erased here; their constants are left to dce.
//
//   before:  %h = add(%mm, %bias) : f32[8,1024]
//            %d = div(%h, %c1) : f32[8,1024]                       (%c1 = 1.4142135)
//            %e = erf(%d) : f32[8,1024]
//            %a = add(%e, %c2) : f32[8,1024]                       (%c2 = 1.0)
//            %m = mul(%h, %a) : f32[8,1024]
//            %g = mul(%m, %c3) : f32[8,1024]                       (%c3 = 0.5)
//   after:   %g = fused_elementwise(%mm, %bias) {program=["x0", "x1", "add", "gelu"],
//                                               shape=[8,1024]} : f32[8,1024]
#include <map>
#include <set>

#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

constexpr double kSqrt2 = 1.41421356237309504880;

// IR op -> program token (gelu depends on its attribute).
std::optional<std::string> ProgramToken(const ir::Node& n) {
  static const std::set<std::string> kOps = {
      "neg", "abs",  "sqrt", "reciprocal", "exp", "log", "erf", "tanh", "sigmoid", "relu",
      "floor", "ceil", "identity", "add", "sub", "mul", "div", "pow", "max", "min"};
  if (n.num_outputs() != 1) return std::nullopt;
  if (n.op() == "gelu") {
    absl::StatusOr<std::string> approx = n.GetString("approximate", "none");
    if (!approx.ok()) return std::nullopt;
    if (*approx == "none") return std::string("gelu");
    if (*approx == "tanh") return std::string("gelu_tanh");
    return std::nullopt;
  }
  if (kOps.count(n.op())) return n.op();
  return std::nullopt;
}

bool FusableDType(ir::DType d) {
  return d == ir::DType::kF32 || d == ir::DType::kF64 || d == ir::DType::kF16 ||
         d == ir::DType::kBF16;
}
bool Half(ir::DType d) { return d == ir::DType::kF16 || d == ir::DType::kBF16; }

// cast(x) from f16 / bf16 (or the same type) up to `ct`: exact, so inside a chain computed in
// `ct` it is no token at all.
bool IsWideningCast(const ir::Node& n, ir::DType ct) {
  if (n.op() != "cast" || n.num_inputs() != 1 || n.num_outputs() != 1) return false;
  const ir::TensorType& in = n.input(0)->type();
  return n.output()->type().dtype == ct && in.shape == n.output()->type().shape &&
         (Half(in.dtype) || in.dtype == ct) && ct != ir::DType::kF64;
}

// cast(f32 -> f16 / bf16) ending a chain: the fused op's output dtype (rounded once, as here).
bool IsNarrowingCast(const ir::Node& n) {
  return n.op() == "cast" && n.num_inputs() == 1 && n.num_outputs() == 1 &&
         n.input(0)->type().dtype == ir::DType::kF32 && Half(n.output()->type().dtype) &&
         n.input(0)->type().shape == n.output()->type().shape;
}

class FuseElementwisePass : public Pass {
 public:
  explicit FuseElementwisePass(FuseElementwiseOptions options) : options_(options) {}
  // With chain fusion off it is the gelu matcher alone, registered as its own pass.
  std::string_view name() const override {
    return options_.fuse_chains ? "fuse-elementwise" : "match-gelu";
  }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    for (const auto& fn : module.functions()) {
      if (options_.match_gelu) changed |= MatchGelu(module, *fn);
      if (options_.fuse_chains) changed |= FuseChains(module, *fn);
    }
    return changed;
  }

 private:
  // ---- step 1: gelu ----------------------------------------------------------------------

  bool MatchGelu(const ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    const std::vector<ir::Node*> erfs = NodesWithOp(fn, "erf");
    for (ir::Node* erf : erfs) {
      std::vector<ir::Node*> chain;
      ir::Node* root = nullptr;
      ir::Value* x = MatchGeluAt(m, erf, chain, root);
      if (x == nullptr) continue;
      ir::Node* g = fn.AddNode("gelu", {x}, {root->output()->type()},
                               {{"approximate", std::string("none")}}, root->loc(),
                               {root->output()->name()}, /*before=*/root);
      fn.ReplaceAllUsesWith(root->output(), g->output());
      erase.insert(chain.begin(), chain.end());
      Count("gelu");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }

  // Matches x*0.5*(1+erf(x/sqrt2)) around `erf`; returns x (nullptr and a counter otherwise),
  // the matched nodes in `chain` and the node computing the result in `root`.
  ir::Value* MatchGeluAt(const Matcher& m, ir::Node* erf, std::vector<ir::Node*>& chain,
                         ir::Node*& root) {
    auto decline = [&](const std::string& why) -> ir::Value* {
      Count("declined.gelu." + why);
      return nullptr;
    };
    // f32 / f64 only: in f16 / bf16 the exported chain rounds after every op, one gelu does not.
    const ir::DType edt = erf->output()->type().dtype;
    if (edt != ir::DType::kF32 && edt != ir::DType::kF64) return decline("dtype");
    // x / sqrt2  or  x * (1/sqrt2)
    ir::Value* x = nullptr;
    Match scaled = m.Def(erf->input(0)).SingleUse();
    if (!scaled) return decline(scaled.reason());
    ir::Node* s = scaled.node();
    if (s != nullptr && s->op() == "div" && m.Def(s->input(1)).Splat(kSqrt2)) {
      x = s->input(0);
    } else if (s != nullptr && s->op() == "mul") {
      if (m.Def(s->input(1)).Splat(1 / kSqrt2)) x = s->input(0);
      else if (m.Def(s->input(0)).Splat(1 / kSqrt2)) x = s->input(1);
    }
    if (x == nullptr) return decline("not-x-over-sqrt2");
    chain = {s, erf};
    // 1 + erf(...)
    ir::Node* add = m.SingleUser(erf->output());
    if (add == nullptr) return decline("multi-use");
    ir::Value* one = Matcher::OtherOperand(*add, erf->output());
    if (add->op() != "add" || one == nullptr || !m.Def(one).Splat(1.0)) return decline("not-1-plus-erf");
    chain.push_back(add);
    // The 0.5 and the x multiply in any of three orders.
    ir::Node* m1 = m.SingleUser(add->output());
    if (m1 == nullptr) return decline("multi-use");
    if (m1->op() != "mul") return decline("not-mul");
    chain.push_back(m1);
    ir::Value* other = Matcher::OtherOperand(*m1, add->output());
    if (other == nullptr) return decline("not-mul");
    Match half_x = m.Def(other).Op("mul").SingleUse();
    if (other == x || m.Def(other).Splat(0.5)) {
      // (x * a) * 0.5  or  (0.5 * a) * x
      ir::Node* m2 = m.SingleUser(m1->output());
      if (m2 == nullptr) return decline("multi-use");
      ir::Value* last = Matcher::OtherOperand(*m2, m1->output());
      bool ok = m2->op() == "mul" && last != nullptr &&
                (other == x ? static_cast<bool>(m.Def(last).Splat(0.5)) : last == x);
      if (!ok) return decline("not-times-half");
      chain.push_back(m2);
      root = m2;
    } else if (half_x && (Matcher::OtherOperand(*half_x.node(), x) != nullptr) &&
               m.Def(Matcher::OtherOperand(*half_x.node(), x)).Splat(0.5)) {
      // (x * 0.5) * a
      chain.push_back(half_x.node());
      root = m1;
    } else {
      return decline("not-times-x");
    }
    if (root->output()->type() != x->type()) return decline("broadcast");
    return x;
  }

  // ---- step 2: chains ----------------------------------------------------------------------

  struct Group {
    ir::Node* root = nullptr;
    ir::DType ct = ir::DType::kF32;       // compute type: f64 for f64 roots, else f32
    std::vector<ir::Node*> nodes;          // absorbed, root included
    std::vector<ir::Value*> operands;      // fused op operands
    std::vector<double> constants;
    std::vector<std::string> program;
  };

  bool Fusable(const ir::Node& n) const {
    return ProgramToken(n).has_value() && FusableDType(n.output()->type().dtype);
  }
  // What may end a chain: an op with a token, or a narrowing cast.
  bool FusableRoot(const ir::Node& n) const { return Fusable(n) || IsNarrowingCast(n); }

  // Emits the program for value `v` into g. `inside` is false for the root's own output.
  void Emit(const Matcher& m, Group& g, ir::Value* v, const std::set<const ir::Node*>& claimed) {
    ir::Node* p = v->producer();
    bool absorb = false;
    if (p != nullptr && p != g.root && !claimed.count(p)) {
      // Inside the chain: ops computing in the chain's type (a half-precision op rounds its
      // result: it stays a leaf), and exact widening casts.
      if (Fusable(*p) || IsWideningCast(*p, g.ct)) {
        if (!m.Def(v).SingleUse()) {
          Count("declined.multi-use");
        } else if (v->type().shape != g.root->output()->type().shape) {
          Count("declined.broadcast");
        } else if (v->type().dtype != g.ct) {
          Count("declined.dtype");
        } else {
          absorb = true;
        }
      }
    }
    if (absorb) {
      EmitNode(m, g, *p, claimed);
      return;
    }
    // A splat of any float type is exact as a constant of the compute type.
    if (std::optional<double> c = m.Splat(v);
        c && (v->type().dtype == g.ct || (g.ct == ir::DType::kF32 && Half(v->type().dtype)))) {
      size_t i = 0;
      while (i < g.constants.size() && !(g.constants[i] == c)) ++i;
      if (i == g.constants.size()) g.constants.push_back(*c);
      g.program.push_back(absl::StrCat("c", i));
      return;
    }
    size_t i = 0;
    while (i < g.operands.size() && g.operands[i] != v) ++i;
    if (i == g.operands.size()) g.operands.push_back(v);
    g.program.push_back(absl::StrCat("x", i));
  }

  void EmitNode(const Matcher& m, Group& g, ir::Node& n, const std::set<const ir::Node*>& claimed) {
    g.nodes.push_back(&n);
    for (ir::Value* in : n.inputs()) Emit(m, g, in, claimed);
    if (n.op() != "cast") g.program.push_back(*ProgramToken(n));  // casts: widen / round only
  }

  bool FuseChains(const ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    std::vector<ir::Node*> order;
    for (const auto& n : fn.nodes()) order.push_back(n.get());
    std::set<const ir::Node*> claimed;  // absorbed into a group (erased at the end)
    bool changed = false;
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      ir::Node* root = *it;
      if (claimed.count(root) || !FusableRoot(*root)) continue;
      bool inputs_ok = true;
      for (const ir::Value* in : root->inputs()) inputs_ok &= FusableDType(in->type().dtype);
      if (!inputs_ok) {
        Count("declined.dtype");
        continue;
      }
      Group g;
      g.root = root;
      g.ct = root->output()->type().dtype == ir::DType::kF64 ? ir::DType::kF64 : ir::DType::kF32;
      if (!options_.half && (Half(root->output()->type().dtype) || IsNarrowingCast(*root))) {
        continue;
      }
      EmitNode(m, g, *root, claimed);
      if (g.nodes.size() < 2) continue;  // a single op keeps its own kernel
      if (static_cast<int>(g.operands.size()) > options_.max_inputs ||
          static_cast<int>(g.program.size()) > options_.max_program_length) {
        Count("declined.too-big");
        continue;
      }
      ir::AttrMap attrs;
      attrs["program"] = g.program;
      attrs["shape"] = root->output()->type().shape;
      if (!g.constants.empty()) attrs["constants"] = g.constants;
      bool mixed = false;
      for (const ir::Value* v : g.operands) mixed |= v->type().dtype != root->output()->type().dtype;
      if (mixed) attrs["dtype"] = root->output()->type().dtype;
      if (g.operands.empty()) continue;  // constants only: fold-constants' job
      ir::Node* f = fn.AddNode("fused_elementwise", g.operands, {root->output()->type()},
                               std::move(attrs), root->loc(), {root->output()->name()},
                               /*before=*/root);
      fn.ReplaceAllUsesWith(root->output(), f->output());
      claimed.insert(g.nodes.begin(), g.nodes.end());
      Count("fused");
      Count("fused.ops", static_cast<int64_t>(g.nodes.size()));
      changed = true;
    }
    if (!claimed.empty()) {
      fn.EraseNodesIf([&](const ir::Node& n) { return claimed.count(&n) > 0; });
    }
    return changed;
  }

  FuseElementwiseOptions options_;
};

}  // namespace

std::unique_ptr<Pass> CreateFuseElementwisePass(FuseElementwiseOptions options) {
  return std::make_unique<FuseElementwisePass>(options);
}

}  // namespace ptc::passes
