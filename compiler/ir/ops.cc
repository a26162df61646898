// The op registry: one explicit table (kOpDefs below) followed by FusedOpDefs() from
// ops_fused.cc. Semantics are specified in ops.h; this file implements type inference and
// attribute validation for them.
//
// Conventions of the inference functions: attributes listed in ops.h without a default are
// required; axes must already be normalized (non-negative, < rank); unknown extra attributes
// are allowed (planners annotate nodes with e.g. {buffer=0, offset=4096}). Error messages
// name the attribute or input and the types involved; the caller adds the node's location.
//
// `constant {ref="NAME"}`: the type of a ref constant lives in Module::tensors(), not in the
// node. InferTypes cannot see the module, so for a ref constant it fails with
// FailedPrecondition; use InferNodeTypes(node, module) (op_util.h), which looks the tensor
// up (or accepts the declared output type when there is no module / the module carries no
// tensors). The verifier does the same.
#include "compiler/ir/ops.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "compiler/ir/op_util.h"
#include "compiler/ir/ops_decode.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/ops_train.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

using Types = std::vector<TensorType>;
using InferResult = absl::StatusOr<Types>;

// Debian's abseil has its own string_view: StrCat does not take std::string_view.
absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

absl::Status Invalid(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

std::string InputStr(const Types& in, size_t i) {
  return absl::StrCat("input ", i, " (", in[i].ToString(), ")");
}

absl::Status SameDType(const Types& in, size_t first, size_t last) {
  for (size_t i = first + 1; i < last && i < in.size(); ++i) {
    if (in[i].dtype != in[first].dtype) {
      return Invalid(absl::StrCat("dtype mismatch: ", InputStr(in, first), " vs ",
                                  InputStr(in, i), "; insert a cast"));
    }
  }
  return absl::OkStatus();
}

absl::Status RequireFloat(const Types& in, size_t i) {
  if (!IsFloat(in[i].dtype)) {
    return Invalid(absl::StrCat(InputStr(in, i), " must be a float type (f32, f16, bf16, f64)"));
  }
  return absl::OkStatus();
}

absl::Status RequireNumeric(const Types& in, size_t i) {
  if (in[i].dtype == DType::kBool) {
    return Invalid(absl::StrCat(InputStr(in, i), " must be numeric, not bool"));
  }
  return absl::OkStatus();
}

absl::Status RequireIndex(const Types& in, size_t i) {
  if (in[i].dtype != DType::kI32 && in[i].dtype != DType::kI64) {
    return Invalid(absl::StrCat(InputStr(in, i), " must be i32 or i64"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Shape> BroadcastAll(const Types& in) {
  Shape out;
  for (size_t i = 0; i < in.size(); ++i) {
    auto s = BroadcastShapes(out, in[i].shape);
    if (!s.ok()) {
      std::vector<std::string> all;
      for (const auto& t : in) all.push_back(t.ToString());
      return Invalid(absl::StrCat("inputs do not broadcast: ", absl::StrJoin(all, ", "), " (",
                                  s.status().message(), ")"));
    }
    out = *std::move(s);
  }
  return out;
}

// ----------------------------------------------------------------------------- elementwise

enum class Kind { kAny, kNumeric, kFloat, kBool };

absl::Status CheckKind(const Types& in, size_t i, Kind kind) {
  switch (kind) {
    case Kind::kAny: return absl::OkStatus();
    case Kind::kNumeric: return RequireNumeric(in, i);
    case Kind::kFloat: return RequireFloat(in, i);
    case Kind::kBool:
      if (in[i].dtype != DType::kBool) {
        return Invalid(absl::StrCat(InputStr(in, i), " must be bool"));
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

template <Kind kKind, bool kBoolOut>
InferResult InferBinary(const Types& in, const AttrMap&, int) {
  PTC_RETURN_IF_ERROR(SameDType(in, 0, 2));
  PTC_RETURN_IF_ERROR(CheckKind(in, 0, kKind));
  PTC_ASSIGN_OR_RETURN(Shape shape, BroadcastAll(in));
  return Types{{kBoolOut ? DType::kBool : in[0].dtype, shape}};
}

template <Kind kKind>
InferResult InferUnary(const Types& in, const AttrMap&, int) {
  PTC_RETURN_IF_ERROR(CheckKind(in, 0, kKind));
  return Types{in[0]};
}

InferResult InferWhere(const Types& in, const AttrMap&, int) {
  PTC_RETURN_IF_ERROR(CheckKind(in, 0, Kind::kBool));
  PTC_RETURN_IF_ERROR(SameDType(in, 1, 3));
  PTC_ASSIGN_OR_RETURN(Shape shape, BroadcastAll(in));
  return Types{{in[1].dtype, shape}};
}

InferResult InferGelu(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireFloat(in, 0));
  auto approx = GetStringAttr(attrs, "approximate", "none");
  if (!approx.ok()) return approx.status();
  if (*approx != "none" && *approx != "tanh") {
    return Invalid(absl::StrCat("attribute 'approximate' must be \"none\" or \"tanh\", got \"",
                                *approx, "\""));
  }
  return Types{in[0]};
}

InferResult InferCast(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(DType to, GetDTypeAttr(attrs, "to"));
  return Types{{to, in[0].shape}};
}

// ----------------------------------------------------------------------------- linear algebra

InferResult InferMatMul(const Types& in, const AttrMap&, int) {
  PTC_RETURN_IF_ERROR(SameDType(in, 0, 2));
  PTC_RETURN_IF_ERROR(RequireNumeric(in, 0));
  const Shape& a = in[0].shape;
  const Shape& b = in[1].shape;
  if (a.empty() || b.empty()) {
    return Invalid(absl::StrCat("matmul operands must have rank >= 1: ", InputStr(in, 0), ", ",
                                InputStr(in, 1)));
  }
  Shape a2 = a.size() == 1 ? Shape{1, a[0]} : a;
  Shape b2 = b.size() == 1 ? Shape{b[0], 1} : b;
  int64_t ka = a2[a2.size() - 1], kb = b2[b2.size() - 2];
  if (ka != kb) {
    return Invalid(absl::StrCat("matmul inner dimensions differ (", ka, " vs ", kb,
                                "): ", InputStr(in, 0), ", ", InputStr(in, 1)));
  }
  Shape batch_a(a2.begin(), a2.end() - 2), batch_b(b2.begin(), b2.end() - 2);
  auto batch = BroadcastShapes(batch_a, batch_b);
  if (!batch.ok()) {
    return Invalid(absl::StrCat("matmul batch dimensions do not broadcast: ", InputStr(in, 0),
                                ", ", InputStr(in, 1)));
  }
  Shape out = *batch;
  if (a.size() > 1) out.push_back(a2[a2.size() - 2]);
  if (b.size() > 1) out.push_back(b2[b2.size() - 1]);
  return Types{{in[0].dtype, out}};
}

InferResult InferGemm(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(SameDType(in, 0, in.size()));
  PTC_RETURN_IF_ERROR(RequireNumeric(in, 0));
  PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, "alpha", 1.0).status());
  PTC_RETURN_IF_ERROR(GetFloatAttr(attrs, "beta", 1.0).status());
  PTC_ASSIGN_OR_RETURN(int64_t ta, GetIntAttr(attrs, "trans_a", 0));
  PTC_ASSIGN_OR_RETURN(int64_t tb, GetIntAttr(attrs, "trans_b", 0));
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1)) {
    return Invalid(absl::StrCat("attributes 'trans_a' and 'trans_b' must be 0 or 1, got ", ta,
                                " and ", tb));
  }
  if (in[0].rank() != 2 || in[1].rank() != 2) {
    return Invalid(absl::StrCat("gemm operands a and b must have rank 2: ", InputStr(in, 0),
                                ", ", InputStr(in, 1)));
  }
  int64_t m = ta ? in[0].shape[1] : in[0].shape[0];
  int64_t ka = ta ? in[0].shape[0] : in[0].shape[1];
  int64_t kb = tb ? in[1].shape[1] : in[1].shape[0];
  int64_t n = tb ? in[1].shape[0] : in[1].shape[1];
  if (ka != kb) {
    return Invalid(absl::StrCat("gemm inner dimensions differ (", ka, " vs ", kb, ", trans_a=",
                                ta, ", trans_b=", tb, "): ", InputStr(in, 0), ", ",
                                InputStr(in, 1)));
  }
  Shape out = {m, n};
  if (in.size() == 3) {
    auto b = BroadcastShapes(in[2].shape, out);
    if (!b.ok() || *b != out) {
      return Invalid(absl::StrCat("gemm bias ", InputStr(in, 2),
                                  " does not broadcast to the output shape ",
                                  ShapeToString(out)));
    }
  }
  // `dtype` (fold-grad-casts): f32 for f16 / bf16 a and b without c, the product accumulated
  // and kept in f32 (the cast up of a --precision plan's weight gradient, folded in).
  if (attrs.count("dtype") > 0) {
    PTC_ASSIGN_OR_RETURN(DType y, GetDTypeAttr(attrs, "dtype"));
    if (y != in[0].dtype && (y != DType::kF32 || !IsHalfFloat(in[0].dtype) || in.size() == 3)) {
      return Invalid(absl::StrCat("attribute 'dtype' must be a's dtype, or f32 for f16 / bf16 "
                                  "a and b without c; got ", std::string(DTypeName(y)), " with ",
                                  in[0].ToString()));
    }
    return Types{{y, out}};
  }
  return Types{{in[0].dtype, out}};
}

// ----------------------------------------------------------------------------- normalization

InferResult InferSoftmax(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireFloat(in, 0));
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, in[0].rank(), "axis", in[0]));
  return Types{in[0]};
}

InferResult InferLayerNorm(const Types& in, const AttrMap& attrs, int num_outputs) {
  PTC_RETURN_IF_ERROR(RequireFloat(in, 0));
  PTC_RETURN_IF_ERROR(SameDType(in, 0, in.size()));
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, in[0].rank(), "axis", in[0]));
  PTC_ASSIGN_OR_RETURN(double eps, GetFloatAttr(attrs, "epsilon", 1e-5));
  if (!(eps >= 0)) return Invalid(absl::StrCat("attribute 'epsilon' must be >= 0, got ", eps));
  PTC_ASSIGN_OR_RETURN(int64_t rms, GetIntAttr(attrs, "rms", 0));
  if (rms != 0 && rms != 1) {
    return Invalid(absl::StrCat("attribute 'rms' must be 0 or 1, got ", rms));
  }
  if (rms == 1 && in.size() == 3) {
    return Invalid("an RMS norm (rms=1) has no bias: pass (x, scale)");
  }
  const Shape& x = in[0].shape;
  Shape normalized(x.begin() + axis, x.end());
  for (size_t i = 1; i < in.size(); ++i) {
    auto b = BroadcastShapes(in[i].shape, normalized);
    if (!b.ok() || *b != normalized) {
      return Invalid(absl::StrCat(i == 1 ? "scale " : "bias ", InputStr(in, i),
                                  " does not broadcast to the normalized shape ",
                                  ShapeToString(normalized), " of x ", in[0].ToString(),
                                  " (axis=", axis, ")"));
    }
  }
  // `dtype` (y's; mean and inv_std_dev stay f32): x's, or f16 / bf16 for an f32 x (the cast of
  // a --precision plan's normalized activations to the matmul dtype, folded in by
  // fold-norm-casts).
  DType y = in[0].dtype;
  if (attrs.count("dtype") > 0) {
    PTC_ASSIGN_OR_RETURN(y, GetDTypeAttr(attrs, "dtype"));
    if (y != in[0].dtype && !(in[0].dtype == DType::kF32 && IsHalfFloat(y))) {
      return Invalid(absl::StrCat("attribute 'dtype' must be x's dtype, or f16 / bf16 for an "
                                  "f32 x; got ", std::string(DTypeName(y)), " with ",
                                  in[0].ToString()));
    }
  }
  Types out = {TensorType{y, x}};
  Shape stat(x.begin(), x.begin() + axis);
  stat.resize(x.size(), 1);
  for (int i = 1; i < num_outputs; ++i) out.push_back({DType::kF32, stat});
  return out;
}

// ----------------------------------------------------------------------------- reductions

template <bool kAllowBool>
InferResult InferReduce(const Types& in, const AttrMap& attrs, int) {
  if (!kAllowBool) PTC_RETURN_IF_ERROR(RequireNumeric(in, 0));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, GetIntsAttr(attrs, "axes", std::vector<int64_t>{}));
  PTC_ASSIGN_OR_RETURN(int64_t keepdims, GetIntAttr(attrs, "keepdims", 1));
  if (keepdims != 0 && keepdims != 1) {
    return Invalid(absl::StrCat("attribute 'keepdims' must be 0 or 1, got ", keepdims));
  }
  const int rank = in[0].rank();
  for (size_t i = 0; i < axes.size(); ++i) {
    PTC_RETURN_IF_ERROR(CheckAxis(axes[i], rank, "axes", in[0]));
    if (i > 0 && axes[i] <= axes[i - 1]) {
      return Invalid(absl::StrCat("attribute 'axes' must be sorted and unique, got [",
                                  absl::StrJoin(axes, ", "), "]"));
    }
  }
  std::vector<bool> reduced(rank, axes.empty());
  for (int64_t a : axes) reduced[a] = true;
  Shape out;
  for (int i = 0; i < rank; ++i) {
    if (!reduced[i]) {
      out.push_back(in[0].shape[i]);
    } else if (keepdims) {
      out.push_back(1);
    }
  }
  return Types{{in[0].dtype, out}};
}

// ----------------------------------------------------------------------------- shape ops

absl::Status CheckShapeAttr(const Shape& shape, std::string_view name) {
  for (int64_t d : shape) {
    if (d < 0) {
      return Invalid(absl::StrCat("attribute '", Sv(name), "' must be a final static shape (dims >= 0, ",
                                  "no -1), got ", ShapeToString(shape)));
    }
  }
  if (NumElements(shape) < 0) {
    return Invalid(absl::StrCat("attribute '", Sv(name), "' ", ShapeToString(shape),
                                " has too many elements"));
  }
  return absl::OkStatus();
}

InferResult InferReshape(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(Shape shape, GetIntsAttr(attrs, "shape"));
  PTC_RETURN_IF_ERROR(CheckShapeAttr(shape, "shape"));
  if (NumElements(shape) != in[0].num_elements()) {
    return Invalid(absl::StrCat("reshape of ", InputStr(in, 0), " (", in[0].num_elements(),
                                " elements) to ", ShapeToString(shape), " (", NumElements(shape),
                                " elements): element counts differ"));
  }
  return Types{{in[0].dtype, shape}};
}

InferResult InferExpand(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(Shape shape, GetIntsAttr(attrs, "shape"));
  PTC_RETURN_IF_ERROR(CheckShapeAttr(shape, "shape"));
  auto b = BroadcastShapes(in[0].shape, shape);
  if (!b.ok() || *b != shape) {
    return Invalid(absl::StrCat(InputStr(in, 0), " does not broadcast to attribute 'shape' ",
                                ShapeToString(shape)));
  }
  return Types{{in[0].dtype, shape}};
}

InferResult InferTranspose(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> perm, GetIntsAttr(attrs, "perm"));
  const int rank = in[0].rank();
  std::vector<bool> seen(rank, false);
  bool ok = static_cast<int>(perm.size()) == rank;
  for (int64_t p : perm) {
    if (!ok) break;
    if (p < 0 || p >= rank || seen[p]) {
      ok = false;
    } else {
      seen[p] = true;
    }
  }
  if (!ok) {
    return Invalid(absl::StrCat("attribute 'perm' [", absl::StrJoin(perm, ", "),
                                "] is not a permutation of the ", rank, " axes of ",
                                InputStr(in, 0)));
  }
  Shape out;
  for (int64_t p : perm) out.push_back(in[0].shape[p]);
  return Types{{in[0].dtype, out}};
}

InferResult InferSplit(const Types& in, const AttrMap& attrs, int num_outputs) {
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, in[0].rank(), "axis", in[0]));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> sizes, GetIntsAttr(attrs, "sizes"));
  if (static_cast<int64_t>(sizes.size()) != num_outputs) {
    return Invalid(absl::StrCat("attribute 'sizes' has ", sizes.size(), " entries but the node has ",
                                num_outputs, " outputs"));
  }
  int64_t sum = 0;
  for (int64_t s : sizes) {
    if (s < 0 || s > in[0].shape[axis]) {
      sum = -1;
      break;
    }
    sum += s;
  }
  if (sum != in[0].shape[axis]) {
    return Invalid(absl::StrCat("attribute 'sizes' [", absl::StrJoin(sizes, ", "),
                                "] must be non-negative and sum to dim ", axis, " (",
                                in[0].shape[axis], ") of ", InputStr(in, 0)));
  }
  Types out;
  for (int64_t s : sizes) {
    TensorType t = in[0];
    t.shape[axis] = s;
    out.push_back(t);
  }
  return out;
}

InferResult InferSlice(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, GetIntsAttr(attrs, "starts"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> ends, GetIntsAttr(attrs, "ends"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, GetIntsAttr(attrs, "steps"));
  const size_t rank = in[0].shape.size();
  if (starts.size() != rank || ends.size() != rank || steps.size() != rank) {
    return Invalid(absl::StrCat("attributes 'starts', 'ends', 'steps' need one entry per axis of ",
                                InputStr(in, 0), ", got ", starts.size(), ", ", ends.size(),
                                ", ", steps.size()));
  }
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t dim = in[0].shape[i], s = starts[i], e = ends[i], st = steps[i];
    bool ok;
    if (st > 0) {
      ok = 0 <= s && s <= e && e <= dim;
    } else if (st < 0) {
      ok = -1 <= e && e <= s && s <= dim - 1;
    } else {
      ok = false;
    }
    if (!ok) {
      return Invalid(absl::StrCat("slice axis ", i, " (dim ", dim, "): start=", s, ", end=", e,
                                  ", step=", st, " is not normalized (step > 0: 0 <= start <= ",
                                  "end <= dim; step < 0: -1 <= end <= start <= dim-1)"));
    }
    // ceil((e - s) / st) for same-sign operands; 0 when empty. No overflow: |e - s| <= dim+1.
    const int64_t len = st > 0 ? e - s : s - e;
    const int64_t step = st > 0 ? st : -st;
    out[i] = (len + step - 1) / step;
  }
  return Types{{in[0].dtype, out}};
}

InferResult InferConcat(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(SameDType(in, 0, in.size()));
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, in[0].rank(), "axis", in[0]));
  Shape out = in[0].shape;
  for (size_t i = 1; i < in.size(); ++i) {
    bool ok = in[i].rank() == in[0].rank();
    for (int d = 0; ok && d < in[0].rank(); ++d) {
      if (d != axis && in[i].shape[d] != in[0].shape[d]) ok = false;
    }
    if (!ok) {
      return Invalid(absl::StrCat("concat along axis ", axis, ": ", InputStr(in, i),
                                  " does not match ", InputStr(in, 0),
                                  " outside the concat axis"));
    }
    if (out[axis] > std::numeric_limits<int64_t>::max() - in[i].shape[axis]) {
      return Invalid("concat output dimension overflows");
    }
    out[axis] += in[i].shape[axis];
  }
  return Types{{in[0].dtype, out}};
}

InferResult InferGather(const Types& in, const AttrMap& attrs, int) {
  PTC_RETURN_IF_ERROR(RequireIndex(in, 1));
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, in[0].rank(), "axis", in[0]));
  const Shape& d = in[0].shape;
  Shape out(d.begin(), d.begin() + axis);
  out.insert(out.end(), in[1].shape.begin(), in[1].shape.end());
  out.insert(out.end(), d.begin() + axis + 1, d.end());
  if (NumElements(out) < 0) return Invalid("gather output has too many elements");
  return Types{{in[0].dtype, out}};
}

InferResult InferTrilu(const Types& in, const AttrMap& attrs, int) {
  PTC_ASSIGN_OR_RETURN(int64_t upper, GetIntAttr(attrs, "upper", 1));
  if (upper != 0 && upper != 1) {
    return Invalid(absl::StrCat("attribute 'upper' must be 0 or 1, got ", upper));
  }
  PTC_RETURN_IF_ERROR(GetIntAttr(attrs, "k", 0).status());
  if (in[0].rank() < 2) {
    return Invalid(absl::StrCat("trilu needs rank >= 2: ", InputStr(in, 0)));
  }
  return Types{in[0]};
}

InferResult InferConstant(const Types&, const AttrMap& attrs, int) {
  const bool has_value = attrs.count("value") > 0, has_ref = attrs.count("ref") > 0;
  if (has_value == has_ref) {
    return Invalid("constant needs exactly one of the attributes 'value' (a tensor) and 'ref' "
                   "(the name of a tensor in the module)");
  }
  if (has_ref) {
    PTC_ASSIGN_OR_RETURN(std::string ref, GetStringAttr(attrs, "ref"));
    return absl::FailedPreconditionError(absl::StrCat(
        "the type of constant {ref=\"", ref,
        "\"} is that of the module tensor; use InferNodeTypes(node, module)"));
  }
  PTC_ASSIGN_OR_RETURN(Tensor value, GetTensorAttr(attrs, "value"));
  return Types{value.type()};
}

// ----------------------------------------------------------------------------- losses

absl::StatusOr<std::string> Reduction(const AttrMap& attrs) {
  PTC_ASSIGN_OR_RETURN(std::string r, GetStringAttr(attrs, "reduction", "mean"));
  if (r != "mean" && r != "sum" && r != "none") {
    return Invalid(absl::StrCat("attribute 'reduction' must be \"mean\", \"sum\" or \"none\", ",
                                "got \"", r, "\""));
  }
  PTC_RETURN_IF_ERROR(GetIntAttr(attrs, "ignore_index", 0).status());
  return r;
}

// scores [N, C, d1...], labels [N, d1...] (i32/i64), weights [C].
InferResult InferLossCommon(const Types& in, const AttrMap& attrs, std::string_view what) {
  PTC_RETURN_IF_ERROR(RequireFloat(in, 0));
  PTC_RETURN_IF_ERROR(RequireIndex(in, 1));
  PTC_ASSIGN_OR_RETURN(std::string reduction, Reduction(attrs));
  const Shape& s = in[0].shape;
  if (s.size() < 2) {
    return Invalid(absl::StrCat(Sv(what), " ", InputStr(in, 0), " must have rank >= 2 ([N, C, ...])"));
  }
  Shape expect_labels = {s[0]};
  expect_labels.insert(expect_labels.end(), s.begin() + 2, s.end());
  if (in[1].shape != expect_labels) {
    return Invalid(absl::StrCat("labels ", InputStr(in, 1), " must have shape ",
                                ShapeToString(expect_labels), " for ", Sv(what), " ",
                                InputStr(in, 0)));
  }
  if (in.size() == 3 && (in[2].dtype != in[0].dtype || in[2].shape != Shape{s[1]})) {
    return Invalid(absl::StrCat("weights ", InputStr(in, 2), " must be ",
                                Sv(DTypeName(in[0].dtype)), ShapeToString({s[1]})));
  }
  if (reduction == "none") return Types{{in[0].dtype, expect_labels}};
  return Types{{in[0].dtype, {}}};
}

InferResult InferSoftmaxCE(const Types& in, const AttrMap& attrs, int num_outputs) {
  PTC_ASSIGN_OR_RETURN(Types out, InferLossCommon(in, attrs, "scores"));
  if (num_outputs > 1) out.push_back(in[0]);
  return out;
}

InferResult InferNll(const Types& in, const AttrMap& attrs, int) {
  return InferLossCommon(in, attrs, "input");
}

InferResult InferDropout(const Types& in, const AttrMap& attrs, int num_outputs) {
  PTC_RETURN_IF_ERROR(RequireFloat(in, 0));
  PTC_ASSIGN_OR_RETURN(double ratio, GetFloatAttr(attrs, "ratio", 0.5));
  if (!(ratio >= 0 && ratio < 1)) {
    return Invalid(absl::StrCat("attribute 'ratio' must be in [0, 1), got ", ratio));
  }
  PTC_RETURN_IF_ERROR(GetIntAttr(attrs, "seed", 0).status());
  if (in.size() > 1) {  // the counter
    PTC_RETURN_IF_ERROR(RequireIndex(in, 1));
    if (!in[1].shape.empty()) {
      return Invalid(absl::StrCat(InputStr(in, 1), " (the counter) must be a scalar"));
    }
  }
  Types out = {in[0]};
  if (num_outputs > 1) out.push_back({DType::kBool, in[0].shape});
  return out;
}

// ----------------------------------------------------------------------------- the table

#define PTC_BINARY(n, kind, bool_out) \
  {.name = n, .min_inputs = 2, .max_inputs = 2, .infer = InferBinary<kind, bool_out>, \
   .elementwise = true}
#define PTC_UNARY(n, kind) \
  {.name = n, .min_inputs = 1, .max_inputs = 1, .infer = InferUnary<kind>, .elementwise = true}

const std::vector<OpDef>& CoreOpDefs() {
  static const std::vector<OpDef>* defs = new std::vector<OpDef>{
      PTC_BINARY("add", Kind::kNumeric, false),
      PTC_BINARY("sub", Kind::kNumeric, false),
      PTC_BINARY("mul", Kind::kNumeric, false),
      PTC_BINARY("div", Kind::kNumeric, false),
      PTC_BINARY("pow", Kind::kNumeric, false),
      PTC_BINARY("max", Kind::kNumeric, false),
      PTC_BINARY("min", Kind::kNumeric, false),
      PTC_BINARY("equal", Kind::kAny, true),
      PTC_BINARY("less", Kind::kNumeric, true),
      PTC_BINARY("greater", Kind::kNumeric, true),
      PTC_BINARY("less_equal", Kind::kNumeric, true),
      PTC_BINARY("greater_equal", Kind::kNumeric, true),
      PTC_BINARY("and", Kind::kBool, false),
      PTC_BINARY("or", Kind::kBool, false),
      PTC_BINARY("xor", Kind::kBool, false),
      PTC_UNARY("not", Kind::kBool),
      {.name = "where", .min_inputs = 3, .max_inputs = 3, .infer = InferWhere,
       .elementwise = true},
      PTC_UNARY("neg", Kind::kNumeric),
      PTC_UNARY("abs", Kind::kNumeric),
      PTC_UNARY("sqrt", Kind::kFloat),
      PTC_UNARY("reciprocal", Kind::kFloat),
      PTC_UNARY("exp", Kind::kFloat),
      PTC_UNARY("log", Kind::kFloat),
      PTC_UNARY("erf", Kind::kFloat),
      PTC_UNARY("tanh", Kind::kFloat),
      PTC_UNARY("sigmoid", Kind::kFloat),
      PTC_UNARY("relu", Kind::kNumeric),
      PTC_UNARY("identity", Kind::kAny),
      PTC_UNARY("floor", Kind::kFloat),
      PTC_UNARY("ceil", Kind::kFloat),
      PTC_UNARY("cos", Kind::kFloat),
      PTC_UNARY("sin", Kind::kFloat),
      {.name = "gelu", .min_inputs = 1, .max_inputs = 1, .infer = InferGelu, .elementwise = true},
      {.name = "cast", .min_inputs = 1, .max_inputs = 1, .infer = InferCast, .elementwise = true},
      {.name = "matmul", .min_inputs = 2, .max_inputs = 2, .infer = InferMatMul},
      {.name = "gemm", .min_inputs = 2, .max_inputs = 3, .infer = InferGemm},
      {.name = "softmax", .min_inputs = 1, .max_inputs = 1, .infer = InferSoftmax},
      {.name = "log_softmax", .min_inputs = 1, .max_inputs = 1, .infer = InferSoftmax},
      {.name = "layer_norm", .min_inputs = 2, .max_inputs = 3, .min_outputs = 1,
       .max_outputs = 3, .infer = InferLayerNorm},
      {.name = "reduce_sum", .min_inputs = 1, .max_inputs = 1, .infer = InferReduce<false>},
      {.name = "reduce_mean", .min_inputs = 1, .max_inputs = 1, .infer = InferReduce<false>},
      {.name = "reduce_max", .min_inputs = 1, .max_inputs = 1, .infer = InferReduce<true>},
      {.name = "reduce_min", .min_inputs = 1, .max_inputs = 1, .infer = InferReduce<true>},
      {.name = "reshape", .min_inputs = 1, .max_inputs = 1, .infer = InferReshape},
      {.name = "expand", .min_inputs = 1, .max_inputs = 1, .infer = InferExpand},
      {.name = "transpose", .min_inputs = 1, .max_inputs = 1, .infer = InferTranspose},
      {.name = "split", .min_inputs = 1, .max_inputs = 1, .min_outputs = 1, .max_outputs = -1,
       .infer = InferSplit},
      {.name = "slice", .min_inputs = 1, .max_inputs = 1, .infer = InferSlice},
      {.name = "concat", .min_inputs = 1, .max_inputs = -1, .infer = InferConcat},
      {.name = "gather", .min_inputs = 2, .max_inputs = 2, .infer = InferGather},
      {.name = "trilu", .min_inputs = 1, .max_inputs = 1, .infer = InferTrilu},
      {.name = "constant", .min_inputs = 0, .max_inputs = 0, .infer = InferConstant},
      {.name = "softmax_ce_loss", .min_inputs = 2, .max_inputs = 3, .min_outputs = 1,
       .max_outputs = 2, .infer = InferSoftmaxCE},
      {.name = "nll_loss", .min_inputs = 2, .max_inputs = 3, .infer = InferNll},
      {.name = "dropout", .min_inputs = 1, .max_inputs = 2, .min_outputs = 1, .max_outputs = 2,
       .infer = InferDropout, .fold = false},
  };
  return *defs;
}

#undef PTC_BINARY
#undef PTC_UNARY

const absl::flat_hash_map<std::string_view, const OpDef*>& OpIndex() {
  static const auto* index = [] {
    auto* m = new absl::flat_hash_map<std::string_view, const OpDef*>();
    for (const auto* table : {&CoreOpDefs(), &FusedOpDefs(), &TrainOpDefs(), &DecodeOpDefs()}) {
      for (const OpDef& def : *table) m->emplace(def.name, &def);  // first definition wins
    }
    return m;
  }();
  return *index;
}

std::string CountRange(int lo, int hi) {
  if (hi < 0) return absl::StrCat("at least ", lo);
  if (lo == hi) return absl::StrCat(lo);
  return absl::StrCat(lo, " to ", hi);
}

}  // namespace

const OpDef* FindOp(std::string_view op) {
  const auto& index = OpIndex();
  auto it = index.find(op);
  return it == index.end() ? nullptr : it->second;
}

std::vector<std::string_view> AllOpNames() {
  std::vector<std::string_view> names;
  for (const auto* table : {&CoreOpDefs(), &FusedOpDefs(), &TrainOpDefs(), &DecodeOpDefs()}) {
    for (const OpDef& def : *table) names.push_back(def.name);
  }
  return names;
}

absl::StatusOr<std::vector<TensorType>> InferTypes(std::string_view op,
                                                   const std::vector<TensorType>& inputs,
                                                   const AttrMap& attrs, int num_outputs) {
  const OpDef* def = FindOp(op);
  if (def == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown op '", Sv(op), "' (see compiler/ir/ops.h)"));
  }
  const int n_in = static_cast<int>(inputs.size());
  if (n_in < def->min_inputs || (def->max_inputs >= 0 && n_in > def->max_inputs)) {
    return Invalid(absl::StrCat("`", Sv(op), "` takes ", CountRange(def->min_inputs, def->max_inputs),
                                " inputs, got ", n_in));
  }
  if (num_outputs < def->min_outputs || (def->max_outputs >= 0 && num_outputs > def->max_outputs)) {
    return Invalid(absl::StrCat("`", Sv(op), "` has ", CountRange(def->min_outputs, def->max_outputs),
                                " outputs, got ", num_outputs));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].num_elements() < 0) {
      return Invalid(absl::StrCat("input ", i, " has an invalid shape ", inputs[i].ToString()));
    }
  }
  if (def->infer == nullptr) {
    return absl::UnimplementedError(absl::StrCat("`", Sv(op), "` has no type inference"));
  }
  PTC_ASSIGN_OR_RETURN(std::vector<TensorType> out, def->infer(inputs, attrs, num_outputs));
  if (static_cast<int>(out.size()) != num_outputs) {
    return absl::InternalError(absl::StrCat("type inference of `", Sv(op), "` produced ", out.size(),
                                            " types for ", num_outputs, " outputs"));
  }
  return out;
}

absl::StatusOr<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da == db || db == 1) {
      out[i] = da;
    } else if (da == 1) {
      out[i] = db;
    } else {
      return Invalid(absl::StrCat("shapes ", ShapeToString(a), " and ", ShapeToString(b),
                                  " do not broadcast (dim ", da, " vs ", db, ")"));
    }
  }
  return out;
}

// ----------------------------------------------------------------------------- op_util.h

std::string_view AttrKindName(const AttrValue& value) {
  switch (value.index()) {
    case 0: return "an integer";
    case 1: return "a float";
    case 2: return "a string";
    case 3: return "a list of integers";
    case 4: return "a list of floats";
    case 5: return "a list of strings";
    case 6: return "a tensor";
    case 7: return "a dtype";
  }
  return "?";
}

namespace {
template <typename T>
absl::StatusOr<T> GetTyped(const AttrMap& attrs, std::string_view name, const std::optional<T>& def,
                           std::string_view kind) {
  auto it = attrs.find(std::string(name));
  if (it == attrs.end()) {
    if (def.has_value()) return *def;
    return Invalid(absl::StrCat("attribute '", Sv(name), "' is required"));
  }
  if (const T* v = std::get_if<T>(&it->second)) return *v;
  return Invalid(absl::StrCat("attribute '", Sv(name), "' must be ", Sv(kind), ", got ",
                              Sv(AttrKindName(it->second))));
}
}  // namespace

absl::StatusOr<int64_t> GetIntAttr(const AttrMap& attrs, std::string_view name,
                                   std::optional<int64_t> def) {
  return GetTyped<int64_t>(attrs, name, def, "an integer");
}
absl::StatusOr<double> GetFloatAttr(const AttrMap& attrs, std::string_view name,
                                    std::optional<double> def) {
  auto it = attrs.find(std::string(name));
  if (it != attrs.end()) {
    if (const int64_t* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  }
  return GetTyped<double>(attrs, name, def, "a float");
}
absl::StatusOr<std::string> GetStringAttr(const AttrMap& attrs, std::string_view name,
                                          std::optional<std::string> def) {
  return GetTyped<std::string>(attrs, name, def, "a string");
}
absl::StatusOr<std::vector<int64_t>> GetIntsAttr(const AttrMap& attrs, std::string_view name,
                                                 std::optional<std::vector<int64_t>> def) {
  return GetTyped<std::vector<int64_t>>(attrs, name, def, "a list of integers");
}
absl::StatusOr<DType> GetDTypeAttr(const AttrMap& attrs, std::string_view name) {
  return GetTyped<DType>(attrs, name, std::nullopt, "a dtype");
}
absl::StatusOr<Tensor> GetTensorAttr(const AttrMap& attrs, std::string_view name) {
  return GetTyped<Tensor>(attrs, name, std::nullopt, "a tensor");
}

absl::Status CheckAxis(int64_t axis, int rank, std::string_view attr_name,
                       const TensorType& input) {
  if (axis < 0 || axis >= rank) {
    return Invalid(absl::StrCat("attribute '", Sv(attr_name), "' value ", axis, " is out of range [0, ",
                                rank, ") for input ", input.ToString(),
                                " (IR axes are non-negative)"));
  }
  return absl::OkStatus();
}

std::vector<TensorType> InputTypes(const Node& node) {
  std::vector<TensorType> types;
  for (const Value* v : node.inputs()) types.push_back(v ? v->type() : TensorType{});
  return types;
}

std::vector<TensorType> OutputTypes(const Node& node) {
  std::vector<TensorType> types;
  for (const Value* v : node.outputs()) types.push_back(v->type());
  return types;
}

absl::StatusOr<std::vector<TensorType>> InferNodeTypes(const Node& node, const Module* module) {
  if (node.op() == "constant" && node.has_attr("ref") && !node.has_attr("value") &&
      node.num_inputs() == 0 && node.num_outputs() == 1) {
    PTC_ASSIGN_OR_RETURN(std::string ref, GetStringAttr(node.attrs(), "ref"));
    if (module == nullptr || module->tensors().empty()) return OutputTypes(node);
    auto it = module->tensors().find(ref);
    if (it == module->tensors().end()) {
      return absl::NotFoundError(absl::StrCat("constant {ref=\"", ref,
                                              "\"}: no tensor of that name in the module"));
    }
    return std::vector<TensorType>{it->second.type()};
  }
  return InferTypes(node.op(), InputTypes(node), node.attrs(),
                    static_cast<int>(node.num_outputs()));
}

}  // namespace ptc::ir
