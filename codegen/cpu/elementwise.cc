// Elementwise kernels: binary arithmetic, comparisons, logical ops, unary math, gelu, where and
// cast. All use one BroadcastPlan (collapsed dims, 0 strides where broadcast) whose innermost
// segment is a plain loop the compiler vectorizes; large tensors are split across threads.
#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

// ---------------------------------------------------------------------------------------------
// Binary ops. Integer arithmetic wraps (computed unsigned) instead of overflowing.

template <typename T>
using Unsigned = std::make_unsigned_t<T>;

struct AddOp {
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<Unsigned<T>>(a) + static_cast<Unsigned<T>>(b));
    } else {
      return a + b;
    }
  }
};
struct SubOp {
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<Unsigned<T>>(a) - static_cast<Unsigned<T>>(b));
    } else {
      return a - b;
    }
  }
};
struct MulOp {
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<Unsigned<T>>(a) * static_cast<Unsigned<T>>(b));
    } else {
      return a * b;
    }
  }
};
struct DivOp {  // integer divisors were checked for zero before the loop
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      if (b == -1) return static_cast<T>(Unsigned<T>(0) - static_cast<Unsigned<T>>(a));
      return a / b;
    } else {
      return a / b;
    }
  }
};
struct PowOp {
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
      Unsigned<T> result = 1, base = static_cast<Unsigned<T>>(a);
      for (T e = b; e > 0; e >>= 1) {
        if (e & 1) result *= base;
        base *= base;
      }
      return static_cast<T>(result);
    } else {
      return std::pow(a, b);
    }
  }
};
struct MaxOp {  // NaN propagates (as in PyTorch / ONNX Runtime)
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return a > b ? a : b;
    } else {
      return (a > b || a != a) ? a : b;
    }
  }
};
struct MinOp {
  template <typename T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return a < b ? a : b;
    } else {
      return (a < b || a != a) ? a : b;
    }
  }
};
struct EqualOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return a == b; }
};
struct LessOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return a < b; }
};
struct GreaterOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return a > b; }
};
struct LessEqualOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return a <= b; }
};
struct GreaterEqualOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return a >= b; }
};
struct AndOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return (a != 0) & (b != 0); }
};
struct OrOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return (a != 0) | (b != 0); }
};
struct XorOp {
  template <typename T>
  static uint8_t Apply(T a, T b) { return (a != 0) ^ (b != 0); }
};

template <typename T, typename O, typename Op>
void BinarySegment(O* __restrict out, const T* __restrict a, const T* __restrict b, int64_t n,
                   int64_t sa, int64_t sb) {
  if (sa == 1 && sb == 1) {
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = Op::Apply(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = b[0];
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = Op::Apply(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = a[0];
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = Op::Apply(av, b[i]);
  } else {
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = Op::Apply(a[i * sa], b[i * sb]);
  }
}

template <typename T, typename O, typename Op>
class BinaryKernel : public Kernel {
 public:
  BinaryKernel(BroadcastPlan plan, int64_t b_elems, bool check_zero, std::string where)
      : plan_(std::move(plan)), b_elems_(b_elems), check_zero_(check_zero),
        where_(std::move(where)) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    O* out = static_cast<O*>(outputs[0]);
    if constexpr (std::is_integral_v<T>) {
      if (check_zero_) {
        for (int64_t i = 0; i < b_elems_; ++i) {
          if (b[i] == 0) {
            return absl::InvalidArgumentError(absl::StrCat(
                where_, ": integer division by zero (divisor element ", i, " is 0)"));
          }
        }
      }
    }
    const int64_t sa = plan_.inner_stride(0), sb = plan_.inner_stride(1);
    ParallelFor(plan_.total, kElementGrain, [&](int64_t begin, int64_t end) {
      plan_.ForEachSegment(begin, end, [&](int64_t o, const auto& off, int64_t len) {
        BinarySegment<T, O, Op>(out + o, a + off[0], b + off[1], len, sa, sb);
      });
    });
    return absl::OkStatus();
  }

 private:
  BroadcastPlan plan_;
  int64_t b_elems_;
  bool check_zero_;
  std::string where_;
};

template <typename Op, bool kCompare>
KernelOr MakeBinaryTyped(const ir::Node& node, BroadcastPlan plan, DType dt) {
  int64_t b_elems = node.input(1)->type().num_elements();
  bool check_zero = node.op() == "div";
  std::string where = node.Describe();
#define PTC_BIN_CASE(DT, T)                                                                    \
  case DT:                                                                                     \
    return KernelPtr(new BinaryKernel<T, std::conditional_t<kCompare, uint8_t, T>, Op>(        \
        std::move(plan), b_elems, check_zero, where));
  switch (dt) {
    PTC_BIN_CASE(DType::kF32, float)
    PTC_BIN_CASE(DType::kF64, double)
    PTC_BIN_CASE(DType::kI32, int32_t)
    PTC_BIN_CASE(DType::kI64, int64_t)
    PTC_BIN_CASE(DType::kI8, int8_t)
    PTC_BIN_CASE(DType::kU8, uint8_t)
    default:
      break;
  }
  if constexpr (kCompare) {
    if (dt == DType::kBool) {
      return KernelPtr(new BinaryKernel<uint8_t, uint8_t, Op>(std::move(plan), b_elems, false,
                                                              where));
    }
  }
#undef PTC_BIN_CASE
  return Unsupported(node, absl::StrCat("dtype ", DTypeStr(dt), " is not supported"));
}

KernelOr MakeBinary(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 1, 1));
  const ir::TensorType& a = node.input(0)->type();
  const ir::TensorType& b = node.input(1)->type();
  const ir::TensorType& out = node.output(0)->type();
  if (a.dtype != b.dtype) {
    return Invalid(node, absl::StrCat("input dtypes differ: ", a.ToString(), " and ",
                                      b.ToString()));
  }
  auto plan_or = MakeBroadcastPlan(out.shape, {a.shape, b.shape});
  if (!plan_or.ok()) return Invalid(node, plan_or.status().message());
  BroadcastPlan plan = std::move(plan_or).value();
  const std::string& op = node.op();
  bool logical = op == "and" || op == "or" || op == "xor";
  bool compare = logical || op == "equal" || op == "less" || op == "greater" ||
                 op == "less_equal" || op == "greater_equal";
  DType want_out = compare ? DType::kBool : a.dtype;
  if (out.dtype != want_out) {
    return Invalid(node, absl::StrCat("output dtype must be ", DTypeStr(want_out), ", got ",
                                      out.ToString()));
  }
  if (logical) {
    if (a.dtype != DType::kBool) return Invalid(node, "logical ops take bool inputs");
    if (op == "and") return KernelPtr(new BinaryKernel<uint8_t, uint8_t, AndOp>(std::move(plan), 0, false, ""));
    if (op == "or") return KernelPtr(new BinaryKernel<uint8_t, uint8_t, OrOp>(std::move(plan), 0, false, ""));
    return KernelPtr(new BinaryKernel<uint8_t, uint8_t, XorOp>(std::move(plan), 0, false, ""));
  }
  if (op == "add") return MakeBinaryTyped<AddOp, false>(node, std::move(plan), a.dtype);
  if (op == "sub") return MakeBinaryTyped<SubOp, false>(node, std::move(plan), a.dtype);
  if (op == "mul") return MakeBinaryTyped<MulOp, false>(node, std::move(plan), a.dtype);
  if (op == "div") return MakeBinaryTyped<DivOp, false>(node, std::move(plan), a.dtype);
  if (op == "pow") return MakeBinaryTyped<PowOp, false>(node, std::move(plan), a.dtype);
  if (op == "max") return MakeBinaryTyped<MaxOp, false>(node, std::move(plan), a.dtype);
  if (op == "min") return MakeBinaryTyped<MinOp, false>(node, std::move(plan), a.dtype);
  if (op == "equal") return MakeBinaryTyped<EqualOp, true>(node, std::move(plan), a.dtype);
  if (op == "less") return MakeBinaryTyped<LessOp, true>(node, std::move(plan), a.dtype);
  if (op == "greater") return MakeBinaryTyped<GreaterOp, true>(node, std::move(plan), a.dtype);
  if (op == "less_equal") {
    return MakeBinaryTyped<LessEqualOp, true>(node, std::move(plan), a.dtype);
  }
  return MakeBinaryTyped<GreaterEqualOp, true>(node, std::move(plan), a.dtype);
}

// ---------------------------------------------------------------------------------------------
// Unary ops.

enum class UnaryKind { kNeg, kAbs, kSqrt, kReciprocal, kExp, kLog, kErf, kTanh, kSigmoid, kRelu,
                       kFloor, kCeil, kCos, kSin, kGeluErf, kGeluTanh, kNot };

template <UnaryKind K, typename T>
inline T UnaryApply(T x) {
  if constexpr (K == UnaryKind::kNeg) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(std::make_unsigned_t<T>(0) - static_cast<std::make_unsigned_t<T>>(x));
    } else {
      return -x;
    }
  } else if constexpr (K == UnaryKind::kAbs) {
    if constexpr (std::is_integral_v<T>) {
      return x < 0 ? static_cast<T>(std::make_unsigned_t<T>(0) -
                                    static_cast<std::make_unsigned_t<T>>(x))
                   : x;
    } else {
      return std::fabs(x);
    }
  } else if constexpr (K == UnaryKind::kSqrt) {
    return std::sqrt(x);
  } else if constexpr (K == UnaryKind::kReciprocal) {
    return T(1) / x;
  } else if constexpr (K == UnaryKind::kExp) {
    return Exp(x);
  } else if constexpr (K == UnaryKind::kLog) {
    return std::log(x);
  } else if constexpr (K == UnaryKind::kErf) {
    return Erf(x);
  } else if constexpr (K == UnaryKind::kTanh) {
    return Tanh(x);
  } else if constexpr (K == UnaryKind::kSigmoid) {
    return Sigmoid(x);
  } else if constexpr (K == UnaryKind::kRelu) {
    return x > T(0) ? x : (x != x ? x : T(0));
  } else if constexpr (K == UnaryKind::kFloor) {
    return std::floor(x);
  } else if constexpr (K == UnaryKind::kCeil) {
    return std::ceil(x);
  } else if constexpr (K == UnaryKind::kCos) {
    return std::cos(x);
  } else if constexpr (K == UnaryKind::kSin) {
    return std::sin(x);
  } else if constexpr (K == UnaryKind::kGeluErf) {
    return GeluValue(x, false);
  } else if constexpr (K == UnaryKind::kGeluTanh) {
    return GeluValue(x, true);
  } else {  // kNot
    return static_cast<T>(x == 0);
  }
}

template <UnaryKind K, typename T>
class UnaryKernel : public Kernel {
 public:
  explicit UnaryKernel(int64_t n) : n_(n) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* __restrict x = static_cast<const T*>(inputs[0]);
    T* __restrict y = static_cast<T*>(outputs[0]);
    // Transcendentals cost ~10-20x an add: split smaller tensors across threads.
    constexpr bool kHeavy = K == UnaryKind::kExp || K == UnaryKind::kErf ||
                            K == UnaryKind::kTanh || K == UnaryKind::kSigmoid ||
                            K == UnaryKind::kGeluErf || K == UnaryKind::kGeluTanh ||
                            K == UnaryKind::kLog || K == UnaryKind::kCos ||
                            K == UnaryKind::kSin;
    ParallelFor(n_, kHeavy ? kElementGrain / 8 : kElementGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) y[i] = UnaryApply<K, T>(x[i]);
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
};

template <UnaryKind K>
KernelOr MakeUnaryTyped(const ir::Node& node, bool allow_int) {
  DType dt = node.input(0)->type().dtype;
  int64_t n = node.output(0)->type().num_elements();
  switch (dt) {
    case DType::kF32: return KernelPtr(new UnaryKernel<K, float>(n));
    case DType::kF64: return KernelPtr(new UnaryKernel<K, double>(n));
    default: break;
  }
  if constexpr (K == UnaryKind::kNeg || K == UnaryKind::kAbs || K == UnaryKind::kRelu) {
    if (allow_int) {
      switch (dt) {
        case DType::kI32: return KernelPtr(new UnaryKernel<K, int32_t>(n));
        case DType::kI64: return KernelPtr(new UnaryKernel<K, int64_t>(n));
        case DType::kI8: return KernelPtr(new UnaryKernel<K, int8_t>(n));
        default: break;
      }
    }
  }
  return Unsupported(node, absl::StrCat("dtype ", DTypeStr(dt), " is not supported"));
}

KernelOr MakeUnary(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  const ir::TensorType& out = node.output(0)->type();
  if (in != out) {
    return Invalid(node, absl::StrCat("output type ", out.ToString(), " must equal the input type ",
                                      in.ToString()));
  }
  const std::string& op = node.op();
  if (op == "not") {
    if (in.dtype != DType::kBool) return Invalid(node, "not takes a bool input");
    return KernelPtr(new UnaryKernel<UnaryKind::kNot, uint8_t>(in.num_elements()));
  }
  if (op == "neg") return MakeUnaryTyped<UnaryKind::kNeg>(node, true);
  if (op == "abs") return MakeUnaryTyped<UnaryKind::kAbs>(node, true);
  if (op == "relu") return MakeUnaryTyped<UnaryKind::kRelu>(node, true);
  if (op == "sqrt") return MakeUnaryTyped<UnaryKind::kSqrt>(node, false);
  if (op == "reciprocal") return MakeUnaryTyped<UnaryKind::kReciprocal>(node, false);
  if (op == "exp") return MakeUnaryTyped<UnaryKind::kExp>(node, false);
  if (op == "log") return MakeUnaryTyped<UnaryKind::kLog>(node, false);
  if (op == "erf") return MakeUnaryTyped<UnaryKind::kErf>(node, false);
  if (op == "tanh") return MakeUnaryTyped<UnaryKind::kTanh>(node, false);
  if (op == "sigmoid") return MakeUnaryTyped<UnaryKind::kSigmoid>(node, false);
  if (op == "floor") return MakeUnaryTyped<UnaryKind::kFloor>(node, false);
  if (op == "ceil") return MakeUnaryTyped<UnaryKind::kCeil>(node, false);
  if (op == "cos") return MakeUnaryTyped<UnaryKind::kCos>(node, false);
  if (op == "sin") return MakeUnaryTyped<UnaryKind::kSin>(node, false);
  if (op == "gelu") {
    PTC_ASSIGN_OR_RETURN(std::string approx, node.GetString("approximate", "none"));
    if (approx == "none") return MakeUnaryTyped<UnaryKind::kGeluErf>(node, false);
    if (approx == "tanh") return MakeUnaryTyped<UnaryKind::kGeluTanh>(node, false);
    return Invalid(node, absl::StrCat("approximate must be \"none\" or \"tanh\", got \"", approx,
                                      "\""));
  }
  return Unsupported(node, "unknown unary op");
}

// ---------------------------------------------------------------------------------------------
// where(cond, a, b): a select by element size (dtype-agnostic).

template <typename E>
class WhereKernel : public Kernel {
 public:
  explicit WhereKernel(BroadcastPlan plan) : plan_(std::move(plan)) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const uint8_t* c = static_cast<const uint8_t*>(inputs[0]);
    const E* a = static_cast<const E*>(inputs[1]);
    const E* b = static_cast<const E*>(inputs[2]);
    E* out = static_cast<E*>(outputs[0]);
    const int64_t sc = plan_.inner_stride(0), sa = plan_.inner_stride(1),
                  sb = plan_.inner_stride(2);
    ParallelFor(plan_.total, kElementGrain, [&](int64_t begin, int64_t end) {
      plan_.ForEachSegment(begin, end, [&](int64_t o, const auto& off, int64_t len) {
        const uint8_t* __restrict cc = c + off[0];
        const E* __restrict aa = a + off[1];
        const E* __restrict bb = b + off[2];
        E* __restrict oo = out + o;
        if (sc == 1 && sa == 1 && sb == 1) {
          #pragma omp simd
          for (int64_t i = 0; i < len; ++i) oo[i] = cc[i] ? aa[i] : bb[i];
        } else if (sc == 1 && sa == 0 && sb == 1) {
          const E av = aa[0];
          #pragma omp simd
          for (int64_t i = 0; i < len; ++i) oo[i] = cc[i] ? av : bb[i];
        } else if (sc == 1 && sa == 1 && sb == 0) {
          const E bv = bb[0];
          #pragma omp simd
          for (int64_t i = 0; i < len; ++i) oo[i] = cc[i] ? aa[i] : bv;
        } else {
          #pragma omp simd
          for (int64_t i = 0; i < len; ++i) oo[i] = cc[i * sc] ? aa[i * sa] : bb[i * sb];
        }
      });
    });
    return absl::OkStatus();
  }

 private:
  BroadcastPlan plan_;
};

// ---------------------------------------------------------------------------------------------
// cast: every pair of dtypes. Float -> int truncates; out-of-range and NaN saturate / give 0
// (C++ leaves them undefined; inputs are untrusted).

template <typename To, typename From>
inline To ConvertValue(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else if constexpr (std::is_integral_v<To> && std::is_floating_point_v<From>) {
    if (!(v == v)) return To(0);
    if (v <= static_cast<From>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    if (v >= static_cast<From>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

// Reads element i of `dt` as its natural compute type and calls f(value).
template <typename F>
inline void VisitType(DType dt, F&& f) {
  switch (dt) {
    case DType::kF32: f(float{}); break;
    case DType::kF64: f(double{}); break;
    case DType::kF16: f(uint16_t{}); break;   // tagged below
    case DType::kBF16: f(int16_t{}); break;   // tagged below
    case DType::kI8: f(int8_t{}); break;
    case DType::kU8: f(uint8_t{}); break;
    case DType::kI32: f(int32_t{}); break;
    case DType::kI64: f(int64_t{}); break;
    case DType::kBool: f(bool{}); break;
  }
}

// Storage type tags: f16 is read as uint16 bits, bf16 as int16 bits; both compute as float.
template <typename Tag>
struct Storage {
  using S = Tag;
  using C = Tag;  // compute type
  static C ToCompute(S s) { return s; }
  static S FromCompute(C c) { return c; }
};
template <>
struct Storage<uint16_t> {  // f16
  using S = uint16_t;
  using C = float;
  static C ToCompute(S s) { return HalfToFloat(s); }
  static S FromCompute(C c) { return FloatToHalf(c); }
};
template <>
struct Storage<int16_t> {  // bf16
  using S = uint16_t;
  using C = float;
  static C ToCompute(S s) { return Bf16ToFloat(s); }
  static S FromCompute(C c) { return FloatToBf16(c); }
};
template <>
struct Storage<bool> {
  using S = uint8_t;
  using C = bool;
  static C ToCompute(S s) { return s != 0; }
  static S FromCompute(C c) { return c ? 1 : 0; }
};

template <typename FromTag, typename ToTag>
class CastKernel : public Kernel {
 public:
  explicit CastKernel(int64_t n) : n_(n) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    using SF = typename Storage<FromTag>::S;
    using ST = typename Storage<ToTag>::S;
    using CF = typename Storage<FromTag>::C;
    using CT = typename Storage<ToTag>::C;
    const SF* __restrict x = static_cast<const SF*>(inputs[0]);
    ST* __restrict y = static_cast<ST*>(outputs[0]);
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        CF v = Storage<FromTag>::ToCompute(x[i]);
        y[i] = Storage<ToTag>::FromCompute(ConvertValue<CT, CF>(v));
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
};

}  // namespace

KernelOr MakeElementwiseKernel(const ir::Node& node) {
  if (node.num_inputs() == 2) return MakeBinary(node);
  return MakeUnary(node);
}

KernelOr MakeWhereKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 3, 1, 1));
  const ir::TensorType& c = node.input(0)->type();
  const ir::TensorType& a = node.input(1)->type();
  const ir::TensorType& b = node.input(2)->type();
  const ir::TensorType& out = node.output(0)->type();
  if (c.dtype != DType::kBool) return Invalid(node, "the condition must be bool, got " + c.ToString());
  if (a.dtype != b.dtype || out.dtype != a.dtype) {
    return Invalid(node, absl::StrCat("value dtypes must match: ", a.ToString(), ", ", b.ToString(),
                                      " -> ", out.ToString()));
  }
  auto plan = MakeBroadcastPlan(out.shape, {c.shape, a.shape, b.shape});
  if (!plan.ok()) return Invalid(node, plan.status().message());
  switch (ir::DTypeSize(a.dtype)) {
    case 1: return KernelPtr(new WhereKernel<uint8_t>(std::move(plan).value()));
    case 2: return KernelPtr(new WhereKernel<uint16_t>(std::move(plan).value()));
    case 4: return KernelPtr(new WhereKernel<uint32_t>(std::move(plan).value()));
    case 8: return KernelPtr(new WhereKernel<uint64_t>(std::move(plan).value()));
  }
  return Unsupported(node, "element size");
}

KernelOr MakeCastKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& in = node.input(0)->type();
  const ir::TensorType& out = node.output(0)->type();
  if (in.shape != out.shape) {
    return Invalid(node, absl::StrCat("output shape ", out.ToString(), " must equal the input's ",
                                      in.ToString()));
  }
  if (node.has_attr("to")) {
    PTC_ASSIGN_OR_RETURN(DType to, node.GetDType("to"));
    if (to != out.dtype) {
      return Invalid(node, absl::StrCat("attribute to=", DTypeStr(to),
                                        " disagrees with the output type ", out.ToString()));
    }
  }
  int64_t n = in.num_elements();
  KernelPtr result;
  VisitType(in.dtype, [&](auto from) {
    VisitType(out.dtype, [&](auto to) {
      result.reset(new CastKernel<decltype(from), decltype(to)>(n));
    });
  });
  return result;
}

}  // namespace ptc::cpu::internal
