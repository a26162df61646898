// Row kernels: softmax / log_softmax, layer_norm forward, reduce_{sum,mean,max,min}.
// Float inputs accumulate in f32 (f64 in f64), integers in i64. A row that is contiguous gets
// one block; strided rows (softmax over a non-last axis, small reductions) one thread each.
#include <cfloat>
#include <cmath>

#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kRowThreads = 256;
constexpr int kThreads = 256;

template <typename A>
__device__ __forceinline__ A Lowest() {
  if constexpr (std::is_same_v<A, float>) {
    return -INFINITY;
  } else if constexpr (std::is_same_v<A, double>) {
    return -HUGE_VAL;
  } else {
    return INT64_MIN;
  }
}
template <typename A>
__device__ __forceinline__ A Highest() {
  if constexpr (std::is_same_v<A, float>) {
    return INFINITY;
  } else if constexpr (std::is_same_v<A, double>) {
    return HUGE_VAL;
  } else {
    return INT64_MAX;
  }
}

// One block per row of a [rows, n] view (inner == 1).
template <DT D>
__global__ void __launch_bounds__(kRowThreads)
    SoftmaxRowKernel(int64_t n, bool log_softmax, const typename Ty<D>::S* __restrict__ in,
                     typename Ty<D>::S* __restrict__ out) {
  using A = Acc<D>;
  __shared__ A shm[32];
  const typename Ty<D>::S* x = in + static_cast<int64_t>(blockIdx.x) * n;
  typename Ty<D>::S* y = out + static_cast<int64_t>(blockIdx.x) * n;
  A mx = Lowest<A>();
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const A v = Load<D>(x, j);
    mx = v > mx ? v : mx;
  }
  mx = BlockReduce<A>(mx, /*kind=*/1, Lowest<A>(), shm);
  A sum = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += exp(Load<D>(x, j) - mx);
  sum = BlockReduce<A>(sum, /*kind=*/0, A(0), shm);
  if (log_softmax) {
    const A lse = mx + log(sum);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) Store<D>(y, j, Load<D>(x, j) - lse);
  } else {
    const A inv = A(1) / sum;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      Store<D>(y, j, exp(Load<D>(x, j) - mx) * inv);
    }
  }
}

// One thread per (outer, inner) column of a [outer, n, inner] view.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    SoftmaxStridedKernel(int64_t outer, int64_t n, int64_t inner, bool log_softmax,
                         const typename Ty<D>::S* __restrict__ in,
                         typename Ty<D>::S* __restrict__ out) {
  using A = Acc<D>;
  for (int64_t c = GlobalThread(); c < outer * inner; c += GridStride()) {
    const int64_t base = (c / inner) * n * inner + c % inner;
    A mx = Lowest<A>();
    for (int64_t j = 0; j < n; ++j) {
      const A v = Load<D>(in, base + j * inner);
      mx = v > mx ? v : mx;
    }
    A sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += exp(Load<D>(in, base + j * inner) - mx);
    const A lse = mx + log(sum), inv = A(1) / sum;
    for (int64_t j = 0; j < n; ++j) {
      const A v = Load<D>(in, base + j * inner);
      Store<D>(out, base + j * inner, log_softmax ? v - lse : exp(v - mx) * inv);
    }
  }
}

// One block per row: exact mean, then the centered variance (the row stays in L1/L2).
template <DT D>
__global__ void __launch_bounds__(kRowThreads)
    LayerNormKernel(int64_t d, Acc<D> eps, const typename Ty<D>::S* __restrict__ x,
                    const typename Ty<D>::S* __restrict__ scale, bool scale_bcast,
                    const typename Ty<D>::S* __restrict__ bias, bool bias_bcast,
                    typename Ty<D>::S* __restrict__ y, float* __restrict__ mean_out,
                    float* __restrict__ istd_out) {
  using A = Acc<D>;
  __shared__ A shm[32];
  const int64_t row = blockIdx.x;
  const typename Ty<D>::S* xr = x + row * d;
  typename Ty<D>::S* yr = y + row * d;
  A sum = 0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) sum += Load<D>(xr, j);
  sum = BlockReduce<A>(sum, /*kind=*/0, A(0), shm);
  const A mean = d ? sum / A(d) : A(0);
  A sq = 0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    const A c = Load<D>(xr, j) - mean;
    sq += c * c;
  }
  sq = BlockReduce<A>(sq, /*kind=*/0, A(0), shm);
  const A var = d ? sq / A(d) : A(0);
  const A istd = A(1) / sqrt(var + eps);
  if (threadIdx.x == 0) {
    if (mean_out != nullptr) mean_out[row] = static_cast<float>(mean);
    if (istd_out != nullptr) istd_out[row] = static_cast<float>(istd);
  }
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    A v = (Load<D>(xr, j) - mean) * istd * Load<D>(scale, scale_bcast ? 0 : j);
    if (bias != nullptr) v += Load<D>(bias, bias_bcast ? 0 : j);
    Store<D>(yr, j, v);
  }
}

struct MaskStrides {
  int64_t v[4];
};

// One block per score row (b, h, q): mask, then softmax in place (f32).
__global__ void __launch_bounds__(kRowThreads)
    AttentionSoftmaxKernel(int64_t tq, int64_t heads, int64_t tk, float* __restrict__ scores,
                           const void* __restrict__ mask, int mask_kind, MaskStrides ms) {
  __shared__ float shm[32];
  const int64_t row = blockIdx.x;
  const int64_t q = row % tq, h = (row / tq) % heads, b = row / (tq * heads);
  float* s = scores + row * tk;
  const int64_t mbase = b * ms.v[0] + h * ms.v[1] + q * ms.v[2];
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) {
    float v = s[j];
    if (mask_kind == 1) {
      if (static_cast<const uint8_t*>(mask)[mbase + j * ms.v[3]]) v = -INFINITY;
    } else if (mask_kind == 2) {
      v += static_cast<const float*>(mask)[mbase + j * ms.v[3]];
    }
    s[j] = v;
    mx = fmaxf(mx, v);
  }
  mx = BlockReduce<float>(mx, /*kind=*/1, -INFINITY, shm);
  float sum = 0;
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) sum += expf(s[j] - mx);
  sum = BlockReduce<float>(sum, /*kind=*/0, 0.f, shm);
  const float inv = 1.f / sum;
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) s[j] = expf(s[j] - mx) * inv;
}

template <typename A>
__device__ __forceinline__ A Combine(ReduceKind kind, A a, A b) {
  switch (kind) {
    case ReduceKind::kMax: return b > a ? b : a;
    case ReduceKind::kMin: return b < a ? b : a;
    default: return a + b;
  }
}

template <typename A>
__device__ __forceinline__ A Identity(ReduceKind kind) {
  return kind == ReduceKind::kMax ? Lowest<A>() : kind == ReduceKind::kMin ? Highest<A>() : A(0);
}

__device__ __forceinline__ int64_t Offset(int64_t i, int rank, const int64_t* shape,
                                          const int64_t* strides) {
  int64_t off = 0;
  for (int k = rank - 1; k >= 0; --k) {
    off += (i % shape[k]) * strides[k];
    i /= shape[k];
  }
  return off;
}

template <DT D>
__device__ __forceinline__ void StoreReduced(ReduceKind kind, int64_t count,
                                             typename Ty<D>::S* out, int64_t o, Acc<D> a) {
  if (kind == ReduceKind::kMean) a = count ? a / static_cast<Acc<D>>(count) : Acc<D>(0);
  Store<D>(out, o, static_cast<typename Ty<D>::C>(a));
}

// One block per output element (large reductions).
template <DT D>
__global__ void __launch_bounds__(kRowThreads)
    ReduceBlockKernel(ReduceKind kind, ReduceDesc d, const typename Ty<D>::S* __restrict__ in,
                      typename Ty<D>::S* __restrict__ out) {
  using A = Acc<D>;
  __shared__ A shm[32];
  const int kk = kind == ReduceKind::kMax ? 1 : kind == ReduceKind::kMin ? 2 : 0;
  for (int64_t o = blockIdx.x; o < d.out_n; o += gridDim.x) {
    const int64_t base = Offset(o, d.kept_rank, d.kept_shape, d.kept_strides);
    A a = Identity<A>(kind);
    for (int64_t j = threadIdx.x; j < d.count; j += blockDim.x) {
      a = Combine<A>(kind, a, static_cast<A>(Load<D>(
                                  in, base + Offset(j, d.red_rank, d.red_shape, d.red_strides))));
    }
    a = BlockReduce<A>(a, kk, Identity<A>(kind), shm);
    if (threadIdx.x == 0) StoreReduced<D>(kind, d.count, out, o, a);
  }
}

// One thread per output element (many small reductions).
template <DT D>
__global__ void __launch_bounds__(kThreads)
    ReduceThreadKernel(ReduceKind kind, ReduceDesc d, const typename Ty<D>::S* __restrict__ in,
                       typename Ty<D>::S* __restrict__ out) {
  using A = Acc<D>;
  for (int64_t o = GlobalThread(); o < d.out_n; o += GridStride()) {
    const int64_t base = Offset(o, d.kept_rank, d.kept_shape, d.kept_strides);
    A a = Identity<A>(kind);
    for (int64_t j = 0; j < d.count; ++j) {
      a = Combine<A>(kind, a, static_cast<A>(Load<D>(
                                  in, base + Offset(j, d.red_rank, d.red_shape, d.red_strides))));
    }
    StoreReduced<D>(kind, d.count, out, o, a);
  }
}

unsigned RowGrid(int64_t rows) {
  return static_cast<unsigned>(rows < (int64_t{1} << 31) - 1 ? rows : (int64_t{1} << 31) - 1);
}

}  // namespace

#define PTC_FLOAT_DTYPES(X) X(DT::kF32) X(DT::kF16) X(DT::kBF16) X(DT::kF64)

cudaError_t LaunchSoftmax(DT dt, int64_t outer, int64_t n, int64_t inner, bool log_softmax,
                          const void* in, void* out, cudaStream_t stream) {
  if (outer * n * inner == 0) return cudaSuccess;
  if (inner == 1 && outer >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
#define PTC_SOFTMAX_CASE(D)                                                                  \
  case D:                                                                                    \
    if (inner == 1) {                                                                        \
      SoftmaxRowKernel<D><<<RowGrid(outer), kRowThreads, 0, stream>>>(                       \
          n, log_softmax, static_cast<const Ty<D>::S*>(in), static_cast<Ty<D>::S*>(out));    \
    } else {                                                                                 \
      SoftmaxStridedKernel<D><<<GridFor(outer * inner, kThreads), kThreads, 0, stream>>>(    \
          outer, n, inner, log_softmax, static_cast<const Ty<D>::S*>(in),                    \
          static_cast<Ty<D>::S*>(out));                                                      \
    }                                                                                        \
    break;
  switch (dt) {
    PTC_FLOAT_DTYPES(PTC_SOFTMAX_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_SOFTMAX_CASE
  return cudaGetLastError();
}

cudaError_t LaunchLayerNorm(DT dt, int64_t rows, int64_t d, double epsilon, const void* x,
                            const void* scale, bool scale_bcast, const void* bias, bool bias_bcast,
                            void* y, float* mean, float* inv_std_dev, cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
#define PTC_LN_CASE(D)                                                                       \
  case D:                                                                                    \
    LayerNormKernel<D><<<RowGrid(rows), kRowThreads, 0, stream>>>(                           \
        d, static_cast<Acc<D>>(epsilon), static_cast<const Ty<D>::S*>(x),                    \
        static_cast<const Ty<D>::S*>(scale), scale_bcast, static_cast<const Ty<D>::S*>(bias), \
        bias_bcast, static_cast<Ty<D>::S*>(y), mean, inv_std_dev);                           \
    break;
  switch (dt) {
    PTC_FLOAT_DTYPES(PTC_LN_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_LN_CASE
  return cudaGetLastError();
}

cudaError_t LaunchAttentionSoftmax(int64_t rows, int64_t tq, int64_t heads, int64_t tk,
                                   float* scores, const void* mask, int mask_kind,
                                   const int64_t mask_strides[4], cudaStream_t stream) {
  if (rows == 0 || tk == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  MaskStrides ms;
  for (int i = 0; i < 4; ++i) ms.v[i] = mask_strides[i];
  AttentionSoftmaxKernel<<<RowGrid(rows), kRowThreads, 0, stream>>>(tq, heads, tk, scores, mask,
                                                                    mask_kind, ms);
  return cudaGetLastError();
}

cudaError_t LaunchReduce(DT dt, ReduceKind kind, const ReduceDesc& d, const void* in, void* out,
                         cudaStream_t stream) {
  if (d.out_n == 0) return cudaSuccess;
  const bool by_block = d.count >= 256 && d.out_n < (int64_t{1} << 31);
#define PTC_REDUCE_CASE(D)                                                                   \
  case D:                                                                                    \
    if (by_block) {                                                                          \
      ReduceBlockKernel<D><<<GridFor(d.out_n, 1), kRowThreads, 0, stream>>>(                 \
          kind, d, static_cast<const Ty<D>::S*>(in), static_cast<Ty<D>::S*>(out));           \
    } else {                                                                                 \
      ReduceThreadKernel<D><<<GridFor(d.out_n, kThreads), kThreads, 0, stream>>>(            \
          kind, d, static_cast<const Ty<D>::S*>(in), static_cast<Ty<D>::S*>(out));           \
    }                                                                                        \
    break;
  switch (dt) {
    PTC_FLOAT_DTYPES(PTC_REDUCE_CASE)
    PTC_REDUCE_CASE(DT::kI32)
    PTC_REDUCE_CASE(DT::kI64)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_REDUCE_CASE
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
