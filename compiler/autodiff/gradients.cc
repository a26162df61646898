// Reverse-mode autodiff over the IR (AppendGradients, training.h).
//
// Precondition: the function has not been through fusion passes (fused_* ops have no gradient
// rule); the training pipeline runs autodiff first and fuses the whole step afterwards.
//
// 1. Forward ops whose backward needs an extra forward output get it: layer_norm produces
//    (y, mean, inv_std_dev), softmax_ce_loss (loss, log_prob). The node is
//    replaced by one with more outputs at the same schedule position.
// 2. requires-grad: float values reachable from `wrt` through float edges.
// 3. Nodes are visited in reverse schedule order; each node with an output gradient applies
//    its rule (grad_rules_*.cc) and gradients of inputs used several times are summed with add;
//    a gather_grad contribution (an embedding lookup) takes the other as its base instead
//    (tied embeddings: no dense [V, D] temporary and no add; plan-memory may then write the sum
//    into the base's buffer).
// Backward nodes are appended at the end of the schedule with names "d.<forward value>...".
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/autodiff/grad_builder.h"
#include "compiler/autodiff/training.h"
#include "compiler/ir/op_util.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"

namespace ptc::autodiff {
namespace internal {

std::vector<ir::Value*> GradBuilder::OpN(std::string_view op, std::vector<ir::Value*> inputs,
                                         ir::AttrMap attrs, int num_outputs,
                                         std::string_view name) {
  if (!status_.ok()) return {};
  std::vector<ir::TensorType> in_types;
  for (ir::Value* v : inputs) {
    if (v == nullptr) {
      Fail(absl::InternalError(absl::StrCat("autodiff: null operand for `", std::string(op),
                                            "` while differentiating ", base_)));
      return {};
    }
    in_types.push_back(v->type());
  }
  auto types = ir::InferTypes(op, in_types, attrs, num_outputs);
  if (!types.ok()) {
    Fail(absl::InternalError(absl::StrCat("autodiff: building `", std::string(op), "` for ",
                                          base_, " (", loc_, "): ", types.status().message())));
    return {};
  }
  std::string n = name.empty() ? base_ : std::string(name);
  ir::Node* node = f_.AddNode(std::string(op), std::move(inputs), *std::move(types),
                              std::move(attrs), loc_, std::vector<std::string>(num_outputs, n));
  return node->outputs();
}

ir::Value* GradBuilder::Const(ir::DType dtype, double value) {
  ir::Tensor t(dtype, {});
  switch (dtype) {
    case ir::DType::kF32: *t.mutable_data_as<float>() = static_cast<float>(value); break;
    case ir::DType::kF64: *t.mutable_data_as<double>() = value; break;
    case ir::DType::kI64: *t.mutable_data_as<int64_t>() = static_cast<int64_t>(value); break;
    case ir::DType::kI32: *t.mutable_data_as<int32_t>() = static_cast<int32_t>(value); break;
    case ir::DType::kBool: *t.mutable_data_as<bool>() = value != 0; break;
    default: {
      // f16 / bf16: build in f32 and cast.
      ir::Value* f = Const(ir::DType::kF32, value);
      return Op("cast", {f}, {{"to", dtype}});
    }
  }
  return Op("constant", {}, {{"value", t}}, "c");
}

ir::Value* GradBuilder::Zeros(const ir::TensorType& type) {
  ir::Value* z = Const(type.dtype, 0.0);
  if (type.shape.empty()) return z;
  return Op("expand", {z}, {{"shape", type.shape}});
}

ir::Value* GradBuilder::Scale(ir::Value* a, double s) {
  if (s == 1.0 || a == nullptr) return a;
  return Mul(a, Const(a->type().dtype, s));
}

ir::Value* GradBuilder::Reshape(ir::Value* v, const ir::Shape& shape) {
  if (v == nullptr || v->type().shape == shape) return v;
  return Op("reshape", {v}, {{"shape", shape}});
}

ir::Value* GradBuilder::Transpose(ir::Value* v, std::vector<int64_t> perm) {
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i) identity &= perm[i] == static_cast<int64_t>(i);
  if (identity || v == nullptr) return v;
  return Op("transpose", {v}, {{"perm", perm}});
}

ir::Value* GradBuilder::SwapLast2(ir::Value* v) {
  if (v == nullptr) return v;
  const int r = v->type().rank();
  std::vector<int64_t> perm(r);
  for (int i = 0; i < r; ++i) perm[i] = i;
  std::swap(perm[r - 1], perm[r - 2]);
  return Transpose(v, perm);
}

ir::Value* GradBuilder::Unbroadcast(ir::Value* g, const ir::Shape& target) {
  if (g == nullptr || g->type().shape == target) return g;
  const ir::Shape& s = g->type().shape;
  const size_t extra = s.size() - std::min(s.size(), target.size());
  std::vector<int64_t> axes;
  for (size_t d = 0; d < s.size(); ++d) {
    if (d < extra || (target[d - extra] == 1 && s[d] != 1)) axes.push_back(static_cast<int64_t>(d));
  }
  ir::Value* r = g;
  if (!axes.empty()) r = Op("reduce_sum", {g}, {{"axes", axes}, {"keepdims", int64_t{0}}});
  return Reshape(r, target);
}

}  // namespace internal

namespace {

using internal::GradBuilder;
using internal::RuleContext;
using internal::RuleMap;

const RuleMap& Rules() {
  static const RuleMap* rules = [] {
    auto* m = new RuleMap();
    internal::AddElementwiseRules(*m);
    internal::AddLinalgRules(*m);
    internal::AddShapeRules(*m);
    return m;
  }();
  return *rules;
}

// Ops whose outputs are piecewise constant in their inputs: zero gradient, no rule needed.
bool IsZeroGradOp(std::string_view op) {
  static const std::set<std::string_view> kOps = {"floor", "ceil", "constant"};
  return kOps.count(op) > 0;
}

// Gives `node` `want` outputs (the extra ones a backward rule reads), replacing it in place.
ir::Node* WithOutputs(ir::Function& f, ir::Node* node, size_t want,
                      std::map<ir::Value*, ir::Value*>& replaced, absl::Status& status) {
  if (node->num_outputs() >= want) return node;
  auto types = ir::InferTypes(node->op(), ir::InputTypes(*node), node->attrs(),
                              static_cast<int>(want));
  if (!types.ok()) {
    status = absl::InternalError(absl::StrCat(node->Describe(), ": ", types.status().message()));
    return node;
  }
  std::vector<std::string> names;
  for (ir::Value* v : node->outputs()) names.push_back(v->name());
  for (size_t i = node->num_outputs(); i < want; ++i) {
    std::string suffix = i == 1 && node->op() == "layer_norm" ? ".mean"
                         : i == 2 && node->op() == "layer_norm" ? ".inv_std"
                         : node->op() == "linear_ce_loss"
                             ? (i == 1 ? ".dx_unit" : i == 2 ? ".dw_unit" : ".db_unit")
                                                                 : ".log_prob";
    names.push_back(absl::StrCat(node->output(0)->name(), suffix));
  }
  ir::Node* fresh = f.AddNode(node->op(), node->inputs(), *types, node->attrs(), node->loc(),
                              names, node);
  for (size_t i = 0; i < node->num_outputs(); ++i) {
    f.ReplaceAllUsesWith(node->output(i), fresh->output(i));
    replaced[node->output(i)] = fresh->output(i);
  }
  const ir::Node* old = node;
  f.EraseNodesIf([old](const ir::Node& n) { return &n == old; });
  return fresh;
}

}  // namespace

absl::StatusOr<std::vector<ir::Value*>> AppendGradients(ir::Function& function, ir::Value* loss,
                                                        const std::vector<ir::Value*>& wrt_in) {
  if (loss == nullptr || loss->type().shape != ir::Shape{} || !ir::IsFloat(loss->type().dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "autodiff: the loss must be a float scalar, got ",
        loss ? loss->name() + ": " + loss->type().ToString() : std::string("null"),
        "; reduce it (reduce_mean) first"));
  }
  // 1. Extra forward outputs.
  std::map<ir::Value*, ir::Value*> replaced;
  absl::Status status;
  std::vector<ir::Node*> to_widen;
  for (const auto& n : function.nodes()) {
    if (n->op().rfind("fused_", 0) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "autodiff: ", n->Describe(),
          " is a fused op; autodiff must run before fusion passes (build the training step "
          "from the unfused forward graph, then run the pass pipeline)"));
    }
    if (n->op() == "layer_norm" || n->op() == "softmax_ce_loss" ||
        n->op() == "linear_ce_loss") {
      to_widen.push_back(n.get());
    }
  }
  for (ir::Node* n : to_widen) {
    const int want = n->op() == "linear_ce_loss" ? (n->num_inputs() == 4 ? 4 : 3)
                     : n->op() == "layer_norm"   ? 3
                                                 : 2;
    WithOutputs(function, n, want, replaced, status);
    PTC_RETURN_IF_ERROR(status);
  }
  auto remap = [&](ir::Value* v) {
    auto it = replaced.find(v);
    return it == replaced.end() ? v : it->second;
  };
  loss = remap(loss);
  std::vector<ir::Value*> wrt;
  for (ir::Value* v : wrt_in) wrt.push_back(remap(v));

  // 2. requires-grad, forward over the schedule.
  std::set<const ir::Value*> req;
  for (ir::Value* v : wrt) {
    if (v && ir::IsFloat(v->type().dtype)) req.insert(v);
  }
  std::vector<ir::Node*> forward;
  for (const auto& n : function.nodes()) forward.push_back(n.get());
  for (ir::Node* n : forward) {
    bool any = false;
    for (ir::Value* v : n->inputs()) any |= req.count(v) > 0;
    if (!any) continue;
    for (ir::Value* v : n->outputs()) {
      if (ir::IsFloat(v->type().dtype)) req.insert(v);
    }
  }

  // 3. Backward.
  std::map<const ir::Value*, ir::Value*> grads;
  {
    GradBuilder seed(function, absl::StrCat("d.", loss->name()), "");
    grads[loss] = seed.Const(loss->type().dtype, 1.0);
    PTC_RETURN_IF_ERROR(seed.status());
  }
  for (auto it = forward.rbegin(); it != forward.rend(); ++it) {
    ir::Node* n = *it;
    std::vector<ir::Value*> dy;
    bool any_dy = false;
    for (ir::Value* v : n->outputs()) {
      auto g = grads.find(v);
      dy.push_back(g == grads.end() ? nullptr : g->second);
      any_dy |= dy.back() != nullptr;
    }
    if (!any_dy) continue;
    std::vector<bool> need;
    bool any_need = false;
    for (ir::Value* v : n->inputs()) {
      need.push_back(req.count(v) > 0);
      any_need |= need.back();
    }
    if (!any_need || IsZeroGradOp(n->op())) continue;
    auto rule = Rules().find(n->op());
    if (rule == Rules().end()) {
      return absl::UnimplementedError(absl::StrCat(
          "autodiff: no gradient rule for ", n->Describe(),
          "; the loss depends on it through a float input. Freeze the weights that reach it "
          "(--frozen) or add a rule in compiler/autodiff/grad_rules_*.cc"));
    }
    GradBuilder b(function, absl::StrCat("d.", n->output(0)->name()), n->loc());
    RuleContext ctx{b, *n, dy, need, std::vector<ir::Value*>(n->num_inputs(), nullptr)};
    PTC_RETURN_IF_ERROR(rule->second(ctx));
    PTC_RETURN_IF_ERROR(b.status());
    for (size_t i = 0; i < n->num_inputs(); ++i) {
      ir::Value* g = ctx.dx[i];
      if (g == nullptr || !need[i]) continue;
      ir::Value* x = n->input(i);
      if (g->type() != x->type()) {
        return absl::InternalError(absl::StrCat("autodiff: the rule of ", n->Describe(),
                                                " made gradient ", g->type().ToString(),
                                                " for input ", i, " of type ",
                                                x->type().ToString()));
      }
      auto [slot, inserted] = grads.emplace(x, g);
      if (!inserted) {
        GradBuilder acc(function, absl::StrCat("d.", x->name()), n->loc());
        // Neither contribution has a reader yet (grads[x] is read when x's producer is
        // visited, after every reader of x): a base-less gather_grad is rebuilt with the other
        // as its base, and the original is left to dce.
        auto scatter = [](const ir::Value* v) {
          const ir::Node* p = v->producer();
          return p != nullptr && p->op() == "gather_grad" && p->num_inputs() == 2 ? p : nullptr;
        };
        const ir::Node* sg = scatter(g);
        ir::Value* other = slot->second;
        if (sg == nullptr && (sg = scatter(slot->second)) != nullptr) other = g;
        if (sg != nullptr) {
          slot->second = acc.Op("gather_grad", {sg->input(0), sg->input(1), other}, sg->attrs());
        } else {
          slot->second = acc.Add(slot->second, g);
        }
        PTC_RETURN_IF_ERROR(acc.status());
      }
    }
  }
  std::vector<ir::Value*> result;
  for (ir::Value* v : wrt) {
    auto g = grads.find(v);
    result.push_back(g == grads.end() ? nullptr : g->second);
  }
  return result;
}

}  // namespace ptc::autodiff
