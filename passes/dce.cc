// dce: dead code elimination.
//
// Removes nodes none of whose outputs is used by a later node or returned by the function, in
// one backward sweep (removing a user can make its producers dead, which the sweep sees next).
// Also drops Module::tensors() entries that only erased `constant {ref}` nodes referenced.
//
// Preconditions / what it leaves alone:
//   - impure nodes (OpDef::pure == false: assign) stay even when unused (counter
//     "kept.impure"); dropout is pure (its mask a function of seed, counter and index);
//   - function parameters stay even when unused: they are the function's signature (weights
//     included; pruning weights is a separate decision);
//   - a tensor named like a parameter (a weight) is never dropped.
// A live dropout whose keep-mask output nothing reads loses that output ("trimmed.dropout-mask"):
// ONNX exports in training mode (torch's Dropout with training_mode=True) give every Dropout its
// mask output, which the kernels would write (a byte per element) and which keeps the dropout
// out of fuse-elementwise's chains.
// Run after any rewrite pass (fold-constants, simplify, cse, fusions) to clean up.
//
//   before:  %a = exp(%x) : f32[4]            after:  %b = neg(%x) : f32[4]
//            %b = neg(%x) : f32[4]                    return %b
//            return %b
#include <set>
#include <vector>

#include "compiler/ir/ops.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class DcePass : public Pass {
 public:
  std::string_view name() const override { return "dce"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    std::set<std::string> dropped_refs;
    for (const auto& fn : module.functions()) {
      std::set<const ir::Value*> live(fn->results().begin(), fn->results().end());
      std::set<const ir::Node*> dead;
      for (auto it = fn->nodes().rbegin(); it != fn->nodes().rend(); ++it) {
        const ir::Node& n = **it;
        bool used = false;
        for (const ir::Value* out : n.outputs()) used |= live.count(out) > 0;
        const ir::OpDef* def = ir::FindOp(n.op());
        if (!used && def != nullptr && !def->pure) {
          Count("kept.impure");
          used = true;
        }
        if (used) {
          live.insert(n.inputs().begin(), n.inputs().end());
          continue;
        }
        dead.insert(&n);
        if (IsConstantOp(n)) {
          auto ref = n.attrs().find("ref");
          if (ref != n.attrs().end()) {
            if (auto* s = std::get_if<std::string>(&ref->second)) dropped_refs.insert(*s);
          }
        }
      }
      // Dropouts whose mask is dead: the same dropout without it.
      std::vector<ir::Node*> trim;
      for (const auto& n : fn->nodes()) {
        if (n->op() == "dropout" && n->num_outputs() == 2 && !dead.count(n.get()) &&
            !live.count(n->output(1))) {
          trim.push_back(n.get());
        }
      }
      for (ir::Node* n : trim) {
        ir::Node* y = fn->AddNode("dropout", std::vector<ir::Value*>(n->inputs().begin(),
                                                                     n->inputs().end()),
                                  {n->output(0)->type()}, n->attrs(), n->loc(),
                                  {n->output(0)->name()}, /*before=*/n);
        fn->ReplaceAllUsesWith(n->output(0), y->output());
        dead.insert(n);
        Count("trimmed.dropout-mask");
      }
      if (dead.empty()) continue;
      Count("removed", static_cast<int64_t>(dead.size() - trim.size()));
      fn->EraseNodesIf([&](const ir::Node& n) { return dead.count(&n) > 0; });
      changed = true;
    }
    if (!dropped_refs.empty()) {
      // Refs still used elsewhere, and weights, stay.
      std::set<std::string> keep;
      for (const auto& fn : module.functions()) {
        for (const ir::Value* p : fn->params()) keep.insert(p->name());
        for (const auto& n : fn->nodes()) {
          if (!IsConstantOp(*n)) continue;
          auto ref = n->attrs().find("ref");
          if (ref == n->attrs().end()) continue;
          if (auto* s = std::get_if<std::string>(&ref->second)) keep.insert(*s);
        }
      }
      for (const std::string& r : dropped_refs) {
        if (keep.count(r) == 0 && module.tensors().erase(r) > 0) Count("removed.tensors");
      }
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateDcePass() { return std::make_unique<DcePass>(); }

}  // namespace ptc::passes
