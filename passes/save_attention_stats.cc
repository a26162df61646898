// save-attention-stats: a training step's attention keeps its log-sum-exp for the backward.
//
//   %o = attention(%q, %k, %v[, %m]) {attrs}
//   %dq, %dk, %dv = attention_grad(%dy, %q, %k, %v[, %m]) {attrs}
// ->
//   %o, %o.lse = attention(%q, %k, %v[, %m]) {attrs}
//   %dq, %dk, %dv = attention_grad(%dy, %q, %k, %v[, %m], %o, %o.lse) {attrs, saved_stats=1}
//
// attention_grad otherwise recomputes the forward (its output O for D = rowsum(dO * O), and
// each row's log-sum-exp) before the backward proper: on the GPU that is a whole second flash
// forward per layer. O is kept anyway (the output projection's weight gradient reads it); the
// log-sum-exp is f32 [B, H, Tq], a few hundred KiB per layer. FlashAttention does the same.
// In the CUDA pipeline only: the CPU backward recomputes the probabilities from the scores
// either way, so there the statistics would be computed and kept for nothing.
//
// Conditions: the forward node has one output and exactly the gradient's operands (q, k, v
// and the mask, the same Values) and the same layout and scale. Counters: "saved",
// "declined.no_forward".
#include <map>
#include <set>

#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

// The same layout, scale and softcap (each with its default).
bool SameForm(const ir::Node& a, const ir::Node& b) {
  absl::StatusOr<std::string> la = a.GetString("layout", "bhtd"), lb = b.GetString("layout", "bhtd");
  absl::StatusOr<double> sa = a.GetFloat("scale", -1.0), sb = b.GetFloat("scale", -1.0);
  absl::StatusOr<double> ca = a.GetFloat("softcap", 0.0), cb = b.GetFloat("softcap", 0.0);
  return la.ok() && lb.ok() && sa.ok() && sb.ok() && ca.ok() && cb.ok() && *la == *lb &&
         *sa == *sb && *ca == *cb;
}

class SaveAttentionStatsPass : public FunctionPass {
 public:
  std::string_view name() const override { return "save-attention-stats"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& fn) override {
    std::map<std::vector<ir::Value*>, ir::Node*> forwards;  // operands -> attention
    std::vector<ir::Node*> grads;
    for (const auto& n : fn.nodes()) {
      if (n->op() == "attention" && n->num_outputs() == 1) {
        forwards.emplace(n->inputs(), n.get());
      } else if (n->op() == "attention_grad" && !n->has_attr("saved_stats")) {
        grads.push_back(n.get());
      }
    }
    std::map<ir::Node*, ir::Node*> replaced;  // old forward -> the two-output one
    std::set<const ir::Node*> erase;
    for (ir::Node* g : grads) {
      std::vector<ir::Value*> operands(g->inputs().begin() + 1, g->inputs().end());
      auto it = forwards.find(operands);
      if (it == forwards.end() || !SameForm(*it->second, *g)) {
        Count("declined.no_forward");
        continue;
      }
      ir::Node* f = it->second;
      ir::Node*& nf = replaced[f];
      if (nf == nullptr) {
        std::vector<ir::TensorType> in_types;
        for (const ir::Value* v : f->inputs()) in_types.push_back(v->type());
        absl::StatusOr<std::vector<ir::TensorType>> types =
            ir::InferTypes("attention", in_types, f->attrs(), 2);  // (o, lse)
        if (!types.ok()) {
          Count("declined.no_forward");
          continue;
        }
        nf = fn.AddNode("attention", f->inputs(), *types, f->attrs(), f->loc(),
                        {f->output()->name(), f->output()->name() + ".lse"}, /*before=*/f);
        fn.ReplaceAllUsesWith(f->output(), nf->output(0));
        erase.insert(f);
      }
      std::vector<ir::Value*> ins = g->inputs();
      ins.push_back(nf->output(0));
      ins.push_back(nf->output(1));
      g->set_inputs(std::move(ins));
      g->set_attr("saved_stats", int64_t{1});
      Count("saved");
    }
    if (!erase.empty()) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return !erase.empty();
  }
};

}  // namespace

std::unique_ptr<Pass> CreateSaveAttentionStatsPass() {
  return std::make_unique<SaveAttentionStatsPass>();
}

}  // namespace ptc::passes
