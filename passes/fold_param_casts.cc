// fold-param-casts: an inference plan's weights are stored in the dtype the graph reads them in.
//
// With --precision bf16 / fp16, mixed-precision casts each weight where it is used (a training
// step keeps the f32 master weights and casts them every step). An inference plan would do the
// same on every run: GPT-2 small reads its 500 MB of f32 weights and writes 250 MB of bf16
// copies per forward, i.e. per generated token, and carries both copies on the device. When
// every use of a weight parameter, in every function of the module, is a cast to one dtype,
// this pass converts the weight's data once (the CPU cast kernel, the same rounding as at run
// time), gives the parameter that type and drops the casts.
//
// Two more uses fold with the casts, for a tied LM head (GPT-2's wte, [V, D] f32, read by the
// embedding gather and, transposed, by the LM head's matmul):
//   - transpose(w) whose only use is the cast: the transpose reads the converted weight and
//     gives the low dtype itself (fuse-matmul-bias then takes it as trans_b=1: no per-run
//     transpose or cast of the V x D table);
//   - gather(w, idx): the converted table is gathered and the rows widened back by a cast
//     after the gather ("folded.gather"), so the embedding reads the rounded weights as every
//     other reader does (as a model converted to bf16 would), in one copy on the device.
//
// Preconditions: no `assign` in the module (training steps update their f32 master weights;
// decoders update caches): the pass then does nothing (counter "declined.training"). A weight
// with any other use (an f32 bias add), or only gathers, keeps its type ("declined.uses"). Run
// after mixed-precision (which for inference runs before the pipeline) and before memory
// planning.
//
//   before:  func @main(%x: bf16[4,256], %w: f32[256,768] {param}) -> (bf16[4,768]) {
//              %wb = cast(%w) {to=bf16} : bf16[256,768]
//              %y = matmul(%x, %wb) : bf16[4,768]
//   after:   func @main(%x: bf16[4,256], %w: bf16[256,768] {param}) -> (bf16[4,768]) {
//              %y = matmul(%x, %w) : bf16[4,768]
#include <map>
#include <set>
#include <string>
#include <vector>

#include "codegen/cpu/kernel.h"
#include "compiler/support/status.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FoldParamCastsPass : public Pass {
 public:
  std::string_view name() const override { return "fold-param-casts"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    for (const auto& fn : module.functions()) {
      for (const auto& n : fn->nodes()) {
        if (n->op() == "assign") {
          Count("declined.training");
          return false;
        }
      }
    }
    // Per weight name: its parameter in each function, and the cast nodes reading it.
    struct Weight {
      std::vector<ir::Value*> params;
      std::vector<std::pair<ir::Function*, ir::Node*>> casts;
      // transpose(w) and its only user, a cast; gather(w, idx).
      struct Transposed {
        ir::Function* fn;
        ir::Node* transpose;
        ir::Node* cast;
      };
      std::vector<Transposed> transposes;
      std::vector<std::pair<ir::Function*, ir::Node*>> gathers;
      bool ok = true;
      ir::DType to = ir::DType::kF32;
    };
    std::map<std::string, Weight> weights;
    for (const auto& fn : module.functions()) {
      auto uses = fn->ComputeUses();
      std::set<const ir::Value*> results(fn->results().begin(), fn->results().end());
      for (ir::Value* p : fn->params()) {
        if (!p->is_param() || !module.tensors().count(p->name())) continue;
        Weight& w = weights[p->name()];
        w.params.push_back(p);
        if (results.count(p)) w.ok = false;
        for (const auto& [user, idx] : uses[p]) {
          ir::Node* cast = user;
          if (user->op() == "gather" && idx == 0) {
            w.gathers.push_back({fn.get(), user});
            continue;
          }
          if (user->op() == "transpose" && !results.count(user->output()) &&
              uses[user->output()].size() == 1) {
            cast = uses[user->output()].front().first;
          }
          if (cast->op() != "cast" || cast->num_outputs() != 1) {
            w.ok = false;
            continue;
          }
          const ir::DType to = cast->output()->type().dtype;
          if ((!w.casts.empty() || !w.transposes.empty()) && to != w.to) w.ok = false;
          w.to = to;
          if (cast == user) {
            w.casts.push_back({fn.get(), cast});
          } else {
            w.transposes.push_back({fn.get(), user, cast});
          }
        }
      }
    }
    bool changed = false;
    for (auto& [name, w] : weights) {
      if (w.casts.empty() && w.transposes.empty()) continue;
      if (!w.ok) {
        Count("declined.uses");
        continue;
      }
      const ir::Tensor& data = module.tensors().at(name);
      const ir::DType from = data.dtype();
      // The weight's conversion, by the CPU cast kernel (the rounding of the casts at run time).
      ir::Function scratch("convert");
      ir::Node* convert = scratch.AddNode(
          "cast", {scratch.AddParam("w", data.type())}, {{w.to, data.type().shape}},
          {{"to", w.to}});
      PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> converted,
                           cpu::EvaluateNode(*convert, {data}));
      if (converted.size() != 1) return absl::InternalError("cast gave no tensor");
      module.tensors()[name] = std::move(converted[0]);
      const ir::TensorType type = module.tensors().at(name).type();
      for (ir::Value* p : w.params) p->set_type(type);
      std::map<ir::Function*, std::set<const ir::Node*>> dead;
      for (auto& [fn, cast] : w.casts) {
        fn->ReplaceAllUsesWith(cast->output(), cast->input(0));
        dead[fn].insert(cast);
      }
      for (auto& [fn, t, cast] : w.transposes) {  // the transpose now gives the low dtype
        ir::TensorType tt = t->output()->type();
        tt.dtype = w.to;
        t->output()->set_type(tt);
        fn->ReplaceAllUsesWith(cast->output(), t->output());
        dead[fn].insert(cast);
      }
      for (auto& [fn, g] : w.gathers) {  // gathered rows widened back to the old dtype
        const ir::TensorType wide = g->output()->type();
        ir::TensorType low = wide;
        low.dtype = w.to;
        g->output()->set_type(low);
        const int at = fn->NodeIndex(g);
        const ir::Node* next =
            at + 1 < static_cast<int>(fn->nodes().size()) ? fn->nodes()[at + 1].get() : nullptr;
        ir::Node* up = fn->AddNode("cast", {g->output()}, {wide}, {{"to", from}}, g->loc(),
                                   {g->output()->name() + ".widened"}, next);
        fn->ReplaceAllUsesWith(g->output(), up->output());
        up->set_inputs({g->output()});
        Count("folded.gather");
      }
      for (auto& [fn, nodes] : dead) {
        fn->EraseNodesIf([&](const ir::Node& n) { return nodes.count(&n) > 0; });
      }
      Count("folded");
      changed = true;
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFoldParamCastsPass() { return std::make_unique<FoldParamCastsPass>(); }

}  // namespace ptc::passes
