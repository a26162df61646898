// simplify: local algebraic clean-ups of shape ops, mostly leftovers of ONNX import and of
// constant folding of shape subgraphs.
//
//   reshape(reshape(x))            -> reshape(x)          (the outer target shape)
//   reshape(x) to x's shape        -> x
//   transpose(transpose(x, p), q)  -> transpose(x, p∘q)   (and x when p∘q is the identity)
//   transpose(x) {perm=identity}   -> x
//   reshape(transpose(reshape(x))), the inner reshape merging runs of x's dims and the outer
//   one splitting the permuted runs back
//                                  -> transpose(x)        (the runs' dims permuted: torch.export's
//                                                          batched k.transpose(-1, -2))
//   identity(x)                    -> x
//   expand(x) to x's shape         -> x
//   cast(x) {to=x's dtype}         -> x
//   split(x) with one output       -> x
//   slice(x) to x's shape, steps 1 -> x
//   concat(x) with one operand     -> x
//   concat(..., e, ...), e with no elements
//                                  -> concat of the others (then x when one is left)
//   mul(x, 1), mul(1, x), div(x, 1) -> x                  (a constant of ones that does not
//                                                          broadcast x: exact, NaN and -0 too;
//                                                          e.g. the unit loss gradient's scale)
//   gemm(a, b, c) {alpha=1, beta=1, trans_a=0}, c a bias ([N] or [1, N])
//                                  -> add(matmul(a, b | transpose(b)), c)
//                                                         (ONNX Gemm as torch exports addmm /
//                                                          nn.Linear, e.g. transformers' GPT-2
//                                                          Conv1D: the form the fusions take,
//                                                          fuse-matmul-bias makes it one
//                                                          fused_matmul with its bias)
//   reshape(matmul(reshape(x), w)), 2-D operands, back to x's rows
//                                  -> matmul(x, w)        (torch's mm on x.view(-1, K): the
//                                                          importer's Gemm without a bias)
//   slice(matmul(x, w)), w 2-D, the slice keeping every column and the product read only by
//   it                             -> matmul(slice(x), w) (the rows are sliced before they are
//                                                          computed: exact, fewer FLOPs; a
//                                                          causal LM's shifted loss,
//                                                          logits[:, :-1] as transformers
//                                                          writes it, then leaves the LM head
//                                                          next to its loss for
//                                                          fuse-linear-ce)
//   reshape / transpose(mul(x, c)), c a one-element splat, the product read only by it
//                                  -> mul(reshape / transpose(x), c)
//                                                         (the scale moves toward its reader:
//                                                          OPT's q scaling before the head view
//                                                          and transpose, which fuse-attention
//                                                          then takes into attention's scale)
//   split(transpose(x, perm)) {axis=a}, the transpose read only by the split
//                                  -> transpose(split(x) {axis=perm[a]}, perm) per part
//                                                         (GPT-NeoX's packed per-head q | k | v,
//                                                          [B, T, H, 3D] transposed to heads
//                                                          first: the same bytes moved, and the
//                                                          head transposes then meet rotary and
//                                                          attention, which read heads in place)
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
#include <functional>
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
      // Grouped transposes first: the reshape chains below would otherwise merge their inner
      // reshape into the one before it (repeat_kv's, for a grouped-query k^T) and hide them.
      for (size_t i = 0; i < fn->nodes().size(); ++i) {
        ir::Node* n = fn->nodes()[i].get();
        ir::Node* p = n->num_inputs() == 1 ? n->input(0)->producer() : nullptr;
        if (n->op() != "reshape" || p == nullptr || p->op() != "transpose") continue;
        PTC_ASSIGN_OR_RETURN(bool c, GroupedTranspose(*n, *p, erase));
        changed |= c;
      }
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
    if ((op == "reshape" || op == "transpose") && n.num_outputs() == 1 && p != nullptr &&
        p->op() == "mul" && !erase.count(p)) {
      return ScaleAfterShapeOp(fn, n, *p, erase);
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
    if (op == "gemm" && n.num_inputs() == 3 && n.num_outputs() == 1) {
      return GemmAsMatMulAdd(fn, n, erase);
    }
    if (op == "slice" && x->type() == n.output()->type()) {
      // Same shape with unit steps: every element in place (torch.export writes x[:, None] and
      // x[:, :] as such slices).
      PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, n.GetInts("steps"));
      if (std::all_of(steps.begin(), steps.end(), [](int64_t s) { return s == 1; })) {
        return Forward(fn, n, x, erase, "slice.noop");
      }
    }
    if (op == "slice" && p != nullptr && p->op() == "matmul" && !erase.count(p)) {
      return SliceBeforeMatMul(fn, n, *p, erase);
    }
    if (op == "matmul" && n.num_inputs() == 2 && n.num_outputs() == 1 && MatMulUnflattened(fn, n, erase)) {
      return true;
    }
    // Zero-size parts of a concat add nothing (Phi-3's rotary on the whole head leaves the
    // pass-through slice x[..., D:] empty): dropped, and a single part left forwards below.
    if (op == "concat" && n.num_inputs() > 1 && n.output()->type().num_elements() > 0) {
      std::vector<ir::Value*> parts;
      for (ir::Value* in : n.inputs()) {
        if (in->type().num_elements() > 0) parts.push_back(in);
      }
      if (parts.size() < n.num_inputs() && !parts.empty()) {
        n.set_inputs(parts);
        Count("concat.empty-part");
        if (parts.size() > 1) return true;
        x = parts[0];
      }
    }
    if ((op == "split" || op == "concat") && n.num_outputs() == 1 && n.num_inputs() == 1) {
      return Forward(fn, n, x, erase, op == "split" ? "split.single" : "concat.single");
    }
    if (op == "split" && n.num_inputs() == 1 && p != nullptr && p->op() == "transpose" &&
        !erase.count(p)) {
      return SplitBeforeTranspose(fn, n, *p, erase);
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

  // reshape(transpose(reshape(x), q)) where the inner reshape only merges runs of x's dims
  // into groups and the outer one splits the permuted groups back: transpose(x, P), P the
  // groups' dims in q's order. torch.export writes a batched k.transpose(-1, -2) of a
  // [B, H, T, D] tensor this way ([B*H, T, D], transpose [0, 2, 1], [B, H, D, T]).
  absl::StatusOr<bool> GroupedTranspose(ir::Node& n, ir::Node& t,
                                        std::set<const ir::Node*>& erase) {
    ir::Node* inner = t.input(0)->producer();
    if (inner == nullptr || inner->op() != "reshape" || erase.count(inner)) return false;
    const ir::Shape& xs = inner->input(0)->type().shape;
    const ir::Shape& zs = inner->output()->type().shape;
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> q, t.GetInts("perm"));
    if (q.size() != zs.size()) return false;
    // groups[j]: the dims of x merged into z's dim j.
    std::vector<std::vector<int64_t>> groups;
    size_t at = 0;
    for (int64_t z : zs) {
      std::vector<int64_t> g;
      int64_t prod = 1;
      while (at < xs.size() && (prod < z || g.empty())) {
        prod *= xs[at];
        g.push_back(static_cast<int64_t>(at++));
      }
      if (prod != z || g.empty()) return false;
      groups.push_back(std::move(g));
    }
    for (; at < xs.size(); ++at) {  // trailing unit dims join the last group
      if (xs[at] != 1 || groups.empty()) return false;
      groups.back().push_back(static_cast<int64_t>(at));
    }
    std::vector<int64_t> perm;
    ir::Shape shape;
    for (int64_t j : q) {
      if (j < 0 || j >= static_cast<int64_t>(groups.size())) return false;
      for (int64_t d : groups[j]) {
        perm.push_back(d);
        shape.push_back(xs[d]);
      }
    }
    if (shape != n.output()->type().shape) return false;
    n.set_op("transpose");
    n.set_inputs({inner->input(0)});
    n.mutable_attrs().clear();
    n.set_attr("perm", perm);
    Count("reshape.grouped-transpose");
    return true;
  }

  // A product n of a [M, K] by a weight ([K, N] after any transpose) whose only reader
  // reshapes it to [L..., N] with prod(L) = M: that reader and the [L..., K] operand the product
  // can be taken on instead (a's source when a flattens it, else a view of a, added before the
  // reader). {nullptr, a} when n's output is not read so.
  std::pair<ir::Node*, ir::Value*> Unflattened(ir::Function& fn, ir::Node& n,
                                               const std::set<const ir::Node*>& erase) {
    ir::Value* a = n.input(0);
    const ir::TensorType& y = n.output()->type();
    const auto readers = fn.ComputeUses()[n.output()];
    ir::Node* r = readers.size() == 1 ? readers.front().first : nullptr;
    if (r == nullptr || r->op() != "reshape" || erase.count(r) || y.rank() != 2 ||
        r->output()->type().rank() <= 2 || r->output()->type().shape.back() != y.shape[1] ||
        std::count(fn.results().begin(), fn.results().end(), n.output())) {
      return {nullptr, a};
    }
    const ir::Node* flatten = a->producer();
    ir::Value* src = flatten != nullptr && flatten->op() == "reshape" && !erase.count(flatten)
                         ? flatten->input(0)
                         : a;
    ir::Shape view = r->output()->type().shape;
    view.back() = a->type().shape[1];
    ir::Value* lhs = src->type().shape == view
                         ? src
                         : fn.AddNode("reshape", {src}, {ir::TensorType{a->type().dtype, view}},
                                      {{"shape", view}}, n.loc(), {a->name() + ".rows"}, r)
                               ->output();
    return {r, lhs};
  }

  // matmul(a, w) of 2-D operands read only by a reshape back to [L..., N] (the Gemm without a
  // bias of torch's addmm / mm on x.view(-1, K), as the importer writes it): the reshape becomes
  // matmul(x, w) on the [L..., K] rows (matmul.unflattened); the product then reads as a linear
  // layer on the activations (fusions, the KV-cache decoder's per-position rules).
  bool MatMulUnflattened(ir::Function& fn, ir::Node& n, std::set<const ir::Node*>& erase) {
    if (n.input(0)->type().rank() != 2 || n.input(1)->type().rank() != 2) return false;
    auto [unflatten, lhs] = Unflattened(fn, n, erase);
    if (unflatten == nullptr) return false;
    unflatten->set_op("matmul");
    unflatten->set_inputs({lhs, n.input(1)});
    unflatten->mutable_attrs().clear();
    erase.insert(&n);
    Count("matmul.unflattened");
    return true;
  }

  // gemm(a, b, c) with a bias c -> add(matmul(a, b'), c): the gemm node becomes the add (its
  // output keeps its name). When a is a flattening reshape of x [..., K] and the product's only
  // reader reshapes it back to [..., N] (torch's addmm on x.view(-1, K), as transformers'
  // Conv1D writes nn.Linear), the product is taken on x itself and the reshape back becomes
  // the add: the bias, residual and GELU fusions then see the GEMM's output directly.
  absl::StatusOr<bool> GemmAsMatMulAdd(ir::Function& fn, ir::Node& n,
                                       std::set<const ir::Node*>& erase) {
    PTC_ASSIGN_OR_RETURN(double alpha, n.GetFloat("alpha", 1.0));
    PTC_ASSIGN_OR_RETURN(double beta, n.GetFloat("beta", 1.0));
    PTC_ASSIGN_OR_RETURN(int64_t ta, n.GetInt("trans_a", 0));
    PTC_ASSIGN_OR_RETURN(int64_t tb, n.GetInt("trans_b", 0));
    ir::Value* a = n.input(0);
    ir::Value* b = n.input(1);
    ir::Value* c = n.input(2);
    const ir::TensorType& y = n.output()->type();
    const bool bias = y.rank() == 2 && (c->type().shape == ir::Shape{y.shape[1]} ||
                                        c->type().shape == ir::Shape{1, y.shape[1]});
    if (alpha != 1.0 || beta != 1.0 || ta != 0 || !bias || n.has_attr("dtype") ||
        a->type().dtype != y.dtype || b->type().dtype != y.dtype ||
        c->type().dtype != y.dtype || b->type().rank() != 2) {
      return false;
    }
    if (tb != 0) {
      ir::TensorType bt = b->type();
      std::swap(bt.shape[0], bt.shape[1]);
      b = fn.AddNode("transpose", {b}, {bt}, {{"perm", std::vector<int64_t>{1, 0}}}, n.loc(),
                     {b->name() + "_t"}, &n)
              ->output();
    }
    auto [unflatten, lhs] = Unflattened(fn, n, erase);
    ir::Node* at = unflatten != nullptr ? unflatten : &n;
    ir::Value* product = fn.AddNode("matmul", {lhs, b}, {at->output()->type()}, {}, n.loc(),
                                    {at->output()->name() + ".mm"}, at)
                             ->output();
    at->set_op("add");
    at->set_inputs({product, c});
    at->mutable_attrs().clear();
    if (unflatten != nullptr) {
      erase.insert(&n);  // its only reader is the add now
      Count("gemm.as-matmul-add.unflattened");
    }
    Count("gemm.as-matmul-add");
    return true;
  }

  // split(transpose(x, perm)) {axis=a} -> per part transpose(split(x) {axis=perm[a]}, perm):
  // the parts keep their names (now the transposes'); the old split and, with no other reader,
  // the transpose are erased.
  absl::StatusOr<bool> SplitBeforeTranspose(ir::Function& fn, ir::Node& n, ir::Node& t,
                                            std::set<const ir::Node*>& erase) {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> perm, t.GetInts("perm"));
    PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis", 0));
    const int64_t rank = t.output()->type().rank();
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank || static_cast<int64_t>(perm.size()) != rank) return false;
    if (!ReadOnce(fn, fn.ComputeUses(), t.output(), erase)) return false;
    ir::Value* x = t.input(0);
    std::vector<ir::TensorType> parts;
    for (const ir::Value* o : n.outputs()) {
      ir::TensorType pt = x->type();
      pt.shape[perm[axis]] = o->type().shape[axis];
      parts.push_back(pt);
    }
    ir::AttrMap attrs = n.attrs();
    attrs["axis"] = perm[axis];
    ir::Node* split = fn.AddNode("split", {x}, parts, attrs, n.loc(), {}, &n);
    for (size_t i = 0; i < n.num_outputs(); ++i) {
      ir::Node* tp = fn.AddNode("transpose", {split->output(i)}, {n.output(i)->type()},
                                {{"perm", perm}}, t.loc(), {n.output(i)->name() + ".t"}, &n);
      fn.ReplaceAllUsesWith(n.output(i), tp->output());
    }
    erase.insert(&n);
    erase.insert(&t);
    Count("split.before-transpose");
    return true;
  }

  // slice(matmul(x, w)) -> matmul(slice(x), w): the slice node becomes the matmul (its output
  // keeps its name) and reads a new slice of x with the same bounds on x's axes.
  absl::StatusOr<bool> SliceBeforeMatMul(ir::Function& fn, ir::Node& n, ir::Node& mm,
                                         const std::set<const ir::Node*>& erase) {
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
    // Readers this run already forwarded (a no-op cast in between, erased at the end) do not
    // count.
    if (!ReadOnce(fn, fn.ComputeUses(), mm.output(), erase)) {
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

  // reshape / transpose(mul(x, c)), c a scalar splat constant, the product read only by this
  // node, and n read (through more reshapes / transposes / scalar multiplies) by matmuls alone
  // -> mul(reshape / transpose(x), c): the scale moves to the product it scales (OPT's q scaling
  // before the head view and transpose: fuse-attention then takes it into attention's scale).
  // Not toward
  // anything else: a softcap's or a logit scale's multiplies stay next to the ops fuse-linear-ce
  // reads them with.
  bool ScaleAfterShapeOp(ir::Function& fn, ir::Node& n, ir::Node& mul,
                         const std::set<const ir::Node*>& erase) {
    if (mul.num_inputs() != 2) return false;
    int k = -1;  // the scalar's operand index
    for (int i = 0; i < 2; ++i) {
      const ir::Value* c = mul.input(i);
      if (c->type().num_elements() == 1 && SplatValue(*module_, c) &&
          !SplatValue(*module_, mul.input(1 - i))) {
        k = i;
      }
    }
    if (k < 0 || mul.input(1 - k)->type() != mul.output()->type() ||
        mul.input(k)->type().rank() > n.output()->type().rank()) {
      return false;
    }
    const auto uses = fn.ComputeUses();
    if (!ReadOnce(fn, uses, mul.output(), erase)) return false;
    std::function<bool(const ir::Value*, int)> to_matmul = [&](const ir::Value* v, int depth) {
      auto it = uses.find(v);
      if (depth > 8 || it == uses.end() || it->second.empty() ||
          std::count(fn.results().begin(), fn.results().end(), v)) {
        return false;
      }
      for (const auto& [user, slot] : it->second) {
        if (erase.count(user)) continue;
        // Through shape ops and other scalar multiplies (torch's SDPA export scales q again).
        const bool pass = user->op() == "reshape" || user->op() == "transpose" ||
                          (user->op() == "mul" && user->num_inputs() == 2 &&
                           SplatValue(*module_, user->input(1 - slot)) &&
                           user->input(1 - slot)->type().num_elements() == 1);
        if (!(user->op() == "matmul" || (pass && to_matmul(user->output(), depth + 1)))) {
          return false;
        }
      }
      return true;
    };
    if (!to_matmul(n.output(), 0)) return false;
    ir::Value* c = mul.input(k);
    ir::TensorType shaped = n.output()->type();
    ir::Node* moved = fn.AddNode(n.op(), {mul.input(1 - k)}, {shaped}, n.attrs(), n.loc(),
                                 {n.output()->name() + ".unscaled"}, &n);
    n.set_op("mul");
    n.set_inputs({moved->output(), c});
    n.mutable_attrs().clear();
    Count("scale.after-shape-op");
    return true;
  }

  // v is read by exactly one node this run has not erased (readers it already forwarded, a
  // no-op cast in between, do not count) and is not a result.
  template <typename Uses>
  static bool ReadOnce(const ir::Function& fn, const Uses& uses, const ir::Value* v,
                       const std::set<const ir::Node*>& erase) {
    auto it = uses.find(v);
    if (it == uses.end()) return false;
    const auto live = std::count_if(it->second.begin(), it->second.end(),
                                    [&](const auto& use) { return !erase.count(use.first); });
    return live == 1 && !std::count(fn.results().begin(), fn.results().end(), v);
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
