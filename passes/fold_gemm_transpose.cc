// fold-gemm-transpose: 2-D transposes around a gemm become its trans_a / trans_b flags.
//
//   gemm(transpose(a), b) {trans_a=t}   -> gemm(a, b) {trans_a=!t}     (same for b / trans_b)
//   transpose(gemm(a, b) {ta, tb})      -> gemm(b, a) {trans_a=!tb, trans_b=!ta}   ((AB)^T = B^T A^T)
//
// Autodiff writes the weight gradient of y = x @ W^T (a tied LM head, or any nn.Linear that
// PyTorch exports as MatMul(x, Transpose(W))) as transpose(gemm(x, dy) {trans_a=1}), and the
// input gradient as gemm(dy, transpose(W)) {trans_b=1}: on the GPT bench's training step the two
// transposes of the 8192 x 256 LM-head weight cost ~3 ms each on 2 cores, and the BLAS reads
// either layout at the same speed.
//
// Conditions: transposes with perm=[1, 0] only (gemm operands are 2-D). The result rule needs a
// gemm without a bias (C^T would need a transposed bias) whose only use is the transpose; the
// operand rule leaves the transpose in place for its other users (dce removes it when unused).
// Counters: "folded.operand", "folded.result", "declined.bias", "declined.uses".
//
//   before:  %t = transpose(%w) {perm=[1, 0]} : f32[256,8192]
//            %dx = gemm(%dy, %t) {trans_b=1} : f32[1024,256]
//            %g = gemm(%x, %dy) {trans_a=1} : f32[256,8192]
//            %dw = transpose(%g) {perm=[1, 0]} : f32[8192,256]
//   after:   %dx = gemm(%dy, %w) : f32[1024,256]
//            %dw = gemm(%dy, %x) {trans_a=1} : f32[8192,256]
#include <set>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

bool IsTranspose2d(const ir::Node* n) {
  if (n == nullptr || n->op() != "transpose" || n->num_inputs() != 1) return false;
  absl::StatusOr<std::vector<int64_t>> perm = n->GetInts("perm");
  return perm.ok() && *perm == std::vector<int64_t>{1, 0};
}

bool IsTranspose2dUser(ir::Function& fn, const ir::Value* v) {
  for (const auto& n : fn.nodes()) {
    if (IsTranspose2d(n.get()) && n->input(0) == v) return true;
  }
  return false;
}

class FoldGemmTransposePass : public FunctionPass {
 public:
  std::string_view name() const override { return "fold-gemm-transpose"; }

 private:
  // The node reading v, when exactly one operand of one node reads it and it is not a result.
  // Counted afresh (not a Matcher's use lists): the operand rule rewires uses as it goes.
  static ir::Node* OnlyUser(ir::Function& fn, const ir::Value* v) {
    for (const ir::Value* r : fn.results()) {
      if (r == v) return nullptr;
    }
    ir::Node* user = nullptr;
    for (const auto& n : fn.nodes()) {
      for (const ir::Value* in : n->inputs()) {
        if (in != v) continue;
        if (user != nullptr) return nullptr;
        user = n.get();
      }
    }
    return user;
  }

  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& fn) override {
    const std::vector<ir::Node*> gemms = NodesWithOp(fn, "gemm");
    bool changed = false;
    std::set<const ir::Node*> erase;
    for (ir::Node* g : gemms) {
      // Operands: absorb (chains of) transposes into the flags.
      for (int i = 0; i < 2; ++i) {
        const std::string flag = i == 0 ? "trans_a" : "trans_b";
        while (IsTranspose2d(g->input(i)->producer())) {
          PTC_ASSIGN_OR_RETURN(int64_t t, g->GetInt(flag, 0));
          g->set_input(i, g->input(i)->producer()->input(0));
          if (t) {
            g->mutable_attrs().erase(flag);  // the default, printed as nothing
          } else {
            g->set_attr(flag, int64_t{1});
          }
          Count("folded.operand");
          changed = true;
        }
      }
      // Result: transpose(gemm(a, b)) = gemm(b, a) with swapped, flipped flags.
      ir::Node* t = OnlyUser(fn, g->output());
      if (!IsTranspose2d(t) || erase.count(t)) {
        if (t == nullptr && IsTranspose2dUser(fn, g->output())) Count("declined.uses");
        continue;
      }
      if (g->num_inputs() == 3) {
        Count("declined.bias");
        continue;
      }
      PTC_ASSIGN_OR_RETURN(int64_t ta, g->GetInt("trans_a", 0));
      PTC_ASSIGN_OR_RETURN(int64_t tb, g->GetInt("trans_b", 0));
      ir::AttrMap attrs = g->attrs();
      attrs.erase("trans_a");
      attrs.erase("trans_b");
      if (!tb) attrs["trans_a"] = int64_t{1};
      if (!ta) attrs["trans_b"] = int64_t{1};
      ir::Node* swapped =
          fn.AddNode("gemm", {g->input(1), g->input(0)}, {t->output()->type()}, std::move(attrs),
                     g->loc(), {t->output()->name()}, /*before=*/t);
      fn.ReplaceAllUsesWith(t->output(), swapped->output());
      erase.insert(t);
      erase.insert(g);
      Count("folded.result");
      changed = true;
    }
    if (!erase.empty()) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFoldGemmTransposePass() {
  return std::make_unique<FoldGemmTransposePass>();
}

}  // namespace ptc::passes
