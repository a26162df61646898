// strip-dropout: evaluation mode. Every dropout becomes the identity: its output is replaced
// by its input, and a used mask output by an all-true mask (expand of a bool constant).
//
// The driver runs it on inference plans before anything else (so that the fusions see the
// graph without the dropouts between, say, a softmax and the matmul after it), and on the
// forward that a training step's @eval function is built from (validation without dropout);
// the training step itself keeps its dropouts (compiler/autodiff/training.cc gives them the
// step's counter). Counter "stripped" = dropouts removed. An attention with a fused dropout
// (attribute dropout > 0: fuse-attention's, compiler/ir/ops_fused.cc) loses it, its counter
// operand and seed with it ("stripped.attention").
//
//   before:  %d = dropout(%x) {ratio=0.1, seed=3} : f32[4,8]     after:  %y = exp(%x)
//            %y = exp(%d) : f32[4,8]
#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class StripDropoutPass : public FunctionPass {
 public:
  std::string_view name() const override { return "strip-dropout"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& fn) override {
    std::vector<ir::Node*> dropouts;
    bool changed = false;
    for (const auto& n : fn.nodes()) {
      if (n->op() == "dropout") dropouts.push_back(n.get());
      if (n->op() != "attention" && n->op() != "attention_grad") continue;
      if (!n->has_attr("dropout")) continue;
      const int first = n->op() == "attention" ? 0 : 1;
      const int trailing = n->GetInt("saved_stats", 0).value_or(0) != 0 ? 2 : 0;
      if (const int at = ir::AttentionCounterInput(*n, first, trailing); at >= 0) {
        std::vector<ir::Value*> ins = n->inputs();
        ins.erase(ins.begin() + at);
        n->set_inputs(ins);
      }
      n->mutable_attrs().erase("dropout");
      n->mutable_attrs().erase("seed");
      Count("stripped.attention");
      changed = true;
    }
    if (dropouts.empty()) return changed;
    const auto uses = fn.ComputeUses();
    auto used = [&](const ir::Value* v) {
      if (uses.count(v) > 0) return true;
      for (const ir::Value* r : fn.results()) {
        if (r == v) return true;
      }
      return false;
    };
    for (ir::Node* n : dropouts) {
      if (n->num_outputs() > 1 && used(n->output(1))) {
        ir::Tensor t = ir::Tensor::FromVector<uint8_t>(ir::DType::kBool, {}, {uint8_t{1}});
        ir::Node* one = fn.AddNode("constant", {}, {t.type()}, {{"value", t}}, n->loc(),
                                   {n->output(1)->name() + ".all"}, n);
        ir::Node* mask = fn.AddNode("expand", {one->output()}, {n->output(1)->type()},
                                    {{"shape", n->output(1)->type().shape}}, n->loc(),
                                    {n->output(1)->name() + ".all"}, n);
        fn.ReplaceAllUsesWith(n->output(1), mask->output());
      }
      fn.ReplaceAllUsesWith(n->output(0), n->input(0));
      Count("stripped");
    }
    fn.EraseNodesIf([](const ir::Node& n) { return n.op() == "dropout"; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateStripDropoutPass() { return std::make_unique<StripDropoutPass>(); }

absl::StatusOr<int> SetDropoutRatio(ir::Module& module, double ratio) {
  if (!(ratio >= 0.0 && ratio < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("dropout ratio ", ratio, " must be in [0, 1) (0 removes every dropout)"));
  }
  int n = 0;
  for (const auto& fn : module.functions()) {
    for (const auto& node : fn->nodes()) {
      if (node->op() == "dropout") {
        node->set_attr("ratio", ratio);
      } else if ((node->op() == "attention" || node->op() == "attention_grad") &&
                 node->has_attr("dropout")) {
        node->set_attr("dropout", ratio);
      } else {
        continue;
      }
      ++n;
    }
  }
  if (ratio == 0.0) PTC_RETURN_IF_ERROR(CreateStripDropoutPass()->Run(module).status());
  return n;
}

}  // namespace ptc::passes
