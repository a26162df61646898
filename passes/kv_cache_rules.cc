// The per-op rules of the KV-cache decoder builder (see kv_cache.cc for the picture): how each
// op maps the sequence axis s and the key axis k of its operands to its outputs, which
// position-independent operands are indexed at pos, and where the caches go.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "compiler/ir/ops.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"
#include "passes/kv_cache_internal.h"

namespace ptc::passes::internal {
namespace {

constexpr double kMaskedBelow = -1e9;  // additive masks: -inf or a large negative (finfo.min)

bool AllOf(const ir::Tensor& t, bool (*pred)(double)) {
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    if (!pred(t.GetDouble(i))) return false;
  }
  return true;
}
bool IsMaskedValue(double x) { return x <= kMaskedBelow; }
bool IsPositive(double x) { return x > 0; }

}  // namespace

bool MasksFuture(const ir::Tensor& t, int a, int b, const std::function<bool(double)>& masked) {
  const ir::Shape& shape = t.shape();
  std::vector<int64_t> stride(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) stride[i] = stride[i + 1] * shape[i + 1];
  for (int64_t e = 0; e < t.num_elements(); ++e) {
    const int64_t i = (e / stride[a]) % shape[a], j = (e / stride[b]) % shape[b];
    if (j > i && !masked(t.GetDouble(e))) return false;
  }
  return true;
}

int ReshapeAxis(const ir::Shape& from, int a, const ir::Shape& to) {
  int64_t before = 1, after = 1;
  for (int i = 0; i < a; ++i) before *= from[i];
  for (size_t i = a + 1; i < from.size(); ++i) after *= from[i];
  for (size_t j = 0; j < to.size(); ++j) {
    int64_t pb = 1, pa = 1;
    for (size_t i = 0; i < j; ++i) pb *= to[i];
    for (size_t i = j + 1; i < to.size(); ++i) pa *= to[i];
    if (pb == before && to[j] == from[a] && pa == after) return static_cast<int>(j);
  }
  return -1;
}

absl::Status DecoderBuilder::MapNode(const ir::Node& n) {
  if (!Positional(n, 0)) return Copy(n);
  const std::string& op = n.op();
  const ir::OpDef* def = ir::FindOp(op);
  if (op == "fused_elementwise" && n.has_attr("dropout_ratio")) {
    // Its mask is over the full sequence's element index, which the decoder does not have.
    return Error(&n, "has dropout (a training step's): decoders are built from inference plans");
  }
  if (def != nullptr && def->elementwise) return Elementwise(n);
  if (op == "rotary") {
    // Per position like an elementwise op: the cos / sin tables (broadcasting to x's half) are
    // indexed at pos, as the exported chain's products index them. The rotated (last) axis
    // must not be the sequence, and x must not be scores over the keys.
    const Info& x = InfoOf(n.input(0));
    if (x.k >= 0 || x.s == n.input(0)->type().rank() - 1 || InfoOf(n.input(1)).positional() ||
        InfoOf(n.input(2)).positional()) {
      return Error(&n, "rotates along the sequence axis or over keys, or its cos / sin tables "
                       "depend on the input");
    }
    return Elementwise(n);
  }
  if (op == "matmul") return MatMul(n);
  if (op == "fused_matmul") return FusedMatMul(n);
  if (op == "attention") return Attention(n);
  if (op == "layer_norm") return LayerNorm(n);
  if (op == "softmax" || op == "log_softmax") return Softmax(n);
  if (op.rfind("reduce_", 0) == 0) return Reduce(n);
  if (op == "reshape" || op == "expand") return Reshape(n);
  if (op == "transpose") return Transpose(n);
  if (op == "split" || op == "slice") return SplitSlice(n);
  if (op == "concat") return Concat(n);
  if (op == "gather") return Gather(n);
  return Error(&n, "has no KV-cache rule for this op on per-position values");
}

absl::Status DecoderBuilder::Elementwise(const ir::Node& n) {
  const int R = n.output()->type().rank();
  Info out;
  for (const ir::Value* in : n.inputs()) {
    const Info& x = InfoOf(in);
    const int off = R - in->type().rank();
    for (auto [axis, dst] : {std::pair{x.s, &out.s}, std::pair{x.k, &out.k}}) {
      if (axis < 0) continue;
      if (*dst >= 0 && *dst != axis + off) {
        return Error(&n, "mixes sequence positions (operands carry the sequence on different axes)");
      }
      *dst = axis + off;
    }
  }
  std::vector<ir::Value*> ins;
  for (const ir::Value* in : n.inputs()) {
    const Info& x = InfoOf(in);
    const int off = R - in->type().rank();
    auto extent = [&](int axis) { return axis - off >= 0 ? in->type().shape[axis - off] : 1; };
    if (!x.positional()) {
      ins.push_back(out.s >= 0 && extent(out.s) != 1 ? AtPos(in, out.s - off) : map_.at(in));
      continue;
    }
    if ((out.k >= 0 && x.k < 0 && extent(out.k) != 1) || (out.s >= 0 && x.s < 0 && extent(out.s) != 1)) {
      return Error(&n, "mixes sequence positions (a per-position value meets scores over all keys)");
    }
    ins.push_back(map_.at(in));
  }
  ir::AttrMap attrs = n.attrs();
  if (n.op() == "fused_elementwise" && out.s >= 0) {
    PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, n.GetInts("shape"));
    shape[out.s] = 1;
    attrs["shape"] = shape;
  }
  if (out.k >= 0) {
    // What the op does to the keys after the query (see kv_cache.cc: K values).
    const std::string& op = n.op();
    auto is_c = [&](size_t i) { return !InfoOf(n.input(i)).positional(); };
    auto kmask = [&](size_t i) { return InfoOf(n.input(i)).mask; };
    auto positional_axes = [&](size_t i) {  // extent T at the output's s or k axis
      const ir::Value* in = n.input(i);
      const int off = R - in->type().rank();
      for (int axis : {out.s, out.k}) {
        if (axis - off >= 0 && in->type().shape[axis - off] != 1) return true;
      }
      return false;
    };
    Mask m = Mask::kNone;
    if ((op == "mul" || op == "div") && n.num_inputs() == 2) {
      size_t kin = InfoOf(n.input(0)).k >= 0 ? 0 : 1, other = 1 - kin;
      if (is_c(other) && !positional_axes(other) && (op == "mul" || kin == 0)) {
        PTC_ASSIGN_OR_RETURN(ir::Tensor c, Eval(n.input(other)));
        if (AllOf(c, IsPositive)) m = kmask(kin);
      }
    } else if ((op == "add" || op == "sub") && n.num_inputs() == 2) {
      size_t kin = InfoOf(n.input(0)).k >= 0 ? 0 : 1, other = 1 - kin;
      if (is_c(other) && positional_axes(other) && op == "add") {
        PTC_ASSIGN_OR_RETURN(bool causal, IsCausal(n.input(other), R, out.s, out.k,
                                                   [](double x) { return x <= kMaskedBelow; }));
        if (causal) m = Mask::kNegInf;
      } else if (InfoOf(n.input(other)).k < 0 && !(is_c(other) && positional_axes(other)) &&
                 (op == "add" || kin == 0)) {
        m = kmask(kin) == Mask::kNegInf ? Mask::kNegInf : Mask::kNone;  // x - max(x) keeps -inf
      }
    } else if (op == "where" && is_c(0)) {
      for (size_t kin : {size_t{1}, size_t{2}}) {
        size_t other = 3 - kin;
        if (InfoOf(n.input(kin)).k < 0 || !is_c(other)) continue;
        PTC_ASSIGN_OR_RETURN(ir::Tensor c, Eval(n.input(other)));
        if (!AllOf(c, IsMaskedValue)) continue;
        // cond true selects input 1: the -inf branch is taken where cond == (other == 1).
        const bool select_true = other == 1;
        PTC_ASSIGN_OR_RETURN(bool causal,
                             IsCausal(n.input(0), R, out.s, out.k, [select_true](double x) {
                               return (x != 0) == select_true;
                             }));
        if (causal) m = Mask::kNegInf;
      }
    } else if (op == "exp" && kmask(0) == Mask::kNegInf) {
      m = Mask::kZero;
    }
    out.mask = m;
  }
  return Emit(n, std::move(ins), attrs, out);
}

absl::Status DecoderBuilder::MatMul(const ir::Node& n) {
  const ir::Value* a = n.input(0);
  const ir::Value* b = n.input(1);
  const Info& ia = InfoOf(a);
  const Info& ib = InfoOf(b);
  const int ra = a->type().rank(), rb = b->type().rank(), R = n.output()->type().rank();
  if (ra < 2 || rb < 2) return Error(&n, "is a rank-1 matmul on per-position values");
  const int offa = R - ra, offb = R - rb;
  if (ia.positional() && ib.positional() && ia.k < 0 && ib.k < 0 && ia.s == ra - 2 &&
      ib.s == rb - 1) {
    // q rows x k^T columns: the scores of the query against every cached key.
    ir::Value* keys = Cached(b);
    return Emit(n, {map_.at(a), keys}, n.attrs(), Info{.s = R - 2, .k = R - 1});
  }
  if (ia.k == ra - 1 && ia.s == ra - 2 && ib.k < 0 && ib.s == rb - 2) {
    // probabilities x v rows: contracts the keys.
    if (ia.mask != Mask::kZero) {
      return Error(&n, "contracts attention scores whose keys after the query are not masked "
                       "to zero (the mask is not causal or not recognized)");
    }
    ir::Value* values = Cached(b);
    return Emit(n, {map_.at(a), values}, n.attrs(), Info{.s = R - 2});
  }
  if (ia.k < 0 && ib.k < 0) {
    // Row-wise: the sequence is a row axis of a, a column axis of b, or a batch axis.
    int s = -1;
    if (ia.s >= 0 && ia.s != ra - 1) s = ia.s + offa;
    if (ib.s >= 0 && ib.s != rb - 2) {
      if (s >= 0 && s != ib.s + offb) s = -2;
      if (s == -1) s = ib.s + offb;
    }
    const bool a_ok = ia.s < 0 || ia.s != ra - 1, b_ok = ib.s < 0 || ib.s != rb - 2;
    if (s >= 0 && a_ok && b_ok && (ia.s < 0 || ib.s < 0 || s < R - 2)) {
      std::vector<ir::Value*> ins;
      for (auto [v, off] : {std::pair{a, offa}, std::pair{b, offb}}) {
        const bool c = !InfoOf(v).positional();
        if (c && s < R - 2 && s - off >= 0 && v->type().shape[s - off] != 1) {
          ins.push_back(AtPos(v, s - off));
        } else {
          ins.push_back(map_.at(v));
        }
      }
      return Emit(n, ins, n.attrs(), Info{.s = s});
    }
  }
  return Error(&n, "mixes sequence positions (contracts over the sequence axis)");
}

absl::Status DecoderBuilder::FusedMatMul(const ir::Node& n) {
  const Info& x = InfoOf(n.input(0));
  // w and the bias are position-free; an addend (fuse-residual-add: a residual stream) is
  // per position like the output, on the same axis.
  const ir::Value* addend = ir::FusedMatMulAddend(n);
  for (size_t i = 1; i < n.num_inputs(); ++i) {
    if (n.input(i) != addend && InfoOf(n.input(i)).positional()) {
      return Error(&n, "mixes sequence positions (contracts over the sequence axis)");
    }
  }
  if (x.k >= 0 || x.s < 0 || x.s == n.input(0)->type().rank() - 1) {
    return Error(&n, "mixes sequence positions (contracts over the sequence axis)");
  }
  if (addend != nullptr) {
    const Info& r = InfoOf(addend);
    if (r.k >= 0 || r.s != x.s) {
      return Error(&n, "has an addend without the sequence on the output's axis");
    }
  }
  return Emit(n, MappedInputs(n), n.attrs(), Info{.s = x.s});
}

absl::Status DecoderBuilder::Attention(const ir::Node& n) {
  PTC_ASSIGN_OR_RETURN(std::string layout, n.GetString("layout", "bhtd"));
  const int t = layout == "bthd" ? 1 : 2;
  for (size_t i = 0; i < 3; ++i) {
    const Info& x = InfoOf(n.input(i));
    if (x.k >= 0 || x.s != t) {
      return Error(&n, absl::StrCat("has operand ", i, " without the sequence on its T axis"));
    }
  }
  ir::Value* const mask = ir::AttentionMask(n, 0);
  if (mask == nullptr) {
    return Error(&n, "has no mask: a bidirectional attention reads later positions");
  }
  if (InfoOf(mask).positional()) return Error(&n, "has a mask that depends on the tokens");
  const bool is_bool = mask->type().dtype == ir::DType::kBool;
  PTC_ASSIGN_OR_RETURN(bool causal, IsCausal(mask, 4, 2, 3, [is_bool](double x) {
                         return is_bool ? x != 0 : x <= kMaskedBelow;
                       }));
  if (!causal) {
    return Error(&n, absl::StrCat("has a mask ", mask->type().ToString(),
                                  " that is not causal (a query attends to a later key)"));
  }
  ir::Value* row = AtPos(mask, 2 - (4 - mask->type().rank()));
  ir::Value* keys = Cached(n.input(1));
  ir::Value* values = Cached(n.input(2));
  // Not causal=1 (annotate-causal's): the one query at pos reads the cache's T keys through
  // the mask's row at pos. causal=1 would open key j for query 0 iff j <= 0 + T - 1, every
  // slot of the cache, written or not; the kernels that take causal=1 by index arithmetic (the
  // CUDA tensor-core attention) do not read the mask.
  ir::AttrMap attrs = n.attrs();
  attrs.erase("causal");
  return Emit(n, {map_.at(n.input(0)), keys, values, row}, std::move(attrs), Info{.s = t});
}

absl::Status DecoderBuilder::LayerNorm(const ir::Node& n) {
  const Info& x = InfoOf(n.input(0));
  PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
  if (x.k >= 0 || x.s >= axis || Positional(n, 1)) {
    return Error(&n, "normalizes over the sequence axis or attention scores");
  }
  return Emit(n, MappedInputs(n), n.attrs(), Info{.s = x.s});
}

absl::Status DecoderBuilder::Softmax(const ir::Node& n) {
  const Info& x = InfoOf(n.input(0));
  PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
  if (x.k < 0) {
    if (axis == x.s) return Error(&n, "mixes sequence positions (softmax over the sequence)");
    return Emit(n, MappedInputs(n), n.attrs(), Info{.s = x.s});
  }
  if (axis != x.k || n.op() != "softmax") {
    return Error(&n, "is not a softmax over the keys of attention scores");
  }
  if (x.mask != Mask::kNegInf) {
    return Error(&n, "is a softmax over attention scores without a recognized causal mask "
                     "(keys after the query must be -inf: where(mask, x, -inf) or an additive "
                     "mask of a constant)");
  }
  return Emit(n, MappedInputs(n), n.attrs(), Info{.s = x.s, .k = x.k, .mask = Mask::kZero});
}

absl::Status DecoderBuilder::Reduce(const ir::Node& n) {
  const Info& x = InfoOf(n.input(0));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, n.GetInts("axes", std::vector<int64_t>{}));
  PTC_ASSIGN_OR_RETURN(int64_t keepdims, n.GetInt("keepdims", 1));
  auto has = [&](int a) { return axes.empty() || std::count(axes.begin(), axes.end(), a) > 0; };
  auto after = [&](int a) {
    if (a < 0 || keepdims) return a;
    return a - static_cast<int>(std::count_if(axes.begin(), axes.end(), [a](int64_t r) { return r < a; }));
  };
  if (has(x.s)) return Error(&n, "mixes sequence positions (reduces over the sequence axis)");
  if (x.k < 0) return Emit(n, MappedInputs(n), n.attrs(), Info{.s = after(x.s)});
  const bool ok = axes == std::vector<int64_t>{x.k} &&
                  ((n.op() == "reduce_max" && x.mask == Mask::kNegInf) ||
                   (n.op() == "reduce_sum" && x.mask == Mask::kZero));
  if (!ok) return Error(&n, "reduces attention scores whose later keys are not masked");
  Info out{.s = after(x.s)};
  if (keepdims) out.mask = Mask::kNone;
  return Emit(n, MappedInputs(n), n.attrs(), out);
}

absl::Status DecoderBuilder::Reshape(const ir::Node& n) {
  const ir::Value* in = n.input(0);
  const Info& x = InfoOf(in);
  const ir::Shape& to = n.output()->type().shape;
  Info out = x;
  if (n.op() == "expand") {
    if (x.k >= 0) return Error(&n, "expands attention scores");
    out.s = x.s + static_cast<int>(to.size() - in->type().shape.size());
  } else {
    out.s = ReshapeAxis(in->type().shape, x.s, to);
    if (x.k >= 0) out.k = ReshapeAxis(in->type().shape, x.k, to);
    if (out.s < 0 || (x.k >= 0 && out.k < 0)) {
      return Error(&n, "mixes sequence positions (splits or merges the sequence axis)");
    }
  }
  ir::AttrMap attrs = n.attrs();
  std::vector<int64_t> shape(to.begin(), to.end());
  shape[out.s] = 1;
  attrs["shape"] = shape;
  return Emit(n, MappedInputs(n), attrs, out);
}

absl::Status DecoderBuilder::Transpose(const ir::Node& n) {
  const Info& x = InfoOf(n.input(0));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> perm, n.GetInts("perm"));
  Info o = x;
  for (size_t j = 0; j < perm.size(); ++j) {
    if (perm[j] == x.s) o.s = static_cast<int>(j);
    if (perm[j] == x.k) o.k = static_cast<int>(j);
  }
  return Emit(n, MappedInputs(n), n.attrs(), o);
}

absl::Status DecoderBuilder::SplitSlice(const ir::Node& n) {
  const Info& x = InfoOf(n.input(0));
  ir::AttrMap attrs = n.attrs();
  if (n.op() == "split") {
    PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
    if (axis == x.s || axis == x.k) {
      return Error(&n, "mixes sequence positions (splits the sequence axis)");
    }
    return Emit(n, MappedInputs(n), attrs, x);
  }
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, n.GetInts("starts"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> ends, n.GetInts("ends"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, n.GetInts("steps"));
  for (int axis : {x.s, x.k}) {
    if (axis < 0) continue;
    if (starts[axis] != 0 || ends[axis] != T_ || steps[axis] != 1) {
      return Error(&n, "mixes sequence positions (slices the sequence axis)");
    }
  }
  if (x.s >= 0) ends[x.s] = 1;
  attrs["ends"] = ends;
  return Emit(n, MappedInputs(n), attrs, x);
}

absl::Status DecoderBuilder::Concat(const ir::Node& n) {
  PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
  int s = -1;
  for (const ir::Value* in : n.inputs()) {
    const Info& x = InfoOf(in);
    if (x.k >= 0 || (x.s >= 0 && s >= 0 && x.s != s) || (x.s >= 0 && x.s == axis)) {
      return Error(&n, "mixes sequence positions (concatenates along or across the sequence)");
    }
    if (x.s >= 0) s = x.s;
  }
  std::vector<ir::Value*> ins;
  for (const ir::Value* in : n.inputs()) {
    ins.push_back(InfoOf(in).positional() ? map_.at(in) : AtPos(in, s));
  }
  return Emit(n, ins, n.attrs(), Info{.s = s});
}

absl::Status DecoderBuilder::Gather(const ir::Node& n) {
  const Info& d = InfoOf(n.input(0));
  const Info& i = InfoOf(n.input(1));
  PTC_ASSIGN_OR_RETURN(int64_t axis, n.GetInt("axis"));
  if (!d.positional() && i.k < 0) {
    return Emit(n, MappedInputs(n), n.attrs(), Info{.s = static_cast<int>(axis) + i.s});
  }
  if (!i.positional() && d.k < 0 && d.s != axis) {
    const int r = n.input(1)->type().rank();
    return Emit(n, MappedInputs(n), n.attrs(), Info{.s = d.s < axis ? d.s : d.s + r - 1});
  }
  return Error(&n, "mixes sequence positions (gathers along the sequence axis)");
}

}  // namespace ptc::passes::internal
