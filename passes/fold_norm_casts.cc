// fold-norm-casts: a --precision plan's casts around layer norms fold into them.
//
// mixed-precision computes layer_norm in f32 and casts its output to the matmul dtype; autodiff
// then casts the low-precision gradient of that output back up for layer_norm_grad. Each cast
// is a pass over a whole activation (GPT-2 small at 16 x 1024: 48 launches and ~3.6 GB of
// traffic per step). Folded:
//   - layer_norm(x f32) whose output's only use is cast(to=f16|bf16), directly or through
//     one reshape: the norm writes that dtype itself ({dtype}, rounded once from the f32
//     result; mean / inv_std_dev stay f32);
//   - layer_norm_grad(dy f32, x f32, ...) whose dy is cast(g f16|bf16 -> f32): it reads g
//     (widened exactly, the same values), and dce drops the cast when nothing else reads it;
//   - cast(layer_norm_grad's dx) {to=dy's f16|bf16} (the residual stream's gradient going
//     into the matmul backwards): a fourth output of layer_norm_grad, dx_low, written by the
//     same row pass (GPT-2 small: 24 more casts of 16 x 1024 x 768 per step);
//   - dropout(dx_low) (a training step with dropout after the projection whose gradient dx_low
//     is: GPT-2's resid_pdrop) as dx_low's one user: layer_norm_grad's {low_dropout, low_seed}
//     and the dropout's counter as its last operand; dx_low is written dropped out (GPT-2
//     small with dropout: 24 dropout kernels of 16 x 1024 x 768 fewer per step).
// The kernels (CPU through the f32 half wrapper, CUDA natively) compute what the casts did.
// Counters: "folded.output", "folded.dy", "folded.dx", "folded.dropout". Run after autodiff, mixed-precision and
// fuse-norm-grad-add (whose addend is part of the dx that is cast).
//
//   before:  %y, %mu, %is = layer_norm(%x, %g, %b) {axis=2} : f32[2,8,64], ...
//            %yb = cast(%y) {to=bf16} : bf16[2,8,64]
//            %dyf = cast(%dyb) {to=f32} : f32[2,8,64]
//            %dx, %dg, %db = layer_norm_grad(%dyf, %x, %g, %mu, %is) {axis=2}
//            %dxb = cast(%dx) {to=bf16} : bf16[2,8,64]
//   after:   %y, %mu, %is = layer_norm(%x, %g, %b) {axis=2, dtype=bf16} : bf16[2,8,64], ...
//            %dx, %dg, %db, %dxb = layer_norm_grad(%dyb, %x, %g, %mu, %is) {axis=2}
#include <set>
#include <vector>

#include "compiler/ir/ops_train.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FoldNormCastsPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fold-norm-casts"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    bool changed = false;
    for (const auto& n : fn.nodes()) {
      if (n->op() == "layer_norm") {
        ir::Value* y = n->output(0);
        ir::Node* cast = m.SingleUser(y);
        // Through one reshape (the LM head's 2-D view of the last norm's output).
        ir::Node* view = nullptr;
        if (cast != nullptr && cast->op() == "reshape") {
          view = cast;
          cast = m.SingleUser(view->output());
        }
        if (y->type().dtype != ir::DType::kF32 || cast == nullptr || cast->op() != "cast" ||
            !ir::IsHalfFloat(cast->output()->type().dtype)) {
          continue;
        }
        const ir::DType low = cast->output()->type().dtype;
        n->set_attr("dtype", low);
        y->set_type({low, y->type().shape});
        if (view != nullptr) view->output()->set_type({low, view->output()->type().shape});
        fn.ReplaceAllUsesWith(cast->output(), view != nullptr ? view->output() : y);
        erase.insert(cast);
        Count("folded.output");
        changed = true;
      } else if (n->op() == "layer_norm_grad") {
        Match up = m.Def(n->input(0)).Op("cast").DType(ir::DType::kF32);
        if (!up || n->input(1)->type().dtype != ir::DType::kF32) continue;
        ir::Value* low = up.node()->input(0);
        if (!ir::IsHalfFloat(low->type().dtype)) continue;
        std::vector<ir::Value*> ins(n->inputs().begin(), n->inputs().end());
        ins[0] = low;
        n->set_inputs(std::move(ins));
        Count("folded.dy");
        changed = true;
      }
    }
    // dx_low, once dy is folded: a new node with the fourth output replaces the old one.
    std::vector<std::pair<ir::Node*, ir::Node*>> with_low;  // (layer_norm_grad, cast of dx)
    for (const auto& n : fn.nodes()) {
      if (n->op() != "layer_norm_grad" || n->num_outputs() != 3 || erase.count(n.get()) ||
          n->input(1)->type().dtype != ir::DType::kF32 ||
          !ir::IsHalfFloat(n->input(0)->type().dtype)) {
        continue;
      }
      for (ir::Node* user : m.Users(n->output(0))) {
        if (user->op() == "cast" && user->output()->type() == n->input(0)->type()) {
          with_low.emplace_back(n.get(), user);
          break;
        }
      }
    }
    for (auto [n, cast] : with_low) {
      std::vector<ir::TensorType> types;
      std::vector<std::string> names;
      for (ir::Value* o : n->outputs()) {
        types.push_back(o->type());
        names.push_back(o->name());
      }
      types.push_back(cast->output()->type());
      names.push_back(cast->output()->name());
      ir::Node* f = fn.AddNode("layer_norm_grad",
                               std::vector<ir::Value*>(n->inputs().begin(), n->inputs().end()),
                               types, n->attrs(), n->loc(), names, n);
      for (size_t i = 0; i < 3; ++i) fn.ReplaceAllUsesWith(n->output(i), f->output(i));
      fn.ReplaceAllUsesWith(cast->output(), f->output(3));
      erase.insert(n);
      erase.insert(cast);
      Count("folded.dx");
      changed = true;
    }
    // dx_low's dropout (GPT-2's residual dropout in the backward: the gradient into the
    // projection is dropout(dx_low) with the forward's mask): written by the same row pass.
    // (A new matcher: the loop above made the fourth outputs.)
    Matcher after(module, fn);
    for (const auto& n : fn.nodes()) {
      if (n->op() != "layer_norm_grad" || n->num_outputs() != 4 || erase.count(n.get()) ||
          n->GetFloat("low_dropout", 0.0).value_or(1) != 0 ||
          ir::LayerNormGradCounter(*n) != nullptr) {
        continue;
      }
      ir::Node* drop = after.SingleUser(n->output(3));
      if (drop == nullptr || drop->op() != "dropout" || drop->num_outputs() != 1 ||
          drop->input(0) != n->output(3) || drop->output()->type() != n->output(3)->type()) {
        continue;
      }
      absl::StatusOr<double> ratio = drop->GetFloat("ratio", 0.5);
      absl::StatusOr<int64_t> seed = drop->GetInt("seed", 0);
      if (!ratio.ok() || !seed.ok()) continue;
      n->set_attr("low_dropout", *ratio);
      n->set_attr("low_seed", *seed);
      if (drop->num_inputs() > 1) {
        std::vector<ir::Value*> ins(n->inputs().begin(), n->inputs().end());
        ins.push_back(drop->input(1));
        n->set_inputs(std::move(ins));
      }
      fn.ReplaceAllUsesWith(drop->output(), n->output(3));
      erase.insert(drop);
      Count("folded.dropout");
      changed = true;
    }
    if (!erase.empty()) {
      fn.EraseNodesIf([&](const ir::Node& node) { return erase.count(&node) > 0; });
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFoldNormCastsPass() { return std::make_unique<FoldNormCastsPass>(); }

}  // namespace ptc::passes
