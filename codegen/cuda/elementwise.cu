// Elementwise kernels: unary / binary ops with broadcasting, where, cast, trilu, and the
// fused_elementwise interpreter. One kernel per dtype with a run-time op switch (uniform across
// the grid, so no divergence) keeps nvcc's work small; fused chains get generated code (NVRTC,
// codegen/cuda/nvrtc_codegen.cc) where the plan has it for the device. The interpreter's
// "dropoutK" tokens draw compiler/ir/dropout.h's mask over the output index, each block
// computing the keys from the counters (read on the device) once.
#include <cmath>

#include "codegen/cuda/device_util.cuh"
#include "compiler/ir/dropout.h"

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
      case Op::kCos: return cos(x);
      case Op::kSin: return sin(x);
      case Op::kGelu: return GeluOf(x, false);
      case Op::kGeluTanh: return GeluOf(x, true);
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

// ------------------------------------------------------------------ unary / binary / where
// Three paths, chosen per launch on the host (LaunchElementwise / LaunchWhere), all computing
// each element with the same EwElement / ApplyUnary / ApplyBinary / Widen / Narrow, so their
// results are bit-identical:
//  - flat (rank 1 after dims were merged: every operand contiguous with the output, or one
//    broadcast value): 32-bit index, V elements per 16-byte access, a scalar tail;
//  - rows (rank 2: [M, N] against a bias row [N], a column [M, 1] or a scalar): 32-bit index,
//    (row, col) advanced by the grid stride without division, 16-byte accesses of full rows;
//  - general (any broadcast up to kMaxRank): per-element div/mod over the dims, in 32 bits when
//    the element count fits, else 64.
// Every loop is grid-stride over a persistent grid (PersistentGrid).

template <DT D>
using S = typename Ty<D>::S;

template <DT D>
__device__ __forceinline__ void EwElement(Op op, bool binary, bool to_bool, const S<D>* a,
                                          int64_t oa, const S<D>* b, int64_t ob, void* out,
                                          int64_t i) {
  using C = typename Ty<D>::C;
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
    Store<D>(static_cast<S<D>*>(out), i, y);
  }
}

// V lanes of an operand: V consecutive elements from p (a full operand: one vector access) or
// p's single element in every lane (a broadcast one).
template <DT D, int V>
__device__ __forceinline__ void LoadLanes(const S<D>* p, bool full,
                                          typename Ty<D>::C (&x)[V]) {
  if (full) {
    S<D> s[V];
    LoadVec<S<D>, V>(p, s);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = Widen<D>(s[j]);
  } else {
    const typename Ty<D>::C c = Load<D>(p, 0);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = c;
  }
}

// V results to out + e (the output is always contiguous and aligned to V elements).
template <DT D, int V>
__device__ __forceinline__ void EwVector(Op op, bool binary, bool to_bool, const S<D>* a,
                                         bool a_full, const S<D>* b, bool b_full, void* out,
                                         uint32_t e) {
  using C = typename Ty<D>::C;
  C x[V], y[V];
  LoadLanes<D, V>(a, a_full, x);
  if (binary) {
    C z[V];
    LoadLanes<D, V>(b, b_full, z);
#pragma unroll
    for (int j = 0; j < V; ++j) y[j] = ApplyBinary<C>(op, x[j], z[j]);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) y[j] = ApplyUnary<C>(op, x[j]);
  }
  if (to_bool) {
    uint8_t o[V];
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = y[j] != C(0);
    StoreVec<uint8_t, V>(static_cast<uint8_t*>(out) + e, o);
  } else {
    S<D> o[V];
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = Narrow<D>(y[j]);
    StoreVec<S<D>, V>(static_cast<S<D>*>(out) + e, o);
  }
}

// Flat path: a_full / b_full say whether the operand has the output's layout (stride 1) or is
// one broadcast value (stride 0). n < 2^31.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    EwFlatKernel(Op op, uint32_t n, const S<D>* __restrict__ a, bool a_full,
                 const S<D>* __restrict__ b, bool b_full, void* __restrict__ out) {
  constexpr int V = kVec<S<D>>;
  const bool binary = op <= Op::kXor;
  const bool to_bool = op >= Op::kEqual && op <= Op::kGreaterEqual;
  const uint32_t nv = n / V, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  for (uint32_t i = first; i < nv; i += stride) {
    const uint32_t e = i * V;
    EwVector<D, V>(op, binary, to_bool, a + (a_full ? e : 0), a_full,
                   b + (binary && b_full ? e : 0), b_full, out, e);
  }
  // The last n % V elements: one each for the grid's first threads.
  const uint32_t t = nv * V + first;
  if (t < n) EwElement<D>(op, binary, to_bool, a, a_full ? t : 0, b, b_full ? t : 0, out, t);
}

// Rank-2 path over [m, n] (output row-major): operand k is read at row * s0[k] + col (col[k])
// or row * s0[k] (no col: one value per row, the same in every lane of a vector). m * n < 2^31.
struct RowDesc {
  uint32_t m = 0, n = 0;
  uint32_t s0[3] = {};
  bool col[3] = {};
};

// (row, col-vector) of the first vector and the per-stride increments: one division per
// thread, then additions only.
struct RowCursor {
  uint32_t row, col, drow, dcol, nvr;
  __device__ __forceinline__ RowCursor(uint32_t first, uint32_t stride, uint32_t vectors_per_row)
      : row(first / vectors_per_row), col(first % vectors_per_row),
        drow(stride / vectors_per_row), dcol(stride % vectors_per_row), nvr(vectors_per_row) {}
  __device__ __forceinline__ void Advance() {
    col += dcol;
    row += drow;
    if (col >= nvr) {
      col -= nvr;
      ++row;
    }
  }
};

template <DT D>
__global__ void __launch_bounds__(kThreads)
    EwRowKernel(Op op, RowDesc r, const S<D>* __restrict__ a, const S<D>* __restrict__ b,
                void* __restrict__ out) {
  constexpr int V = kVec<S<D>>;
  const bool binary = op <= Op::kXor;
  const bool to_bool = op >= Op::kEqual && op <= Op::kGreaterEqual;
  const uint32_t nvr = r.n / V, total = r.m * nvr, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  RowCursor c(first, stride, nvr);
  for (uint32_t i = first; i < total; i += stride, c.Advance()) {
    const uint32_t col = c.col * V;
    const uint32_t oa = c.row * r.s0[0] + (r.col[0] ? col : 0);
    const uint32_t ob = c.row * r.s0[1] + (r.col[1] ? col : 0);
    EwVector<D, V>(op, binary, to_bool, a + oa, r.col[0], b + (binary ? ob : 0), r.col[1], out,
                   i * V);
  }
}

// General path: any broadcast; I is uint32_t when n < 2^31 (offsets are then < 2^31 too: every
// operand has at most n elements and non-negative strides), else int64_t.
template <DT D, typename I>
__global__ void __launch_bounds__(kThreads)
    ElementwiseKernel(Op op, BroadcastDesc d, const S<D>* __restrict__ a,
                      const S<D>* __restrict__ b, void* __restrict__ out) {
  const bool binary = op <= Op::kXor;
  const bool to_bool = op >= Op::kEqual && op <= Op::kGreaterEqual;
  const I n = static_cast<I>(d.n), stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I oa = 0, ob = 0, r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const I dim = static_cast<I>(d.shape[k]);
      const I c = r % dim;
      r /= dim;
      oa += c * static_cast<I>(d.strides[0][k]);
      ob += c * static_cast<I>(d.strides[1][k]);
    }
    EwElement<D>(op, binary, to_bool, a, oa, b, ob, out, i);
  }
}

// where: the same three paths over raw B-byte elements (bit moves, so trivially identical).
template <int B>
using W = typename Bits<B>::T;

template <int B, int V>
__device__ __forceinline__ void WhereVector(const uint8_t* c, bool c_full, const W<B>* a,
                                            bool a_full, const W<B>* b, bool b_full, W<B>* out) {
  uint8_t cv[V];
  W<B> av[V], bv[V], o[V];
  if (c_full) {
    LoadVec<uint8_t, V>(c, cv);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) cv[j] = c[0];
  }
  if (a_full) {
    LoadVec<W<B>, V>(a, av);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) av[j] = a[0];
  }
  if (b_full) {
    LoadVec<W<B>, V>(b, bv);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) bv[j] = b[0];
  }
#pragma unroll
  for (int j = 0; j < V; ++j) o[j] = cv[j] ? av[j] : bv[j];
  StoreVec<W<B>, V>(out, o);
}

template <int B>
__global__ void __launch_bounds__(kThreads)
    WhereFlatKernel(uint32_t n, const uint8_t* __restrict__ cond, bool c_full,
                    const W<B>* __restrict__ a, bool a_full, const W<B>* __restrict__ b,
                    bool b_full, W<B>* __restrict__ out) {
  constexpr int V = kVec<W<B>>;
  const uint32_t nv = n / V, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  for (uint32_t i = first; i < nv; i += stride) {
    const uint32_t e = i * V;
    WhereVector<B, V>(cond + (c_full ? e : 0), c_full, a + (a_full ? e : 0), a_full,
                      b + (b_full ? e : 0), b_full, out + e);
  }
  const uint32_t t = nv * V + first;
  if (t < n) out[t] = cond[c_full ? t : 0] ? a[a_full ? t : 0] : b[b_full ? t : 0];
}

template <int B>
__global__ void __launch_bounds__(kThreads)
    WhereRowKernel(RowDesc r, const uint8_t* __restrict__ cond, const W<B>* __restrict__ a,
                   const W<B>* __restrict__ b, W<B>* __restrict__ out) {
  constexpr int V = kVec<W<B>>;
  const uint32_t nvr = r.n / V, total = r.m * nvr, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  RowCursor c(first, stride, nvr);
  for (uint32_t i = first; i < total; i += stride, c.Advance()) {
    const uint32_t col = c.col * V;
    WhereVector<B, V>(cond + c.row * r.s0[0] + (r.col[0] ? col : 0), r.col[0],
                      a + c.row * r.s0[1] + (r.col[1] ? col : 0), r.col[1],
                      b + c.row * r.s0[2] + (r.col[2] ? col : 0), r.col[2], out + i * V);
  }
}

template <int B, typename I>
__global__ void __launch_bounds__(kThreads)
    WhereKernel(BroadcastDesc d, const uint8_t* __restrict__ cond, const W<B>* __restrict__ a,
                const W<B>* __restrict__ b, W<B>* __restrict__ out) {
  const I n = static_cast<I>(d.n), stride = static_cast<I>(gridDim.x) * blockDim.x;
  for (I i = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    I oc = 0, oa = 0, ob = 0, r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const I dim = static_cast<I>(d.shape[k]);
      const I c = r % dim;
      r /= dim;
      oc += c * static_cast<I>(d.strides[0][k]);
      oa += c * static_cast<I>(d.strides[1][k]);
      ob += c * static_cast<I>(d.strides[2][k]);
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

// in[i] -> out[o] with ONNX cast semantics (every (from, to) pair).
__device__ __forceinline__ void CastElement(DT from, DT to, const void* in, int64_t i, void* out,
                                            int64_t o) {
  if (IsFloatDT(from)) {
    const double v = LoadAsDouble(in, from, i);
    if (IsFloatDT(to)) {
      StoreDouble(out, to, o, v);
    } else if (to == DT::kBool) {
      StoreInt(out, to, o, v != 0.0);
    } else {
      // Float -> int truncates toward zero; NaN and out-of-range values are undefined in
      // ONNX: map NaN to 0 and saturate to int64 so the conversion itself never traps.
      double t = trunc(v);
      int64_t iv = t != t ? 0
                   : t >= 9.2233720368547758e18 ? INT64_MAX
                   : t <= -9.2233720368547758e18 ? INT64_MIN
                                                : static_cast<int64_t>(t);
      StoreInt(out, to, o, iv);
    }
  } else {
    const int64_t v = LoadAsInt(in, from, i);
    if (IsFloatDT(to)) {
      StoreDouble(out, to, o, static_cast<double>(v));
    } else {
      StoreInt(out, to, o, v);
    }
  }
}

// One kernel for every (from, to) pair: casts are rare and memory-bound, so the two switches
// cost nothing measurable and save 80 instantiations.
__global__ void __launch_bounds__(kThreads)
    CastKernel(DT from, DT to, int64_t n, const void* __restrict__ in, void* __restrict__ out) {
  for (int64_t i = GlobalThread(); i < n; i += GridStride()) CastElement(from, to, in, i, out, i);
}

// Vector i (4 elements, one 16- or 8-byte access each way) of a cast.
template <DT F, DT T>
__device__ __forceinline__ void CastVector(const typename Ty<F>::S* __restrict__ in,
                                           typename Ty<T>::S* __restrict__ out, uint32_t i) {
  constexpr int V = 4;
  typename Ty<F>::S x[V];
  typename Ty<T>::S y[V];
  LoadVec<typename Ty<F>::S, V>(in + i * V, x);
#pragma unroll
  for (int j = 0; j < V; ++j) CastElement(F, T, x, j, y, j);
  StoreVec<typename Ty<T>::S, V>(out + i * V, y);
}

// The mixed-precision casts (f32 <-> bf16 / f16, weights and activations every step): four
// elements per thread with vector accesses (16 bytes of f32, 8 of the 16-bit side), through the
// same CastElement as above with the dtypes known at compile time (so the same rounding).
template <DT F, DT T>
__global__ void __launch_bounds__(kThreads)
    CastVecKernel(uint32_t n, const typename Ty<F>::S* __restrict__ in,
                  typename Ty<T>::S* __restrict__ out) {
  constexpr int V = 4;
  const uint32_t nv = n / V, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  for (uint32_t i = first; i < nv; i += stride) CastVector<F, T>(in, out, i);
  const uint32_t t = nv * V + first;
  if (t < n) CastElement(F, T, in, t, out, t);
}

// LaunchCastBatch: block b casts elements [j * kCastBatchChunk, ...) of the tensor whose
// blocks hold it (block_start), 16-byte vectors and a scalar tail.
constexpr uint32_t kCastBatchChunk = 4096;
struct CastBatchLaunch {
  CastTensors t;
  uint32_t block_start[kMaxCastTensors + 1];
};

template <DT F, DT T>
__global__ void __launch_bounds__(kThreads) CastBatchKernel(const CastBatchLaunch a) {
  constexpr int V = 4;
  using SF = typename Ty<F>::S;
  using ST = typename Ty<T>::S;
  int ti = 0;
  while (ti + 1 < a.t.count && blockIdx.x >= a.block_start[ti + 1]) ++ti;
  const uint32_t n = static_cast<uint32_t>(a.t.n[ti]);
  const uint32_t base = (blockIdx.x - a.block_start[ti]) * kCastBatchChunk;
  const uint32_t len = n - base < kCastBatchChunk ? n - base : kCastBatchChunk;
  const SF* __restrict__ in = static_cast<const SF*>(a.t.in[ti]) + base;
  ST* __restrict__ out = static_cast<ST*>(a.t.out[ti]) + base;
  const uint32_t nv = len / V;
  for (uint32_t i = threadIdx.x; i < nv; i += blockDim.x) CastVector<F, T>(in, out, i);
  const uint32_t t = nv * V + threadIdx.x;
  if (t < len) CastElement(F, T, in, t, out, t);
}

// An operand of the given storage type, widened to C.
template <typename C>
__device__ __forceinline__ C LoadAs(DT dt, const void* p, int64_t i) {
  switch (dt) {
    case DT::kF16: return static_cast<C>(Load<DT::kF16>(static_cast<const __half*>(p), i));
    case DT::kBF16:
      return static_cast<C>(Load<DT::kBF16>(static_cast<const __nv_bfloat16*>(p), i));
    case DT::kF64: return static_cast<C>(Load<DT::kF64>(static_cast<const double*>(p), i));
    default: return static_cast<C>(Load<DT::kF32>(static_cast<const float*>(p), i));
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    FusedKernel(const FusedDesc* __restrict__ gdesc, FusedOperands ops, int64_t n,
                typename Ty<D>::S* __restrict__ out) {
  using C = typename Ty<D>::C;
  // The descriptor (~3 KB) is read once per block into shared memory.
  __shared__ FusedDesc d;
  __shared__ uint64_t keys[kMaxFusedDropouts];  // the dropouts' keys from their counters
  {
    const int words = sizeof(FusedDesc) / 4;
    const uint32_t* src = reinterpret_cast<const uint32_t*>(gdesc);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&d);
    for (int w = threadIdx.x; w < words; w += blockDim.x) dst[w] = src[w];
  }
  __syncthreads();
  if (threadIdx.x < d.num_dropouts) {
    const int k = threadIdx.x, c = d.dropout_counter[k];
    keys[k] = ir::DropoutKey(d.dropout_seed[k], ir::DropoutCounter(c >= 0 ? ops.ptr[c] : nullptr,
                                                                   d.dropout_counter_i32[k]));
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
        stack[sp++] = LoadAs<C>(static_cast<DT>(d.operand_dt[tok.index]), ops.ptr[tok.index],
                                off[tok.index]);
      } else if (tok.kind == 1) {
        stack[sp++] = static_cast<C>(d.constants[tok.index]);
      } else if (tok.kind == 3) {
        const int k = tok.index;
        stack[sp - 1] = ir::DropoutKeeps(keys[k], static_cast<uint64_t>(i), d.dropout_threshold[k])
                            ? stack[sp - 1] * static_cast<C>(d.dropout_scale[k])
                            : C(0);
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

namespace {

constexpr int64_t kMax32 = (int64_t{1} << 31) - 1;  // 32-bit paths: n <= kMax32

int64_t BlocksFor(int64_t work) { return (work + kThreads - 1) / kThreads; }

// Flat path: rank 1 (merged dims) and every operand stride 1 (full) or 0 (one value), each full
// operand and the output aligned for V-element accesses.
bool FlatPath(const BroadcastDesc& d, int operands, const void* const* ptrs, int elem_bytes,
              const void* out, int out_bytes, int v, bool* full) {
  if (d.rank != 1 || d.n > kMax32) return false;
  for (int k = 0; k < operands; ++k) {
    if (d.strides[k][0] != 0 && d.strides[k][0] != 1) return false;
    full[k] = d.strides[k][0] == 1;
    if (full[k] && !IsAligned(ptrs[k], int64_t{v} * elem_bytes)) return false;
  }
  return IsAligned(out, int64_t{v} * out_bytes);
}

// Rank-2 path: [m, n] with every operand's inner stride 0 or 1, n a multiple of V, every operand
// read with its inner stride 1 aligned for V-element accesses at every row (base aligned and
// outer stride a multiple of V), the output aligned.
bool RowPath(const BroadcastDesc& d, int operands, const void* const* ptrs, int elem_bytes,
             const void* out, int out_bytes, int v, RowDesc* r) {
  if (d.rank != 2 || d.n > kMax32 || d.shape[1] % v != 0) return false;
  r->m = static_cast<uint32_t>(d.shape[0]);
  r->n = static_cast<uint32_t>(d.shape[1]);
  for (int k = 0; k < operands; ++k) {
    const int64_t s0 = d.strides[k][0], s1 = d.strides[k][1];
    if ((s1 != 0 && s1 != 1) || s0 < 0 || s0 > kMax32) return false;
    r->s0[k] = static_cast<uint32_t>(s0);
    r->col[k] = s1 == 1;
    if (r->col[k] && (s0 % v != 0 || !IsAligned(ptrs[k], int64_t{v} * elem_bytes))) return false;
  }
  return IsAligned(out, int64_t{v} * out_bytes);
}

template <DT D>
cudaError_t LaunchElementwiseT(Op op, const BroadcastDesc& d, const void* a, const void* b,
                               void* out, cudaStream_t stream) {
  using St = typename Ty<D>::S;
  constexpr int V = kVec<St>;
  const St* pa = static_cast<const St*>(a);
  const St* pb = static_cast<const St*>(b);
  const int operands = IsBinary(op) ? 2 : 1;
  const int out_bytes = IsComparison(op) ? 1 : static_cast<int>(sizeof(St));
  const void* ptrs[3] = {a, b, nullptr};
  bool full[3] = {};
  RowDesc r;
  // Fast paths only for the dtypes of real models; i8 / u8 / bool take the general path.
  constexpr bool kFast = D == DT::kF32 || D == DT::kF16 || D == DT::kBF16 || D == DT::kF64 ||
                         D == DT::kI32 || D == DT::kI64;
  if constexpr (kFast) {
    if (FlatPath(d, operands, ptrs, sizeof(St), out, out_bytes, V, full)) {
      const unsigned grid = PersistentGrid(EwFlatKernel<D>, kThreads, BlocksFor(d.n / V + 1));
      EwFlatKernel<D><<<grid, kThreads, 0, stream>>>(op, static_cast<uint32_t>(d.n), pa, full[0],
                                                     pb, full[1], out);
      return cudaGetLastError();
    }
    if (RowPath(d, operands, ptrs, sizeof(St), out, out_bytes, V, &r)) {
      const unsigned grid = PersistentGrid(EwRowKernel<D>, kThreads, BlocksFor(d.n / V));
      EwRowKernel<D><<<grid, kThreads, 0, stream>>>(op, r, pa, pb, out);
      return cudaGetLastError();
    }
  }
  if (d.n <= kMax32) {
    const unsigned grid =
        PersistentGrid(ElementwiseKernel<D, uint32_t>, kThreads, BlocksFor(d.n));
    ElementwiseKernel<D, uint32_t><<<grid, kThreads, 0, stream>>>(op, d, pa, pb, out);
  } else {
    const unsigned grid = PersistentGrid(ElementwiseKernel<D, int64_t>, kThreads, BlocksFor(d.n));
    ElementwiseKernel<D, int64_t><<<grid, kThreads, 0, stream>>>(op, d, pa, pb, out);
  }
  return cudaGetLastError();
}

template <int B>
cudaError_t LaunchWhereT(const BroadcastDesc& d, const void* cond, const void* a, const void* b,
                         void* out, cudaStream_t stream) {
  constexpr int V = kVec<W<B>>;
  const uint8_t* pc = static_cast<const uint8_t*>(cond);
  const W<B>* pa = static_cast<const W<B>*>(a);
  const W<B>* pb = static_cast<const W<B>*>(b);
  W<B>* po = static_cast<W<B>*>(out);
  bool full[3] = {};
  RowDesc r;
  // cond is 1 byte per element, a / b / out B bytes: aligned for V of each.
  const void* ptrs[3] = {cond, a, b};
  auto aligned = [&](bool ok) {
    if (!ok) return false;
    for (int k = 1; k < 3; ++k) {
      const bool read_vec = d.rank == 1 ? full[k] : r.col[k];
      if (read_vec && !IsAligned(ptrs[k], int64_t{V} * B)) return false;
    }
    return IsAligned(out, int64_t{V} * B);
  };
  // FlatPath / RowPath check cond (1 byte); `aligned` adds a and b (B bytes).
  if (aligned(FlatPath(d, 3, ptrs, 1, out, 1, V, full))) {
    const unsigned grid = PersistentGrid(WhereFlatKernel<B>, kThreads, BlocksFor(d.n / V + 1));
    WhereFlatKernel<B><<<grid, kThreads, 0, stream>>>(static_cast<uint32_t>(d.n), pc, full[0], pa,
                                                      full[1], pb, full[2], po);
  } else if (aligned(RowPath(d, 3, ptrs, 1, out, 1, V, &r))) {
    const unsigned grid = PersistentGrid(WhereRowKernel<B>, kThreads, BlocksFor(d.n / V));
    WhereRowKernel<B><<<grid, kThreads, 0, stream>>>(r, pc, pa, pb, po);
  } else if (d.n <= kMax32) {
    const unsigned grid = PersistentGrid(WhereKernel<B, uint32_t>, kThreads, BlocksFor(d.n));
    WhereKernel<B, uint32_t><<<grid, kThreads, 0, stream>>>(d, pc, pa, pb, po);
  } else {
    const unsigned grid = PersistentGrid(WhereKernel<B, int64_t>, kThreads, BlocksFor(d.n));
    WhereKernel<B, int64_t><<<grid, kThreads, 0, stream>>>(d, pc, pa, pb, po);
  }
  return cudaGetLastError();
}

template <DT F, DT T>
bool TryCastVec(int64_t n, const void* in, void* out, cudaStream_t stream) {
  using SF = typename Ty<F>::S;
  using ST = typename Ty<T>::S;
  if (n > kMax32 || !IsAligned(in, 4 * sizeof(SF)) || !IsAligned(out, 4 * sizeof(ST))) {
    return false;
  }
  const unsigned grid = PersistentGrid(CastVecKernel<F, T>, kThreads, BlocksFor(n / 4 + 1));
  CastVecKernel<F, T><<<grid, kThreads, 0, stream>>>(static_cast<uint32_t>(n),
                                                     static_cast<const SF*>(in),
                                                     static_cast<ST*>(out));
  return true;
}

}  // namespace

cudaError_t LaunchElementwise(Op op, DT dt, const BroadcastDesc& d, const void* a, const void* b,
                              void* out, cudaStream_t stream) {
  if (d.n == 0) return cudaSuccess;
  switch (dt) {
    case DT::kF32: return LaunchElementwiseT<DT::kF32>(op, d, a, b, out, stream);
    case DT::kF16: return LaunchElementwiseT<DT::kF16>(op, d, a, b, out, stream);
    case DT::kBF16: return LaunchElementwiseT<DT::kBF16>(op, d, a, b, out, stream);
    case DT::kF64: return LaunchElementwiseT<DT::kF64>(op, d, a, b, out, stream);
    case DT::kI8: return LaunchElementwiseT<DT::kI8>(op, d, a, b, out, stream);
    case DT::kU8: return LaunchElementwiseT<DT::kU8>(op, d, a, b, out, stream);
    case DT::kI32: return LaunchElementwiseT<DT::kI32>(op, d, a, b, out, stream);
    case DT::kI64: return LaunchElementwiseT<DT::kI64>(op, d, a, b, out, stream);
    case DT::kBool: return LaunchElementwiseT<DT::kBool>(op, d, a, b, out, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchWhere(int elem_bytes, const BroadcastDesc& d, const void* cond, const void* a,
                        const void* b, void* out, cudaStream_t stream) {
  if (d.n == 0) return cudaSuccess;
  switch (elem_bytes) {
    case 1: return LaunchWhereT<1>(d, cond, a, b, out, stream);
    case 2: return LaunchWhereT<2>(d, cond, a, b, out, stream);
    case 4: return LaunchWhereT<4>(d, cond, a, b, out, stream);
    case 8: return LaunchWhereT<8>(d, cond, a, b, out, stream);
    default: return cudaErrorInvalidValue;
  }
}

cudaError_t LaunchCast(DT from, DT to, int64_t n, const void* in, void* out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  // Vector path for the mixed-precision pairs when both pointers are aligned; else the general
  // kernel (same CastElement, so the same bits).
  bool done = false;
  if (from == DT::kF32 && to == DT::kBF16) {
    done = TryCastVec<DT::kF32, DT::kBF16>(n, in, out, stream);
  } else if (from == DT::kBF16 && to == DT::kF32) {
    done = TryCastVec<DT::kBF16, DT::kF32>(n, in, out, stream);
  } else if (from == DT::kF32 && to == DT::kF16) {
    done = TryCastVec<DT::kF32, DT::kF16>(n, in, out, stream);
  } else if (from == DT::kF16 && to == DT::kF32) {
    done = TryCastVec<DT::kF16, DT::kF32>(n, in, out, stream);
  }
  if (!done) {
    const unsigned grid = PersistentGrid(CastKernel, kThreads, BlocksFor(n));
    CastKernel<<<grid, kThreads, 0, stream>>>(from, to, n, in, out);
  }
  return cudaGetLastError();
}

bool CastBatchable(DT from, DT to, int64_t n, const void* in, const void* out) {
  const bool pair = (from == DT::kF32 && (to == DT::kBF16 || to == DT::kF16)) ||
                    (to == DT::kF32 && (from == DT::kBF16 || from == DT::kF16));
  const int64_t fb = from == DT::kF32 ? 4 : 2, tb = to == DT::kF32 ? 4 : 2;
  return pair && n > 0 && n <= kMax32 && IsAligned(in, 4 * fb) && IsAligned(out, 4 * tb);
}

cudaError_t LaunchCastBatch(DT from, DT to, const CastTensors& t, cudaStream_t stream) {
  if (t.count <= 0 || t.count > kMaxCastTensors) return cudaErrorInvalidValue;
  CastBatchLaunch a;
  a.t = t;
  a.block_start[0] = 0;
  int64_t blocks = 0;
  for (int i = 0; i < t.count; ++i) {
    if (!CastBatchable(from, to, t.n[i], t.in[i], t.out[i])) return cudaErrorInvalidValue;
    blocks += (t.n[i] + kCastBatchChunk - 1) / kCastBatchChunk;
    if (blocks > int64_t{INT32_MAX}) return cudaErrorInvalidValue;
    a.block_start[i + 1] = static_cast<uint32_t>(blocks);
  }
  const unsigned grid = static_cast<unsigned>(blocks);
  if (from == DT::kF32 && to == DT::kBF16) {
    CastBatchKernel<DT::kF32, DT::kBF16><<<grid, kThreads, 0, stream>>>(a);
  } else if (from == DT::kBF16 && to == DT::kF32) {
    CastBatchKernel<DT::kBF16, DT::kF32><<<grid, kThreads, 0, stream>>>(a);
  } else if (from == DT::kF32 && to == DT::kF16) {
    CastBatchKernel<DT::kF32, DT::kF16><<<grid, kThreads, 0, stream>>>(a);
  } else {
    CastBatchKernel<DT::kF16, DT::kF32><<<grid, kThreads, 0, stream>>>(a);
  }
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
