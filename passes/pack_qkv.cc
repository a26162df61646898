// pack-qkv: attention reads q, k and v in place from the QKV projection's output, and
// attention_grad writes one packed gradient, instead of a split and a concat per layer.
//
//   %q, %k, %v = split(%x) {axis=2, sizes=[C, C, C]}            %x: [B, T, 3C]
//   %q4 = reshape(%q) {shape=[B, T, H, D]}  (and %k4, %v4)       C = H * D
//   %o, %lse = attention(%q4, %k4, %v4[, %m]) {layout="bthd", ...}
//   %dq, %dk, %dv = attention_grad(%dy, %q4, %k4, %v4[, %m][, %o, %lse]) {layout="bthd", ...}
//   %dq3 = reshape(%dq) {shape=[B, T, C]}  (and %dk3, %dv3)
//   %dx = concat(%dq3, %dk3, %dv3) {axis=2}
// ->
//   %p = reshape(%x) {shape=[B, T, 3, H, D]}
//   %o, %lse = attention(%p, %p, %p[, %m]) {layout="bt3hd", ...}
//   %dp = attention_grad(%dy, %p, %p, %p[, %m][, %o, %lse]) {layout="bt3hd", ...}
//   %dx = reshape(%dp) {shape=[B, T, 3C]}
//
// The split and the concat each read and wrote the whole [B, T, 3C] tensor (GPT-2 small at
// 16 x 1024 in bf16: 2 x 151 MB per layer and step); the kernels now take the slots' strides.
// Conditions: an equal three-way split of the last axis whose parts are each read by one
// reshape to [B, T, H, D], those read only by bthd attention / attention_grad nodes as their
// q, k, v (in that order), head dim at most 128 (the tensor-core kernels' largest, so a packed
// bf16 node takes them); every attention_grad's gradients each reshaped back
// to [B, T, C] and concatenated in order on the last axis, and nothing else reading them. All
// or nothing per split. Forward-only functions (@eval, inference) qualify too. In the CUDA
// pipeline (after save-attention-stats); the CPU kernels copy the slots (a reference, not a
// speed-up). Counters: "packed", "declined".
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

constexpr int64_t kMaxHeadDim = 128;

// A copy of attention node `a` with inputs `ins` and layout `layout` in its place (the same
// output types and names; `a`'s uses moved to it). `a` is left for the caller to erase.
void ReplaceAttention(ir::Function& fn, ir::Node* a, std::vector<ir::Value*> ins,
                      const std::string& layout) {
  ir::AttrMap attrs = a->attrs();
  attrs["layout"] = layout;
  std::vector<ir::TensorType> types;
  std::vector<std::string> names;
  for (const ir::Value* o : a->outputs()) {
    types.push_back(o->type());
    names.push_back(o->name());
  }
  ir::Node* na = fn.AddNode("attention", std::move(ins), types, attrs, a->loc(), names,
                            /*before=*/a);
  for (size_t i = 0; i < a->num_outputs(); ++i) {
    fn.ReplaceAllUsesWith(a->output(i), na->output(i));
  }
}

class PackQkvPass : public FunctionPass {
 public:
  std::string_view name() const override { return "pack-qkv"; }

 private:
  using Uses = std::map<const ir::Value*, std::vector<std::pair<ir::Node*, int>>>;

  static const std::vector<std::pair<ir::Node*, int>>& UsesOf(const Uses& uses,
                                                               const ir::Value* v) {
    static const std::vector<std::pair<ir::Node*, int>> none;
    auto it = uses.find(v);
    return it == uses.end() ? none : it->second;
  }

  static bool IsResult(const ir::Function& fn, const ir::Value* v) {
    for (const ir::Value* r : fn.results()) {
      if (r == v) return true;
    }
    return false;
  }

  // The one user of `v` (not a result), if it is `op`.
  static ir::Node* OnlyUser(const ir::Function& fn, const Uses& uses, const ir::Value* v,
                            std::string_view op) {
    const auto& u = UsesOf(uses, v);
    if (u.size() != 1 || u[0].first->op() != op || IsResult(fn, v)) return nullptr;
    return u[0].first;
  }

  static int64_t LastAxis(const ir::Node& n, int64_t rank) {
    int64_t axis = n.GetInt("axis", 0).value_or(0);
    return axis < 0 ? axis + rank : axis;
  }

  struct Match {
    ir::Node* split = nullptr;
    ir::Node* reshape[3] = {};
    std::vector<ir::Node*> forwards;                      // attention
    std::vector<ir::Node*> grads;                         // attention_grad
    std::map<ir::Node*, ir::Node*> concat;                // grad -> its concat
    std::vector<ir::Node*> grad_reshapes;                 // dq/dk/dv -> [B, T, C]
    int64_t b = 0, t = 0, h = 0, d = 0;
  };

  bool MatchSplit(const ir::Function& fn, const Uses& uses, ir::Node* split, Match* m) {
    const ir::TensorType& x = split->input(0)->type();
    if (split->num_outputs() != 3 || x.rank() != 3 || LastAxis(*split, 3) != 2) return false;
    const int64_t c = x.shape[2] / 3;
    if (c <= 0 || x.shape[2] != 3 * c) return false;
    m->split = split;
    m->b = x.shape[0];
    m->t = x.shape[1];
    for (int i = 0; i < 3; ++i) {
      if (split->output(i)->type().shape != ir::Shape{m->b, m->t, c}) return false;
      ir::Node* r = OnlyUser(fn, uses, split->output(i), "reshape");
      if (r == nullptr) return false;
      const ir::Shape& s = r->output()->type().shape;
      if (s.size() != 4 || s[0] != m->b || s[1] != m->t || s[2] * s[3] != c) return false;
      if (i > 0 && s != m->reshape[0]->output()->type().shape) return false;
      m->reshape[i] = r;
      if (IsResult(fn, r->output())) return false;
    }
    m->h = m->reshape[0]->output()->type().shape[2];
    m->d = m->reshape[0]->output()->type().shape[3];
    if (m->d > kMaxHeadDim) return false;
    // Every reader of q4, k4, v4: attention / attention_grad with them as (q, k, v).
    std::set<ir::Node*> readers;
    for (int i = 0; i < 3; ++i) {
      for (const auto& [n, idx] : UsesOf(uses, m->reshape[i]->output())) readers.insert(n);
    }
    if (readers.empty()) return false;
    for (ir::Node* n : readers) {
      const int first = n->op() == "attention" ? 0 : n->op() == "attention_grad" ? 1 : -1;
      if (first < 0 || n->GetString("layout", "bhtd").value_or("") != "bthd") return false;
      if (static_cast<int>(n->num_inputs()) < first + 3) return false;
      for (int i = 0; i < 3; ++i) {
        if (n->input(first + i) != m->reshape[i]->output()) return false;
      }
      // Not also a mask or a trailing operand.
      for (size_t j = first + 3; j < n->num_inputs(); ++j) {
        for (int i = 0; i < 3; ++i) {
          if (n->input(j) == m->reshape[i]->output()) return false;
        }
      }
      if (first == 0) {
        m->forwards.push_back(n);
        continue;
      }
      // The gradients: each reshaped to [B, T, C], the three concatenated in order.
      if (n->num_outputs() != 3) return false;
      ir::Node* cat = nullptr;
      for (int i = 0; i < 3; ++i) {
        ir::Node* r = OnlyUser(fn, uses, n->output(i), "reshape");
        if (r == nullptr || r->output()->type().shape != ir::Shape{m->b, m->t, c}) return false;
        ir::Node* ci = OnlyUser(fn, uses, r->output(), "concat");
        if (ci == nullptr || (cat != nullptr && ci != cat)) return false;
        cat = ci;
        if (cat->num_inputs() != 3 || cat->input(i) != r->output()) return false;
        m->grad_reshapes.push_back(r);
      }
      if (LastAxis(*cat, 3) != 2) return false;
      m->grads.push_back(n);
      m->concat[n] = cat;
    }
    return true;
  }

  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& fn) override {
    std::vector<ir::Node*> splits = NodesWithOp(fn, "split");
    bool changed = false;
    for (ir::Node* split : splits) {
      const Uses uses = fn.ComputeUses();
      Match m;
      if (!MatchSplit(fn, uses, split, &m)) {
        // Only splits in front of attention count as declined.
        bool feeds_attention = false;
        for (int i = 0; i < static_cast<int>(split->num_outputs()); ++i) {
          for (const auto& [r, idx] : UsesOf(uses, split->output(i))) {
            for (const auto& [n, j] : UsesOf(uses, r->output())) {
              feeds_attention |= n->op() == "attention" || n->op() == "attention_grad";
            }
          }
        }
        if (feeds_attention) Count("declined");
        continue;
      }
      PTC_RETURN_IF_ERROR(Rewrite(fn, m));
      Count("packed");
      changed = true;
    }
    return changed;
  }

  absl::Status Rewrite(ir::Function& fn, const Match& m) {
    const ir::TensorType& x = m.split->input(0)->type();
    const ir::TensorType packed{x.dtype, {m.b, m.t, 3, m.h, m.d}};
    ir::Node* p = fn.AddNode("reshape", {m.split->input(0)}, {packed},
                             {{"shape", std::vector<int64_t>(packed.shape)}}, m.split->loc(),
                             {m.split->input(0)->name() + ".qkv"}, /*before=*/m.split);
    ir::Value* pv = p->output();
    std::set<const ir::Node*> erase = {m.split, m.reshape[0], m.reshape[1], m.reshape[2]};
    for (ir::Node* a : m.forwards) {
      std::vector<ir::Value*> ins = a->inputs();
      for (int i = 0; i < 3; ++i) ins[i] = pv;
      ReplaceAttention(fn, a, std::move(ins), "bt3hd");
      erase.insert(a);
    }
    for (ir::Node* g : m.grads) {
      std::vector<ir::Value*> ins = g->inputs();
      for (int i = 1; i <= 3; ++i) ins[i] = pv;
      ir::AttrMap attrs = g->attrs();
      attrs["layout"] = std::string("bt3hd");
      ir::Node* ng = fn.AddNode("attention_grad", ins, {packed}, attrs, g->loc(),
                                {g->output(0)->name() + ".qkv"}, /*before=*/g);
      ir::Node* cat = m.concat.at(g);
      ir::Node* back = fn.AddNode("reshape", {ng->output()}, {cat->output()->type()},
                                  {{"shape", std::vector<int64_t>(cat->output()->type().shape)}},
                                  cat->loc(), {cat->output()->name()}, /*before=*/cat);
      fn.ReplaceAllUsesWith(cat->output(), back->output());
      erase.insert(g);
      erase.insert(cat);
    }
    for (ir::Node* r : m.grad_reshapes) erase.insert(r);
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return absl::OkStatus();
  }
};

}  // namespace

std::unique_ptr<Pass> CreatePackQkvPass() { return std::make_unique<PackQkvPass>(); }

namespace {
class UnpackQkvPass : public FunctionPass {
 public:
  std::string_view name() const override { return "unpack-qkv"; }

 private:
  absl::StatusOr<bool> RunOnFunction(ir::Module&, ir::Function& fn) override {
    PTC_ASSIGN_OR_RETURN(const int n, UnpackQkv(fn));
    if (n > 0) Count("unpacked", n);
    return n > 0;
  }
};
}  // namespace

std::unique_ptr<Pass> CreateUnpackQkvPass() { return std::make_unique<UnpackQkvPass>(); }

absl::StatusOr<int> UnpackQkv(ir::Function& fn) {
  int unpacked = 0;
  std::set<const ir::Node*> erase;
  std::set<ir::Value*> packed_values;
  for (ir::Node* a : NodesWithOp(fn, "attention")) {
    if (a->GetString("layout", "bhtd").value_or("") != "bt3hd") continue;
    ir::Value* p = a->input(0);
    const ir::TensorType& pt = p->type();
    if (a->num_inputs() < 3 || a->input(1) != p || a->input(2) != p || pt.rank() != 5 ||
        pt.shape[2] != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unpack-qkv: attention ", a->output(0)->name(),
          " has layout bt3hd but not one [B, T, 3, H, D] operand as its q, k and v"));
    }
    const int64_t b = pt.shape[0], t = pt.shape[1], h = pt.shape[3], d = pt.shape[4];
    const ir::TensorType x3{pt.dtype, {b, t, 3 * h * d}};
    ir::Value* x = nullptr;
    if (ir::Node* r = p->producer(); r != nullptr && r->op() == "reshape" &&
                                     r->input(0)->type() == x3) {
      x = r->input(0);
    } else {
      x = fn.AddNode("reshape", {p}, {x3}, {{"shape", std::vector<int64_t>(x3.shape)}}, a->loc(),
                     {p->name() + ".bt3c"}, /*before=*/a)
              ->output();
    }
    const ir::TensorType part{pt.dtype, {b, t, h * d}};
    ir::Node* split = fn.AddNode("split", {x}, {part, part, part},
                                 {{"axis", int64_t{2}},
                                  {"sizes", std::vector<int64_t>{h * d, h * d, h * d}}},
                                 a->loc(),
                                 {p->name() + ".q", p->name() + ".k", p->name() + ".v"},
                                 /*before=*/a);
    std::vector<ir::Value*> ins = a->inputs();
    for (int i = 0; i < 3; ++i) {
      const ir::TensorType four{pt.dtype, {b, t, h, d}};
      ins[i] = fn.AddNode("reshape", {split->output(i)}, {four},
                          {{"shape", std::vector<int64_t>(four.shape)}}, a->loc(),
                          {split->output(i)->name() + "4"}, /*before=*/a)
                   ->output();
    }
    ReplaceAttention(fn, a, std::move(ins), "bthd");
    erase.insert(a);
    packed_values.insert(p);
    ++unpacked;
  }
  if (unpacked == 0) return 0;
  fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
  // The packed reshapes that nothing reads any more.
  auto uses = fn.ComputeUses();
  std::set<const ir::Node*> dead;
  for (ir::Value* p : packed_values) {
    bool result = false;
    for (const ir::Value* r : fn.results()) result |= r == p;
    if (!result && uses[p].empty() && p->producer() != nullptr) dead.insert(p->producer());
  }
  fn.EraseNodesIf([&](const ir::Node& n) { return dead.count(&n) > 0; });
  return unpacked;
}

}  // namespace ptc::passes
