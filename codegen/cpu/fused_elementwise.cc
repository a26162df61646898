// CPU kernel for fused_elementwise (see compiler/ir/ops_fused.cc for the op): a postfix program
// over the operands, evaluated tile by tile. Each program step is one plain loop over a tile
// of kTile elements (vectorized with `omp simd`; the math is kernel_util.h's vectorizable
// FastExp/FastErf/FastTanh), so the interpretation cost is paid once per tile, not per
// element, and every intermediate stays in L1. Tiles are split across threads.
//
// A "dropoutK" token (fuse-elementwise's absorbed dropout) masks its tile by the output's
// element indices (compiler/ir/dropout.h: the dropout kernel's bits); its counter operand is
// read once per run.
//
// Operands are read in one of four ways, chosen at creation: full (same shape as the output:
// read in place, no copy), scalar (one element, broadcast), suffix (broadcast over leading
// dims only, e.g. a bias [C] against [B,T,C]: index = i mod n), and general (strided).
// The vectorizable math in kernel_util.h clamps with float selects; GCC if-converts (and so
// vectorizes) them only without trapping math. ptc never enables FP exceptions.
#pragma GCC optimize("no-trapping-math")

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/fused_kernels.h"
#include "codegen/cpu/kernel_util.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ops_fused.h"

namespace ptc::cpu {
namespace {

using internal::KernelOr;
using internal::KernelPtr;

constexpr int64_t kTile = 512;

enum class Op : uint8_t {
  kInput, kConst,
  // unary
  kNeg, kAbs, kSqrt, kReciprocal, kExp, kLog, kErf, kTanh, kSigmoid, kRelu, kFloor, kCeil,
  kCos, kSin, kIdentity, kGelu, kGeluTanh,
  // binary
  kAdd, kSub, kMul, kDiv, kPow, kMax, kMin,
  // unary, by element index: fused_elementwise's "dropoutK" (index = K)
  kDropout,
};

struct TokenInfo {
  std::string_view name;
  Op op;
};
constexpr TokenInfo kTokens[] = {
    {"neg", Op::kNeg},     {"abs", Op::kAbs},         {"sqrt", Op::kSqrt},
    {"reciprocal", Op::kReciprocal}, {"exp", Op::kExp}, {"log", Op::kLog},
    {"erf", Op::kErf},     {"tanh", Op::kTanh},       {"sigmoid", Op::kSigmoid},
    {"relu", Op::kRelu},   {"floor", Op::kFloor},     {"ceil", Op::kCeil},
    {"cos", Op::kCos},     {"sin", Op::kSin},
    {"identity", Op::kIdentity}, {"gelu", Op::kGelu}, {"gelu_tanh", Op::kGeluTanh},
    {"add", Op::kAdd},     {"sub", Op::kSub},         {"mul", Op::kMul},
    {"div", Op::kDiv},     {"pow", Op::kPow},         {"max", Op::kMax},
    {"min", Op::kMin},
};

bool IsBinary(Op op) { return op >= Op::kAdd && op <= Op::kMin; }

struct Instr {
  Op op;
  int index = 0;  // operand or constant index
};

// How one operand is read for output elements [b, b + len).
struct InputPlan {
  enum Mode { kFull, kScalar, kSuffix, kGeneral } mode = kFull;
  int64_t n = 0;                 // suffix: element count
  std::vector<int64_t> strides;  // general: per output dim, 0 where broadcast
};

template <typename T>
inline T ApplyUnaryScalar(Op op, T x) {
  constexpr T kHalf = T(0.5), kOne = T(1);
  switch (op) {
    case Op::kNeg: return -x;
    case Op::kAbs: return std::fabs(x);
    case Op::kSqrt: return std::sqrt(x);
    case Op::kReciprocal: return kOne / x;
    case Op::kExp: return internal::Exp(x);
    case Op::kLog: return std::log(x);
    case Op::kErf: return internal::Erf(x);
    case Op::kTanh: return internal::Tanh(x);
    case Op::kSigmoid: return internal::Sigmoid(x);
    case Op::kRelu: return x > T(0) ? x : (x != x ? x : T(0));
    case Op::kFloor: return std::floor(x);
    case Op::kCeil: return std::ceil(x);
    case Op::kCos: return std::cos(x);
    case Op::kSin: return std::sin(x);
    case Op::kGelu: return kHalf * x * (kOne + internal::Erf(x * T(0.70710678118654752440)));
    case Op::kGeluTanh: {
      T inner = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
      return kHalf * x * (kOne + internal::Tanh(inner));
    }
    default: return x;
  }
}

// One loop per op (the switch is outside the loop) so that each loop vectorizes.
template <typename T>
void UnaryLoop(Op op, T* d, const T* a, int64_t n) {
#define PTC_UNARY_LOOP(OP)                                              \
  case OP:                                                              \
    _Pragma("omp simd") for (int64_t j = 0; j < n; ++j) d[j] = ApplyUnaryScalar<T>(OP, a[j]); \
    break;
  switch (op) {
    PTC_UNARY_LOOP(Op::kNeg)
    PTC_UNARY_LOOP(Op::kAbs)
    PTC_UNARY_LOOP(Op::kSqrt)
    PTC_UNARY_LOOP(Op::kReciprocal)
    PTC_UNARY_LOOP(Op::kExp)
    PTC_UNARY_LOOP(Op::kLog)
    PTC_UNARY_LOOP(Op::kErf)
    PTC_UNARY_LOOP(Op::kTanh)
    PTC_UNARY_LOOP(Op::kSigmoid)
    PTC_UNARY_LOOP(Op::kRelu)
    PTC_UNARY_LOOP(Op::kFloor)
    PTC_UNARY_LOOP(Op::kCeil)
    PTC_UNARY_LOOP(Op::kCos)
    PTC_UNARY_LOOP(Op::kSin)
    PTC_UNARY_LOOP(Op::kGelu)
    PTC_UNARY_LOOP(Op::kGeluTanh)
    default:
      if (d != a) std::copy(a, a + n, d);
  }
#undef PTC_UNARY_LOOP
}

template <typename T>
inline T ApplyBinaryScalar(Op op, T a, T b) {
  switch (op) {
    case Op::kAdd: return a + b;
    case Op::kSub: return a - b;
    case Op::kMul: return a * b;
    case Op::kDiv: return a / b;
    case Op::kPow: return std::pow(a, b);
    case Op::kMax: return (a > b || a != a) ? a : b;  // NaN propagates
    case Op::kMin: return (a < b || a != a) ? a : b;
    default: return a;
  }
}

template <typename T>
void BinaryLoop(Op op, T* d, const T* a, const T* b, int64_t n) {
  // d may equal a (in-place on the stack slot); a and b never overlap d otherwise.
#define PTC_BINARY_LOOP(OP)                                                          \
  case OP:                                                                           \
    _Pragma("omp simd") for (int64_t j = 0; j < n; ++j) d[j] = ApplyBinaryScalar<T>(OP, a[j], b[j]); \
    break;
  switch (op) {
    PTC_BINARY_LOOP(Op::kAdd)
    PTC_BINARY_LOOP(Op::kSub)
    PTC_BINARY_LOOP(Op::kMul)
    PTC_BINARY_LOOP(Op::kDiv)
    PTC_BINARY_LOOP(Op::kPow)
    PTC_BINARY_LOOP(Op::kMax)
    PTC_BINARY_LOOP(Op::kMin)
    default: break;
  }
#undef PTC_BINARY_LOOP
}

// A "dropoutK" token's mask (compiler/ir/dropout.h) for the output elements [b, b + n).
struct DropoutMask {
  uint64_t key = 0;
  uint32_t threshold = 0;
  double scale = 1;
};
template <typename T>
void DropoutLoop(const DropoutMask& m, T* d, const T* a, int64_t b, int64_t n) {
  const T scale = static_cast<T>(m.scale);
  internal::DropoutApply(m.key, static_cast<uint64_t>(b), n, m.threshold, scale, a, d);
}

template <typename T>
class FusedElementwiseKernel : public Kernel {
 public:
  FusedElementwiseKernel(std::vector<Instr> program, std::vector<T> constants,
                         std::vector<InputPlan> plans, ir::Shape shape, int max_depth,
                         std::vector<ir::FusedDropout> dropouts, std::vector<ir::DType> counters)
      : program_(std::move(program)), constants_(std::move(constants)),
        plans_(std::move(plans)), shape_(std::move(shape)), max_depth_(max_depth),
        dropouts_(std::move(dropouts)), counter_dtypes_(std::move(counters)) {
    total_ = ir::NumElements(shape_);
  }

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    T* out = static_cast<T*>(outputs[0]);
    // The dropouts' keys from their counters, read once per run.
    std::vector<DropoutMask> masks(dropouts_.size());
    for (size_t k = 0; k < dropouts_.size(); ++k) {
      const ir::FusedDropout& d = dropouts_[k];
      const void* c = d.counter >= 0 ? inputs[d.counter] : nullptr;
      const bool i32 = d.counter >= 0 && counter_dtypes_[d.counter] == ir::DType::kI32;
      masks[k] = {ir::DropoutKey(d.seed, ir::DropoutCounter(c, i32)),
                  ir::DropoutThreshold(d.ratio), ir::DropoutScale(d.ratio)};
    }
    const int64_t tiles = (total_ + kTile - 1) / kTile;
    internal::ParallelFor(tiles, std::max<int64_t>(1, internal::kElementGrain / kTile),
                          [&](int64_t tb, int64_t te) {
      // One scratch buffer per stack slot, per chunk of tiles.
      std::vector<T> scratch(static_cast<size_t>(max_depth_) * kTile);
      std::vector<const T*> ptr(max_depth_);
      for (int64_t t = tb; t < te; ++t) {
        int64_t b = t * kTile, len = std::min(kTile, total_ - b);
        RunTile(inputs, masks.data(), out + b, b, len, scratch.data(), ptr.data());
      }
    });
    return absl::OkStatus();
  }

 private:
  void RunTile(absl::Span<const void* const> inputs, const DropoutMask* masks, T* out, int64_t b,
               int64_t len, T* scratch, const T** ptr) const {
    int sp = 0;  // stack depth
    const size_t last = program_.size() - 1;
    for (size_t k = 0; k < program_.size(); ++k) {
      const Instr& in = program_[k];
      T* buf = scratch + static_cast<int64_t>(sp) * kTile;
      if (in.op == Op::kInput) {
        ptr[sp++] = Load(static_cast<const T*>(inputs[in.index]), plans_[in.index], b, len, buf);
      } else if (in.op == Op::kConst) {
        std::fill(buf, buf + len, constants_[in.index]);
        ptr[sp++] = buf;
      } else if (IsBinary(in.op)) {
        T* d = k == last ? out : scratch + static_cast<int64_t>(sp - 2) * kTile;
        BinaryLoop<T>(in.op, d, ptr[sp - 2], ptr[sp - 1], len);
        ptr[sp - 2] = d;
        --sp;
      } else {
        T* d = k == last ? out : scratch + static_cast<int64_t>(sp - 1) * kTile;
        if (in.op == Op::kDropout) {
          DropoutLoop<T>(masks[in.index], d, ptr[sp - 1], b, len);
        } else {
          UnaryLoop<T>(in.op, d, ptr[sp - 1], len);
        }
        ptr[sp - 1] = d;
      }
    }
    // A program that ends with a load (a single operand) still has to write the output.
    if ((program_[last].op == Op::kInput || program_[last].op == Op::kConst) && ptr[0] != out) {
      std::copy(ptr[0], ptr[0] + len, out);  // (the output may take that input's buffer)
    }
  }

  // Returns a pointer to len elements of operand `x` for output elements [b, b + len).
  const T* Load(const T* x, const InputPlan& p, int64_t b, int64_t len, T* buf) const {
    switch (p.mode) {
      case InputPlan::kFull:
        return x + b;
      case InputPlan::kScalar:
        std::fill(buf, buf + len, x[0]);
        return buf;
      case InputPlan::kSuffix: {
        int64_t pos = b % p.n, j = 0;
        while (j < len) {
          int64_t seg = std::min(len - j, p.n - pos);
          std::copy(x + pos, x + pos + seg, buf + j);
          j += seg;
          pos = 0;
        }
        return buf;
      }
      case InputPlan::kGeneral: {
        const int r = static_cast<int>(shape_.size());
        std::vector<int64_t> idx(r);
        int64_t rem = b, off = 0;
        for (int d = r - 1; d >= 0; --d) {
          idx[d] = rem % shape_[d];
          rem /= shape_[d];
          off += idx[d] * p.strides[d];
        }
        for (int64_t j = 0; j < len; ++j) {
          buf[j] = x[off];
          for (int d = r - 1; d >= 0; --d) {  // odometer increment
            off += p.strides[d];
            if (++idx[d] < shape_[d]) break;
            off -= idx[d] * p.strides[d];
            idx[d] = 0;
          }
        }
        return buf;
      }
    }
    return buf;
  }

  std::vector<Instr> program_;
  std::vector<T> constants_;
  std::vector<InputPlan> plans_;
  ir::Shape shape_;
  int max_depth_;
  std::vector<ir::FusedDropout> dropouts_;
  std::vector<ir::DType> counter_dtypes_;  // per operand
  int64_t total_ = 0;
};

absl::StatusOr<InputPlan> MakeInputPlan(const ir::Shape& in, const ir::Shape& out) {
  InputPlan p;
  const int r = static_cast<int>(out.size());
  if (static_cast<int>(in.size()) > r) {
    return absl::InvalidArgumentError(absl::StrCat("operand shape ", ir::ShapeToString(in),
                                                   " has more dims than the output ",
                                                   ir::ShapeToString(out)));
  }
  ir::Shape aligned(r - in.size(), 1);
  aligned.insert(aligned.end(), in.begin(), in.end());
  for (int d = 0; d < r; ++d) {
    if (aligned[d] != out[d] && aligned[d] != 1) {
      return absl::InvalidArgumentError(absl::StrCat("operand shape ", ir::ShapeToString(in),
                                                     " does not broadcast to ",
                                                     ir::ShapeToString(out)));
    }
  }
  const int64_t n = ir::NumElements(in);
  if (n == ir::NumElements(out)) {
    p.mode = InputPlan::kFull;
    return p;
  }
  if (n == 1) {
    p.mode = InputPlan::kScalar;
    return p;
  }
  // Suffix: after dropping leading broadcast dims, the rest equals the output's trailing dims.
  int first = 0;
  while (first < r && aligned[first] == 1) ++first;
  bool suffix = true;
  for (int d = first; d < r; ++d) suffix &= aligned[d] == out[d];
  if (suffix) {
    p.mode = InputPlan::kSuffix;
    p.n = n;
    return p;
  }
  p.mode = InputPlan::kGeneral;
  p.strides.assign(r, 0);
  int64_t stride = 1;
  for (int d = r - 1; d >= 0; --d) {
    p.strides[d] = aligned[d] == 1 ? 0 : stride;
    stride *= aligned[d];
  }
  return p;
}

template <typename T>
KernelOr MakeFusedElementwiseTyped(const ir::Node& node) {
  auto invalid = [&](std::string what) {
    return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", what));
  };
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> shape, node.GetInts("shape"));
  if (node.num_outputs() != 1 || node.output()->type().shape != shape) {
    return invalid("output type must be the 'shape' attribute");
  }
  PTC_ASSIGN_OR_RETURN(ir::FusedProgram program, ir::ParseFusedProgram(node));
  std::vector<T> constants;
  for (double v : program.constants) constants.push_back(static_cast<T>(v));
  std::vector<Instr> instrs;
  for (const ir::FusedToken& tok : program.tokens) {
    Instr in{Op::kIdentity, tok.index};
    switch (tok.kind) {
      case ir::FusedToken::kOperand: in.op = Op::kInput; break;
      case ir::FusedToken::kConstant: in.op = Op::kConst; break;
      case ir::FusedToken::kDropout: in.op = Op::kDropout; break;
      case ir::FusedToken::kOp: {
        bool found = false;
        for (const TokenInfo& t : kTokens) {
          if (t.name == tok.op) {
            in.op = t.op;
            found = true;
          }
        }
        if (!found) return invalid(absl::StrCat("no CPU kernel for program token '", tok.op, "'"));
        break;
      }
    }
    instrs.push_back(in);
  }
  std::vector<InputPlan> plans;
  std::vector<ir::DType> dtypes;
  for (size_t i = 0; i < node.num_inputs(); ++i) {
    dtypes.push_back(node.input(i)->type().dtype);
    if (program.counter[i]) {
      plans.emplace_back();  // read once, by Run
      continue;
    }
    if (node.input(i)->type().dtype != node.output()->type().dtype) {
      return invalid(absl::StrCat("operand ", i, " is ", node.input(i)->type().ToString(),
                                  ", output is ", node.output()->type().ToString()));
    }
    absl::StatusOr<InputPlan> p = MakeInputPlan(node.input(i)->type().shape, shape);
    if (!p.ok()) return invalid(std::string(p.status().message()));
    plans.push_back(*std::move(p));
  }
  return KernelPtr(new FusedElementwiseKernel<T>(std::move(instrs), std::move(constants),
                                                 std::move(plans), shape, program.max_depth,
                                                 std::move(program.dropouts), std::move(dtypes)));
}

}  // namespace

bool HasFusedKernel(std::string_view op) {
  return op == "fused_elementwise" || op == "fused_matmul";
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateFusedKernel(const ir::Node& node) {
  if (node.op() == "fused_matmul") return internal::MakeFusedMatMulKernel(node);
  if (node.op() == "fused_elementwise") {
    if (node.num_outputs() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": one output expected"));
    }
    switch (node.output()->type().dtype) {
      case ir::DType::kF32: return MakeFusedElementwiseTyped<float>(node);
      case ir::DType::kF64: return MakeFusedElementwiseTyped<double>(node);
      default:
        return absl::UnimplementedError(
            absl::StrCat(node.Describe(), ": CPU fused_elementwise supports f32 and f64, got ",
                         node.output()->type().ToString()));
    }
  }
  return absl::UnimplementedError(
      absl::StrCat(node.Describe(), ": no CPU kernel for fused op '", node.op(), "'"));
}

}  // namespace ptc::cpu
