// fuse-norm-grad-add: a layer norm's input gradient summed with another gradient of the same
// value becomes layer_norm_grad's `addend` (compiler/ir/ops_train.cc).
//
// In a pre-norm transformer the residual stream r feeds the next block's layer norm and the
// skip connection, so autodiff sums two gradients of r: add(d_skip, layer_norm_grad(...).dx).
// With the addend the norm's gradient kernel writes dx + d_skip in the same pass, instead of
// writing dx and a separate add reading both back (GPT-2 small: 24 adds of 16 x 1024 x 768
// f32 per step; the CPU step's 8).
//
// Matched: add(p, dx) in either order where dx is output 0 of a layer_norm_grad without an
// addend, used only by that add; p has dx's type and is defined before the layer_norm_grad
// (a parameter or an earlier node), so the rewrite keeps the schedule valid. Counters: "fused",
// "declined.order" (p computed after the norm's gradient). Run after autodiff.
//
//   before:  %dx, %dg, %db = layer_norm_grad(%dy, %x, %g, %mu, %is) {axis=2}
//            %dr = add(%skip, %dx) : f32[2,8,64]
//   after:   %dx, %dg, %db = layer_norm_grad(%dy, %x, %g, %mu, %is, %skip) {axis=2}
//            (uses of %dr read %dx)
#include <set>
#include <vector>

#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FuseNormGradAddPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-norm-grad-add"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::vector<ir::Node*> adds;
    for (const auto& n : fn.nodes()) {
      if (n->op() == "add" && n->num_inputs() == 2) adds.push_back(n.get());
    }
    std::set<const ir::Node*> erase;
    for (ir::Node* add : adds) {
      for (int side = 0; side < 2; ++side) {
        ir::Value* dx = add->input(side);
        ir::Value* other = add->input(1 - side);
        Match grad = m.Def(dx).Op("layer_norm_grad").SingleUse();
        if (!grad || grad.node()->output(0) != dx || grad.node()->num_inputs() != 5 ||
            other == dx || other->type() != dx->type() || add->output()->type() != dx->type()) {
          continue;
        }
        ir::Node* g = grad.node();
        const ir::Node* producer = m.Def(other).node();
        if (producer != nullptr && fn.NodeIndex(producer) > fn.NodeIndex(g)) {
          Count("declined.order");
          continue;
        }
        std::vector<ir::Value*> ins(g->inputs().begin(), g->inputs().end());
        ins.push_back(other);
        g->set_inputs(std::move(ins));
        fn.ReplaceAllUsesWith(add->output(), dx);
        erase.insert(add);
        Count("fused");
        break;
      }
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseNormGradAddPass() {
  return std::make_unique<FuseNormGradAddPass>();
}

}  // namespace ptc::passes
