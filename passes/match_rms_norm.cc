// match-rms-norm: RMSNorm as one `layer_norm {rms=1}`.
//
// Llama, Mistral, T5... normalize by the root mean square. Exported to ONNX (opset 17 has no
// RMSNormalization) that is five or six ops, each a pass over the activations, and in a training
// step each keeps its own intermediate for the backward:
//      scale * (x / sqrt(reduce_mean(x^2, last axes) + epsilon))
// recognized with
//   - x^2 as pow(x, 2) or x * x;
//   - reduce_mean over trailing axes [a, rank), keepdims=1;
//   - the epsilon add in either operand order (a constant splat >= 0);
//   - the division as x / sqrt(.), x * reciprocal(sqrt(.)) or x * (1 / sqrt(.)) (HF's
//     x * torch.rsqrt(.) exports as one of those), either operand order of each mul;
//   - the scale multiplied on either side, its shape the normalized shape x.shape[a:].
// It becomes `layer_norm(x, scale) {axis=a, epsilon, rms=1}` (ops.h): one row kernel forward,
// and in training one layer_norm_grad {rms=1} instead of the gradients of six ops (the CPU and
// CUDA kernels of layer_norm take the flag; the cost model, remat, fold-norm-casts,
// fuse-norm-grad-add and the KV-cache decoder already know layer_norm).
//
// Guards (counters "rms_norm" and "declined.<why>"): f32 / f64 only ("dtype": in f16 / bf16 the
// exported chain rounds after every op, one norm does not); every intermediate single-use
// ("multi-use"; x itself may have other uses, the residual stream does); the same x under the
// square and the division ("other-x"); "axes" (not trailing, or keepdims=0); "epsilon" (not a
// constant splat >= 0); "scale" (no scale multiply, or a scale that is not of the normalized
// shape and x's dtype, e.g. a per-row factor).
// An RMS norm of x - reduce_mean(x) over the same axes is a layer norm without a bias:
// layer_norm(x, scale) {rms=0} ("centered"; Cohere's LayerNorm, written out as mean, variance of
// the centered x and rsqrt), its backward one layer_norm_grad too.
// Then a layer_norm (matched here or not) of transpose(x4, perm) that keeps the normalized
// axes in place, the transpose read by nothing else, normalizes x4 and transposes the result
// ("moved.before-transpose"): Gemma 3's per-head q / k norms come after the head transpose,
// and with the norm before it match-rotary moves the rotary before it too, so the attention
// reads the heads in place (as Qwen3's, normalized before the transpose).
// Runs before autodiff (compiler/driver: with match-gelu) and in the default pipeline after cse
// (inference plans), before fuse-elementwise, which would otherwise fuse the tail.
//
//   before:  %sq = pow(%x, %two) : f32[2,8,64]                           (%two = 2.0)
//            %ms = reduce_mean(%sq) {axes=[2], keepdims=1} : f32[2,8,1]
//            %a = add(%ms, %eps) : f32[2,8,1]                            (%eps = 1e-05)
//            %r = sqrt(%a) : f32[2,8,1]
//            %n = div(%x, %r) : f32[2,8,64]
//            %y = mul(%w, %n) : f32[2,8,64]
//   after:   %y = layer_norm(%x, %w) {axis=2, epsilon=1e-05, rms=1} : f32[2,8,64]
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>

#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class MatchRmsNormPass : public FunctionPass {
 public:
  std::string_view name() const override { return "match-rms-norm"; }

 protected:
  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    bool changed = false;
    for (ir::Node* mean : NodesWithOp(fn, "reduce_mean")) {
      if (erase.count(mean)) continue;
      std::vector<ir::Node*> chain;
      std::string why;
      Found f;
      if (!MatchAt(m, mean, chain, f, why)) {
        if (!why.empty()) Count("declined." + why);
        continue;
      }
      ir::Node* ln = fn.AddNode(
          "layer_norm", {f.x, f.scale}, {f.root->output()->type()},
          {{"axis", f.axis}, {"epsilon", f.epsilon}, {"rms", int64_t{1}}}, f.root->loc(),
          {f.root->output()->name()}, /*before=*/f.root);
      fn.ReplaceAllUsesWith(f.root->output(), ln->output());
      erase.insert(chain.begin(), chain.end());
      erase.insert(f.root);
      Count("rms_norm");
      changed = true;
    }
    if (!erase.empty()) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    changed |= Centered(module, fn);
    return MoveBeforeTransposes(module, fn) || changed;
  }

 private:
  struct Found {
    ir::Value* x = nullptr;
    ir::Value* scale = nullptr;
    ir::Node* root = nullptr;  // the scale multiply
    int64_t axis = 0;
    double epsilon = 0;
  };

  // layer_norm(sub(y, reduce_mean(y)), scale) {rms=1} -> layer_norm(y, scale) (the file
  // comment's "centered").
  bool Centered(const ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    for (ir::Node* ln : NodesWithOp(fn, "layer_norm")) {
      absl::StatusOr<int64_t> axis = ln->GetInt("axis", -1);
      if (!axis.ok() || ln->GetInt("rms", 0).value_or(0) != 1 || ln->num_inputs() != 2) continue;
      Match sub = m.Def(ln->input(0)).Op("sub").SingleUse();
      if (!sub) continue;
      ir::Value* y = sub.node()->input(0);
      Match mean = m.Def(sub.node()->input(1)).Op("reduce_mean").SingleUse();
      if (!mean || mean.node()->input(0) != y) continue;
      const int64_t rank = y->type().rank();
      std::vector<int64_t> want;
      for (int64_t a = *axis; a < rank; ++a) want.push_back(a);
      absl::StatusOr<std::vector<int64_t>> axes = mean.node()->GetInts("axes");
      if (!axes.ok() || mean.node()->GetInt("keepdims", 1).value_or(0) != 1) continue;
      std::vector<int64_t> got = *axes;
      for (int64_t& a : got) a = a < 0 ? a + rank : a;
      std::sort(got.begin(), got.end());
      if (got != want || y->type() != ln->input(0)->type()) {
        Count("declined.centered-axes");
        continue;
      }
      ln->set_input(0, y);
      ln->mutable_attrs().erase("rms");
      erase.insert(sub.node());
      erase.insert(mean.node());
      Count("centered");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }

  // The file comment's move of a layer_norm before the transpose it reads.
  bool MoveBeforeTransposes(const ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    for (ir::Node* ln : NodesWithOp(fn, "layer_norm")) {
      absl::StatusOr<int64_t> axis = ln->GetInt("axis", -1);
      Match t = m.Def(ln->input(0)).Op("transpose").SingleUse();
      if (!axis.ok() || ln->num_outputs() != 1 || !t) continue;
      absl::StatusOr<std::vector<int64_t>> perm = t.node()->GetInts("perm");
      const int64_t rank = ln->output()->type().rank();
      const int64_t a = *axis < 0 ? *axis + rank : *axis;
      bool keeps = perm.ok() && static_cast<int64_t>(perm->size()) == rank && a >= 0 && a < rank;
      for (int64_t i = a; keeps && i < rank; ++i) keeps = (*perm)[i] == i;
      if (!keeps) continue;
      ir::Value* x4 = t.node()->input(0);
      std::vector<ir::Value*> ins(ln->inputs().begin(), ln->inputs().end());
      ins[0] = x4;
      ir::Node* moved = fn.AddNode("layer_norm", ins, {{ln->output()->type().dtype,
                                                        x4->type().shape}},
                                   ln->attrs(), ln->loc(), {ln->output()->name() + ".n"}, ln);
      ir::Node* tr = fn.AddNode("transpose", {moved->output()}, {ln->output()->type()},
                                {{"perm", *perm}}, t.node()->loc(), {ln->output()->name()}, ln);
      fn.ReplaceAllUsesWith(ln->output(), tr->output());
      erase.insert(ln);
      erase.insert(t.node());
      Count("moved.before-transpose");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }

  // The match around `mean` (a reduce_mean); false with `why` set on a decline (empty `why`:
  // not an RMS norm at all, nothing counted).
  static bool MatchAt(const Matcher& m, ir::Node* mean, std::vector<ir::Node*>& chain, Found& f,
                      std::string& why) {
    // The square: pow(x, 2) or x * x. Anything else is some other mean: not counted.
    ir::Node* sq = m.Def(mean->input(0)).node();
    if (sq == nullptr) return false;
    ir::Value* x = nullptr;
    if (sq->op() == "pow" && m.Def(sq->input(1)).Splat(2.0)) {
      x = sq->input(0);
    } else if (sq->op() == "mul" && sq->input(0) == sq->input(1)) {
      x = sq->input(0);
    } else {
      return false;
    }
    const ir::DType dt = x->type().dtype;
    if (dt != ir::DType::kF32 && dt != ir::DType::kF64) return Fail(why, "dtype");
    if (m.NumUses(sq->output()) != 1 || m.IsResult(sq->output())) return Fail(why, "multi-use");
    // Trailing axes, kept.
    const int64_t rank = x->type().rank();
    absl::StatusOr<std::vector<int64_t>> axes = mean->GetInts("axes", std::vector<int64_t>{});
    absl::StatusOr<int64_t> keep = mean->GetInt("keepdims", 1);
    if (!axes.ok() || !keep.ok() || *keep != 1 || axes->empty()) return Fail(why, "axes");
    for (size_t i = 0; i < axes->size(); ++i) {
      if ((*axes)[i] != rank - static_cast<int64_t>(axes->size() - i)) return Fail(why, "axes");
    }
    f.axis = axes->front();
    // + epsilon
    ir::Node* add = m.SingleUser(mean->output());
    if (add == nullptr) return Fail(why, "multi-use");
    if (add->op() != "add") return Fail(why, "not-op:add");
    const ir::Value* eps_v = Matcher::OtherOperand(*add, mean->output());
    std::optional<double> eps = eps_v ? m.Splat(eps_v) : std::nullopt;
    if (!eps || !(*eps >= 0) || eps_v->type().num_elements() != 1) return Fail(why, "epsilon");
    f.epsilon = *eps;
    if (eps_v->type().dtype == ir::DType::kF32) {
      // The f32 constant's shortest decimal (1e-05, not 9.999999747378752e-06): the same float.
      char buf[32];
      auto r = std::to_chars(buf, buf + sizeof(buf), static_cast<float>(*eps));
      f.epsilon = std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
    }
    // sqrt
    ir::Node* root = m.SingleUser(add->output());
    if (root == nullptr) return Fail(why, "multi-use");
    if (root->op() != "sqrt") return Fail(why, "not-op:sqrt");
    ir::Node* sqrt_node = root;
    // x / sqrt, or x * reciprocal(sqrt) / x * (1 / sqrt)
    ir::Node* u = m.SingleUser(sqrt_node->output());
    if (u == nullptr) return Fail(why, "multi-use");
    ir::Node* norm = nullptr;
    std::vector<ir::Node*> inv;
    const bool one_over = u->op() == "div" && u->input(1) == sqrt_node->output() &&
                          u->input(0) != x && m.Def(u->input(0)).Splat(1.0);
    if (u->op() == "div" && u->input(1) == sqrt_node->output() && !one_over) {
      if (u->input(0) != x) return Fail(why, "other-x");
      norm = u;
    } else if (u->op() == "reciprocal" || one_over) {
      inv.push_back(u);
      ir::Node* mul = m.SingleUser(u->output());
      if (mul == nullptr) return Fail(why, "multi-use");
      if (mul->op() != "mul") return Fail(why, "not-op:mul");
      if (Matcher::OtherOperand(*mul, u->output()) != x) return Fail(why, "other-x");
      norm = mul;
    } else {
      return Fail(why, "not-op:div");
    }
    // * scale
    ir::Node* scaled = m.SingleUser(norm->output());
    if (scaled == nullptr || scaled->op() != "mul") {
      return Fail(why, scaled == nullptr && m.NumUses(norm->output()) > 1 ? "multi-use" : "scale");
    }
    ir::Value* scale = Matcher::OtherOperand(*scaled, norm->output());
    const ir::Shape& xs = x->type().shape;
    const ir::Shape normalized(xs.begin() + f.axis, xs.end());
    if (scale == nullptr || scale == x || scale->type().dtype != dt ||
        scale->type().shape != normalized || scaled->output()->type() != x->type()) {
      return Fail(why, "scale");
    }
    chain = {sq, mean, add, sqrt_node};
    chain.insert(chain.end(), inv.begin(), inv.end());
    chain.push_back(norm);
    f.x = x;
    f.scale = scale;
    f.root = scaled;
    return true;
  }

  static bool Fail(std::string& why, const char* reason) {
    why = reason;
    return false;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateMatchRmsNormPass() { return std::make_unique<MatchRmsNormPass>(); }

}  // namespace ptc::passes
