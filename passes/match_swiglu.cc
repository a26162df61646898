// match-swiglu: Llama's gated MLP activation as one `swiglu(g, u)`.
//
// The MLP of Llama, Mistral, Qwen... is down(silu(gate(h)) * up(h)). Exported to ONNX (opset 17
// has no SiLU) the activation is three ops, sigmoid(g), g * s and (g * s) * u; a training step
// then keeps sigmoid(g) and silu(g) (two [tokens, ffn] tensors per layer) for the backward and
// runs the mul / sigmoid gradients op by op. swiglu (compiler/ir/ops_fused.cc) is one kernel
// forward and its gradient swiglu_grad one kernel backward, recomputing sigmoid from g, so only
// g and u (the two projections' outputs) are kept.
//
// Recognized, from each sigmoid s = sigmoid(g), as a product of the three factors g, s and u in
// any grouping and operand order:
//   - (g * s) * u           models/llama.cc and HF's act_fn(gate_proj(x)) * up_proj(x);
//   - g * (s * u);
//   - (g * u) * s.
// u may be g itself (g^2 sigmoid(g)).
//
// Guards (counters "swiglu" and "declined.<why>"): f32 / f64 only ("dtype": in f16 / bf16 the
// exported chain rounds after each product, swiglu once; a --precision plan matches before mixed
// precision makes the ops bf16); s and the inner product single-use and not results
// ("multi-use"); g and u of one shape ("broadcast": swiglu does not broadcast); s multiplied by
// something that is neither g nor a product with g ("other-x": the sigmoid of another value, a
// gate that is not SiLU); silu(g) not multiplied by anything ("not-gated": plain SiLU).
// A sigmoid not read by a mul is not a candidate (nothing counted).
// GeGLU (Gemma's MLP: gelu(gate(h)) * up(h)): mul(gelu(g), u) in either order, the gelu read by
// that mul alone, becomes swiglu(g, u) {activation="gelu_tanh" | "gelu"} (the gelu's
// approximate attribute) ("geglu"; the same dtype / broadcast guards): the backward then keeps
// g and u, not gelu(g).
// Runs before autodiff (compiler/driver, after match-rotary) and in the default pipeline after
// cse (inference plans), before fuse-elementwise, which would otherwise take the chain.
//
//   before:  %s = sigmoid(%g) : f32[2,8,64]
//            %m = mul(%g, %s) : f32[2,8,64]
//            %y = mul(%m, %u) : f32[2,8,64]
//   after:   %y = swiglu(%g, %u) : f32[2,8,64]
#include <set>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class MatchSwigluPass : public FunctionPass {
 public:
  std::string_view name() const override { return "match-swiglu"; }

 protected:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    for (ir::Node* s : NodesWithOp(fn, "sigmoid")) {
      std::string why;
      Found f;
      if (!MatchAt(m, s, f, why)) {
        if (!why.empty()) Count("declined." + why);
        continue;
      }
      bool overlap = false;  // a node claimed by an earlier match (not expected)
      for (const ir::Node* n : f.chain) overlap |= erase.count(n) > 0;
      if (overlap) continue;
      ir::Node* y = fn.AddNode("swiglu", {f.g, f.u}, {f.root->output()->type()}, {},
                               f.root->loc(), {f.root->output()->name()}, /*before=*/f.root);
      fn.ReplaceAllUsesWith(f.root->output(), y->output());
      erase.insert(f.chain.begin(), f.chain.end());
      Count("swiglu");
    }
    bool changed = !erase.empty();
    if (changed) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    erase.clear();
    Matcher mg(module, fn);  // the uses after the SwiGLU rewrites
    for (ir::Node* gl : NodesWithOp(fn, "gelu")) {
      ir::Node* mul = mg.SingleUser(gl->output());
      if (mul == nullptr || !IsMul(mul) || mul->input(0) == mul->input(1) ||
          mg.IsResult(gl->output()) || erase.count(mul)) {
        continue;  // a plain GELU (GPT-2's MLP): not a gate
      }
      ir::Value* g = gl->input(0);
      ir::Value* u = Matcher::OtherOperand(*mul, gl->output());
      const ir::DType dt = g->type().dtype;
      if (dt != ir::DType::kF32 && dt != ir::DType::kF64) {
        Count("declined.dtype");
        continue;
      }
      if (u->type() != g->type() || mul->output()->type() != g->type()) {
        Count("declined.broadcast");
        continue;
      }
      const bool tanh_form = gl->GetString("approximate", "none").value_or("none") == "tanh";
      ir::Node* y = fn.AddNode(
          "swiglu", {g, u}, {mul->output()->type()},
          {{"activation", std::string(tanh_form ? "gelu_tanh" : "gelu")}}, mul->loc(),
          {mul->output()->name()}, /*before=*/mul);
      fn.ReplaceAllUsesWith(mul->output(), y->output());
      erase.insert({gl, mul});
      Count("geglu");
    }
    if (erase.empty()) return changed;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }

 private:
  struct Found {
    ir::Value* g = nullptr;
    ir::Value* u = nullptr;
    ir::Node* root = nullptr;          // the outer product
    std::vector<ir::Node*> chain;      // sigmoid, inner product, root
  };

  static bool Fail(std::string& why, const char* reason) {
    why = reason;
    return false;
  }

  static bool IsMul(const ir::Node* n) {
    return n != nullptr && n->op() == "mul" && n->num_inputs() == 2;
  }

  // The match from the sigmoid `s`; false with `why` set on a decline (empty: not a gate).
  static bool MatchAt(const Matcher& m, ir::Node* s, Found& f, std::string& why) {
    ir::Value* g = s->input(0);
    const ir::Value* sv = s->output();
    std::vector<ir::Node*> users = m.Users(sv);
    bool read_by_mul = false;
    for (const ir::Node* n : users) read_by_mul |= IsMul(n);
    if (!read_by_mul) return false;  // some other use of a sigmoid: not a candidate
    ir::Node* inner = m.SingleUser(sv);
    if (inner == nullptr || inner->input(0) == inner->input(1)) return Fail(why, "multi-use");
    ir::Value* x = Matcher::OtherOperand(*inner, sv);
    ir::Node* x_node = x->producer();
    ir::Node* root = nullptr;
    ir::Value* u = nullptr;
    ir::Node* third = nullptr;  // (g * u) * s: the product of g and u
    if (x == g) {
      // (g * s) * u
      if (m.NumUses(inner->output()) == 1 && !m.IsResult(inner->output())) {
        root = m.SingleUser(inner->output());
        if (!IsMul(root)) return Fail(why, "not-gated");
      } else {
        bool gated = false;
        for (const ir::Node* n : m.Users(inner->output())) gated |= IsMul(n);
        return Fail(why, gated ? "multi-use" : "not-gated");
      }
      u = Matcher::OtherOperand(*root, inner->output());
    } else if (IsMul(x_node) && m.NumUses(x) == 1 && !m.IsResult(x) &&
               (x_node->input(0) == g || x_node->input(1) == g)) {
      // (g * u) * s: the sigmoid's product is the root.
      third = x_node;
      root = inner;
      u = Matcher::OtherOperand(*x_node, g);
    } else {
      // g * (s * u): the product of s and u multiplied by g.
      ir::Node* outer = m.SingleUser(inner->output());
      if (!IsMul(outer) || Matcher::OtherOperand(*outer, inner->output()) != g) {
        if (IsMul(x_node) && (x_node->input(0) == g || x_node->input(1) == g)) {
          return Fail(why, "multi-use");  // (g * u) read elsewhere
        }
        if (IsMul(outer) || m.NumUses(inner->output()) == 1) return Fail(why, "other-x");
        return Fail(why, "multi-use");
      }
      root = outer;
      u = x;
    }
    if (u == nullptr) return Fail(why, "other-x");
    const ir::DType dt = g->type().dtype;
    if (dt != ir::DType::kF32 && dt != ir::DType::kF64) return Fail(why, "dtype");
    if (u->type() != g->type() || root->output()->type() != g->type()) {
      return Fail(why, "broadcast");
    }
    f.g = g;
    f.u = u;
    f.root = root;
    f.chain = {s, inner};
    if (third != nullptr) f.chain.push_back(third);
    if (root != inner) f.chain.push_back(root);
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateMatchSwigluPass() { return std::make_unique<MatchSwigluPass>(); }

}  // namespace ptc::passes
