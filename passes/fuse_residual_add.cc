// fuse-residual-add: a residual stream's add of a linear layer's output becomes the linear
// layer's addend: fused_matmul(x, w, b, r) (compiler/ir/ops_fused.cc), one GEMM whose epilogue
// adds r (CUDA: cuBLASLt's C with beta = 1; CPU: per finished tile) instead of a second pass
// that reads the product and r and writes their sum.
//
//   same dtype:  add(r, fused_matmul(x, w, b))                  -> fused_matmul(x, w, b, r)
//   --precision: add(r f32, cast(fused_matmul(x, w, cast(b32)) bf16 -> f32))
//                                                 -> fused_matmul(x, w, b32, r) {dtype=f32}
// In the second form the product is no longer rounded to bf16 before the f32 add, and the
// bias is read as the f32 master (cuBLASLt's epilogue bias has D's dtype; a bias stored in
// bf16, as fold-param-casts leaves inference plans, gets a cast of its N values up): a GPT-2
// block's two residual adds per layer, each a pass over 16 x 1024 x 768 f32 plus a bf16
// product, go.
//
// Without a bias (Llama's projections) the linear layer is a plain matmul by a 2-D weight or a
// bias-free fused_matmul, and r becomes fused_matmul's third operand (told from a bias by its
// rank: ops_fused.h FusedMatMulAddend):
//   add(r, matmul(x, w))  (or its --precision form)   -> fused_matmul(x, w, r) [{dtype=f32}]
// Conditions: activation "none", no addend yet, one use (the add, or the cast whose one use is
// the add); r has the output's exact type (no broadcast). Counters: "fused", "fused.f32" (the
// --precision form), "fused.bias-cast", "fused.no-bias".
// Run after fuse-matmul-bias and before fuse-elementwise (which would take the add).
//
//   before:  %h = fused_matmul(%x, %w, %b) {trans_b=1} : f32[2,8,16]
//            %y = add(%r, %h) : f32[2,8,16]
//   after:   %y = fused_matmul(%x, %w, %b, %r) {trans_b=1} : f32[2,8,16]
#include <set>

#include "compiler/ir/ops_fused.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FuseResidualAddPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-residual-add"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    const std::vector<ir::Node*> adds = NodesWithOp(fn, "add");
    for (ir::Node* add : adds) {
      const ir::TensorType& yt = add->output()->type();
      for (int side = 0; side < 2; ++side) {
        ir::Value* h = add->input(side);
        ir::Value* r = add->input(1 - side);
        // Both sides of the add at the output's shape: no broadcast of r or of the product.
        if (r->type() != yt || h == r || h->type().shape != yt.shape) continue;
        // The --precision form: the product reaches the add through a cast up to f32.
        ir::Node* up = nullptr;
        if (Match c = m.Def(h).Op("cast").SingleUse(); c && yt.dtype == ir::DType::kF32) {
          up = c.node();
          h = up->input(0);
          if (!ir::IsHalfFloat(h->type().dtype)) continue;
        }
        Match fm = m.Def(h).Op("fused_matmul").SingleUse();
        Match pm = m.Def(h).Op("matmul").SingleUse();
        ir::Node* mm = fm ? fm.node() : pm ? pm.node() : nullptr;
        if (mm == nullptr || mm->GetString("activation", "none").value_or("") != "none" ||
            mm->has_attr("dtype") || mm->num_outputs() != 1 ||
            (fm && ir::FusedMatMulAddend(*mm) != nullptr)) {
          continue;
        }
        // A plain matmul by a 2-D weight is a fused_matmul without a bias.
        if (pm && (mm->input(1)->type().rank() != 2 || mm->input(0)->type().rank() < 2)) {
          continue;
        }
        ir::Value* bias = fm ? ir::FusedMatMulBias(*mm) : nullptr;
        ir::AttrMap attrs = mm->attrs();
        if (up != nullptr) attrs["dtype"] = ir::DType::kF32;
        if (up != nullptr && bias != nullptr) {
          // The bias in f32: the master the cast came from, else (a bf16 bias stored by
          // fold-param-casts in an inference plan) a cast of the [N] vector up.
          bool cast_up = false;
          bias = F32Of(m, fn, bias, mm->loc(), /*before=*/add, &cast_up);
          if (cast_up) Count("fused.bias-cast");
        }
        // x, w[, bias], r: without a bias r is the third operand (an addend by its rank).
        std::vector<ir::Value*> ins = {mm->input(0), mm->input(1)};
        if (bias != nullptr) ins.push_back(bias);
        ins.push_back(r);
        ir::Node* f = fn.AddNode("fused_matmul", std::move(ins), {yt}, std::move(attrs),
                                 mm->loc(), {add->output()->name()}, /*before=*/add);
        fn.ReplaceAllUsesWith(add->output(), f->output());
        erase.insert(add);
        erase.insert(mm);
        if (up != nullptr) erase.insert(up);
        Count("fused");
        if (bias == nullptr) Count("fused.no-bias");
        if (up != nullptr) Count("fused.f32");
        break;
      }
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseResidualAddPass() {
  return std::make_unique<FuseResidualAddPass>();
}

}  // namespace ptc::passes
