// fuse-elementwise: CPU elementwise fusion, in two steps.
//
// 1. GELU recognition. The erf form that PyTorch exports for nn.GELU(),
//      x * 0.5 * (1 + erf(x / sqrt(2)))      (also x * (1/sqrt2), and the 0.5 on either side)
//    becomes one `gelu(x) {approximate="none"}` (5 ops, 5 passes over memory -> 1); the tanh
//    form (GPT-2's gelu_new), as torch.onnx exports F.gelu(x, approximate='tanh') and HF's
//    NewGELUActivation,
//      0.5 * (x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * (x * (x * x))))))
//                                            (x^3 also as pow(x, 3) or (x * x) * x)
//    becomes one `gelu(x) {approximate="tanh"}` (9 ops -> 1), which cuBLASLt's GELU epilogues
//    compute. Both accept the operands of every mul / add in either order and share the tail
//    "1 + erf|tanh, times x, times 0.5 in any order". Counters "gelu" and "gelu.tanh"; a decline
//    counts "declined.gelu.<why>" (erf) or "declined.gelu.tanh.<why>", e.g. a constant that is
//    not sqrt(2) / sqrt(2/pi) / 0.044715 (relative tolerance 1e-5), a multi-use intermediate
//    ("multi-use"), or f16 / bf16 ("dtype": the exported chain rounds after every op).
// 2. Chain fusion. A tree of elementwise ops whose intermediates each have one use and the
//    root's shape (no intermediate is broadcast, so nothing is computed twice) becomes one
//    `fused_elementwise` whose postfix program the CPU kernel (codegen/cpu/fused_elementwise.cc)
//    evaluates per tile: bias add + gelu, residual add chains, scale-shift... Splat constants
//    become program constants; other leaves become operands. A single op stays as it is (its own
//    kernel is as good), so the pattern-specific gelu from step 1 survives unless it sits in a
//    chain. A training step's dropout (without its mask output) is a token too, "dropoutK"
//    with its ratio, seed and counter operand in the lists dropout_ratio / dropout_seed /
//    dropout_counter: GPT-2's residual add of a dropped-out projection, x + dropout(h), is one
//    pass over memory instead of two (the dropout's kernel, then the add), and the embeddings'
//    dropout(wte[ids] + wpe[pos]) one instead of two. Its mask is over the output's element
//    index, the absorbed dropout's own (intermediates have the output's shape), so fused and
//    unfused steps drop the same elements.
//
// Preconditions / when it declines (counters):
//   - intermediates used more than once, or returned, are not absorbed  "declined.multi-use"
//   - intermediates smaller than the root (would be recomputed)        "declined.broadcast"
//   - an intermediate whose dtype is not the chain's compute type (f32, or f64 for f64
//     chains) and, with `round_half_steps`, any f16 / bf16 intermediate (it rounds its
//     result, so it stays an operand)                                    "declined.dtype"
//   f16 / bf16 (a --precision plan): operands of any of f16 / bf16 / f32 are read widened,
//   the chain runs in f32, casts up (exact) are absorbed, and a chain may end in a cast down
//   to f16 / bf16, which becomes the fused op's `dtype` (the one rounding, as unfused). The
//   f16 / bf16 ops inside a chain are computed in f32 without their own rounding (by default,
//   as torch.compile's generated kernels keep intermediates in f32 registers: one rounding at
//   the store, closer to the exact value than the op-by-op plan): a bf16 SwiGLU backward or a
//   rotary embedding is one kernel instead of five. `round_half_steps` keeps every half op's
//   rounding (the op-by-op plan's bits) at the price of those chains.
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
constexpr double kSqrt2OverPi = 0.79788456080286535588;  // sqrt(2 / pi)
constexpr double kGeluCubic = 0.044715;

// IR op -> program token (gelu depends on its attribute).
std::optional<std::string> ProgramToken(const ir::Node& n) {
  static const std::set<std::string> kOps = {
      "neg", "abs",  "sqrt", "reciprocal", "exp", "log", "erf", "tanh", "sigmoid", "relu",
      "floor", "ceil", "cos", "sin", "identity", "add", "sub", "mul", "div", "pow", "max", "min"};
  if (n.num_outputs() != 1) return std::nullopt;
  // dropout(x[, counter]) without its mask output: "dropoutK" (EmitNode numbers it).
  if (n.op() == "dropout") return std::string("dropout");
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

// A sub-matcher's decline: sets `why` (the counter's reason) and returns nullptr.
std::nullptr_t Why(std::string& why, std::string reason) {
  why = std::move(reason);
  return nullptr;
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
    for (const char* op : {"erf", "tanh"}) {
      const bool tanh = std::string_view(op) == "tanh";
      for (ir::Node* t : NodesWithOp(fn, op)) {
        std::vector<ir::Node*> chain;
        ir::Node* root = nullptr;
        ir::Value* x = MatchGeluAt(m, t, tanh, chain, root);
        if (x == nullptr) continue;
        ir::Node* g = fn.AddNode("gelu", {x}, {root->output()->type()},
                                 {{"approximate", std::string(tanh ? "tanh" : "none")}},
                                 root->loc(), {root->output()->name()}, /*before=*/root);
        fn.ReplaceAllUsesWith(root->output(), g->output());
        erase.insert(chain.begin(), chain.end());
        Count(tanh ? "gelu.tanh" : "gelu");
      }
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }

  // Matches x*0.5*(1+erf(x/sqrt2)) around `t` (an erf), or, with `tanh`,
  // x*0.5*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) around `t` (a tanh); returns x (nullptr and a
  // counter otherwise), the matched nodes in `chain` and the node computing the result in `root`.
  ir::Value* MatchGeluAt(const Matcher& m, ir::Node* t, bool tanh, std::vector<ir::Node*>& chain,
                         ir::Node*& root) {
    std::string why;
    auto decline = [&](const std::string& reason) -> ir::Value* {
      Count((tanh ? "declined.gelu.tanh." : "declined.gelu.") + reason);
      return nullptr;
    };
    // f32 / f64 only: in f16 / bf16 the exported chain rounds after every op, one gelu does not.
    const ir::DType dt = t->output()->type().dtype;
    if (dt != ir::DType::kF32 && dt != ir::DType::kF64) return decline("dtype");
    ir::Value* x = tanh ? MatchTanhArgument(m, t, chain, why) : MatchErfArgument(m, t, chain, why);
    if (x == nullptr) return decline(why);
    chain.push_back(t);
    root = MatchGeluTail(m, t, x, chain, why);
    if (root == nullptr) return decline(why);
    if (root->output()->type() != x->type()) return decline("broadcast");
    return x;
  }

  // erf's argument x / sqrt2 or x * (1/sqrt2), either operand order: returns x.
  static ir::Value* MatchErfArgument(const Matcher& m, const ir::Node* erf,
                                     std::vector<ir::Node*>& chain, std::string& why) {
    Match scaled = m.Def(erf->input(0)).SingleUse();
    if (!scaled) return Why(why, scaled.reason());
    ir::Node* s = scaled.node();
    ir::Value* x = nullptr;
    if (s != nullptr && s->op() == "div" && m.Def(s->input(1)).Splat(kSqrt2)) {
      x = s->input(0);
    } else if (s != nullptr && s->op() == "mul") {
      x = SplatTimes(m, *s, 1 / kSqrt2);
    }
    if (x == nullptr) return Why(why, "not-x-over-sqrt2");
    chain.push_back(s);
    return x;
  }

  // tanh's argument sqrt(2/pi) * (x + 0.044715 * x^3), any operand order of the muls and the
  // add: returns x. torch.onnx's gelu(approximate='tanh') writes the cube x * (x * x); HF's
  // gelu_new (NewGELUActivation) pow(x, 3.0).
  static ir::Value* MatchTanhArgument(const Matcher& m, const ir::Node* tanh,
                                      std::vector<ir::Node*>& chain, std::string& why) {
    Match scaled = m.Def(tanh->input(0)).SingleUse();
    if (!scaled) return Why(why, scaled.reason());
    ir::Value* sum = scaled.node() ? SplatTimes(m, *scaled.node(), kSqrt2OverPi) : nullptr;
    if (sum == nullptr) return Why(why, "not-sqrt-2-over-pi");
    Match add = m.Def(sum).SingleUse();
    if (!add) return Why(why, add.reason());
    if (add.node() == nullptr || add.node()->op() != "add") return Why(why, "not-x-plus-cubic");
    // x + 0.044715 * x^3, x on either side.
    for (int i = 0; i < 2; ++i) {
      ir::Value* x = add.node()->input(i);
      Match cubic = m.Def(add.node()->input(1 - i)).Op("mul").SingleUse();
      if (!cubic) continue;
      ir::Value* cube = SplatTimes(m, *cubic.node(), kGeluCubic);
      if (cube == nullptr) continue;
      std::vector<ir::Node*> cube_nodes = MatchCube(m, cube, x);
      if (cube_nodes.empty()) continue;
      chain.insert(chain.end(), cube_nodes.begin(), cube_nodes.end());
      chain.push_back(cubic.node());
      chain.push_back(add.node());
      chain.push_back(scaled.node());
      return x;
    }
    return Why(why, "not-x-plus-cubic");
  }

  // The nodes computing `cube` = x^3 as pow(x, 3), x * (x * x) or (x * x) * x (empty if not).
  static std::vector<ir::Node*> MatchCube(const Matcher& m, ir::Value* cube, const ir::Value* x) {
    Match c = m.Def(cube).SingleUse();
    ir::Node* n = c.node();
    if (n == nullptr) return {};
    if (n->op() == "pow" && n->input(0) == x && m.Def(n->input(1)).Splat(3.0)) return {n};
    if (n->op() != "mul") return {};
    ir::Value* sq = Matcher::OtherOperand(*n, x);
    if (sq == nullptr) return {};
    Match s = m.Def(sq).Op("mul").SingleUse();
    if (!s || s.node()->input(0) != x || s.node()->input(1) != x) return {};
    return {s.node(), n};
  }

  // For a binary mul `n` with a splat ~= c on one side: the other operand (nullptr if neither).
  static ir::Value* SplatTimes(const Matcher& m, const ir::Node& n, double c) {
    if (n.op() != "mul" || n.num_inputs() != 2) return nullptr;
    if (m.Def(n.input(1)).Splat(c)) return n.input(0);
    if (m.Def(n.input(0)).Splat(c)) return n.input(1);
    return nullptr;
  }

  // The tail shared by both forms around `t` (the erf or tanh of x's argument): 1 + t, then
  // times x and times 0.5 in any of three orders. Returns the node computing the result.
  static ir::Node* MatchGeluTail(const Matcher& m, ir::Node* t, ir::Value* x,
                                 std::vector<ir::Node*>& chain, std::string& why) {
    // 1 + t
    ir::Node* add = m.SingleUser(t->output());
    if (add == nullptr) return Why(why, "multi-use");
    ir::Value* one = Matcher::OtherOperand(*add, t->output());
    if (add->op() != "add" || one == nullptr || !m.Def(one).Splat(1.0)) {
      return Why(why, "not-1-plus-" + t->op());
    }
    chain.push_back(add);
    // The 0.5 and the x multiply in any of three orders.
    ir::Node* m1 = m.SingleUser(add->output());
    if (m1 == nullptr) return Why(why, "multi-use");
    if (m1->op() != "mul") return Why(why, "not-mul");
    chain.push_back(m1);
    ir::Value* other = Matcher::OtherOperand(*m1, add->output());
    if (other == nullptr) return Why(why, "not-mul");
    Match half_x = m.Def(other).Op("mul").SingleUse();
    if (other == x || m.Def(other).Splat(0.5)) {
      // (x * a) * 0.5  or  (0.5 * a) * x
      ir::Node* m2 = m.SingleUser(m1->output());
      if (m2 == nullptr) return Why(why, "multi-use");
      ir::Value* last = Matcher::OtherOperand(*m2, m1->output());
      bool ok = m2->op() == "mul" && last != nullptr &&
                (other == x ? static_cast<bool>(m.Def(last).Splat(0.5)) : last == x);
      if (!ok) return Why(why, "not-times-half");
      chain.push_back(m2);
      return m2;
    }
    if (half_x && SplatTimes(m, *half_x.node(), 0.5) == x) {
      // (x * 0.5) * a
      chain.push_back(half_x.node());
      return m1;
    }
    return Why(why, "not-times-x");
  }

  // ---- step 2: chains ----------------------------------------------------------------------

  struct Group {
    ir::Node* root = nullptr;
    ir::DType ct = ir::DType::kF32;       // compute type: f64 for f64 roots, else f32
    std::vector<ir::Node*> nodes;          // absorbed, root included
    std::vector<ir::Value*> operands;      // fused op operands
    std::vector<double> constants;
    std::vector<std::string> program;
    std::vector<double> dropout_ratio;    // per absorbed dropout: its ratio, seed and counter
    std::vector<int64_t> dropout_seed;    // (the counter's operand index, -1: none)
    std::vector<int64_t> dropout_counter;
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
      // Inside the chain: ops computing in the chain's type (a half-precision op too, computed
      // in f32 without its rounding, unless round_half_steps), and exact widening casts.
      if (Fusable(*p) || IsWideningCast(*p, g.ct)) {
        if (!m.Def(v).SingleUse()) {
          Count("declined.multi-use");
        } else if (v->type().shape != g.root->output()->type().shape) {
          Count("declined.broadcast");
        } else if (v->type().dtype != g.ct &&
                   !(g.ct == ir::DType::kF32 && Half(v->type().dtype) &&
                     !options_.round_half_steps)) {
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
    g.program.push_back(absl::StrCat("x", OperandIndex(g, v)));
  }

  void EmitNode(const Matcher& m, Group& g, ir::Node& n, const std::set<const ir::Node*>& claimed) {
    g.nodes.push_back(&n);
    if (n.op() == "dropout") {
      // Its value, then the token; the counter is an operand that no token loads.
      Emit(m, g, n.input(0), claimed);
      int64_t counter = -1;
      if (n.num_inputs() > 1) counter = OperandIndex(g, n.input(1));
      g.dropout_ratio.push_back(*n.GetFloat("ratio", 0.5));
      g.dropout_seed.push_back(*n.GetInt("seed", 0));
      g.dropout_counter.push_back(counter);
      g.program.push_back(absl::StrCat("dropout", g.dropout_ratio.size() - 1));
      return;
    }
    for (ir::Value* in : n.inputs()) Emit(m, g, in, claimed);
    if (n.op() != "cast") g.program.push_back(*ProgramToken(n));  // casts: widen / round only
  }

  // v's index among the group's operands (added if new).
  static int64_t OperandIndex(Group& g, ir::Value* v) {
    size_t i = 0;
    while (i < g.operands.size() && g.operands[i] != v) ++i;
    if (i == g.operands.size()) g.operands.push_back(v);
    return static_cast<int64_t>(i);
  }

  // The inputs of n that the program reads as values (a dropout's counter is not one).
  static size_t ValueInputs(const ir::Node& n) {
    return n.op() == "dropout" ? 1 : n.num_inputs();
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
      for (size_t i = 0; i < ValueInputs(*root); ++i) {
        inputs_ok &= FusableDType(root->input(i)->type().dtype);
      }
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
      std::set<int64_t> counters(g.dropout_counter.begin(), g.dropout_counter.end());
      if (!g.dropout_ratio.empty()) {
        attrs["dropout_ratio"] = g.dropout_ratio;
        attrs["dropout_seed"] = g.dropout_seed;
        attrs["dropout_counter"] = g.dropout_counter;
      }
      bool mixed = false;
      for (size_t i = 0; i < g.operands.size(); ++i) {
        mixed |= !counters.count(static_cast<int64_t>(i)) &&
                 g.operands[i]->type().dtype != root->output()->type().dtype;
      }
      if (mixed) attrs["dtype"] = root->output()->type().dtype;
      if (g.operands.size() == counters.size() - counters.count(-1)) {
        continue;  // constants only: fold-constants' job
      }
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
