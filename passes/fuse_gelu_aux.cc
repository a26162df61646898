// fuse-gelu-aux: a training step's GELU joins the GEMMs around it (compiler/ir/ops_fused.cc).
//
// A linear layer followed by a GELU keeps the GELU's input h for the backward (gelu_grad reads
// it), so fuse-matmul-bias cannot take the GELU (h has other readers). Here:
//   forward:  h = fused_matmul(x, w[, b]) and g = gelu(h), h read otherwise only by
//             gelu_grad(., h) nodes of the same form
//             -> g, h = fused_matmul(x, w[, b]) {activation="gelu"|"gelu_tanh"}: one node
//             writes both (CUDA: cuBLASLt's GELU_AUX_BIAS epilogue), no separate GELU pass
//             reading h back;
//   backward: dh = gelu_grad(d, h) where d is (a reshape of) gemm(a, b) read only there
//             -> dh = gemm_gelu_grad(a, b, h) (CUDA: the DGELU epilogue), so the product is
//             never written, read back and rewritten.
// Both forms of GELU are taken ("none" and "tanh"); the CUDA kernels use the epilogues for the
// tanh form (cuBLASLt's GELU is tanh's) and two passes for the erf form, no slower than before.
// Declines (counters): "declined.other-use" (h read by something else than the GELU and its
// gradients, or a result), "declined.activation" (the fused_matmul already has an activation
// or an addend), "declined.gemm" (the gradient's operand is not a single-use 2-D gemm without
// c and alpha 1, or its dtype differs from h's), "declined.order" (the GELU's input is computed
// after that gemm). Run after fuse-matmul-bias (the fused_matmul
// must exist), fuse-residual-add and fold-matmul-casts.
//
//   before:  %h = fused_matmul(%x, %w, %b) : f32[8,64]
//            %g = gelu(%h) {approximate="tanh"} : f32[8,64]
//            ...
//            %d = gemm(%dy, %w2) {trans_b=1} : f32[8,64]
//            %dh = gelu_grad(%d, %h) {approximate="tanh"} : f32[8,64]
//   after:   %g, %h = fused_matmul(%x, %w, %b) {activation="gelu_tanh"} : f32[8,64], f32[8,64]
//            ...
//            %d = gemm_gelu_grad(%dy, %w2, %h) {approximate="tanh", trans_b=1} : f32[8,64]
//            (readers of %dh read %d)
#include <set>
#include <string>
#include <vector>

#include "compiler/ir/ops_fused.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

std::string Approximate(const ir::Node& n) {
  absl::StatusOr<std::string> a = n.GetString("approximate", "none");
  return a.ok() ? *a : std::string();
}

class FuseGeluAuxPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-gelu-aux"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    std::set<const ir::Node*> erase;
    {
      Matcher m(module, fn);
      for (ir::Node* g : NodesWithOp(fn, "gelu")) FuseForward(m, fn, g, erase);
    }
    if (!erase.empty()) {
      fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    }
    const bool forward = !erase.empty();
    erase.clear();
    {
      Matcher m(module, fn);
      for (ir::Node* gg : NodesWithOp(fn, "gelu_grad")) FuseBackward(m, fn, gg, erase);
    }
    if (!erase.empty()) {
      fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    }
    return forward || !erase.empty();
  }

  void FuseForward(const Matcher& m, ir::Function& fn, ir::Node* g,
                   std::set<const ir::Node*>& erase) {
    ir::Value* h = g->input(0);
    Match def = m.Def(h).Op("fused_matmul");
    if (!def) return;
    ir::Node* fm = def.node();
    const std::string approx = Approximate(*g);
    if (approx != "none" && approx != "tanh") return;
    if (fm->num_outputs() != 1 || ir::FusedMatMulAddend(*fm) != nullptr ||
        fm->has_attr("activation") ||
        g->output()->type() != h->type()) {
      Count("declined.activation");
      return;
    }
    if (m.IsResult(h)) {
      Count("declined.other-use");
      return;
    }
    for (ir::Node* u : m.Users(h)) {
      const bool grad = u->op() == "gelu_grad" && u->num_inputs() == 2 && u->input(1) == h &&
                        u->input(0) != h && Approximate(*u) == approx;
      if (u != g && !grad) {
        Count("declined.other-use");
        return;
      }
    }
    ir::AttrMap attrs = fm->attrs();
    attrs["activation"] = std::string(approx == "tanh" ? "gelu_tanh" : "gelu");
    std::vector<ir::Value*> ins(fm->inputs().begin(), fm->inputs().end());
    ir::Node* f = fn.AddNode("fused_matmul", std::move(ins), {h->type(), h->type()},
                             std::move(attrs), fm->loc(),
                             {g->output()->name(), h->name()}, /*before=*/fm);
    fn.ReplaceAllUsesWith(g->output(), f->output(0));
    fn.ReplaceAllUsesWith(h, f->output(1));
    erase.insert(g);
    erase.insert(fm);
    Count("fused.forward");
  }

  void FuseBackward(const Matcher& m, ir::Function& fn, ir::Node* gg,
                    std::set<const ir::Node*>& erase) {
    if (gg->num_inputs() != 2) return;
    const std::string approx = Approximate(*gg);
    if (approx != "none" && approx != "tanh") return;
    ir::Value* d = gg->input(0);
    ir::Value* pre = gg->input(1);
    // d = gemm(a, b), or a reshape of it, each read only on the way to this gelu_grad.
    Match r = m.Def(d).Op("reshape").SingleUse();
    ir::Node* reshape = r ? r.node() : nullptr;
    ir::Value* prod = reshape != nullptr ? reshape->input(0) : d;
    Match gm = m.Def(prod).Op("gemm").SingleUse();
    if (!gm || (reshape == nullptr && !m.Def(d).SingleUse())) {
      Count("declined.gemm");
      return;
    }
    ir::Node* gemm = gm.node();
    const ir::TensorType& pt = prod->type();
    if (gemm->num_inputs() != 2 || gemm->GetFloat("alpha", 1.0).value_or(0.0) != 1.0 ||
        pt.dtype != pre->type().dtype || pt.rank() != 2 ||
        pt.num_elements() != pre->type().num_elements() || d->type() != pre->type()) {
      Count("declined.gemm");
      return;
    }
    // The fused node stays where the gemm is: pre must be ready by then (in a training step
    // it is the forward's; elsewhere it may be computed after the gemm).
    if (const ir::Node* p = pre->producer();
        p != nullptr && fn.NodeIndex(p) > fn.NodeIndex(gemm)) {
      Count("declined.order");
      return;
    }
    ir::AttrMap attrs;
    for (const char* t : {"trans_a", "trans_b"}) {
      if (gemm->GetInt(t, 0).value_or(0) != 0) attrs[t] = int64_t{1};
    }
    attrs["approximate"] = approx;
    ir::Value* pre2 = pre;
    if (pre->type().shape != pt.shape) {
      pre2 = fn.AddNode("reshape", {pre}, {ir::TensorType{pre->type().dtype, pt.shape}},
                        {{"shape", pt.shape}}, gg->loc(), {pre->name() + ".2d"},
                        /*before=*/gemm)
                 ->output();
    }
    // The gemm becomes the fused node in place (its output and a reshape after it keep their
    // names); the gelu_grad's readers read that.
    gemm->set_op("gemm_gelu_grad");
    gemm->set_inputs({gemm->input(0), gemm->input(1), pre2});
    gemm->mutable_attrs() = std::move(attrs);
    fn.ReplaceAllUsesWith(gg->output(), d);
    erase.insert(gg);
    Count("fused.backward");
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseGeluAuxPass() { return std::make_unique<FuseGeluAuxPass>(); }

}  // namespace ptc::passes
