// fuse-attention: scaled dot-product attention becomes one `attention` op
// (compiler/ir/ops_fused.cc; CPU kernel codegen/cpu/attention.cc, flash-style).
//
// Matched around each softmax over the last axis of a rank-4 float tensor [B,H,Tq,Tk]:
//   %s  = matmul(%q, %kt)                    q [B,H,Tq,D], kt [B,H,D,Tk]; each may be
//                                            mul(x, c) | div(x, c), c a splat constant that
//                                            joins the scale ("fused.scaled-operand"): torch's
//                                            export of F.scaled_dot_product_attention
//                                            scales q and k^T by sqrt(scale) each
//   %sc = mul(%s, c) | div(%s, c)            optional; c a splat constant -> scale (else 1)
//   %cp = mul(tanh(div(%sc, c)), c)          optional: Gemma 2's softcapping of the scaled
//                                            scores -> softcap=c ("fused.softcap"); the forms
//                                            of passes/matcher.h's MatchSoftcap: tanh alone
//                                            (c = 1), a scale merged into the division
//   %m  = where(%mask, -inf, %sc)            optional; bool mask, true = masked out
//       | where(%keep, %sc, -inf)            or true = kept (ptc's model builders): becomes
//                                            attention's mask as not(%keep); a finite fill
//                                            of at most -1e30 (transformers' GPT-2:
//                                            finfo(f32).min) counts as -inf when the mask is
//                                            a constant keeping a key in every row
//                                            ("fused.finite-fill")
//       | add(%sc, %bias)                    or an additive mask (either operand order)
//   %p  = softmax(%m) {axis=3}
//   %p' = where(not(equal(%p, %p)), 0, %p)   optional: torch's safe softmax (isnan(p) -> 0,
//                                            as torch.export decomposes SDPA), which zeroes
//                                            the rows a mask empties; taken without a mask,
//                                            with a constant one that keeps a key in every
//                                            row, or with an additive where(c, a, b) of finite
//                                            splats (no score becomes -inf: transformers'
//                                            padding masks) ("fused.safe-softmax"; else
//                                            "declined.safe-softmax"), where only non-finite
//                                            scores (NaN / inf inputs) could tell them apart
//   %d  = dropout(%p' [, %ctr]) {ratio, seed} optional -> dropout=ratio, seed, counter %ctr
//   %o  = matmul(%d, %v)                     v [B,H,Tk,Dv] -> o [B,H,Tq,Dv]
// Every intermediate must have one use. The head transposes around it are absorbed too when
// they are all there: q = transpose(q4, [0,2,1,3]), kt = transpose(k4, [0,2,3,1]),
// v = transpose(v4, [0,2,1,3]) with q4/k4/v4 in [B,T,H,D] and o's only use a transpose
// [0,2,1,3]: the op then takes layout="bthd" and reads the projection outputs in place (the
// transposes are left to dce). Otherwise layout="bhtd", with k = kt's transpose source when kt
// is transpose(k, [0,1,3,2]), else a new transpose node.
//
// Rank 3, heads merged into the batch ([B*H, Tq, Tk]: nn.MultiheadAttention as torch.onnx's
// TorchScript exporter writes it), is taken as one batch of N = B*H heads: q, k^T and v get a
// reshape to [1, N, ..] and the output one back ("fused.rank3"; a mask broadcasts as is). When
// q, v and the output are transpose(x, [1, 0, 2]) of [T, N, D] tensors and k^T is
// transpose(k, [1, 2, 0]) (nn.MultiheadAttention's heads), those [T, N, D] tensors are the
// bthd layout's [1, T, N, D]: read in place through reshapes (views), the transposes gone.
// A dropout between the softmax and the matmul (attention dropout, in a training step) joins
// the op: attributes dropout = its ratio and seed, and its counter, if any, as the last
// operand ("fused.dropout"; the op draws dropout's mask over the probabilities, so the fused
// and unfused steps drop the same elements); not when its keep-mask output is read
// ("declined.dropout-mask").
// Declines (counters): softmax not over the last axis of a rank-4 (or 3) float "declined.shape";
// an intermediate with other uses "declined.multi-use"; no matmul before/after the softmax
// "declined.no-matmul"; a non-constant scale "declined.scale"; a where without a -inf branch
// or with a non-bool condition "declined.mask".
// Run after fold-constants/simplify/cse (so that the scale and -inf are splat constants) and
// before fuse-elementwise (which would take the scaling multiply).
//
//   before:  %qh = transpose(%q4) {perm=[0, 2, 1, 3]} : f32[8,4,128,64]
//            %kt = transpose(%k4) {perm=[0, 2, 3, 1]} : f32[8,4,64,128]
//            %vh = transpose(%v4) {perm=[0, 2, 1, 3]} : f32[8,4,128,64]
//            %s = matmul(%qh, %kt) : f32[8,4,128,128]
//            %sc = mul(%s, %c) : f32[8,4,128,128]                       (%c = 0.125)
//            %w = where(%masked, %ninf, %sc) : f32[8,4,128,128]        (%ninf = -inf)
//            %p = softmax(%w) {axis=3} : f32[8,4,128,128]
//            %o = matmul(%p, %vh) : f32[8,4,128,64]
//            %ot = transpose(%o) {perm=[0, 2, 1, 3]} : f32[8,128,4,64]
//   after:   %ot = attention(%q4, %k4, %v4, %masked) {layout="bthd", scale=0.125}
//                  : f32[8,128,4,64]
//
// Then a "bhtd" attention whose q, k, v are all head transposes of [B,T,H,D] tensors and whose
// output goes through the transpose back reads them in place ("bthd", "fused.bthd-in-place"):
// the heads of a rotary embedding applied before the transpose, or of K / V whose repeat_kv
// was folded (below), which the main match cannot see through.
//
// Grouped-query attention (then, on every attention of the function): a k or v operand that
// is HF's repeat_kv of a tensor x with Hkv heads, exactly
//   %u = reshape(%x)  {shape = x's with a 1 after the head axis}     (Unsqueeze as imported)
//   %e = expand(%u)   {shape = the same with rep there}
//   %r = reshape(%e)  {shape = x's with Hkv * rep heads}
// (each kv head repeated rep times in place: repeat_interleave), is replaced by x: attention
// reads kv head h / rep for query head h (ops_fused.cc), the repeated K / V are never made
// and autodiff's dk / dv come out per kv head instead of being reduced over the group. The
// chain is left to dce. Counted "fused.gqa"; "declined.gqa-order" when the 1 is inserted
// before the head axis (the heads tiled, repeat not interleave: another head order) and
// "declined.gqa-shape" for any other reshape / expand / reshape that is not such a repeat;
// k and v are rewritten together or not at all ("declined.gqa-kv-mismatch": one is not such a
// repeat, or they repeat different head counts).
//   before:  %u = reshape(%k) {shape=[2, 2, 1, 128, 64]} : f32[2,2,1,128,64]
//            %e = expand(%u) {shape=[2, 2, 2, 128, 64]} : f32[2,2,2,128,64]
//            %k4 = reshape(%e) {shape=[2, 4, 128, 64]} : f32[2,4,128,64]
//            %o = attention(%q, %k4, %v4, %m) {scale=0.125} : f32[2,4,128,64]
//   after:   %o = attention(%q, %k, %v, %m) {scale=0.125} : f32[2,4,128,64]
#include <cmath>
#include <map>
#include <set>

#include "compiler/support/status.h"
#include "passes/matcher.h"
#include "passes/passes.h"

namespace ptc::passes {
namespace {

bool IsPerm(const ir::Node* n, const std::vector<int64_t>& perm) {
  if (n == nullptr || n->op() != "transpose") return false;
  absl::StatusOr<std::vector<int64_t>> p = n->GetInts("perm");
  return p.ok() && *p == perm;
}

// A constant bool mask (true = keep when `keep`, else true = masked out) whose every row of
// `tk` keys keeps at least one.
bool EveryRowKeepsAKey(const ir::Module& module, const ir::Value* mask, bool keep, int64_t tk) {
  std::optional<ir::Tensor> t = ConstantTensor(module, mask);
  if (!t.has_value() || t->shape().empty() || t->shape().back() != tk || tk == 0) return false;
  for (int64_t row = 0; row < t->num_elements() / tk; ++row) {
    bool any = false;
    for (int64_t j = 0; j < tk && !any; ++j) any = (t->GetDouble(row * tk + j) != 0) == keep;
    if (!any) return false;
  }
  return true;
}

// The where(not(equal(p, p)), 0, p) reading softmax `sm` (p) when that chain is p's only use
// besides itself; else nullptr.
ir::Node* SafeSoftmaxWhere(const Matcher& m, const ir::Node* sm) {
  const ir::Value* p = sm->output();
  ir::Node* eq = nullptr;
  ir::Node* where = nullptr;
  for (ir::Node* u : m.Users(p)) {
    if (u->op() == "equal" && u->input(0) == p && u->input(1) == p) {
      eq = u;
    } else if (u->op() == "where" && u->num_inputs() == 3 && u->input(2) == p) {
      where = u;
    } else {
      return nullptr;
    }
  }
  if (eq == nullptr || where == nullptr || m.NumUses(p) != 3 || m.IsResult(p)) return nullptr;
  ir::Node* neg = m.SingleUser(eq->output());
  if (neg == nullptr || neg->op() != "not" || m.IsResult(eq->output()) ||
      where->input(0) != neg->output() || m.NumUses(neg->output()) != 1 ||
      m.IsResult(neg->output())) {
    return nullptr;
  }
  std::optional<double> zero = m.Splat(where->input(1));
  if (!zero || *zero != 0.0 || where->output()->type() != p->type()) return nullptr;
  return where;
}

// Whether no row of the scores can be masked out entirely by `mask` (nullptr: none; a bool
// where-mask, true = kept when `keep`; else an additive mask, where a row of -inf empties it).
bool NoRowFullyMasked(const ir::Module& module, const ir::Value* mask, bool bool_mask,
                      bool keep, int64_t tk) {
  if (mask == nullptr) return true;
  if (bool_mask) return EveryRowKeepsAKey(module, mask, keep, tk);
  // where(c, a, b) of two finite splats (transformers' additive mask from a run-time padding
  // mask: where(keep, 0, finfo.min)): every score stays finite, no row is emptied.
  if (const ir::Node* w = mask->producer(); w != nullptr && w->op() == "where") {
    std::optional<double> a = SplatValue(module, w->input(1));
    std::optional<double> b = SplatValue(module, w->input(2));
    if (a && b && std::isfinite(*a) && std::isfinite(*b)) return true;
  }
  std::optional<ir::Tensor> t = ConstantTensor(module, mask);
  if (!t.has_value() || t->shape().empty() || t->shape().back() != tk || tk == 0) return false;
  for (int64_t row = 0; row < t->num_elements() / tk; ++row) {
    bool any = false;
    for (int64_t j = 0; j < tk && !any; ++j) any = std::isfinite(t->GetDouble(row * tk + j));
    if (!any) return false;
  }
  return true;
}

// Shape `s` with `value` inserted before position `at`.
ir::Shape Inserted(const ir::Shape& s, int at, int64_t value) {
  ir::Shape r = s;
  r.insert(r.begin() + at, value);
  return r;
}

class FuseAttentionPass : public FunctionPass {
 public:
  std::string_view name() const override { return "fuse-attention"; }

 private:
  // x when `r` (an attention's k or v, heads on axis ha) is repeat_kv(x) as in the file
  // comment; else nullptr, with a decline counted when r is a reshape of an expand.
  ir::Value* RepeatKvSource(const Matcher& m, ir::Value* r, int ha) {
    ir::Node* outer = m.Def(r).Op("reshape").node();
    ir::Node* ex = outer != nullptr ? m.Def(outer->input(0)).Op("expand").node() : nullptr;
    if (ex == nullptr) return nullptr;  // not a repeat at all
    ir::Node* inner = m.Def(ex->input(0)).Op("reshape").node();
    ir::Value* x = inner != nullptr ? inner->input(0) : nullptr;
    const ir::Shape& rs = r->type().shape;
    if (x == nullptr || x->type().dtype != r->type().dtype || x->type().rank() != 4 ||
        rs.size() != 4 || x->type().shape[ha] <= 0) {
      Count("declined.gqa-shape");
      return nullptr;
    }
    const ir::Shape& xs = x->type().shape;
    const ir::Shape& us = inner->output()->type().shape;
    const ir::Shape& es = ex->output()->type().shape;
    const int64_t hkv = xs[ha], rep = rs[ha] / hkv;
    ir::Shape want_r = xs;
    want_r[ha] = hkv * rep;
    const bool interleave = us == Inserted(xs, ha + 1, 1) && es == Inserted(xs, ha + 1, rep);
    if (rs[ha] % hkv != 0 || rs != want_r || !interleave) {
      // [.., 1, Hkv, ..] expanded to [.., rep, Hkv, ..]: each head's copies rep apart (tile).
      const bool tiled = us == Inserted(xs, ha, 1) && es == Inserted(xs, ha, rep) && rs == want_r;
      Count(tiled ? "declined.gqa-order" : "declined.gqa-shape");
      return nullptr;
    }
    return x;
  }

  // The grouped-query rewrite of the file comment on every attention of fn.
  bool FoldRepeatKv(const ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    bool changed = false;
    for (ir::Node* att : NodesWithOp(fn, "attention")) {
      absl::StatusOr<std::string> layout = att->GetString("layout", "bhtd");
      if (!layout.ok() || (*layout != "bhtd" && *layout != "bthd") || att->num_inputs() < 3) {
        continue;
      }
      const int ha = *layout == "bthd" ? 2 : 1;
      ir::Value* k = RepeatKvSource(m, att->input(1), ha);
      ir::Value* v = RepeatKvSource(m, att->input(2), ha);
      if (k == nullptr && v == nullptr) continue;
      // k and v must keep one head count: both repeats of the same factor, or neither.
      if (k == nullptr || v == nullptr || k->type().shape[ha] != v->type().shape[ha]) {
        Count("declined.gqa-kv-mismatch");
        continue;
      }
      att->set_input(1, k);
      att->set_input(2, v);
      Count("fused.gqa");
      changed = true;
    }
    return changed;
  }

  // The producer of v when it is a single-use `op` node, else nullptr.
  static ir::Node* SingleUseDef(const Matcher& m, const ir::Value* v, std::string_view op) {
    Match d = m.Def(v).Op(op).SingleUse();
    return d ? d.node() : nullptr;
  }

  absl::StatusOr<bool> RunOnFunction(ir::Module& module, ir::Function& fn) override {
    Matcher m(module, fn);
    const std::vector<ir::Node*> softmaxes = NodesWithOp(fn, "softmax");
    std::set<const ir::Node*> erase;
    std::map<ir::Value*, ir::Value*> negated;  // keep-mask -> its not()
    for (ir::Node* sm : softmaxes) {
      const ir::TensorType& st = sm->output()->type();
      absl::StatusOr<int64_t> axis = sm->GetInt("axis", -1);
      // Rank 3: heads merged into the batch, [B*H, Tq, Tk] (nn.MultiheadAttention's export),
      // lifted to [1, B*H, ...] below.
      const bool lifted = st.rank() == 3;
      if ((st.rank() != 4 && !lifted) || !axis.ok() ||
          (*axis != st.rank() - 1 && *axis != -1) ||
          (st.dtype != ir::DType::kF32 && st.dtype != ir::DType::kF64)) {
        Count("declined.shape");
        continue;
      }
      const int64_t tk = st.shape.back();
      std::vector<ir::Node*> absorbed = {sm};
      // torch's safe softmax (its SDPA decomposition, as torch.export writes it):
      // where(isnan(p), 0, p), isnan imported as not(equal(p, p)).
      ir::Node* safe = SafeSoftmaxWhere(m, sm);
      if (safe != nullptr) {
        absorbed.push_back(safe);
        absorbed.push_back(m.Def(safe->input(0)).node());                       // not
        absorbed.push_back(m.Def(m.Def(safe->input(0)).node()->input(0)).node());  // equal
      }
      // After: an optional dropout (attention dropout: the op's dropout attribute), then
      // matmul(p, v).
      ir::Value* probs = safe != nullptr ? safe->output() : sm->output();
      ir::Node* drop = m.SingleUser(probs);
      if (drop != nullptr && drop->op() == "dropout") {
        if (drop->num_outputs() > 1 && (m.NumUses(drop->output(1)) > 0 ||
                                        m.IsResult(drop->output(1)))) {
          Count("declined.dropout-mask");  // its keep-mask is read: the fused op has none
          continue;
        }
        probs = drop->output(0);
        absorbed.push_back(drop);
      } else {
        drop = nullptr;
      }
      ir::Node* pv = m.SingleUser(probs);
      if (pv == nullptr || pv->op() != "matmul" || pv->input(0) != probs) {
        Count(pv == nullptr ? "declined.multi-use" : "declined.no-matmul");
        continue;
      }
      absorbed.push_back(pv);
      // Before: optional mask, optional scale, matmul(q, kt).
      ir::Value* cur = sm->input(0);
      ir::Value* mask = nullptr;
      bool bad = false;
      bool keep_mask = false;  // where(mask, scores, -inf): true keeps; negated below
      ir::Node* where_node = nullptr;
      if (Match w = m.Def(cur).Op("where"); w) {
        ir::Node* wn = w.node();
        // The masked scores' fill: -inf, or a finite one of at most -1e30 (transformers'
        // GPT-2 fills with torch.finfo(f32).min), whose exp underflows to exactly 0 beside
        // any kept score: the same softmax unless a row masks out every key, so that form is
        // taken only with a constant mask that keeps a key in every row.
        bool finite_fill = false;
        auto is_fill = [&](ir::Value* x) {
          std::optional<double> fill = m.Splat(x);
          if (!fill || !(*fill < 0)) return false;
          if (std::isinf(*fill)) return true;
          finite_fill = *fill <= -1e30;
          return finite_fill;
        };
        const bool drop_form = is_fill(wn->input(1));
        const bool keep_form = !drop_form && is_fill(wn->input(2));
        if (!m.Def(cur).SingleUse() || (!drop_form && !keep_form) ||
            wn->input(0)->type().dtype != ir::DType::kBool) {
          Count("declined.mask");
          continue;
        }
        if (finite_fill && !EveryRowKeepsAKey(module, wn->input(0), keep_form, tk)) {
          Count("declined.mask-finite-fill");
          continue;
        }
        if (finite_fill) Count("fused.finite-fill");
        mask = wn->input(0);
        cur = wn->input(drop_form ? 2 : 1);
        keep_mask = keep_form;
        where_node = wn;
        absorbed.push_back(wn);
      } else if (Match a = m.Def(cur).Op("add"); a) {
        ir::Node* an = a.node();
        // The scores operand is the one produced by the scale, the cap (a tanh alone when it
        // is 1) or the matmul.
        int scores = -1;
        for (int i = 0; i < 2; ++i) {
          Match d = m.Def(an->input(i));
          if (d.node() != nullptr && (d.node()->op() == "mul" || d.node()->op() == "div" ||
                                      d.node()->op() == "matmul" || d.node()->op() == "tanh") &&
              an->input(i)->type() == st) {
            scores = i;
          }
        }
        if (scores < 0 || !m.Def(cur).SingleUse() ||
            an->input(1 - scores)->type().dtype != st.dtype) {
          Count("declined.mask");
          continue;
        }
        mask = an->input(1 - scores);
        cur = an->input(scores);
        absorbed.push_back(an);
      }
      // The safe softmax zeroes the rows a mask empties (NaN in softmax and in attention);
      // taken where no row can be emptied: no mask, or a constant one keeping a key per row.
      if (safe != nullptr && !NoRowFullyMasked(module, mask, where_node != nullptr, keep_mask,
                                               tk)) {
        Count("declined.safe-softmax");
        continue;
      }
      if (safe != nullptr) Count("fused.safe-softmax");
      double softcap = 0.0;
      double scale = 1.0;
      if (std::optional<SoftcapMatch> cap = MatchSoftcap(m, cur)) {
        softcap = cap->cap;
        scale = cap->factor;  // a scale merged into the cap's division, if any
        cur = cap->x;
        absorbed.insert(absorbed.end(), cap->nodes.begin(), cap->nodes.end());
      }
      for (std::string_view op : {"mul", "div"}) {
        const ConstantFactor f = ConstantFactorOf(m, cur, op);
        if (f.node == nullptr) continue;
        if (!f.factor) {
          bad = true;
          break;
        }
        scale *= *f.factor;
        cur = f.x;
        absorbed.push_back(f.node);
      }
      if (bad) {
        Count("declined.scale");
        continue;
      }
      ir::Node* qk = SingleUseDef(m, cur, "matmul");
      if (qk == nullptr) {
        Count(m.Def(cur).Op("matmul") ? "declined.multi-use" : "declined.no-matmul");
        continue;
      }
      absorbed.push_back(qk);
      ir::Value* q = qk->input(0);
      ir::Value* kt = qk->input(1);
      // A constant factor on q or on k^T joins the scale: torch.onnx writes
      // F.scaled_dot_product_attention as matmul(q * sqrt(s), k^T * sqrt(s)) (the scale split
      // over both operands, for range), as do models that scale q alone.
      for (ir::Value** operand : {&q, &kt}) {
        for (std::string_view op : {"mul", "div"}) {
          const ConstantFactor f = ConstantFactorOf(m, *operand, op);
          if (!f.factor || f.x->type() != (*operand)->type()) continue;
          scale *= *f.factor;
          *operand = f.x;
          absorbed.push_back(f.node);
          Count("fused.scaled-operand");
        }
      }
      ir::Value* v = pv->input(1);
      const int rank = lifted ? 3 : 4;
      if (q->type().rank() != rank || kt->type().rank() != rank || v->type().rank() != rank) {
        Count("declined.shape");
        continue;
      }
      ir::Node* qt = m.Def(q).node();
      ir::Node* ktt = m.Def(kt).node();
      ir::Node* vt = m.Def(v).node();
      ir::Node* out_t = m.SingleUser(pv->output());
      // Rank 3: [N, T, D] heads transposed from [T, N, D] tensors (nn.MultiheadAttention's
      // q / k^T / v and its output's transpose back) are [1, T, N, D] in the bthd layout.
      const bool bthd =
          lifted ? IsPerm(qt, {1, 0, 2}) && IsPerm(ktt, {1, 2, 0}) && IsPerm(vt, {1, 0, 2}) &&
                       IsPerm(out_t, {1, 0, 2})
                 : IsPerm(qt, {0, 2, 1, 3}) && IsPerm(ktt, {0, 2, 3, 1}) &&
                       IsPerm(vt, {0, 2, 1, 3}) && IsPerm(out_t, {0, 2, 1, 3});
      // Rank 3 -> 4 with a leading 1 (one batch of N heads; a mask broadcasts as is): a
      // reshape, which plan-memory makes a view.
      auto lift = [&](ir::Value* x, const ir::Node* before) {
        ir::TensorType t = x->type();
        t.shape.insert(t.shape.begin(), 1);
        return fn.AddNode("reshape", {x}, {t}, {{"shape", t.shape}}, qk->loc(),
                          {x->name() + ".4d"}, before)
            ->output();
      };
      if (lifted) Count("fused.rank3");
      ir::Node* root = pv;
      std::vector<ir::Value*> operands;
      if (bthd) {
        operands = {qt->input(0), ktt->input(0), vt->input(0)};
        if (lifted) {
          operands = {lift(operands[0], qk), lift(operands[1], qk), lift(operands[2], pv)};
        }
        absorbed.push_back(out_t);
        root = out_t;
      } else {
        if (lifted) {
          q = lift(q, qk);
          kt = lift(kt, qk);
          v = lift(v, pv);
          ktt = kt->producer();  // the reshape: k^T is transposed below
        }
        ir::Value* k = nullptr;
        if (IsPerm(ktt, {0, 1, 3, 2})) {
          k = ktt->input(0);
        } else {
          ir::TensorType ktype = kt->type();
          std::swap(ktype.shape[2], ktype.shape[3]);
          ir::Node* t = fn.AddNode("transpose", {kt}, {ktype},
                                   {{"perm", std::vector<int64_t>{0, 1, 3, 2}}}, qk->loc(),
                                   {kt->name() + "_t"}, /*before=*/qk);
          k = t->output();
        }
        operands = {q, k, v};
      }
      if (mask != nullptr && keep_mask) {
        // attention's bool mask is true = masked out: negate the keep-mask, once per mask value
        // (every layer shares the causal triangle); a constant mask folds when fold-constants
        // runs after this pass (the default pipelines do).
        auto it = negated.find(mask);
        if (it == negated.end()) {
          ir::Value* neg = fn.AddNode("not", {mask}, {mask->type()}, {}, where_node->loc(),
                                      {mask->name() + "_drop"}, /*before=*/where_node)
                               ->output();
          it = negated.emplace(mask, neg).first;
        }
        mask = it->second;
        Count("fused.keep-mask");
      }
      if (mask != nullptr) operands.push_back(mask);
      ir::AttrMap attrs;
      attrs["scale"] = scale;
      if (softcap > 0) attrs["softcap"] = softcap;
      if (drop != nullptr) {
        attrs["dropout"] = drop->GetFloat("ratio", 0.5).value_or(0.5);
        attrs["seed"] = drop->GetInt("seed", 0).value_or(0);
        if (drop->num_inputs() > 1) operands.push_back(drop->input(1));  // the counter
        Count("fused.dropout");
      }
      if (bthd) attrs["layout"] = std::string("bthd");
      ir::TensorType out_type = root->output()->type();
      if (lifted) out_type.shape.insert(out_type.shape.begin(), 1);
      ir::Node* att = fn.AddNode("attention", operands, {out_type}, std::move(attrs), qk->loc(),
                                 {root->output()->name()}, /*before=*/root);
      ir::Value* out = att->output();
      if (lifted) {  // back to [N, Tq, Dv]
        out = fn.AddNode("reshape", {out}, {root->output()->type()},
                         {{"shape", root->output()->type().shape}}, qk->loc(),
                         {root->output()->name()}, /*before=*/root)
                  ->output();
      }
      fn.ReplaceAllUsesWith(root->output(), out);
      erase.insert(absorbed.begin(), absorbed.end());
      Count(bthd ? "fused.bthd" : "fused.bhtd");
      if (mask != nullptr) Count("fused.mask");
      if (softcap > 0) Count("fused.softcap");
    }
    if (!erase.empty()) fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    const bool gqa = FoldRepeatKv(module, fn);
    const bool in_place = ReadHeadsInPlace(module, fn);
    return !erase.empty() || gqa || in_place;
  }

  // A "bhtd" attention whose q, k and v are each transpose(x, [0,2,1,3]) of a [B,T,H,D]
  // tensor and whose output's one use is the transpose back to [B,T,H,D] reads x in place
  // (layout "bthd"), as the main match does for the transposes it sees. This is how the heads
  // reach attention when something stands between the transposes and the scores: a rotary
  // embedding sunk before the transpose (match-rotary), K / V of fewer heads once their
  // repeat_kv is folded (FoldRepeatKv above). Counted "fused.bthd-in-place"; the input
  // transposes are left to dce. A K or V of one head, [B, 1, T, D] (multi-query attention:
  // GPT-BigCode / StarCoder's shared head), needs no transpose: it is the same memory as
  // [B, T, 1, D], which a reshape gives the bthd attention ("fused.bthd-one-kv-head").
  bool ReadHeadsInPlace(const ir::Module& module, ir::Function& fn) {
    Matcher m(module, fn);
    const std::vector<int64_t> heads = {0, 2, 1, 3};
    std::set<const ir::Node*> erase;
    for (ir::Node* att : NodesWithOp(fn, "attention")) {
      absl::StatusOr<std::string> layout = att->GetString("layout", "bhtd");
      if (!layout.ok() || *layout != "bhtd" || att->num_inputs() < 3 ||
          att->num_outputs() != 1) {
        continue;
      }
      bool all = true;
      std::vector<ir::Value*> operands;
      std::vector<int> one_head;  // k / v operands of one head, viewed as [B, T, 1, D]
      for (int i = 0; i < 3; ++i) {
        ir::Node* t = att->input(i)->producer();
        const ir::Shape& s = att->input(i)->type().shape;
        if (IsPerm(t, heads)) {
          operands.push_back(t->input(0));
        } else if (i > 0 && s.size() == 4 && s[1] == 1) {
          operands.push_back(att->input(i));
          one_head.push_back(i);
        } else {
          all = false;
          break;
        }
      }
      ir::Node* out = m.SingleUser(att->output());
      if (!all || !IsPerm(out, heads)) continue;
      for (int i : one_head) {
        const ir::TensorType& t = att->input(i)->type();
        ir::TensorType v{t.dtype, {t.shape[0], t.shape[2], 1, t.shape[3]}};
        operands[i] = fn.AddNode("reshape", {att->input(i)}, {v}, {{"shape", v.shape}},
                                 att->loc(), {att->input(i)->name() + ".bthd"}, /*before=*/att)
                          ->output();
      }
      if (!one_head.empty()) Count("fused.bthd-one-kv-head");
      for (size_t i = 3; i < att->num_inputs(); ++i) operands.push_back(att->input(i));
      ir::AttrMap attrs = att->attrs();
      attrs["layout"] = std::string("bthd");
      ir::Node* f = fn.AddNode("attention", operands, {out->output()->type()}, std::move(attrs),
                               att->loc(), {out->output()->name()}, /*before=*/att);
      fn.ReplaceAllUsesWith(out->output(), f->output());
      erase.insert(att);
      erase.insert(out);
      Count("fused.bthd-in-place");
    }
    if (erase.empty()) return false;
    fn.EraseNodesIf([&](const ir::Node& n) { return erase.count(&n) > 0; });
    return true;
  }
};

}  // namespace

std::unique_ptr<Pass> CreateFuseAttentionPass() { return std::make_unique<FuseAttentionPass>(); }

}  // namespace ptc::passes
