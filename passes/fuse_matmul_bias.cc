// fuse-matmul-bias: linear layers become one `fused_matmul` (compiler/ir/ops_fused.cc).
//
// A matmul whose right operand is a 2-D weight becomes
//   fused_matmul(x, w[, bias]) {trans_b, activation}
// absorbing, when present:
//   - a transpose {perm=[1,0]} producing the weight (PyTorch exports nn.Linear as
//     MatMul(x, Transpose(W))): the kernel reads W as is with trans_b=1, so the weight is no
//     longer transposed on every run (the transpose node is left to dce when unused);
//   - an add of a bias of shape [N] (either operand order), when the matmul has one use;
//   - then a gelu (approximate none/tanh) or relu, when the add (or matmul) has one use.
// The CPU kernel applies bias and activation per GEMM tile while the tile is in cache
// (codegen/cpu/linalg.cc), instead of two more passes over the output.
//
// Declines (counters): non-float dtypes "declined.dtype" (f32, f64, f16 and bf16 fuse); x of rank < 2 "declined.rank";
// a weight with batch dims "declined.batched"; a plain matmul with nothing to absorb
// "declined.nothing-to-fuse" (the matmul kernel is as good). A bias whose shape is not [N]
// (e.g. a full [M,N] addend) or an add/activation whose input has other uses stays outside.
// Run after fold-constants/simplify/cse and match-gelu (so that gelu is one op), and before
// fuse-elementwise (which would otherwise take the bias add into a fused_elementwise).
//
//   before:  %wt = transpose(%w) {perm=[1, 0]} : f32[256,1024]
//            %mm = matmul(%x, %wt) : f32[8,128,1024]
//            %h = add(%b, %mm) : f32[8,128,1024]
//            %g = gelu(%h) {approximate="none"} : f32[8,128,1024]
//   after:   %g = fused_matmul(%x, %w, %b) {activation="gelu", trans_b=1} : f32[8,128,1024]
#include <set>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

// f16 / bf16 too: --precision plans run their linear layers in the low dtype (the CUDA kernel
// takes the bias into the cuBLASLt epilogue; the CPU kernel computes half types in f32).
bool FloatDType(ir::DType d) {
  return d == ir::DType::kF32 || d == ir::DType::kF64 || d == ir::DType::kF16 ||
         d == ir::DType::kBF16;
}

class FuseMatMulBiasPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-matmul-bias"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    const std::vector<ir::Node*> matmuls = NodesWithOp(fn, "matmul");
    std::set<const ir::Node*> erase;
    for (ir::Node* mm : matmuls) {
      ir::Value* x = mm->input(0);
      ir::Value* w = mm->input(1);
      const ir::TensorType& ot = mm->output()->type();
      if (!FloatDType(ot.dtype)) {
        Count("declined.dtype");
        continue;
      }
      if (x->type().rank() < 2) {
        Count("declined.rank");
        continue;
      }
      if (w->type().rank() != 2) {
        Count("declined.batched");
        continue;
      }
      int64_t trans_b = 0;
      if (Match t = m.Def(w).Op("transpose"); t) {
        absl::StatusOr<std::vector<int64_t>> perm = t.node()->GetInts("perm");
        if (perm.ok() && *perm == std::vector<int64_t>{1, 0}) {
          w = t.node()->input(0);
          trans_b = 1;
        }
      }
      const int64_t n = ot.shape.back();
      std::vector<ir::Value*> operands = {x, w};
      std::vector<ir::Node*> absorbed = {mm};
      ir::Node* root = mm;
      if (ir::Node* add = m.SingleUser(mm->output()); add != nullptr && add->op() == "add") {
        ir::Value* bias = Matcher::OtherOperand(*add, mm->output());
        if (bias != nullptr && bias != mm->output() && bias->type().dtype == ot.dtype &&
            bias->type().shape == ir::Shape{n} && add->output()->type() == ot) {
          operands.push_back(bias);
          absorbed.push_back(add);
          root = add;
        } else {
          Count("declined.bias-shape");
        }
      }
      std::string activation = "none";
      if (ir::Node* act = m.SingleUser(root->output()); act != nullptr) {
        if (act->op() == "relu") {
          activation = "relu";
        } else if (act->op() == "gelu") {
          absl::StatusOr<std::string> approx = act->GetString("approximate", "none");
          if (approx.ok() && *approx == "none") activation = "gelu";
          if (approx.ok() && *approx == "tanh") activation = "gelu_tanh";
        }
        if (activation != "none") {
          absorbed.push_back(act);
          root = act;
        }
      }
      if (trans_b == 0 && absorbed.size() == 1) {
        Count("declined.nothing-to-fuse");
        continue;
      }
      ir::AttrMap attrs;
      if (trans_b) attrs["trans_b"] = int64_t{1};
      if (activation != "none") attrs["activation"] = activation;
      ir::Node* f = fn.AddNode("fused_matmul", operands, {root->output()->type()},
                               std::move(attrs), mm->loc(), {root->output()->name()},
                               /*before=*/root);
      fn.ReplaceAllUsesWith(root->output(), f->output());
      erase.insert(absorbed.begin(), absorbed.end());
      Count("fused");
      if (trans_b) Count("fused.transposed-weight");
      if (operands.size() == 3) Count("fused.bias");
      if (activation != "none") Count("fused." + activation);
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseMatMulBiasPass() {
  return std::make_unique<FuseMatMulBiasPass>();
}

}  // namespace ptc::passes
