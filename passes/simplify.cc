// simplify: local algebraic clean-ups of shape ops, mostly leftovers of ONNX import and of
// constant folding of shape subgraphs.
//
//   reshape(reshape(x))            -> reshape(x)          (the outer target shape)
//   reshape(x) to x's shape        -> x
//   transpose(transpose(x, p), q)  -> transpose(x, p∘q)   (and x when p∘q is the identity)
//   transpose(x) {perm=identity}   -> x
//   identity(x)                    -> x
//   expand(x) to x's shape         -> x
//   cast(x) {to=x's dtype}         -> x
//   split(x) with one output       -> x
//   concat(x) with one operand     -> x
//   mul(x, 1), mul(1, x), div(x, 1) -> x                  (a constant of ones that does not
//                                                          broadcast x: exact, NaN and -0 too;
//                                                          e.g. the unit loss gradient's scale)
//   slice(matmul(x, w)), w 2-D, the slice keeping every column and the product read only by
//   it                             -> matmul(slice(x), w) (the rows are sliced before they are
//                                                          computed: exact, fewer FLOPs; a
//                                                          causal LM's shifted loss,
//                                                          logits[:, :-1] as transformers
//                                                          writes it, then leaves the LM head
//                                                          next to its loss for
//                                                          fuse-linear-ce)
//
// Preconditions: none beyond valid IR; a value is never replaced by one of another type (the
// pass checks, counter "declined.type-mismatch"). The inner node of a merged chain stays when
// it has other users; dce removes it otherwise, so run dce after simplify.
//
//   before:  %a = reshape(%x) {shape=[8,4]} : f32[8,4]     after:  %b = reshape(%x) {shape=[32]}
//            %b = reshape(%a) {shape=[32]} : f32[32]                    : f32[32]
//            %c = identity(%b) : f32[32]                              return %b
//            return %c
#include <algorithm>
#include <set>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

bool IsIdentityPerm(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

class SimplifyPass : public Pass {
 public:
  std::string_view name() const override { return "simplify"; }

  absl::StatusOr<bool> Run(ir::Module& module) override {
    bool changed = false;
    module_ = &module;
    for (const auto& fn : module.functions()) {
      std::set<const ir::Node*> erase;
      for (size_t i = 0; i < fn->nodes().size(); ++i) {
        ir::Node* n = fn->nodes()[i].get();
        PTC_ASSIGN_OR_RETURN(bool c, Simplify(*fn, *n, erase));
        changed |= c;
      }
      if (!erase.empty()) {
        fn->EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
      }
    }
    return changed;
  }

 private:
  // Replaces every use of n's output with `v` and erases n.
  bool Forward(ir::Function& fn, ir::Node& n, ir::Value* v, std::set<const ir::Node*>& erase,
               const char* counter) {
    if (v->type() != n.output()->type()) {
      Count("declined.type-mismatch");
      return false;
    }
    // A function result's name is part of the interface (ONNX output names, "grad.<weight>"
    // of training steps): such a node becomes identity(v), which keeps the name and which the
    // memory planner makes free (the output aliases v's buffer).
    for (const ir::Value* r : fn.results()) {
      if (r != n.output() || v->name() == r->name()) continue;
      if (n.op() == "identity" && n.input(0) == v) {
        Count("kept.names-result");
        return false;
      }
      n.set_op("identity");
      n.set_inputs({v});
      n.mutable_attrs().clear();
      Count(counter);
      return true;
    }
    fn.ReplaceAllUsesWith(n.output(), v);
    erase.insert(&n);
    Count(counter);
    return true;
  }

  absl::StatusOr<bool> Simplify(ir::Function& fn, ir::Node& n, std::set<const ir::Node*>& erase) {
    const std::string& op = n.op();
    if (n.num_inputs() < 1) return false;
    ir::Value* x = n.input(0);
    ir::Node* p = x->producer();
    if (op == "identity" && n.num_outputs() == 1) {
      return Forward(fn, n, x, erase, "identity");
    }
    if ((op == "reshape" || op == "expand") && x->type() == n.output()->type()) {
      return Forward(fn, n, x, erase, op == "reshape" ? "reshape.noop" : "expand.noop");
    }
    if (op == "reshape" && p != nullptr && p->op() == "reshape" && !erase.count(p)) {
      // The outer target shape is final; the inner reshape is skipped.
      n.set_input(0, p->input(0));
      Count("reshape.chain");
      if (p->input(0)->type() == n.output()->type()) {
        return Forward(fn, n, p->input(0), erase, "reshape.noop");
      }
      return true;
    }
    if (op == "cast" && n.num_outputs() == 1 && x->type() == n.output()->type()) {
      return Forward(fn, n, x, erase, "cast.noop");
    }
    if ((op == "mul" || op == "div") && n.num_inputs() == 2 && n.num_outputs() == 1) {
      for (int k : {1, 0}) {
        if (op == "div" && k == 0) break;  // 1 / x is not x
        ir::Value* other = n.input(1 - k);
        if (other->type() == n.output()->type() && IsOnes(n.input(k))) {
          return Forward(fn, n, other, erase, op == "mul" ? "mul.one" : "div.one");
        }
      }
    }
    if (op == "slice" && p != nullptr && p->op() == "matmul" && !erase.count(p)) {
      return SliceBeforeMatMul(fn, n, *p);
    }
    if ((op == "split" || op == "concat") && n.num_outputs() == 1 && n.num_inputs() == 1) {
      return Forward(fn, n, x, erase, op == "split" ? "split.single" : "concat.single");
    }
    if (op == "transpose") {
      PTC_ASSIGN_OR_RETURN(std::vector<int64_t> q, n.GetInts("perm"));
      if (IsIdentityPerm(q)) return Forward(fn, n, x, erase, "transpose.noop");
      if (p != nullptr && p->op() == "transpose" && !erase.count(p)) {
        PTC_ASSIGN_OR_RETURN(std::vector<int64_t> perm_p, p->GetInts("perm"));
        if (perm_p.size() != q.size()) return false;  // invalid IR; the verifier reports it
        // y = transpose(x, p): y[i] = x[p[i]]; z = transpose(y, q): z[j] = x[p[q[j]]].
        std::vector<int64_t> composed(q.size());
        for (size_t j = 0; j < q.size(); ++j) {
          if (q[j] < 0 || q[j] >= static_cast<int64_t>(perm_p.size())) return false;
          composed[j] = perm_p[q[j]];
        }
        Count("transpose.chain");
        if (IsIdentityPerm(composed)) return Forward(fn, n, p->input(0), erase, "transpose.noop");
        n.set_input(0, p->input(0));
        n.set_attr("perm", composed);
        return true;
      }
    }
    return false;
  }

  // slice(matmul(x, w)) -> matmul(slice(x), w): the slice node becomes the matmul (its output
  // keeps its name) and reads a new slice of x with the same bounds on x's axes.
  absl::StatusOr<bool> SliceBeforeMatMul(ir::Function& fn, ir::Node& n, ir::Node& mm) {
    ir::Value* x = mm.input(0);
    ir::Value* w = mm.input(1);
    const ir::TensorType& product = mm.output()->type();
    const int64_t rank = product.rank();
    if (w->type().rank() != 2 || x->type().rank() != rank || rank < 2) return false;
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, n.GetInts("starts"));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> ends, n.GetInts("ends"));
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, n.GetInts("steps"));
    if (static_cast<int64_t>(starts.size()) != rank || ends.size() != starts.size() ||
        steps.size() != starts.size()) {
      return false;  // invalid IR; the verifier reports it
    }
    // Every column is kept (the columns are w's), and the product has no other reader.
    if (starts.back() != 0 || ends.back() != product.shape.back() || steps.back() != 1) {
      return false;
    }
    if (fn.ComputeUses()[mm.output()].size() != 1 ||
        std::count(fn.results().begin(), fn.results().end(), mm.output())) {
      Count("declined.slice-multi-use");
      return false;
    }
    // x's last axis (the contraction) is kept whole.
    starts.back() = 0;
    ends.back() = x->type().shape.back();
    ir::TensorType rows = n.output()->type();
    rows.shape.back() = x->type().shape.back();
    ir::Node* sliced = fn.AddNode("slice", {x}, {ir::TensorType{x->type().dtype, rows.shape}},
                                  {{"starts", starts}, {"ends", ends}, {"steps", steps}},
                                  n.loc(), {x->name() + ".rows"}, &n);
    n.set_op("matmul");
    n.set_inputs({sliced->output(), w});
    n.mutable_attrs() = mm.attrs();
    Count("slice.before-matmul");
    return true;
  }

  // A float constant whose every element is 1.
  bool IsOnes(const ir::Value* v) const {
    const ir::Node* p = v->producer();
    if (p == nullptr || !IsConstantOp(*p) || !ir::IsFloat(v->type().dtype)) return false;
    std::optional<ir::Tensor> t = ConstantTensor(*module_, v);
    if (!t.has_value()) return false;
    for (int64_t i = 0; i < t->num_elements(); ++i) {
      if (t->GetDouble(i) != 1.0) return false;
    }
    return true;
  }

  const ir::Module* module_ = nullptr;
};

}  // namespace

std::unique_ptr<Pass> CreateSimplifyPass() { return std::make_unique<SimplifyPass>(); }

}  // namespace ptc::passes
