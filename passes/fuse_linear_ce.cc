// fuse-linear-ce: an LM head followed by its softmax cross-entropy becomes one
// `linear_ce_loss` (compiler/ir/ops_fused.cc; CPU kernel codegen/cpu/loss.cc), so the N x V
// logits are never stored: the kernel works on blocks of rows, and in a training step it also
// writes the gradients of x and w in the same pass (autodiff asks for them), so the backward
// keeps nothing of size N x V either (on the GPT bench: the 32 MiB logits, 32 MiB log-probs and
// 32 MiB logit gradients leave the arena).
//
// Matched:
//   %wt = transpose(%w) {perm=[1, 0]}          optional (nn.Linear / a tied embedding)
//   %l  = matmul(%x, %wt | %w)                 x [..., D], the weight 2-D, one use
//   %lb = add(%l, %b) | add(%b, %l)            optional (an LM head with a bias: Phi, GPT-J),
//                                              b [V] (or [1, .., 1, V]), one use
//   %s  = mul(%lb | %l, c) | div(.., 1 / c)    optional: a logit scale (Cohere's logit_scale,
//                                              Granite's logits_scaling), c a splat -> scale=c
//                                              ("fused.scale")
//   %c  = mul(tanh(div(%s | %lb | %l, c)), c)  optional: Gemma 2's final logit softcapping
//                                              (MatchSoftcap's forms; a scale merged into its
//                                              division joins scale) -> softcap=c
//                                              ("fused.softcap")
//   %r  = reshape(%c | %s | %lb | %l) to [N, V]
//                                              optional, one use
//   %loss = softmax_ce_loss(%r, %labels) {reduction mean|sum, ignore_index?}
//                                              f32, labels [N], no class weights, no log_prob
//                                              output
// x is reshaped to [N, D] when it has more dims (a view). Declines (counters):
// "declined.weights" (class weights), "declined.reduction" (none), "declined.dtype",
// "declined.shape", "declined.multi-use", "declined.no-matmul"; "fused.bias" counts the heads
// with a bias (linear_ce_loss's fourth input, reshaped to [V] where it has leading 1s).
// Run before autodiff (the training pre-pipeline of compiler/driver/driver.cc, CPU target) so
// that the gradient rule of linear_ce_loss replaces the three N x V backward nodes.
//
//   before:  %wt = transpose(%wte) {perm=[1, 0]} : f32[256,8192]
//            %l = matmul(%h, %wt) : f32[8,128,8192]
//            %r = reshape(%l) {shape=[1024, 8192]} : f32[1024,8192]
//            %loss = softmax_ce_loss(%r, %labels) : f32[]
//   after:   %h2 = reshape(%h) {shape=[1024, 256]} : f32[1024,256]
//            %loss = linear_ce_loss(%h2, %wte, %labels) {trans_b=1} : f32[]
#include <set>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class FuseLinearCePass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-linear-ce"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    const std::vector<ir::Node*> losses = NodesWithOp(fn, "softmax_ce_loss");
    std::set<const ir::Node*> erase;
    for (ir::Node* ce : losses) {
      if (ce->num_inputs() != 2) {
        Count("declined.weights");
        continue;
      }
      if (ce->num_outputs() != 1) {
        Count("declined.multi-use");  // the log-probs are read elsewhere
        continue;
      }
      const std::string red = ce->GetString("reduction", "mean").value_or("");
      if (red != "mean" && red != "sum") {
        Count("declined.reduction");
        continue;
      }
      ir::Value* scores = ce->input(0);
      ir::Value* labels = ce->input(1);
      if (scores->type().dtype != ir::DType::kF32 || scores->type().rank() != 2 ||
          labels->type().rank() != 1) {
        Count(scores->type().dtype != ir::DType::kF32 ? "declined.dtype" : "declined.shape");
        continue;
      }
      const int64_t n = scores->type().shape[0], v = scores->type().shape[1];
      std::vector<ir::Node*> absorbed = {ce};
      ir::Value* cur = scores;
      if (Match r = m.Def(cur).Op("reshape").SingleUse(); r) {
        absorbed.push_back(r.node());
        cur = r.node()->input(0);
      }
      double softcap = 0.0, scale = 1.0;
      if (std::optional<SoftcapMatch> cap = MatchSoftcap(m, cur)) {
        softcap = cap->cap;
        scale = cap->factor;
        cur = cap->x;
        absorbed.insert(absorbed.end(), cap->nodes.begin(), cap->nodes.end());
      }
      for (std::string_view op : {"mul", "div"}) {
        const ConstantFactor f = ConstantFactorOf(m, cur, op);
        if (f.node == nullptr || !f.factor || m.Splat(f.x)) continue;
        scale *= *f.factor;
        cur = f.x;
        absorbed.push_back(f.node);
        break;
      }
      // The head's bias: add(logits, b) with b broadcast along the rows.
      ir::Value* bias = nullptr;
      if (Match a = m.Def(cur).Op("add").SingleUse(); a) {
        for (int side = 0; side < 2 && bias == nullptr; ++side) {
          ir::Value* l = a.node()->input(side);
          ir::Value* b = a.node()->input(1 - side);
          const ir::Shape& bs = b->type().shape;
          bool row = !bs.empty() && bs.back() == v && b->type().dtype == ir::DType::kF32 &&
                     l->type() == a.node()->output()->type() && m.Def(l).Op("matmul");
          for (size_t i = 0; row && i + 1 < bs.size(); ++i) row = bs[i] == 1;
          if (row) {
            absorbed.push_back(a.node());
            bias = b;
            cur = l;
          }
        }
      }
      Match mm = m.Def(cur).Op("matmul");
      if (!mm) {
        Count("declined.no-matmul");
        continue;
      }
      if (!m.Def(cur).SingleUse()) {
        Count("declined.multi-use");
        continue;
      }
      ir::Node* mmn = mm.node();
      ir::Value* x = mmn->input(0);
      ir::Value* w = mmn->input(1);
      if (w->type().rank() != 2 || x->type().rank() < 2 || x->type().dtype != ir::DType::kF32 ||
          w->type().dtype != ir::DType::kF32 || w->type().shape[1] != v) {
        Count("declined.shape");
        continue;
      }
      const int64_t d = w->type().shape[0];
      if (x->type().shape.back() != d || x->type().num_elements() != n * d) {
        Count("declined.shape");
        continue;
      }
      absorbed.push_back(mmn);
      int64_t trans_b = 0;
      if (Match t = m.Def(w).Op("transpose"); t) {
        absl::StatusOr<std::vector<int64_t>> perm = t.node()->GetInts("perm");
        if (perm.ok() && *perm == std::vector<int64_t>{1, 0}) {
          w = t.node()->input(0);  // the transpose stays for its other users (dce otherwise)
          trans_b = 1;
        }
      }
      if (x->type().rank() != 2) {
        x = fn.AddNode("reshape", {x}, {ir::TensorType{ir::DType::kF32, {n, d}}},
                       {{"shape", std::vector<int64_t>{n, d}}}, mmn->loc(),
                       {x->name() + "_2d"}, /*before=*/ce)
                ->output();
      }
      if (bias != nullptr && bias->type().rank() != 1) {
        bias = fn.AddNode("reshape", {bias}, {ir::TensorType{ir::DType::kF32, {v}}},
                          {{"shape", std::vector<int64_t>{v}}}, mmn->loc(),
                          {bias->name() + "_1d"}, /*before=*/ce)
                   ->output();
      }
      ir::AttrMap attrs;
      if (trans_b) attrs["trans_b"] = int64_t{1};
      attrs["reduction"] = red;
      if (softcap > 0) attrs["softcap"] = softcap;
      if (scale != 1.0) attrs["scale"] = scale;
      if (ce->has_attr("ignore_index")) attrs["ignore_index"] = ce->attrs().at("ignore_index");
      // The loss node becomes the fused op in place: its output (often the function's result,
      // whose name the training-step builder may look up) keeps its name.
      ce->set_op("linear_ce_loss");
      if (bias != nullptr) {
        ce->set_inputs({x, w, labels, bias});
      } else {
        ce->set_inputs({x, w, labels});
      }
      ce->mutable_attrs() = std::move(attrs);
      erase.insert(absorbed.begin() + 1, absorbed.end());
      Count("fused");
      if (trans_b) Count("fused.transposed-weight");
      if (bias != nullptr) Count("fused.bias");
      if (softcap > 0) Count("fused.softcap");
      if (scale != 1.0) Count("fused.scale");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseLinearCePass() { return std::make_unique<FuseLinearCePass>(); }

}  // namespace ptc::passes
