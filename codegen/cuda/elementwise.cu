// Elementwise kernels: unary / binary ops with broadcasting, where, cast, trilu, and the
// fused_elementwise interpreter. One kernel per dtype with a run-time op switch (uniform across
// the grid, so no divergence) keeps nvcc's work small; fused chains get generated code (NVRTC)
// in a later step (runtime/cuda/README.md).
#include <cmath>

#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {

bool IsBinary(Op op) { return op <= Op::kXor; }
bool IsComparison(Op op) { return op >= Op::kEqual && op <= Op::kGreaterEqual; }

namespace {

constexpr int kThreads = 256;

template <typename C>
__device__ __forceinline__ C ApplyUnary(Op op, C x) {
  if constexpr (std::is_floating_point_v<C>) {
    switch (op) {
      case Op::kNeg: return -x;
      case Op::kAbs: return fabs(x);
      case Op::kSqrt: return sqrt(x);
      case Op::kReciprocal: return C(1) / x;
      case Op::kExp: return exp(x);
      case Op::kLog: return log(x);
      case Op::kErf: return erf(x);
      case Op::kTanh: return tanh(x);
      case Op::kSigmoid: return C(1) / (C(1) + exp(-x));
      case Op::kRelu: return x > C(0) ? x : C(0);
      case Op::kFloor: return floor(x);
      case Op::kCeil: return ceil(x);
      case Op::kGelu: return C(0.5) * x * (C(1) + erf(x * C(0.70710678118654752440)));
      case Op::kGeluTanh: {
        const C kAlpha = C(0.79788456080286535588);  // sqrt(2 / pi)
        return C(0.5) * x * (C(1) + tanh(kAlpha * (x + C(0.044715) * x * x * x)));
      }
      case Op::kNot: return x == C(0) ? C(1) : C(0);
      default: return x;  // identity
    }
  } else {
    switch (op) {
      case Op::kNeg: return -x;
      case Op::kAbs: return x < 0 ? -x : x;
      case Op::kRelu: return x > 0 ? x : 0;
      case Op::kNot: return x == 0;
      default: return x;  // identity, floor, ceil
    }
  }
}

template <typename C>
__device__ __forceinline__ C ApplyBinary(Op op, C a, C b) {
  switch (op) {
    case Op::kAdd: return a + b;
    case Op::kSub: return a - b;
    case Op::kMul: return a * b;
    case Op::kDiv:
      if constexpr (std::is_floating_point_v<C>) {
        return a / b;
      } else {
        return b == 0 ? C(0) : a / b;  // C division truncates toward zero, like the CPU kernel
      }
    case Op::kPow:
      if constexpr (std::is_floating_point_v<C>) {
        return pow(a, b);
      } else {
        return static_cast<C>(pow(static_cast<double>(a), static_cast<double>(b)));
      }
    case Op::kMax:
      if constexpr (std::is_floating_point_v<C>) {
        if (a != a || b != b) return a + b;  // NaN propagates
      }
      return a > b ? a : b;
    case Op::kMin:
      if constexpr (std::is_floating_point_v<C>) {
        if (a != a || b != b) return a + b;
      }
      return a < b ? a : b;
    case Op::kEqual: return a == b;
    case Op::kLess: return a < b;
    case Op::kGreater: return a > b;
    case Op::kLessEqual: return a <= b;
    case Op::kGreaterEqual: return a >= b;
    case Op::kAnd: return (a != 0) && (b != 0);
    case Op::kOr: return (a != 0) || (b != 0);
    case Op::kXor: return (a != 0) != (b != 0);
    default: return a;
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    ElementwiseKernel(Op op, BroadcastDesc d, const typename Ty<D>::S* __restrict__ a,
                      const typename Ty<D>::S* __restrict__ b, void* __restrict__ out) {
  using S = typename Ty<D>::S;
  using C = typename Ty<D>::C;
  const bool binary = op <= Op::kXor;
  const bool to_bool = op >= Op::kEqual && op <= Op::kGreaterEqual;
  for (int64_t i = GlobalThread(); i < d.n; i += GridStride()) {
    int64_t oa = 0, ob = 0, r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const int64_t c = r % d.shape[k];
      r /= d.shape[k];
      oa += c * d.strides[0][k];
      ob += c * d.strides[1][k];
    }
    const C x = Load<D>(a, oa);
    C y;
    if (binary) {
      y = ApplyBinary<C>(op, x, Load<D>(b, ob));
    } else {
      y = ApplyUnary<C>(op, x);
    }
    if (to_bool) {
      static_cast<uint8_t*>(out)[i] = y != C(0);
    } else {
      Store<D>(static_cast<S*>(out), i, y);
    }
  }
}

template <int B>
__global__ void __launch_bounds__(kThreads)
    WhereKernel(BroadcastDesc d, const uint8_t* __restrict__ cond,
                const typename Bits<B>::T* __restrict__ a, const typename Bits<B>::T* __restrict__ b,
                typename Bits<B>::T* __restrict__ out) {
  for (int64_t i = GlobalThread(); i < d.n; i += GridStride()) {
    int64_t oc = 0, oa = 0, ob = 0, r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const int64_t c = r % d.shape[k];
      r /= d.shape[k];
      oc += c * d.strides[0][k];
      oa += c * d.strides[1][k];
      ob += c * d.strides[2][k];
    }
    out[i] = cond[oc] ? a[oa] : b[ob];
  }
}

__device__ __forceinline__ bool IsFloatDT(DT dt) {
  return dt == DT::kF32 || dt == DT::kF16 || dt == DT::kBF16 || dt == DT::kF64;
}

__device__ __forceinline__ double LoadAsDouble(const void* p, DT dt, int64_t i) {
  switch (dt) {
    case DT::kF32: return static_cast<const float*>(p)[i];
    case DT::kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case DT::kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return static_cast<const double*>(p)[i];
  }
}

__device__ __forceinline__ int64_t LoadAsInt(const void* p, DT dt, int64_t i) {
  switch (dt) {
    case DT::kI8: return static_cast<const int8_t*>(p)[i];
    case DT::kU8: return static_cast<const uint8_t*>(p)[i];
    case DT::kI32: return static_cast<const int32_t*>(p)[i];
    case DT::kI64: return static_cast<const int64_t*>(p)[i];
    default: return static_cast<const uint8_t*>(p)[i] != 0;  // bool
  }
}

__device__ __forceinline__ void StoreDouble(void* p, DT dt, int64_t i, double v) {
  switch (dt) {
    case DT::kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DT::kF16: static_cast<__half*>(p)[i] = __double2half(v); break;
    case DT::kBF16: static_cast<__nv_bfloat16*>(p)[i] = __double2bfloat16(v); break;
    default: static_cast<double*>(p)[i] = v; break;
  }
}

__device__ __forceinline__ void StoreInt(void* p, DT dt, int64_t i, int64_t v) {
  switch (dt) {
    case DT::kI8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
    case DT::kU8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); break;
    case DT::kI32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); break;
    case DT::kI64: static_cast<int64_t*>(p)[i] = v; break;
    default: static_cast<uint8_t*>(p)[i] = v != 0; break;  // bool
  }
}

// One kernel for every (from, to) pair: casts are rare and memory-bound, so the two switches
// cost nothing measurable and save 80 instantiations.
__global__ void __launch_bounds__(kThreads)
    CastKernel(DT from, DT to, int64_t n, const void* __restrict__ in, void* __restrict__ out) {
  const bool from_float = IsFloatDT(from), to_float = IsFloatDT(to);
  for (int64_t i = GlobalThread(); i < n; i += GridStride()) {
    if (from_float) {
      const double v = LoadAsDouble(in, from, i);
      if (to_float) {
        StoreDouble(out, to, i, v);
      } else if (to == DT::kBool) {
        StoreInt(out, to, i, v != 0.0);
      } else {
        // Float -> int truncates toward zero; NaN and out-of-range values are undefined in
        // ONNX: map NaN to 0 and saturate to int64 so the conversion itself never traps.
        double t = trunc(v);
        int64_t iv = t != t ? 0
                     : t >= 9.2233720368547758e18 ? INT64_MAX
                     : t <= -9.2233720368547758e18 ? INT64_MIN
                                                  : static_cast<int64_t>(t);
        StoreInt(out, to, i, iv);
      }
    } else {
      const int64_t v = LoadAsInt(in, from, i);
      if (to_float) {
        StoreDouble(out, to, i, static_cast<double>(v));
      } else {
        StoreInt(out, to, i, v);
      }
    }
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    FusedKernel(const FusedDesc* __restrict__ gdesc, FusedOperands ops, int64_t n,
                typename Ty<D>::S* __restrict__ out) {
  using C = typename Ty<D>::C;
  // The descriptor (~3 KB) is read once per block into shared memory.
  __shared__ FusedDesc d;
  {
    const int words = sizeof(FusedDesc) / 4;
    const uint32_t* src = reinterpret_cast<const uint32_t*>(gdesc);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&d);
    for (int w = threadIdx.x; w < words; w += blockDim.x) dst[w] = src[w];
  }
  __syncthreads();
  for (int64_t i = GlobalThread(); i < n; i += GridStride()) {
    int64_t off[kMaxFusedOperands];
    for (int j = 0; j < d.num_operands; ++j) off[j] = 0;
    int64_t r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const int64_t c = r % d.shape[k];
      r /= d.shape[k];
      for (int j = 0; j < d.num_operands; ++j) off[j] += c * d.strides[j][k];
    }
    C stack[kMaxFusedStack];
    int sp = 0;
    for (int t = 0; t < d.program_size; ++t) {
      const FusedToken tok = d.program[t];
      if (tok.kind == 0) {
        stack[sp++] = Load<D>(static_cast<const typename Ty<D>::S*>(ops.ptr[tok.index]),
                              off[tok.index]);
      } else if (tok.kind == 1) {
        stack[sp++] = static_cast<C>(d.constants[tok.index]);
      } else {
        const Op op = static_cast<Op>(tok.index);
        if (op <= Op::kMin) {
          const C b = stack[--sp];
          stack[sp - 1] = ApplyBinary<C>(op, stack[sp - 1], b);
        } else {
          stack[sp - 1] = ApplyUnary<C>(op, stack[sp - 1]);
        }
      }
    }
    Store<D>(out, i, stack[0]);
  }
}

template <int B>
__global__ void __launch_bounds__(kThreads)
    TriluKernel(int64_t n, int64_t rows, int64_t cols, bool upper, int64_t k,
                const typename Bits<B>::T* __restrict__ in, typename Bits<B>::T* __restrict__ out) {
  for (int64_t idx = GlobalThread(); idx < n; idx += GridStride()) {
    const int64_t j = idx % cols;
    const int64_t i = (idx / cols) % rows;
    const bool keep = upper ? (j - i >= k) : (j - i <= k);
    out[idx] = keep ? in[idx] : typename Bits<B>::T(0);
  }
}

}  // namespace

cudaError_t LaunchElementwise(Op op, DT dt, const BroadcastDesc& d, const void* a, const void* b,
                              void* out, cudaStream_t stream) {
  if (d.n == 0) return cudaSuccess;
  const unsigned grid = GridFor(d.n, kThreads);
#define PTC_EW_CASE(D)                                                                    \
  case D:                                                                                 \
    ElementwiseKernel<D><<<grid, kThreads, 0, stream>>>(                                  \
        op, d, static_cast<const Ty<D>::S*>(a), static_cast<const Ty<D>::S*>(b), out);    \
    break;
  switch (dt) {
    PTC_EW_CASE(DT::kF32)
    PTC_EW_CASE(DT::kF16)
    PTC_EW_CASE(DT::kBF16)
    PTC_EW_CASE(DT::kF64)
    PTC_EW_CASE(DT::kI8)
    PTC_EW_CASE(DT::kU8)
    PTC_EW_CASE(DT::kI32)
    PTC_EW_CASE(DT::kI64)
    PTC_EW_CASE(DT::kBool)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_EW_CASE
  return cudaGetLastError();
}

cudaError_t LaunchWhere(int elem_bytes, const BroadcastDesc& d, const void* cond, const void* a,
                        const void* b, void* out, cudaStream_t stream) {
  if (d.n == 0) return cudaSuccess;
  const unsigned grid = GridFor(d.n, kThreads);
  const uint8_t* c = static_cast<const uint8_t*>(cond);
#define PTC_WHERE_CASE(B)                                                                  \
  case B:                                                                                  \
    WhereKernel<B><<<grid, kThreads, 0, stream>>>(                                         \
        d, c, static_cast<const Bits<B>::T*>(a), static_cast<const Bits<B>::T*>(b),        \
        static_cast<Bits<B>::T*>(out));                                                    \
    break;
  switch (elem_bytes) {
    PTC_WHERE_CASE(1)
    PTC_WHERE_CASE(2)
    PTC_WHERE_CASE(4)
    PTC_WHERE_CASE(8)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_WHERE_CASE
  return cudaGetLastError();
}

cudaError_t LaunchCast(DT from, DT to, int64_t n, const void* in, void* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  CastKernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(from, to, n, in, out);
  return cudaGetLastError();
}

cudaError_t LaunchFused(DT dt, const FusedDesc* device_desc, const FusedOperands& operands,
                        int64_t n, void* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned grid = GridFor(n, kThreads);
  switch (dt) {
    case DT::kF32:
      FusedKernel<DT::kF32><<<grid, kThreads, 0, stream>>>(device_desc, operands, n,
                                                           static_cast<float*>(out));
      break;
    case DT::kF16:
      FusedKernel<DT::kF16><<<grid, kThreads, 0, stream>>>(device_desc, operands, n,
                                                           static_cast<__half*>(out));
      break;
    case DT::kBF16:
      FusedKernel<DT::kBF16><<<grid, kThreads, 0, stream>>>(device_desc, operands, n,
                                                            static_cast<__nv_bfloat16*>(out));
      break;
    case DT::kF64:
      FusedKernel<DT::kF64><<<grid, kThreads, 0, stream>>>(device_desc, operands, n,
                                                           static_cast<double*>(out));
      break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchTrilu(int elem_bytes, int64_t batch, int64_t rows, int64_t cols, bool upper,
                        int64_t k, const void* in, void* out, cudaStream_t stream) {
  const int64_t n = batch * rows * cols;
  if (n == 0) return cudaSuccess;
  const unsigned grid = GridFor(n, kThreads);
#define PTC_TRILU_CASE(B)                                                                  \
  case B:                                                                                  \
    TriluKernel<B><<<grid, kThreads, 0, stream>>>(n, rows, cols, upper, k,                 \
                                                  static_cast<const Bits<B>::T*>(in),      \
                                                  static_cast<Bits<B>::T*>(out));          \
    break;
  switch (elem_bytes) {
    PTC_TRILU_CASE(1)
    PTC_TRILU_CASE(2)
    PTC_TRILU_CASE(4)
    PTC_TRILU_CASE(8)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_TRILU_CASE
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
