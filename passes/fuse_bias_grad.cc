// fuse-bias-grad: a linear layer's weight and bias gradients become one `gemm_bgrad`
// (compiler/ir/ops_fused.cc).
//
// Autodiff gives a linear layer y = x W + b two reductions of the same output gradient dy:
//   dW = x^T dy (a gemm {trans_a=1} of the flattened x and dy) and db = reduce_sum(dy) over
//   every axis but the last.
// Both read all of dy. As one node, the CUDA kernel sums db in the cuBLASLt epilogue (BGRAD)
// while the GEMM streams dy, instead of a second pass over it and a launch per layer; the CPU
// kernel sums the columns after the GEMM. When the only use of dW or db is a cast of f16 /
// bf16 to f32 (a --precision plan's gradients on their way to the f32 master weights), the
// cast is folded in ({dtype=f32}, {bias_dtype=f32}): accumulated in f32 and never rounded to
// the low dtype, one launch and one pass over dW less.
//
// Matched: gemm(a, B) {trans_a=0|1, trans_b=0, alpha=1, no c} and reduce_sum(G) {keepdims=0,
// axes = all but the last} where B is G, or a reshape of G to [rows, N] (or of what G is a
// reshape of: the bias of a k / v projection whose dy is attention_grad's). Also the swapped
// gemm(B, x) {trans_a=1}: dW = G^T x, an [out, in] weight's gradient (nn.Linear's, after
// fold-gemm-transpose), which becomes gemm_bgrad(B, x) {trans_a=1, bias_of="a"}: dW as it
// is, db the column sums of B (cuBLASLt's BGRADB) ("fused.swapped"). Declines (counters):
// "declined.no-gemm" (no such gemm reads the reduced tensor), "declined.gemm-attrs"
// (transposed B, alpha != 1, a c operand), "declined.axes". Run after autodiff and
// mixed-precision, after cse (so that dW's and db's reshapes of dy are one value).
//
//   before:  %db = reduce_sum(%dy) {axes=[0, 1], keepdims=0} : bf16[768]
//            %db32 = cast(%db) {to=f32} : f32[768]
//            %dy2 = reshape(%dy) {shape=[1024, 768]} : bf16[1024,768]
//            %dw = gemm(%x2, %dy2) {trans_a=1} : bf16[768,768]
//            %dw32 = cast(%dw) {to=f32} : f32[768,768]
//   after:   %dy2 = reshape(%dy) {shape=[1024, 768]} : bf16[1024,768]
//            %dw32, %db32 = gemm_bgrad(%x2, %dy2) {bias_dtype=f32, dtype=f32, trans_a=1}
//                : f32[768,768], f32[768]
#include <algorithm>
#include <set>
#include <vector>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

// Whether reduce_sum `r` sums every axis of its input but the last, dropping them.
bool SumsRows(const ir::Node& r) {
  const int rank = r.input(0)->type().rank();
  absl::StatusOr<int64_t> keep = r.GetInt("keepdims", 1);
  absl::StatusOr<std::vector<int64_t>> axes = r.GetInts("axes");
  if (rank < 2 || !keep.ok() || *keep != 0 || !axes.ok() ||
      static_cast<int>(axes->size()) != rank - 1) {
    return false;
  }
  std::set<int64_t> seen;
  for (int64_t a : *axes) seen.insert(a < 0 ? a + rank : a);
  return static_cast<int>(seen.size()) == rank - 1 && *seen.begin() == 0 &&
         *seen.rbegin() == rank - 2;
}

class FuseBiasGradPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-bias-grad"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::vector<ir::Node*> sums;
    for (const auto& n : fn.nodes()) {
      if (n->op() == "reduce_sum" && ir::IsFloat(n->output()->type().dtype)) {
        sums.push_back(n.get());
      }
    }
    std::set<const ir::Node*> erase;
    for (ir::Node* r : sums) {
      if (!SumsRows(*r)) {
        Count("declined.axes");
        continue;
      }
      ir::Value* g = r->input(0);
      const int64_t n = g->type().shape.back();
      const ir::Shape rows_n{g->type().num_elements() / std::max<int64_t>(n, 1), n};
      // The gemm whose right operand is g itself or its [rows, N] reshape; when g is itself a
      // reshape of some x (attention_grad's [B, T, H, D] dK / dV viewed as [B, T, C] for the
      // bias of Qwen2's / Phi's k / v projections), x's [rows, N] reshapes too: every reshape
      // keeps the elements' order.
      std::vector<ir::Value*> candidates = {g};
      std::vector<ir::Value*> sources = {g};
      if (ir::Node* p = g->producer(); p != nullptr && p->op() == "reshape") {
        sources.push_back(p->input(0));
        if (p->input(0)->type().shape == rows_n) candidates.push_back(p->input(0));
      }
      for (ir::Value* s : sources) {
        for (ir::Node* u : m.Users(s)) {
          if (u->op() == "reshape" && u->output()->type().shape == rows_n) {
            candidates.push_back(u->output());
          }
        }
      }
      ir::Node* gemm = nullptr;
      bool swapped = false;  // gemm(g, x) {trans_a=1}: dW = g^T x, nn.Linear's [out, in] weight
      bool bad_attrs = false;
      for (ir::Value* b : candidates) {
        if (b->type().rank() != 2) continue;
        for (ir::Node* u : m.Users(b)) {
          if (u->op() != "gemm" || erase.count(u) > 0) continue;
          const bool plain = u->num_inputs() == 2 && u->GetInt("trans_b", 0).value_or(1) == 0 &&
                             u->GetFloat("alpha", 1.0).value_or(0.0) == 1.0;
          if (u->input(1) == b) {
            if (!plain) {
              bad_attrs = true;
              continue;
            }
            gemm = u;
            break;
          }
          if (u->input(0) == b && u->input(1) != b && plain &&
              u->GetInt("trans_a", 0).value_or(0) == 1) {
            gemm = u;
            swapped = true;
            break;
          }
        }
        if (gemm != nullptr) break;
      }
      if (gemm == nullptr) {
        Count(bad_attrs ? "declined.gemm-attrs" : "declined.no-gemm");
        continue;
      }
      // dW's and db's casts to f32 (each one's only use) fold in.
      auto f32_cast = [&](ir::Value* v) -> ir::Node* {
        ir::Node* c = m.SingleUser(v);
        const bool ok = c != nullptr && c->op() == "cast" && ir::IsHalfFloat(v->type().dtype) &&
                        c->output()->type().dtype == ir::DType::kF32;
        return ok ? c : nullptr;
      };
      ir::Node* y_cast = f32_cast(gemm->output());
      ir::Node* db_cast = f32_cast(r->output());
      ir::Value* y_out = y_cast != nullptr ? y_cast->output() : gemm->output();
      ir::Value* db_out = db_cast != nullptr ? db_cast->output() : r->output();
      ir::AttrMap attrs;
      if (swapped || gemm->GetInt("trans_a", 0).value_or(0) != 0) attrs["trans_a"] = int64_t{1};
      if (y_cast != nullptr) attrs["dtype"] = ir::DType::kF32;
      if (db_cast != nullptr) attrs["bias_dtype"] = ir::DType::kF32;
      // Swapped: g^T x = dW with db the column sums of g, the gemm's first operand.
      if (swapped) {
        attrs["bias_of"] = std::string("a");
        Count("fused.swapped");
      }
      ir::Node* f = fn.AddNode("gemm_bgrad", {gemm->input(0), gemm->input(1)},
                               {y_out->type(), db_out->type()}, std::move(attrs), gemm->loc(),
                               {y_out->name(), db_out->name()}, /*before=*/gemm);
      fn.ReplaceAllUsesWith(y_out, f->output(0));
      fn.ReplaceAllUsesWith(db_out, f->output(1));
      for (ir::Node* dead : {gemm, r, y_cast, db_cast}) {
        if (dead != nullptr) erase.insert(dead);
      }
      Count("fused");
      if (y_cast != nullptr) Count("fused.f32-weight-grad");
      if (db_cast != nullptr) Count("fused.f32-bias-grad");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& node) { return erase.count(&node) > 0; });
    // db's readers may precede the gemm (the reduce_sum came first): reorder.
    PTC_RETURN_IF_ERROR(fn.SortTopologically());
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseBiasGradPass() { return std::make_unique<FuseBiasGradPass>(); }

}  // namespace ptc::passes
