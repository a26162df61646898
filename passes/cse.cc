// cse: common subexpression elimination.
//
// Two nodes are the same computation when they have the same op, the same operands (the same
// SSA values, in order), the same attributes (floats compared bit for bit, tensors byte for
// byte) and the same output types. The later one is replaced by the earlier one (which, in a
// straight-line schedule, is defined before every use of the later one). Constants are
// compared by content: `constant {value}` and `constant {ref}` holding identical bytes merge.
// One forward sweep suffices: once a node's operands are canonical, so is its key.
//
// Preconditions / what it leaves alone:
//   - impure ops (OpDef::pure == false: assign) never merge (two dropouts merge only with the
//     same input, counter and seed: then they draw the same mask);
//   - attributes differing only in float bits (0.0 vs -0.0) do not merge;
//   - a node whose output is a function result under another name than the earlier node's
//     keeps that name: a result's name is part of the interface (ONNX output names; two
//     weights with one gradient, as Phi's attention and MLP output biases, keep `grad.<w>`
//     results of their own). It becomes identity(earlier output) ("merged.names-result"; an
//     alias, free in the memory plan), or stays where it is an identity already or has
//     several outputs ("kept.names-result").
// Run dce afterwards? Not needed: merged nodes are erased here. Run after fold-constants and
// simplify (they expose more identical nodes), before fusions.
//
//   before:  %a = exp(%x) : f32[4]            after:  %a = exp(%x) : f32[4]
//            %b = exp(%x) : f32[4]                    %c = add(%a, %a) : f32[4]
//            %c = add(%a, %b) : f32[4]
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

template <typename T>
bool BitsEqual(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

bool AttrEquals(const ir::AttrValue& a, const ir::AttrValue& b) {
  if (a.index() != b.index()) return false;
  return std::visit(
      [&](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        const T& y = std::get<T>(b);
        if constexpr (std::is_same_v<T, ir::Tensor>) {
          return x.BitEquals(y);
        } else if constexpr (std::is_same_v<T, double>) {
          return BitsEqual(x, y);
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          if (x.size() != y.size()) return false;
          for (size_t i = 0; i < x.size(); ++i) {
            if (!BitsEqual(x[i], y[i])) return false;
          }
          return true;
        } else {
          return x == y;
        }
      },
      a);
}

size_t HashBytes(const ir::Tensor& t) {
  if (t.nbytes() == 0) return 0;
  return std::hash<std::string_view>()(
      std::string_view(static_cast<const char*>(t.data()), t.nbytes()));
}

class CsePass : public Pass {
 public:
  std::string_view name() const override { return "cse"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    for (const auto& fn : module.functions()) {
      std::map<std::string, std::vector<ir::Node*>> seen;  // key -> candidates
      std::set<const ir::Node*> erased;
      for (const auto& owned : fn->nodes()) {
        ir::Node* n = owned.get();
        const ir::OpDef* def = ir::FindOp(n->op());
        if (def != nullptr && !def->pure) {
          Count("declined.impure");
          continue;
        }
        std::string key = Key(module, *n);
        std::vector<ir::Node*>& bucket = seen[key];
        ir::Node* same = nullptr;
        for (ir::Node* cand : bucket) {
          if (Same(module, *cand, *n)) {
            same = cand;
            break;
          }
        }
        if (same == nullptr) {
          bucket.push_back(n);
          continue;
        }
        if (NamesOtherResult(*fn, *n, *same)) {
          if (n->op() == "identity" || n->num_outputs() != 1) {
            Count("kept.names-result");
            continue;
          }
          // Other readers use the earlier output (their own merges cascade); the result
          // stays n's, now an identity of it.
          std::vector<ir::Value*> results = fn->results();
          fn->ReplaceAllUsesWith(n->output(), same->output());
          fn->set_results(std::move(results));
          n->set_op("identity");
          n->set_inputs({same->output()});
          n->mutable_attrs().clear();
          Count("merged.names-result");
          changed = true;
          continue;
        }
        for (size_t i = 0; i < n->num_outputs(); ++i) {
          fn->ReplaceAllUsesWith(n->output(i), same->output(i));
        }
        erased.insert(n);
        Count(IsConstantOp(*n) ? "merged.constants" : "merged");
      }
      if (!erased.empty()) {
        fn->EraseNodesIf([&](const ir::Node& n) { return erased.count(&n) > 0; });
        changed = true;
      }
    }
    return changed;
  }

 private:
  // Whether an output of n is a result of fn named otherwise than same's output.
  static bool NamesOtherResult(const ir::Function& fn, const ir::Node& n, const ir::Node& same) {
    for (size_t i = 0; i < n.num_outputs(); ++i) {
      const ir::Value* out = n.output(i);
      if (out->name() == same.output(i)->name()) continue;
      for (const ir::Value* r : fn.results()) {
        if (r == out) return true;
      }
    }
    return false;
  }

  // A hash-like key; equal nodes have equal keys, Same() confirms.
  static std::string Key(const ir::Module& module, const ir::Node& n) {
    std::string key = n.op();
    for (const ir::Value* out : n.outputs()) absl::StrAppend(&key, "|", out->type().ToString());
    if (IsConstantOp(n)) {
      std::optional<ir::Tensor> t = ConstantTensor(module, n.output());
      if (t) return absl::StrCat(key, "|#", HashBytes(*t));
      // A dangling ref: the verifier reports it; keep the node distinct.
      return absl::StrCat(key, "|@", reinterpret_cast<uintptr_t>(&n));
    }
    for (const ir::Value* in : n.inputs()) {
      absl::StrAppend(&key, "|", reinterpret_cast<uintptr_t>(in));
    }
    for (const auto& [name, value] : n.attrs()) {
      absl::StrAppend(&key, "|", name, "#", value.index());
    }
    return key;
  }

  static bool Same(const ir::Module& module, const ir::Node& a, const ir::Node& b) {
    if (a.op() != b.op() || a.inputs() != b.inputs() || a.num_outputs() != b.num_outputs()) {
      return false;
    }
    for (size_t i = 0; i < a.num_outputs(); ++i) {
      if (a.output(i)->type() != b.output(i)->type()) return false;
    }
    if (IsConstantOp(a)) {
      std::optional<ir::Tensor> ta = ConstantTensor(module, a.output());
      std::optional<ir::Tensor> tb = ConstantTensor(module, b.output());
      return ta && tb && ta->BitEquals(*tb);
    }
    if (a.attrs().size() != b.attrs().size()) return false;
    for (auto ia = a.attrs().begin(), ib = b.attrs().begin(); ia != a.attrs().end(); ++ia, ++ib) {
      if (ia->first != ib->first || !AttrEquals(ia->second, ib->second)) return false;
    }
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateCsePass() { return std::make_unique<CsePass>(); }

}  // namespace ptc::passes
