// mixed-precision-bf16 / mixed-precision-fp16: autocast-style cast placement over f32 values
// (`ptc compile --precision bf16|fp16`).
//
// Each node is put in one of three classes, as torch.autocast does on CUDA:
//   low:  matmul gemm fused_matmul attention linear_ce_loss (its loss stays f32: the op computes
//         the logits' softmax in f32). Every f32 operand is cast to the low dtype (q, k,
//         v, weights, a gemm / fused_matmul bias, an additive attention mask; a bool mask stays)
//         and the output is low. The GEMMs are where the tensor-core rate is.
//   f32:  softmax log_softmax layer_norm reduce_* softmax_ce_loss nll_loss exp log pow sqrt
//         reciprocal erf tanh (and the training ops of ops_train.cc): low operands are
//         cast back to f32 (ranges, sums and exponentials lose too much in 8 mantissa bits;
//         erf / tanh: the steps of an exported GELU that match-gelu did not take).
//         There are no cumulative ops in the IR yet; cumsum would join this list.
//   follow: everything else (add mul sub div where gelu relu sigmoid concat reshape transpose
//         split slice gather expand identity dropout cast rotary swiglu ...; rotary decided by
//         x alone, its cos / sin tables kept f32). sigmoid follows as in autocast (not on its
//         fp32 list; the kernels compute it in f32 and round once): a Llama SwiGLU,
//         x * sigmoid(x) * up, stays in bf16 instead of keeping three f32 [B, T, ffn] tensors
//         per layer for the backward; so does the swiglu op match-swiglu makes of it (and its
//         swiglu_grad, built from the bf16 swiglu by autodiff).
//         When every float operand is low the op
//         stays low; when low and f32 operands meet, the low ones are cast up and the op computes
//         in f32. As in PyTorch's type promotion, a rank-0 operand (a scale, an epsilon) does not
//         count: `mul(%s_bf16, 0.125)` stays bf16 with the scalar cast down; nor do weights
//         ("param" parameters) and constants: `add(%mm_bf16, %bias)` (a linear layer's bias
//         after its matmul, as autocast computes nn.Linear) stays bf16 with the bias cast down,
//         so the MLP's [B, T, 4d] activations are kept in bf16. Activations decide: the f32
//         residual stream plus a bf16 branch computes in f32.
// Output types are re-inferred with the op registry (op_util.h InferNodeTypes) after operands
// change; an op that refuses the low dtype computes in f32 instead (counter "kept-f32.<op>").
//
// Only f32 values and values this pass lowers are touched: f64, integer, bool and the other
// half type keep their dtypes. One cast per value, placed before its first reader and reused
// by the later ones; a cast of a constant is folded by fold-constants (which the default
// pipelines run after this pass). A cast down of a weight's transpose / reshape read once goes
// on the weight instead (the layout op redone in the low dtype; counter
// "cast.before-<op>"): nn.Linear's matmul(x, transpose(w)) becomes
// matmul(x, transpose(cast(w))), whose transpose fuse-matmul-bias folds into the GEMM. Parameters keep their types: f32 weights stay the master
// copy, cast to the low dtype inside the graph, so a training step built afterwards (autodiff
// differentiates cast) keeps f32 parameters, gradients and optimizer state. Function results
// keep their types too: a result that became low is cast back to its original dtype and the
// cast takes the result's name (the low value is renamed NAME.bf16), so plans and ONNX exports
// keep their output names.
//
// Run on the imported forward graph: before autodiff for training, before fusion for inference
// (compiler/driver/driver.cc). Counters: "cast.down", "cast.up", "low.<op>" (nodes computing in
// the low dtype, casts not counted), "kept-f32.<op>".
//
//   before:  %h = layer_norm(%x, %g, %b) {axis=1} : f32[4,8]
//            %y = matmul(%h, %w) : f32[4,16]
//            %p = softmax(%y) {axis=1} : f32[4,16]
//            return %y, %p
//   after:   %h = layer_norm(%x, %g, %b) {axis=1} : f32[4,8]
//            %h.bf16 = cast(%h) {to=bf16} : bf16[4,8]
//            %w.bf16 = cast(%w) {to=bf16} : bf16[8,16]
//            %y.bf16 = matmul(%h.bf16, %w.bf16) : bf16[4,16]
//            %y = cast(%y.bf16) {to=f32} : f32[4,16]
//            %y.f32 = cast(%y.bf16) {to=f32} : f32[4,16]
//            %p = softmax(%y.f32) {axis=1} : f32[4,16]
//            return %y, %p
//   (cse merges the two casts of %y.bf16.)
#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/support/status.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

enum class OpClass { kLow, kF32, kFollow };

OpClass Classify(std::string_view op) {
  static const auto* low =
      new std::set<std::string_view>{"matmul", "gemm", "fused_matmul", "attention",
                                     "linear_ce_loss"};
  static const auto* f32 = new std::set<std::string_view>{
      "softmax", "log_softmax", "layer_norm", "reduce_sum", "reduce_mean", "reduce_max",
      "reduce_min", "softmax_ce_loss", "nll_loss", "exp", "log", "pow", "sqrt", "reciprocal", "erf",
      "tanh", "cos", "sin",
      // Training ops (when the pass runs on a step built elsewhere): their kernels want f32.
      "softmax_ce_loss_grad", "nll_loss_grad", "layer_norm_grad", "adamw_update", "sgd_update",
      "lr_schedule"};
  if (low->count(op)) return OpClass::kLow;
  if (f32->count(op)) return OpClass::kF32;
  return OpClass::kFollow;
}

class MixedPrecisionPass : public Pass {
 public:
  explicit MixedPrecisionPass(MixedPrecisionOptions options)
      : options_(options),
        name_(options.low == ir::DType::kF16 ? "mixed-precision-fp16" : "mixed-precision-bf16") {}

  std::string_view name() const override { return name_; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    if (options_.low != ir::DType::kBF16 && options_.low != ir::DType::kF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("mixed precision: the low dtype must be bf16 or f16, got ",
                       std::string(ir::DTypeName(options_.low))));
    }
    bool changed = false;
    for (const auto& fn : module.functions()) {
      PTC_ASSIGN_OR_RETURN(bool c, RunOn(module, *fn));
      changed |= c;
    }
    return changed;
  }

 private:
  // Per-function state: the one cast of each value to the low dtype / back to f32.
  struct Casts {
    std::map<const ir::Value*, ir::Value*> down, up;
  };

  bool Ours(const ir::Value* v) const {
    return v->type().dtype == ir::DType::kF32 || v->type().dtype == options_.low;
  }
  bool Low(const ir::Value* v) const { return v->type().dtype == options_.low; }

  // The layout ops a cast commutes with: they move elements without computing on them.
  static bool IsLayoutOp(std::string_view op) { return op == "transpose" || op == "reshape"; }

  // A weight parameter, or a layout op read once of one (recursively): a value derived from a
  // weight by moving its elements only.
  bool MovedWeight(const ir::Value* v) const {
    const ir::Node* p = v->producer();
    if (p == nullptr) return v->is_param();
    return IsLayoutOp(p->op()) && p->num_outputs() == 1 && uses_.count(v) && uses_.at(v) == 1 &&
           MovedWeight(p->input(0));
  }

  ir::Value* CastTo(ir::Function& fn, Casts& casts, ir::Value* v, ir::DType to,
                    const ir::Node* before) {
    const bool down = to == options_.low;
    auto& cache = down ? casts.down : casts.up;
    auto it = cache.find(v);
    if (it != cache.end()) return it->second;
    // A cast down of a weight's transpose / reshape read only here is placed on the weight
    // instead, and the layout op redone in the low dtype: exact (the same elements, moved), the
    // layout op moves half the bytes, and a weight transposed as nn.Linear exports it,
    // matmul(x, transpose(w)), keeps its transpose next to the GEMM, where fuse-matmul-bias
    // folds it into trans_b (the cast of w is then shared with w's other readers).
    // Activations keep the cast after their layout op: the backward then casts the gradient up
    // where the op that writes it can fold the cast (fold-grad-casts).
    if (const ir::Node* p = v->producer();
        down && p != nullptr && MovedWeight(v) && Ours(p->input(0))) {
      std::vector<ir::Value*> inputs = p->inputs();
      inputs[0] = CastTo(fn, casts, p->input(0), to, before);
      ir::Node* twin = fn.AddNode(p->op(), inputs, {ir::TensorType{to, v->type().shape}},
                                  p->attrs(), p->loc(),
                                  {absl::StrCat(v->name(), ".", std::string(ir::DTypeName(to)))},
                                  before);
      Count(absl::StrCat("cast.before-", p->op()));
      replaced_.insert(p);  // its one reader is about to read the twin
      cache[v] = twin->output();
      return twin->output();
    }
    ir::Node* cast =
        fn.AddNode("cast", {v}, {ir::TensorType{to, v->type().shape}}, {{"to", to}}, before->loc(),
                   {absl::StrCat(v->name(), ".", std::string(ir::DTypeName(to)))}, before);
    Count(down ? "cast.down" : "cast.up");
    cache[v] = cast->output();
    return cast->output();
  }

  // Sets the node's output types from its inputs; false when the registry refuses them.
  static absl::StatusOr<bool> Reinfer(const ir::Module& module, ir::Node& n, bool* changed) {
    absl::StatusOr<std::vector<ir::TensorType>> types = ir::InferNodeTypes(n, &module);
    if (!types.ok()) return false;
    for (size_t i = 0; i < n.num_outputs(); ++i) {
      if (n.output(i)->type() != (*types)[i]) {
        n.output(i)->set_type((*types)[i]);
        *changed = true;
      }
    }
    return true;
  }

  absl::StatusOr<bool> RunOn(ir::Module& module, ir::Function& fn) {
    Casts casts;
    uses_.clear();
    for (const auto& [v, readers] : fn.ComputeUses()) uses_[v] = static_cast<int>(readers.size());
    for (const ir::Value* r : fn.results()) ++uses_[r];
    bool changed = false;
    std::vector<ir::TensorType> result_types;
    for (const ir::Value* r : fn.results()) result_types.push_back(r->type());
    std::vector<ir::Node*> order;
    for (const auto& n : fn.nodes()) order.push_back(n.get());

    for (ir::Node* n : order) {
      if (n->num_inputs() == 0) continue;  // constants
      const std::vector<ir::Value*> original = n->inputs();
      std::vector<size_t> ours;
      for (size_t i = 0; i < original.size(); ++i) {
        if (Ours(original[i])) ours.push_back(i);
      }
      // rotary follows x alone: its cos / sin tables stay as they are (f32: the kernels read
      // them widened; rounding them to bf16 would perturb every angle).
      if (n->op() == "rotary") std::erase_if(ours, [](size_t i) { return i != 0; });
      bool compute_low = false;
      if (!ours.empty() && n->op() != "cast") {
        switch (Classify(n->op())) {
          case OpClass::kLow:
            compute_low = true;
            break;
          case OpClass::kF32:
            compute_low = false;
            break;
          case OpClass::kFollow: {
            // The deciding operands: the activations (not scalars, weights or constants), or
            // all of them when there is none.
            auto passive = [&](const ir::Value* v) {
              return v->type().rank() == 0 || (v->producer() == nullptr && v->is_param()) ||
                     (v->producer() != nullptr && v->producer()->op() == "constant");
            };
            bool any_active = false, big_f32 = false, any_low = false;
            for (size_t i : ours) {
              if (!passive(original[i])) any_active = true;
            }
            for (size_t i : ours) {
              if (any_active && passive(original[i])) continue;
              (Low(original[i]) ? any_low : big_f32) = true;
            }
            compute_low = any_low && !big_f32;
            break;
          }
        }
        const ir::DType target = compute_low ? options_.low : ir::DType::kF32;
        for (size_t i : ours) {
          if (original[i]->type().dtype != target) {
            n->set_input(i, CastTo(fn, casts, original[i], target, n));
            changed = true;
          }
        }
      }
      PTC_ASSIGN_OR_RETURN(bool ok, Reinfer(module, *n, &changed));
      if (ok) {
        if (compute_low && n->op() != "cast") Count(absl::StrCat("low.", n->op()));
        continue;
      }
      // The op refuses the low dtype (or a low operand from upstream): compute it in f32.
      bool any_low = false;
      for (size_t i = 0; i < original.size(); ++i) {
        ir::Value* v = original[i];
        if (Low(v)) {
          v = CastTo(fn, casts, v, ir::DType::kF32, n);
          any_low = true;
        }
        n->set_input(i, v);
      }
      PTC_ASSIGN_OR_RETURN(ok, Reinfer(module, *n, &changed));
      if (!ok || !any_low) {
        return absl::InternalError(
            absl::StrCat("mixed precision: cannot infer the types of ", n->Describe(),
                         " even in f32: ", ir::InferNodeTypes(*n, &module).status().message()));
      }
      Count(absl::StrCat("kept-f32.", n->op()));
    }

    // The layout ops redone in the low dtype have no reader left: later passes (fold-param-casts)
    // see the weight read by its cast alone.
    fn.EraseNodesIf([&](const ir::Node& n) { return replaced_.count(&n) > 0; });
    replaced_.clear();
    PTC_ASSIGN_OR_RETURN(bool c, RestoreResults(fn, result_types));
    return changed || c;
  }

  // Results keep their original types and names: the low value is renamed NAME.<low> (its
  // producer is re-created under that name) and the original producer becomes the cast back.
  absl::StatusOr<bool> RestoreResults(ir::Function& fn,
                                      const std::vector<ir::TensorType>& result_types) {
    bool changed = false;
    std::vector<ir::Value*> results = fn.results();
    std::map<ir::Value*, ir::Value*> restored;
    for (size_t i = 0; i < results.size(); ++i) {
      ir::Value* r = results[i];
      const ir::DType want = result_types[i].dtype;
      if (r->type().dtype == want) continue;
      auto it = restored.find(r);
      if (it != restored.end()) {
        results[i] = it->second;
        continue;
      }
      ir::Node* p = r->producer();
      if (p == nullptr) {
        return absl::InternalError(
            absl::StrCat("mixed precision: parameter %", r->name(), " changed its type"));
      }
      const ir::TensorType low_type = r->type();
      if (p->num_outputs() == 1) {
        ir::Node* twin =
            fn.AddNode(p->op(), p->inputs(), {low_type}, p->attrs(), p->loc(),
                       {absl::StrCat(r->name(), ".", std::string(ir::DTypeName(low_type.dtype)))},
                       /*before=*/p);
        fn.ReplaceAllUsesWith(r, twin->output());
        p->set_op("cast");
        p->set_inputs({twin->output()});
        p->mutable_attrs() = {{"to", want}};
        r->set_type(ir::TensorType{want, low_type.shape});
        restored[r] = r;
      } else {
        // Several outputs (split): a cast under a new name.
        ir::Node* cast =
            fn.AddNode("cast", {r}, {ir::TensorType{want, low_type.shape}}, {{"to", want}},
                       p->loc(), {absl::StrCat(r->name(), ".", std::string(ir::DTypeName(want)))});
        restored[r] = cast->output();
      }
      Count("cast.up");
      results[i] = restored[r];
      changed = true;
    }
    // ReplaceAllUsesWith above also moved the results to the twins: set them back.
    fn.set_results(results);
    return changed;
  }

  MixedPrecisionOptions options_;
  std::string name_;
  std::map<const ir::Value*, int> uses_;  // readers (and result slots) before the pass
  std::set<const ir::Node*> replaced_;    // layout ops whose reader now reads a low twin
};

}  // namespace

std::unique_ptr<Pass> CreateMixedPrecisionPass(MixedPrecisionOptions options) {
  return std::make_unique<MixedPrecisionPass>(options);
}

}  // namespace ptc::passes
