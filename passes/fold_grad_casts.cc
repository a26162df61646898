// fold-grad-casts: a --precision plan's gradient that an op writes in the low dtype and that
// the graph then casts up to f32 (the master weight's gradient, or the f32 residual stream's)
// is written in f32 by the op itself, never rounded to bf16 / f16 on the way:
//   - linear_ce_loss whose dx_unit and dw_unit (and a bias's db_unit) are each read only by a
//     cast to f32
//     gets {grad_dtype=f32}: its CUDA kernel writes dx from the GEMM in f32 and sums dw straight
//     into the output instead of an f32 scratch that was cast down to be cast up again. For
//     GPT-2's tied LM head that is the 50257 x 768 embedding gradient (four passes over 154 MB
//     and the bf16 rounding of the gradient the embedding trains on) and a 16 K x 768 dx.
//   - a gemm of f16 / bf16 operands (without c) whose product is read only by a cast to f32
//     gets {dtype=f32}: the GEMM writes the f32 result itself (cuBLASLt's D in f32). That is
//     the weight gradient of a bias-free linear layer (Llama's projections: gemm_bgrad takes
//     the ones with a bias), one write of f32 instead of a bf16 write, its read and an f32
//     write, and the gradient AdamW reads is not rounded to bf16 first.
// (gemm_bgrad's casts fold in fuse-bias-grad, the norms' in fold-norm-casts.) The CPU computes
// the f32 gradient either way. Counters: "folded.linear_ce", "folded.gemm". Run after autodiff
// and mixed-precision.
//
//   before:  %l, %dx, %dw = linear_ce_loss(%x, %w, %y) {trans_b=1} : f32[], bf16[8,16], bf16[32,16]
//            %dxf = cast(%dx) {to=f32} : f32[8,16]
//            %dwf = cast(%dw) {to=f32} : f32[32,16]
//   after:   %l, %dxf, %dwf = linear_ce_loss(%x, %w, %y) {grad_dtype=f32, trans_b=1}
//                : f32[], f32[8,16], f32[32,16]
#include <set>
#include <vector>

#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FoldGradCastsPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fold-grad-casts"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    std::vector<ir::Node*> losses;
    for (const auto& n : fn.nodes()) {
      if (n->op() == "linear_ce_loss" && n->num_outputs() >= 3 && !n->has_attr("grad_dtype") &&
          ir::IsHalfFloat(n->input(0)->type().dtype)) {
        losses.push_back(n.get());
      }
    }
    for (ir::Node* n : losses) {
      // Every gradient part (dx, dw and a bias's db) read only by its cast to f32.
      std::vector<ir::Node*> casts;
      bool ok = true;
      for (size_t i = 1; i < n->num_outputs(); ++i) {
        ir::Node* c = m.SingleUser(n->output(i));
        ok &= c != nullptr && c->op() == "cast" && c->output()->type().dtype == ir::DType::kF32;
        casts.push_back(c);
      }
      if (!ok) continue;
      ir::AttrMap attrs = n->attrs();
      attrs["grad_dtype"] = ir::DType::kF32;
      std::vector<ir::TensorType> types = {n->output(0)->type()};
      std::vector<std::string> names = {n->output(0)->name()};
      for (ir::Node* c : casts) {
        types.push_back(c->output()->type());
        names.push_back(c->output()->name());
      }
      ir::Node* f = fn.AddNode(
          "linear_ce_loss", std::vector<ir::Value*>(n->inputs().begin(), n->inputs().end()),
          types, std::move(attrs), n->loc(), names, n);
      fn.ReplaceAllUsesWith(n->output(0), f->output(0));
      for (size_t i = 0; i < casts.size(); ++i) {
        fn.ReplaceAllUsesWith(casts[i]->output(), f->output(i + 1));
      }
      erase.insert(n);
      erase.insert(casts.begin(), casts.end());
      Count("folded.linear_ce");
    }
    // cast(gemm(a, b) f16 / bf16) to f32: the cast becomes the gemm (its output, maybe a
    // result, keeps its name and type).
    for (ir::Node* up : NodesWithOp(fn, "cast")) {
      if (up->output()->type().dtype != ir::DType::kF32) continue;
      Match g = m.Def(up->input(0)).Op("gemm").SingleUse();
      if (!g) continue;
      ir::Node* gemm = g.node();
      if (gemm->num_inputs() != 2 || gemm->has_attr("dtype") ||
          !ir::IsHalfFloat(gemm->output()->type().dtype)) {
        continue;
      }
      ir::AttrMap attrs = gemm->attrs();
      attrs["dtype"] = ir::DType::kF32;
      up->set_op("gemm");
      up->set_inputs({gemm->input(0), gemm->input(1)});
      up->mutable_attrs() = std::move(attrs);
      erase.insert(gemm);
      Count("folded.gemm");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& node) { return erase.count(&node) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFoldGradCastsPass() { return std::make_unique<FoldGradCastsPass>(); }

}  // namespace ptc::passes
