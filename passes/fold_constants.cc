// fold-constants: evaluates nodes whose operands are all constants.
//
// A node whose every operand is produced by a `constant` op is run once with the CPU kernels
// (ptc::cpu::EvaluateNode) and each output is replaced by a new constant: inline
// `constant {value=dense<...>}` up to `max_inline_elements` elements, otherwise a new
// Module::tensors() entry "fold.<value name>" referenced by `constant {ref="..."}` (inline
// anyway when the module has no tensors at all, as IR parsed from text). One forward
// sweep folds whole constant subgraphs (a folded node's users see constant operands next).
// The operand constants are left for dce.
//
// Preconditions / when it declines (counters):
//   - impure ops (assign) are never evaluated at compile time        "declined.impure"
//   - nor are ops with OpDef::fold false (dropout: each step draws anew) "declined.not-foldable"
//   - weights (params) are not constants: they may be trained or replaced; only `constant`
//     ops count, and a {ref} constant only when its tensor is in the module (IR parsed from
//     text carries no tensors, so its {ref} constants are opaque)      (not counted)
//   - outputs larger than `max_folded_bytes` in total stay computed   "declined.too-large"
//   - an op the CPU kernels cannot evaluate stays                     "declined.eval-error"
// Run dce afterwards to drop the consumed constants; simplify and cse after it see more.
//
//   before:  %a = constant() {value=dense<f32[2]: 1.0, 2.0>} : f32[2]
//            %b = exp(%a) : f32[2]
//            %c = add(%x, %b) : f32[2]
//   after:   %a = constant() {value=dense<f32[2]: 1.0, 2.0>} : f32[2]       (dead: dce)
//            %b.0 = constant() {value=dense<f32[2]: 2.7182817, 7.389056>} : f32[2]
//            %c = add(%x, %b.0) : f32[2]
#include <set>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ops.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FoldConstantsPass : public Pass {
 public:
  explicit FoldConstantsPass(FoldConstantsOptions options) : options_(options) {}
  std::string_view name() const override { return "fold-constants"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    for (const auto& fn : module.functions()) {
      std::set<const ir::Node*> folded;
      // Index loop: AddNode inserts into the node list while we walk it.
      for (size_t i = 0; i < fn->nodes().size(); ++i) {
        ir::Node* n = fn->nodes()[i].get();
        if (IsConstantOp(*n) || n->num_inputs() == 0 || folded.count(n)) continue;
        std::vector<ir::Tensor> inputs;
        for (const ir::Value* in : n->inputs()) {
          std::optional<ir::Tensor> t = ConstantTensor(module, in);
          if (!t) break;
          inputs.push_back(*t);
        }
        if (inputs.size() != n->num_inputs()) continue;
        const ir::OpDef* def = ir::FindOp(n->op());
        if (def == nullptr) continue;  // the verifier reports unknown ops
        if (!def->pure) {
          Count("declined.impure");
          continue;
        }
        if (!def->fold) {  // dropout: a new draw each training step, not one folded mask
          Count("declined.not-foldable");
          continue;
        }
        int64_t bytes = 0;
        for (const ir::Value* out : n->outputs()) {
          int64_t b = out->type().byte_size();
          bytes = (b < 0 || bytes < 0) ? -1 : bytes + b;
          if (bytes < 0 || bytes > options_.max_folded_bytes) break;
        }
        if (bytes < 0 || bytes > options_.max_folded_bytes) {
          Count("declined.too-large");
          continue;
        }
        absl::StatusOr<std::vector<ir::Tensor>> outs = cpu::EvaluateNode(*n, inputs);
        if (!outs.ok() || outs->size() != n->num_outputs()) {
          Count("declined.eval-error");
          continue;
        }
        for (size_t k = 0; k < n->num_outputs(); ++k) {
          ir::Value* old = n->output(k);
          ir::Tensor& t = (*outs)[k];
          ir::AttrMap attrs;
          // A module without tensors (IR parsed from text) stays without: the verifier
          // would then require a tensor for every weight parameter too.
          if (t.num_elements() <= options_.max_inline_elements || module.tensors().empty()) {
            attrs["value"] = t;
          } else {
            std::string ref = UniqueTensorName(module, absl::StrCat("fold.", old->name()));
            module.tensors()[ref] = t;
            attrs["ref"] = ref;
            Count("tensors");
          }
          ir::Node* c = fn->AddNode("constant", {}, {old->type()}, std::move(attrs), n->loc(),
                                    {old->name()}, /*before=*/n);
          ++i;  // the new node sits before n
          fn->ReplaceAllUsesWith(old, c->output());
        }
        folded.insert(n);
        Count("folded");
      }
      if (!folded.empty()) {
        fn->EraseNodesIf([&](const ir::Node& n) { return folded.count(&n) > 0; });
        changed = true;
      }
    }
    return changed;
  }

 private:
  static std::string UniqueTensorName(const ir::Module& module, const std::string& base) {
    if (!module.tensors().count(base)) return base;
    for (int k = 1;; ++k) {
      std::string cand = absl::StrCat(base, ".", k);
      if (!module.tensors().count(cand)) return cand;
    }
  }

  FoldConstantsOptions options_;
};

}  // namespace

std::unique_ptr<Pass> CreateFoldConstantsPass(FoldConstantsOptions options) {
  return std::make_unique<FoldConstantsPass>(options);
}

}  // namespace ptc::passes
