// fold-matmul-casts: a --precision plan's fused_matmul whose low-dtype output only a cast up to
// f32 reads writes f32 itself ({dtype=f32}: cuBLASLt's D in f32 from the f32 accumulator; the
// CPU computes it in f32 through the half wrapper). The case is the LM head of an inference
// plan: its logits are a result, which mixed-precision casts back to f32. GPT-2 small at
// 16 x 1024: a bf16 [16, 1024, 50257] (1.65 GB) written, read and written again as f32
// (3.3 GB) becomes one f32 write, and the logits are no longer rounded to bf16 on the way.
//
//   before:  %y = fused_matmul(%x, %w) {trans_b=1} : bf16[2,8,32]
//            %yf = cast(%y) {to=f32} : f32[2,8,32]
//   after:   %yf = fused_matmul(%x, %w) {dtype=f32, trans_b=1} : f32[2,8,32]
//
// A plain matmul by a 2-D weight (an LM head that is not tied, as Llama's) becomes one too. A
// bias comes in f32: the master the low one was cast from, else a cast of the [N] vector up.
// Conditions: the cast is the output's one use and goes to f32; the fused_matmul has no addend
// (fuse-residual-add's f32 form takes those) and no dtype yet. The cast keeps its name (a
// result's). Counters: "folded", "folded.matmul", "folded.bias-cast". Run after
// fuse-residual-add.
#include <set>
#include <vector>

#include "compiler/ir/ops_fused.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FoldMatMulCastsPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fold-matmul-casts"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    for (ir::Node* up : NodesWithOp(fn, "cast")) {
      if (up->output()->type().dtype != ir::DType::kF32) continue;
      Match fm = m.Def(up->input(0)).Op("fused_matmul").SingleUse();
      Match pm = m.Def(up->input(0)).Op("matmul").SingleUse();
      ir::Node* mm = fm ? fm.node() : pm ? pm.node() : nullptr;
      if (mm == nullptr || !ir::IsHalfFloat(mm->output()->type().dtype) ||
          mm->has_attr("dtype") || mm->num_outputs() > 1 ||
          (fm && ir::FusedMatMulAddend(*mm) != nullptr)) {
        continue;
      }
      // A plain matmul by a 2-D weight (an untied LM head, as Llama's) is a fused_matmul.
      if (pm && (mm->input(1)->type().rank() != 2 || mm->input(0)->type().rank() < 2)) continue;
      std::vector<ir::Value*> ins = {mm->input(0), mm->input(1)};
      if (mm->num_inputs() == 3) {  // a bias (an addend declined above)
        bool cast_up = false;
        ins.push_back(F32Of(m, fn, mm->input(2), mm->loc(), /*before=*/up, &cast_up));
        if (cast_up) Count("folded.bias-cast");
      }
      // The cast becomes the product (its output, maybe a result, keeps its name and type).
      ir::AttrMap attrs = mm->attrs();
      attrs["dtype"] = ir::DType::kF32;
      up->set_op("fused_matmul");
      up->set_inputs(std::move(ins));
      up->mutable_attrs() = std::move(attrs);
      erase.insert(mm);
      Count("folded");
      if (pm) Count("folded.matmul");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFoldMatMulCastsPass() {
  return std::make_unique<FoldMatMulCastsPass>();
}

}  // namespace ptc::passes
