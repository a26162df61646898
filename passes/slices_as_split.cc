// slices-as-split: the slices of one value that cut one axis into consecutive parts covering
// it exactly become one `split`.
//
// Phi-3's attention projects q | k | v with one GEMM and slices its output ([..., :H*D],
// [..., H*D:(H+Hkv)*D], [..., (H+Hkv)*D:], its K / V narrower than Q: not an equal split). As
// slices, the backward is a zero-padded slice_grad per part, each as large as the whole output,
// and their sum; as one split it is one concat. The forward moves the same bytes.
//
// Matched: slice nodes of one value x with unit steps that cut the same single axis (every
// other axis whole) and whose ranges chain from 0 to the axis' end (found depth-first; other
// slices of that axis, overlapping the chain, stay slices). Not when a part is a function
// result (its name is part of the interface). Counter "slices.as-split".
// Runs before autodiff, after the fusions (compiler/driver: match-rotary reads the rotary's
// half slices, and a partial rotary's two slices, as slices).
//
//   before:  %q = slice(%x) {ends=[2, 16, 32], starts=[0, 0, 0], steps=[1, 1, 1]} : f32[2,16,32]
//            %k = slice(%x) {ends=[2, 16, 48], starts=[0, 0, 32], steps=[1, 1, 1]} : f32[2,16,16]
//            %v = slice(%x) {ends=[2, 16, 64], starts=[0, 0, 48], steps=[1, 1, 1]} : f32[2,16,16]
//   after:   %q, %k, %v = split(%x) {axis=2, sizes=[32, 16, 16]}
#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "compiler/support/status.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

class SlicesAsSplitPass : public FunctionPass {
 public:
  std::string_view name() const override { return "slices-as-split"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& fn) override {
    std::set<const ir::Node*> erase;
    const bool changed = SlicesAsSplits(fn, erase);
    if (!erase.empty()) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return changed;
  }

  bool SlicesAsSplits(ir::Function& fn, std::set<const ir::Node*>& erase) {
    struct Part {
      int64_t start, end;
      ir::Node* slice;
    };
    // (value, axis) -> the slices cutting that axis alone; position of the first one.
    std::map<std::pair<ir::Value*, int64_t>, std::vector<Part>> cuts;
    std::map<const ir::Node*, size_t> order;
    for (size_t i = 0; i < fn.nodes().size(); ++i) {
      ir::Node* n = fn.nodes()[i].get();
      order[n] = i;
      if (n->op() != "slice" || n->num_inputs() != 1 || n->num_outputs() != 1) continue;
      const ir::Shape& xs = n->input(0)->type().shape;
      absl::StatusOr<std::vector<int64_t>> st = n->GetInts("starts");
      absl::StatusOr<std::vector<int64_t>> en = n->GetInts("ends");
      absl::StatusOr<std::vector<int64_t>> sp = n->GetInts("steps");
      if (!st.ok() || !en.ok() || !sp.ok() || st->size() != xs.size() ||
          en->size() != xs.size() || sp->size() != xs.size()) {
        continue;
      }
      int64_t axis = -1;
      int64_t start = 0, end = 0;
      bool ok = true;
      for (size_t a = 0; a < xs.size() && ok; ++a) {
        const int64_t dim = xs[a];
        auto norm = [dim](int64_t v) { return std::clamp(v < 0 ? v + dim : v, int64_t{0}, dim); };
        const int64_t b = norm((*st)[a]), e = norm((*en)[a]);
        ok = (*sp)[a] == 1;
        if (!ok || (b == 0 && e == dim)) continue;
        ok = axis < 0 && b < e;
        axis = static_cast<int64_t>(a);
        start = b;
        end = e;
      }
      if (!ok || axis < 0) continue;
      cuts[{n->input(0), axis}].push_back({start, end, n});
    }
    bool changed = false;
    for (auto& [key, parts] : cuts) {
      const auto [x, axis] = key;
      if (parts.size() < 2 || parts.size() > 16) continue;
      // A chain of parts from 0 to the axis' end (depth-first over the parts; other slices of
      // the axis, overlapping the chain, stay slices).
      const int64_t dim = x->type().shape[axis];
      std::vector<Part> chain;
      std::function<bool(int64_t)> extend = [&](int64_t at) {
        if (at == dim) return chain.size() >= 2;
        for (const Part& p : parts) {
          if (p.start != at) continue;
          chain.push_back(p);
          if (extend(p.end)) return true;
          chain.pop_back();
        }
        return false;
      };
      if (!extend(0)) continue;
      parts = chain;
      // A result keeps its name (the interface): such slices stay.
      bool result = false;
      for (const Part& p : parts) {
        for (const ir::Value* r : fn.results()) result |= r == p.slice->output();
      }
      if (result) continue;
      ir::Node* first = parts.front().slice;
      std::vector<int64_t> sizes;
      std::vector<ir::TensorType> types;
      std::vector<std::string> names;
      for (const Part& p : parts) {
        sizes.push_back(p.end - p.start);
        types.push_back(p.slice->output()->type());
        names.push_back(p.slice->output()->name());
        if (order[p.slice] < order[first]) first = p.slice;
      }
      ir::Node* split = fn.AddNode("split", {x}, types, {{"axis", axis}, {"sizes", sizes}},
                                   first->loc(), names, /*before=*/first);
      for (size_t i = 0; i < parts.size(); ++i) {
        fn.ReplaceAllUsesWith(parts[i].slice->output(), split->output(i));
        erase.insert(parts[i].slice);
      }
      Count("slices.as-split");
      changed = true;
    }
    return changed;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateSlicesAsSplitPass() { return std::make_unique<SlicesAsSplitPass>(); }

}  // namespace ptc::passes
