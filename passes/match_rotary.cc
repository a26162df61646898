// match-rotary: the exported rotary position embedding (rotate-half form) -> one `rotary` op
// (compiler/ir/ops_fused.cc).
//
// Two exported forms, for x [..., D] with h = D / 2, x1 = slice(x)[..., :h], x2 = slice(x)[..., h:]
// (each a slice of the last axis only, step 1, exactly one half):
//   1. half tables (models/llama.cc Rope, GPT-NeoX style), cos / sin broadcasting to [..., h]:
//        y = concat(x1 * cos - x2 * sin, x2 * cos + x1 * sin, axis=-1)
//      -> rotary(x, cos, sin)
//   2. full tables (Hugging Face's apply_rotary_pos_emb as torch.onnx exports it), cos / sin
//      broadcasting to [..., D] with equal halves (HF builds them as cat(freqs, freqs)):
//        y = x * cos + concat(-x2, x1, axis=-1) * sin        (rotate_half(x) * sin)
//      -> rotary(x, slice(cos)[..., :h], slice(sin)[..., :h]); the halves must be constants
//      (their equality is checked element by element); fold-constants folds the new slices.
//      Interleaved (GPT-J's rotate_every_two, tables repeat_interleave'd: equal pairs):
//        y = x * cos + reshape(concat(reshape(-x[..., 1::2]), reshape(x[..., ::2]))) * sin
//      (the two step-2 slices as [..., h, 1] side by side, back to [..., D])
//      -> rotary(x, cos[..., ::2], sin[..., ::2]) {interleaved=1} ("fused.interleaved").
// Every mul and add matches in either operand order; the chain's intermediates (the slices,
// products, the sub / add / neg and rotate_half's concat) must each have one use (x1 and x2
// two, both in the chain), so nothing computed is lost.
//
// Run before autodiff (compiler/driver/driver.cc's pre-autodiff clean-up, after match-gelu):
// the backward is then one rotary {inverse=1} per rotation instead of slice_grad / concat
// split / reduce chains, and the step keeps no half-size products. Also in the default
// inference pipeline (the KV-cache decoder's rules take rotary: passes/kv_cache_rules.cc).
// f32 / f64 only: an f16 / bf16 chain rounds after every op, one rotary does not.
// When x is a transpose that keeps the last axis (Llama's [B,T,H,D] -> [B,H,T,D] head
// transpose) read by nothing else, the rotation is applied before it and the transpose after
// ("fused.before-transpose"; the tables transposed alike, constants folded): fuse-attention then
// sees head transposes next to the attention and has it read the heads in place.
// A rotary node made elsewhere (the importer's ONNX RotaryEmbedding, on x after the head
// transpose) moves before such a transpose the same way ("moved.before-transpose").
// Partial rotation (GPT-NeoX, Phi: rotary on the first R of each head's D channels, the rest
// passed through): concat(rotary(slice(x)[..., :R]), slice(x)[..., R:]) on the last axis, after
// the matches above (or the importer's RotaryEmbedding on such a slice), becomes one
// rotary(x) {rotary_dim=R} ("fused.partial"), which then moves before x's head transpose as
// above: the attention reads Phi's heads in place too.
// Counters: "fused", "fused.full-tables"; declines "declined.<why>": "multi-use", "dtype",
// "not-half-slice" (a slice that is not exactly one half of the last axis), "halves" (x1 / x2
// in the wrong places: a sign or the halves swapped), "tables" (cos / sin differ between the
// products or do not broadcast), "tables-not-constant" / "tables-halves-differ" (form 2).
//
//   before:  %x1 = slice(%x) {ends=[2, 4, 128, 32], starts=[0, 0, 0, 0], ...} : f32[2,4,128,32]
//            %x2 = slice(%x) {ends=[2, 4, 128, 64], starts=[0, 0, 0, 32], ...} : f32[2,4,128,32]
//            %a = mul(%x1, %cos) ; %b = mul(%x2, %sin) ; %o1 = sub(%a, %b)
//            %c = mul(%x2, %cos) ; %d = mul(%x1, %sin) ; %o2 = add(%c, %d)
//            %y = concat(%o1, %o2) {axis=3} : f32[2,4,128,64]
//   after:   %y = rotary(%x, %cos, %sin) : f32[2,4,128,64]       (%cos, %sin: f32[128,32])
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

// A slice of exactly one half of x's last axis (every other axis whole, steps 1).
struct Half {
  ir::Value* x = nullptr;
  int which = -1;  // 0: [..., :h], 1: [..., h:]
  ir::Node* node = nullptr;
};

// A slice of x's last axis alone (every other axis whole): x, the node and its last-axis
// start, end and step.
struct LastAxisSlice {
  ir::Value* x = nullptr;
  ir::Node* node = nullptr;
  int64_t start = 0, end = 0, step = 1;
};

std::optional<LastAxisSlice> LastAxisSliceOf(const ir::Value* v) {
  ir::Node* s = v->producer();
  if (s == nullptr || s->op() != "slice" || s->num_inputs() != 1) return std::nullopt;
  ir::Value* x = s->input(0);
  const ir::Shape& shape = x->type().shape;
  absl::StatusOr<std::vector<int64_t>> starts = s->GetInts("starts");
  absl::StatusOr<std::vector<int64_t>> ends = s->GetInts("ends");
  absl::StatusOr<std::vector<int64_t>> steps = s->GetInts("steps");
  if (!starts.ok() || !ends.ok() || !steps.ok() || shape.empty()) return std::nullopt;
  const size_t r = shape.size();
  if (starts->size() != r || ends->size() != r || steps->size() != r) return std::nullopt;
  for (size_t i = 0; i + 1 < r; ++i) {
    if ((*starts)[i] != 0 || (*ends)[i] != shape[i] || (*steps)[i] != 1) return std::nullopt;
  }
  return LastAxisSlice{x, s, starts->back(), ends->back(), steps->back()};
}

// Exactly one half of x's last axis: [..., :h] (which 0) or [..., h:] (which 1), step 1.
std::optional<Half> HalfOf(const ir::Value* v) {
  std::optional<LastAxisSlice> s = LastAxisSliceOf(v);
  if (!s) return std::nullopt;
  const int64_t d = s->x->type().shape.back(), h = d / 2;
  if (d % 2 != 0 || d == 0 || s->step != 1) return std::nullopt;
  if (s->start == 0 && s->end == h) return Half{s->x, 0, s->node};
  if (s->start == h && s->end == d) return Half{s->x, 1, s->node};
  return std::nullopt;
}

// Every other element of x's last axis from 0 (which 0) or 1 (which 1): GPT-J's pairs.
std::optional<Half> StepHalfOf(const ir::Value* v) {
  std::optional<LastAxisSlice> s = LastAxisSliceOf(v);
  if (!s) return std::nullopt;
  const int64_t d = s->x->type().shape.back();
  if (d % 2 != 0 || d == 0 || s->step != 2 || s->end < d - 1 || (s->start != 0 && s->start != 1) ||
      v->type().shape.back() != d / 2) {
    return std::nullopt;
  }
  return Half{s->x, static_cast<int>(s->start), s->node};
}

bool LastAxis(const ir::Node& concat) {
  absl::StatusOr<int64_t> axis = concat.GetInt("axis");
  const int64_t r = concat.output()->type().rank();
  return axis.ok() && r > 0 && (*axis == r - 1 || *axis == -1);
}

class MatchRotaryPass : public FunctionPass {
 public:
  std::string_view name() const override { return "match-rotary"; }

 private:
  // A matched rotation: what the rotary node reads and the nodes it replaces.
  struct Found {
    ir::Value* x = nullptr;
    ir::Value* cos = nullptr;
    ir::Value* sin = nullptr;
    bool full_tables = false;
    bool interleaved = false;  // GPT-J's pairs (2i, 2i + 1)
    std::vector<ir::Node*> chain;
  };

  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    std::vector<std::pair<ir::Node*, Found>> found;
    for (ir::Node* c : NodesWithOp(fn, "concat")) {
      std::string why;
      std::optional<Found> f = MatchHalfTables(m, c, why);
      if (f) {
        found.emplace_back(c, std::move(*f));
      } else if (!why.empty()) {
        Count("declined." + why);
      }
    }
    for (ir::Node* a : NodesWithOp(fn, "add")) {
      std::string why;
      std::optional<Found> f = MatchFullTables(m, a, why);
      if (f) {
        found.emplace_back(a, std::move(*f));
      } else if (!why.empty()) {
        Count("declined." + why);
      }
    }
    // rotary nodes made elsewhere (the importer's RotaryEmbedding of opset 23, on x after the
    // head transpose): the same move before the transpose.
    for (ir::Node* rn : NodesWithOp(fn, "rotary")) {
      if (rn->GetInt("inverse", 0).value_or(1) != 0) continue;
      Found f;
      f.x = rn->input(0);
      f.cos = rn->input(1);
      f.sin = rn->input(2);
      f.chain = {rn};
      std::optional<std::vector<int64_t>> perm = SinkableTranspose(m, f);
      if (!perm) continue;
      fn.ReplaceAllUsesWith(rn->output(),
                            RotateBeforeTranspose(fn, rn, f, *perm, rn->attrs())->output());
      erase.insert(rn);
      Count("moved.before-transpose");
    }
    for (auto& [root, f] : found) {
      bool overlap = false;  // a node claimed by an earlier match (not expected)
      for (ir::Node* n : f.chain) overlap |= erase.count(n) > 0;
      if (overlap) continue;
      if (f.full_tables) {
        // The first half of each table (equal to the second, checked), or every other entry
        // (interleaved: equal pairs): slices of constants, folded by the fold-constants after
        // this pass.
        f.cos = HalfTable(fn, f.cos, root, f.interleaved);
        f.sin = HalfTable(fn, f.sin, root, f.interleaved);
      }
      ir::AttrMap attrs;
      if (f.interleaved) attrs["interleaved"] = int64_t{1};
      ir::Node* r = nullptr;
      if (std::optional<std::vector<int64_t>> perm = SinkableTranspose(m, f)) {
        r = RotateBeforeTranspose(fn, root, f, *perm, attrs);
        Count("fused.before-transpose");
      } else {
        r = fn.AddNode("rotary", {f.x, f.cos, f.sin}, {root->output()->type()}, attrs,
                       root->loc(), {root->output()->name()}, /*before=*/root);
      }
      fn.ReplaceAllUsesWith(root->output(), r->output());
      erase.insert(f.chain.begin(), f.chain.end());
      Count(f.interleaved ? "fused.interleaved" : f.full_tables ? "fused.full-tables" : "fused");
    }
    const bool changed = !erase.empty();
    if (changed) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return FoldPartial(module, fn) || changed;
  }

  // concat(rotary(slice(x)[..., :R]), slice(x)[..., R:]) -> rotary(x) {rotary_dim=R}.
  bool FoldPartial(ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    std::set<const ir::Node*> erase;
    for (ir::Node* c : NodesWithOp(fn, "concat")) {
      if (c->num_inputs() != 2 || !LastAxis(*c)) continue;
      ir::Node* rn = c->input(0)->producer();
      if (rn == nullptr || rn->op() != "rotary" || rn->has_attr("rotary_dim") ||
          rn->GetInt("inverse", 0).value_or(1) != 0 || erase.count(rn)) {
        continue;
      }
      std::optional<LastAxisSlice> lo = LastAxisSliceOf(rn->input(0));
      std::optional<LastAxisSlice> hi = LastAxisSliceOf(c->input(1));
      if (!lo || !hi || lo->x != hi->x || lo->step != 1 || hi->step != 1) continue;
      ir::Value* x = lo->x;
      const int64_t d = x->type().shape.back(), rdim = rn->input(0)->type().shape.back();
      // lo is [0, R) and hi [R, D).
      if (lo->start != 0 || hi->start != rdim || c->input(1)->type().shape.back() != d - rdim ||
          x->type().dtype != c->output()->type().dtype) {
        continue;
      }
      const ir::Value* reads[] = {rn->input(0), rn->output(), c->input(1)};
      bool single = true;
      for (const ir::Value* v : reads) single &= m.NumUses(v) == 1 && !m.IsResult(v);
      if (!single) {
        Count("declined.multi-use");
        continue;
      }
      ir::AttrMap attrs = rn->attrs();
      attrs["rotary_dim"] = rdim;
      Found f;
      f.x = x;
      f.cos = rn->input(1);
      f.sin = rn->input(2);
      f.chain = {c, rn, rn->input(0)->producer(), c->input(1)->producer()};
      ir::Node* r = nullptr;
      if (std::optional<std::vector<int64_t>> perm = SinkableTranspose(m, f)) {
        r = RotateBeforeTranspose(fn, c, f, *perm, attrs);
        Count("fused.before-transpose");
      } else {
        r = fn.AddNode("rotary", {x, f.cos, f.sin}, {c->output()->type()}, attrs, c->loc(),
                       {c->output()->name()}, /*before=*/c);
      }
      fn.ReplaceAllUsesWith(c->output(), r->output());
      erase.insert(f.chain.begin(), f.chain.end());
      Count("fused.partial");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }

  // Rotates the transpose's input (the tables transposed alike) and transposes the result: the
  // transpose then meets the attention, which reads the heads in place. Returns the transpose
  // (named as root's output, which it replaces).
  static ir::Node* RotateBeforeTranspose(ir::Function& fn, ir::Node* root, const Found& f,
                                         const std::vector<int64_t>& perm,
                                         ir::AttrMap attrs = {}) {
    ir::Value* x4 = f.x->producer()->input(0);
    ir::Value* cos4 = AlignTable(fn, f.cos, perm, x4->type().rank(), root);
    ir::Value* sin4 = f.sin == f.cos ? cos4 : AlignTable(fn, f.sin, perm, x4->type().rank(), root);
    ir::TensorType t4 = x4->type();
    t4.dtype = root->output()->type().dtype;
    ir::Node* r4 = fn.AddNode("rotary", {x4, cos4, sin4}, {t4}, std::move(attrs), root->loc(),
                              {root->output()->name() + ".rot"}, /*before=*/root);
    return fn.AddNode("transpose", {r4->output()}, {root->output()->type()}, {{"perm", perm}},
                      root->loc(), {root->output()->name()}, /*before=*/root);
  }

  // perm when x = transpose(x4, perm) keeps the rotated last axis in place and is read only by
  // the matched chain (the transpose then goes after the rotary instead).
  static std::optional<std::vector<int64_t>> SinkableTranspose(const Matcher& m, const Found& f) {
    const ir::Node* t = f.x->producer();
    if (t == nullptr || t->op() != "transpose" || m.IsResult(f.x)) return std::nullopt;
    absl::StatusOr<std::vector<int64_t>> perm = t->GetInts("perm");
    const int64_t r = f.x->type().rank();
    if (!perm.ok() || static_cast<int64_t>(perm->size()) != r || perm->back() != r - 1) {
      return std::nullopt;
    }
    const std::set<const ir::Node*> chain(f.chain.begin(), f.chain.end());
    for (const ir::Node* u : m.Users(f.x)) {
      if (!chain.count(u)) return std::nullopt;
    }
    return *perm;
  }

  // A table broadcasting against x = transpose(x4, perm) made to broadcast against x4 the same
  // way: padded to x's rank with leading 1s, then transposed by perm's inverse (constant tables
  // fold; a table with one dim besides the last becomes a reshape in effect).
  static ir::Value* AlignTable(ir::Function& fn, ir::Value* t, const std::vector<int64_t>& perm,
                               int64_t rank, const ir::Node* before) {
    ir::Shape padded = t->type().shape;
    padded.insert(padded.begin(), rank - static_cast<int64_t>(padded.size()), 1);
    std::vector<int64_t> inv(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int64_t>(i);
    ir::Shape out(padded.size());
    for (size_t i = 0; i < out.size(); ++i) out[i] = padded[inv[i]];
    ir::Value* v = t;
    if (padded != t->type().shape) {
      v = fn.AddNode("reshape", {v}, {ir::TensorType{t->type().dtype, padded}},
                     {{"shape", padded}}, before->loc(), {t->name() + ".r"}, before)
              ->output();
    }
    return fn.AddNode("transpose", {v}, {ir::TensorType{t->type().dtype, out}},
                      {{"perm", inv}}, before->loc(), {t->name() + ".t"}, before)
        ->output();
  }

  // Checks shared by both forms: dtype, and that rotary accepts x, cos, sin with the root's type.
  static bool Accepts(const ir::Node& root, const ir::TensorType& x, const ir::TensorType& table,
                      std::string& why) {
    if (x.dtype != ir::DType::kF32 && x.dtype != ir::DType::kF64) return why = "dtype", false;
    absl::StatusOr<std::vector<ir::TensorType>> t = ir::InferTypes("rotary", {x, table, table}, {});
    if (!t.ok() || (*t)[0] != root.output()->type()) return why = "tables", false;
    return true;
  }

  // Form 1 at `c`: concat(x1 * cos - x2 * sin, x2 * cos + x1 * sin) on the last axis.
  static std::optional<Found> MatchHalfTables(const Matcher& m, ir::Node* c, std::string& why) {
    if (c->num_inputs() != 2 || !LastAxis(*c)) return std::nullopt;  // not a candidate
    ir::Node* sub = c->input(0)->producer();
    ir::Node* add = c->input(1)->producer();
    if (sub == nullptr || add == nullptr) return std::nullopt;
    // Only concats of two products' combinations are candidates: anything else is not rope.
    const bool looks = (sub->op() == "sub" || sub->op() == "add") &&
                       (add->op() == "add" || add->op() == "sub");
    if (!looks || !IsProductOfHalf(sub) || !IsProductOfHalf(add)) return std::nullopt;
    if (sub->op() != "sub" || add->op() != "add") {
      // concat(x2 cos + x1 sin, x1 cos - x2 sin): the halves swapped; else a sign differs.
      return why = sub->op() == "add" && add->op() == "sub" ? "halves" : "sign", std::nullopt;
    }
    for (ir::Value* v : {c->input(0), c->input(1)}) {
      if (!m.Def(v).SingleUse()) return why = "multi-use", std::nullopt;
    }
    // sub(x1 * cos, x2 * sin): the products in this order (sub does not commute).
    std::optional<Product> p1 = ProductOf(m, sub->input(0), why);
    std::optional<Product> p2 = ProductOf(m, sub->input(1), why);
    if (!p1 || !p2) return std::nullopt;
    // add(x2 * cos, x1 * sin) in either order.
    std::optional<Product> p3 = ProductOf(m, add->input(0), why);
    std::optional<Product> p4 = ProductOf(m, add->input(1), why);
    if (!p3 || !p4) return std::nullopt;
    if (p3->half.which == 0) std::swap(p3, p4);
    const bool halves = p1->half.which == 0 && p2->half.which == 1 && p3->half.which == 1 &&
                        p4->half.which == 0;
    if (!halves) return why = "halves", std::nullopt;
    ir::Value* x = p1->half.x;
    for (const Product* p : {&*p2, &*p3, &*p4}) {
      if (p->half.x != x) return why = "halves", std::nullopt;
    }
    // x1 read by p1 and p4 only, x2 by p2 and p3 only (or, before cse, one slice per product).
    std::vector<ir::Node*> slices;
    for (auto [a, b] : {std::pair{&*p1, &*p4}, std::pair{&*p2, &*p3}}) {
      const bool shared = a->half.node == b->half.node;
      for (const Product* p : {a, b}) {
        const ir::Value* v = p->half.node->output();
        if (m.NumUses(v) != (shared ? 2 : 1) || m.IsResult(v)) {
          return why = "multi-use", std::nullopt;
        }
      }
      slices.push_back(a->half.node);
      if (!shared) slices.push_back(b->half.node);
    }
    if (p1->table != p3->table || p2->table != p4->table ||
        p1->table->type() != p2->table->type()) {
      return why = "tables", std::nullopt;
    }
    if (!Accepts(*c, x->type(), p1->table->type(), why)) return std::nullopt;
    Found f;
    f.x = x;
    f.cos = p1->table;
    f.sin = p2->table;
    f.chain = {c, sub, add, p1->mul, p2->mul, p3->mul, p4->mul};
    f.chain.insert(f.chain.end(), slices.begin(), slices.end());
    return f;
  }

  // Form 2 at `a`: add(x * cos, concat(-x2, x1) * sin), either order of the add and muls.
  std::optional<Found> MatchFullTables(const Matcher& m, ir::Node* a, std::string& why) {
    if (a->num_inputs() != 2) return std::nullopt;
    for (int i = 0; i < 2; ++i) {
      ir::Node* rot_mul = a->input(i)->producer();
      ir::Node* x_mul = a->input(1 - i)->producer();
      if (rot_mul == nullptr || x_mul == nullptr || rot_mul->op() != "mul" ||
          x_mul->op() != "mul") {
        continue;
      }
      for (int j = 0; j < 2; ++j) {
        ir::Node* rot = rot_mul->input(j)->producer();
        if (rot != nullptr && rot->op() == "reshape") {
          if (std::optional<Found> f = MatchInterleaved(m, a, rot_mul, x_mul, j, why)) return f;
          continue;
        }
        if (rot == nullptr || rot->op() != "concat" || rot->num_inputs() != 2 || !LastAxis(*rot)) {
          continue;
        }
        ir::Value* sin = rot_mul->input(1 - j);
        // concat(neg(x2), x1)
        ir::Node* neg = rot->input(0)->producer();
        std::optional<Half> x1 = HalfOf(rot->input(1));
        std::optional<Half> x2 = neg != nullptr && neg->op() == "neg" ? HalfOf(neg->input(0))
                                                                        : std::nullopt;
        if (!x1 || !x2) {
          if (neg != nullptr && neg->op() == "neg") why = "not-half-slice";
          continue;
        }
        if (x1->which != 0 || x2->which != 1 || x1->x != x2->x) return why = "halves", std::nullopt;
        ir::Value* x = x1->x;
        ir::Value* cos = Matcher::OtherOperand(*x_mul, x);
        if (cos == nullptr) return why = "halves", std::nullopt;
        return FullTables(m, *a, x, cos, sin, /*interleaved=*/false,
                          {a, rot_mul, x_mul, rot, neg, x1->node, x2->node}, why);
      }
    }
    return std::nullopt;
  }

  // Form 2, interleaved, with rot_mul's operand j the rotation
  //   reshape(concat(reshape(neg(x[..., 1::2])), reshape(x[..., ::2])) on a new last axis)
  // (GPT-J's rotate_every_two: torch.stack((-x2, x1), -1).flatten(-2)).
  static std::optional<Found> MatchInterleaved(const Matcher& m, ir::Node* a, ir::Node* rot_mul,
                                               ir::Node* x_mul, int j, std::string& why) {
    ir::Node* flat = rot_mul->input(j)->producer();
    ir::Node* st = flat->input(0)->producer();
    if (st == nullptr || st->op() != "concat" || st->num_inputs() != 2 || !LastAxis(*st) ||
        st->output()->type().shape.size() < 2 || st->output()->type().shape.back() != 2) {
      return std::nullopt;
    }
    ir::Node* u_neg = st->input(0)->producer();
    ir::Node* u_even = st->input(1)->producer();
    if (u_neg == nullptr || u_even == nullptr || u_neg->op() != "reshape" ||
        u_even->op() != "reshape") {
      return std::nullopt;
    }
    ir::Node* neg = u_neg->input(0)->producer();
    if (neg == nullptr || neg->op() != "neg") return std::nullopt;
    std::optional<Half> odd = StepHalfOf(neg->input(0));
    std::optional<Half> even = StepHalfOf(u_even->input(0));
    if (!odd || !even) return why = "not-half-slice", std::nullopt;
    if (odd->which != 1 || even->which != 0 || odd->x != even->x) {
      return why = "halves", std::nullopt;
    }
    ir::Value* x = even->x;
    // [..., h] -> [..., h, 1] each, [..., h, 2] -> x's shape.
    ir::Shape col = even->node->output()->type().shape;
    col.push_back(1);
    if (u_neg->output()->type().shape != col || u_even->output()->type().shape != col ||
        flat->output()->type().shape != x->type().shape) {
      return why = "halves", std::nullopt;
    }
    ir::Value* cos = Matcher::OtherOperand(*x_mul, x);
    ir::Value* sin = rot_mul->input(1 - j);
    if (cos == nullptr) return why = "halves", std::nullopt;
    return FullTables(m, *a, x, cos, sin, /*interleaved=*/true,
                      {a, rot_mul, x_mul, flat, st, u_neg, u_even, neg, odd->node, even->node},
                      why);
  }

  // Form 2's checks once the chain is found (a, the add, its root): every value of the chain
  // but a's output read once, tables of one type whose halves (interleaved: pairs) are equal
  // constants, and rotary accepting x with the half tables.
  static std::optional<Found> FullTables(const Matcher& m, const ir::Node& a, ir::Value* x,
                                         ir::Value* cos, ir::Value* sin, bool interleaved,
                                         std::vector<ir::Node*> chain, std::string& why) {
    for (const ir::Node* n : chain) {
      if (n != &a && !m.Def(n->output()).SingleUse()) return why = "multi-use", std::nullopt;
    }
    if (cos->type() != sin->type()) return why = "tables", std::nullopt;
    std::string table_why;
    if (!EqualHalves(m, cos, table_why, interleaved) ||
        !EqualHalves(m, sin, table_why, interleaved)) {
      return why = table_why, std::nullopt;
    }
    // The half tables' type (the slices are made only once it matches).
    ir::TensorType half = cos->type();
    half.shape.back() /= 2;
    if (!Accepts(a, x->type(), half, why)) return std::nullopt;
    Found f;
    f.x = x;
    f.cos = cos;
    f.sin = sin;
    f.full_tables = true;
    f.interleaved = interleaved;
    f.chain = std::move(chain);
    return f;
  }

  // A table [..., D] whose last-axis halves (interleaved: pairs 2i, 2i + 1) are equal: a constant
  // (checked) with an even last dim.
  static bool EqualHalves(const Matcher& m, const ir::Value* t, std::string& why,
                          bool pairs = false) {
    const ir::Shape& s = t->type().shape;
    if (s.empty() || s.back() % 2 != 0) return why = "tables", false;
    std::optional<ir::Tensor> c = ConstantTensor(m.module(), t);
    if (!c) return why = "tables-not-constant", false;
    const int64_t d = s.back(), h = d / 2, rows = c->num_elements() / std::max<int64_t>(d, 1);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < h; ++i) {
        const int64_t a = pairs ? 2 * i : i, b = pairs ? 2 * i + 1 : h + i;
        if (c->GetDouble(r * d + a) != c->GetDouble(r * d + b)) {
          return why = "tables-halves-differ", false;
        }
      }
    }
    return true;
  }

  // The first half of table t's last axis, or (interleaved) every other entry.
  static ir::Value* HalfTable(ir::Function& fn, ir::Value* t, const ir::Node* before,
                              bool interleaved) {
    const ir::Shape& s = t->type().shape;
    std::vector<int64_t> starts(s.size(), 0), ends = s, steps(s.size(), 1);
    if (interleaved) {
      steps.back() = 2;
    } else {
      ends.back() = s.back() / 2;
    }
    ir::TensorType half = t->type();
    half.shape.back() /= 2;
    return fn.AddNode("slice", {t}, {half},
                      {{"starts", starts}, {"ends", ends}, {"steps", steps}}, before->loc(),
                      {t->name() + ".half"}, before)
        ->output();
  }

  // mul(half-slice of x, table) in either operand order.
  struct Product {
    ir::Node* mul = nullptr;
    Half half;
    ir::Value* table = nullptr;
  };

  // Both operands of `n` products with a slice: a candidate (declines are counted from here).
  static bool IsProductOfHalf(const ir::Node* n) {
    for (int i = 0; i < 2 && n->num_inputs() == 2; ++i) {
      ir::Node* p = n->input(i)->producer();
      if (p == nullptr || p->op() != "mul" || p->num_inputs() != 2) return false;
      const ir::Node* a = p->input(0)->producer();
      const ir::Node* b = p->input(1)->producer();
      const bool slice_a = a != nullptr && a->op() == "slice";
      const bool slice_b = b != nullptr && b->op() == "slice";
      if (!slice_a && !slice_b) return false;
    }
    return n->num_inputs() == 2;
  }

  static std::optional<Product> ProductOf(const Matcher& m, ir::Value* v, std::string& why) {
    Match mul = m.Def(v).Op("mul").SingleUse();
    if (!mul) return why = mul.reason(), std::nullopt;
    ir::Node* n = mul.node();
    for (int i = 0; i < 2; ++i) {
      if (std::optional<Half> h = HalfOf(n->input(i))) {
        if (HalfOf(n->input(1 - i))) return why = "tables", std::nullopt;  // x1 * x2
        return Product{n, *h, n->input(1 - i)};
      }
    }
    return why = "not-half-slice", std::nullopt;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateMatchRotaryPass() { return std::make_unique<MatchRotaryPass>(); }

}  // namespace ptc::passes
