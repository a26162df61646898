// Gradient rules of data-movement and reduction ops: reshape expand transpose split slice
// concat gather reduce_sum reduce_mean.
#include "compiler/autodiff/grad_builder.h"
#include "compiler/support/status.h"

namespace ptc::autodiff::internal {
namespace {

using ir::Value;

absl::Status Reshape(RuleContext& c) {
  c.dx[0] = c.b.Reshape(c.dy[0], c.in(0)->type().shape);
  return absl::OkStatus();
}

absl::Status Expand(RuleContext& c) {
  c.dx[0] = c.b.Unbroadcast(c.dy[0], c.in(0)->type().shape);
  return absl::OkStatus();
}

absl::Status Transpose(RuleContext& c) {
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> perm, c.node.GetInts("perm"));
  std::vector<int64_t> inv(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int64_t>(i);
  c.dx[0] = c.b.Transpose(c.dy[0], inv);
  return absl::OkStatus();
}

absl::Status Split(RuleContext& c) {
  PTC_ASSIGN_OR_RETURN(int64_t axis, c.node.GetInt("axis"));
  std::vector<Value*> parts;
  for (size_t i = 0; i < c.node.num_outputs(); ++i) {
    parts.push_back(c.dy[i] ? c.dy[i] : c.b.Zeros(c.out(i)->type()));
  }
  c.dx[0] = parts.size() == 1 ? parts[0] : c.b.Op("concat", parts, {{"axis", axis}});
  return absl::OkStatus();
}

absl::Status Slice(RuleContext& c) {
  ir::AttrMap attrs;
  for (const char* k : {"starts", "ends", "steps"}) {
    if (c.node.has_attr(k)) attrs[k] = c.node.attrs().at(k);
  }
  attrs["shape"] = c.in(0)->type().shape;
  c.dx[0] = c.b.Op("slice_grad", {c.dy[0]}, attrs);
  return absl::OkStatus();
}

absl::Status Concat(RuleContext& c) {
  PTC_ASSIGN_OR_RETURN(int64_t axis, c.node.GetInt("axis"));
  if (c.node.num_inputs() == 1) {
    c.dx[0] = c.dy[0];
    return absl::OkStatus();
  }
  std::vector<int64_t> sizes;
  for (Value* v : c.node.inputs()) sizes.push_back(v->type().shape[axis]);
  auto parts = c.b.OpN("split", {c.dy[0]}, {{"axis", axis}, {"sizes", sizes}},
                       static_cast<int>(sizes.size()));
  for (size_t i = 0; i < parts.size(); ++i) {
    if (c.need[i]) c.dx[i] = parts[i];
  }
  return absl::OkStatus();
}

absl::Status Gather(RuleContext& c) {
  if (!c.need[0]) return absl::OkStatus();
  PTC_ASSIGN_OR_RETURN(int64_t axis, c.node.GetInt("axis"));
  c.dx[0] = c.b.Op("gather_grad", {c.dy[0], c.in(1)},
                   {{"axis", axis}, {"shape", c.in(0)->type().shape}});
  return absl::OkStatus();
}

absl::Status Reduce(RuleContext& c, bool mean) {
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, c.node.GetInts("axes", std::vector<int64_t>{}));
  const ir::Shape& xs = c.in(0)->type().shape;
  ir::Shape kept = xs;
  int64_t count = 1;
  for (size_t d = 0; d < xs.size(); ++d) {
    bool reduced = axes.empty();
    for (int64_t a : axes) reduced |= a == static_cast<int64_t>(d);
    if (reduced) {
      count *= xs[d];
      kept[d] = 1;
    }
  }
  Value* g = c.b.Reshape(c.dy[0], kept);
  if (mean) g = c.b.Scale(g, count ? 1.0 / static_cast<double>(count) : 0.0);
  c.dx[0] = kept == xs ? g : c.b.Op("expand", {g}, {{"shape", xs}});
  return absl::OkStatus();
}

absl::Status ReduceSum(RuleContext& c) { return Reduce(c, false); }
absl::Status ReduceMean(RuleContext& c) { return Reduce(c, true); }

}  // namespace

void AddShapeRules(RuleMap& rules) {
  rules["reshape"] = Reshape;
  rules["expand"] = Expand;
  rules["transpose"] = Transpose;
  rules["split"] = Split;
  rules["slice"] = Slice;
  rules["concat"] = Concat;
  rules["gather"] = Gather;
  rules["reduce_sum"] = ReduceSum;
  rules["reduce_mean"] = ReduceMean;
}

}  // namespace ptc::autodiff::internal
