// Row kernels: softmax / log_softmax, layer_norm forward, reduce_{sum,mean,max,min}.
// Float inputs accumulate in f32 (f64 in f64), integers in i64. Contiguous f32 / f16 / bf16 rows
// of up to 8192 elements are held in registers (a warp or a block per row, 16-byte accesses:
// SoftmaxRegKernel, LayerNormRegKernel); other contiguous rows get one block that streams the
// row per pass; strided rows (softmax over a non-last axis, small reductions) one thread each;
// column reductions (bias gradients) row chunks through scratch.
#include <cfloat>
#include <cmath>
#include <initializer_list>

#include <type_traits>

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

// One block per row: exact mean, then the centered variance (the row stays in L1/L2); `rms`
// (layer_norm {rms=1}): mean 0, the mean of squares. y is of dtype O: D's, or f16 / bf16 for
// an f32 x (layer_norm {dtype}).
template <DT D, DT O>
__global__ void __launch_bounds__(kRowThreads)
    LayerNormKernel(int64_t d, Acc<D> eps, bool rms, const typename Ty<D>::S* __restrict__ x,
                    const typename Ty<D>::S* __restrict__ scale, bool scale_bcast,
                    const typename Ty<D>::S* __restrict__ bias, bool bias_bcast,
                    typename Ty<O>::S* __restrict__ y, float* __restrict__ mean_out,
                    float* __restrict__ istd_out) {
  using A = Acc<D>;
  __shared__ A shm[32];
  const int64_t row = blockIdx.x;
  const typename Ty<D>::S* xr = x + row * d;
  typename Ty<O>::S* yr = y + row * d;
  A sum = 0;
  if (!rms) {  // uniform per launch: every thread takes the same branch (BlockReduce barriers)
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) sum += Load<D>(xr, j);
    sum = BlockReduce<A>(sum, /*kind=*/0, A(0), shm);
  }
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
    Store<O>(yr, j, static_cast<typename Ty<O>::C>(v));
  }
}

// ------------------------------------------------------------------ rows held in registers
// f32 / f16 / bf16 rows of up to kMaxRowGroup * kRowRegs elements (PickRowGroup): the row is
// read from global memory once with 16-byte accesses (V = kVec elements; the launcher checked
// alignment), kept in registers (f32) for every pass, and written once. Same formulas as the
// streaming kernels above (which stay for f64, misaligned or longer rows); sums in f32.
constexpr int kRowRegs = 32;  // elements per thread

template <DT D, int V>
__global__ void __launch_bounds__(kMaxRowGroup, kRowMinBlocks)
    SoftmaxRegKernel(uint32_t rows, uint32_t n, int group, bool log_softmax,
                     const typename Ty<D>::S* in, typename Ty<D>::S* out) {
  using St = typename Ty<D>::S;
  constexpr int kSteps = kRowRegs / V;
  __shared__ float shm[32];
  const uint32_t nv = n / V;
  const uint32_t lane = threadIdx.x % group, rpb = blockDim.x / group;
  for (uint32_t row = blockIdx.x * rpb + threadIdx.x / group; row < rows;
       row += gridDim.x * rpb) {
    const St* x = in + static_cast<int64_t>(row) * n;
    St* y = out + static_cast<int64_t>(row) * n;
    float v[kSteps][V];
    float mx = -INFINITY;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const uint32_t k = s * group + lane;
      St t[V];
      if (k < nv) LoadVec<St, V>(x + k * V, t);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        v[s][j] = k < nv ? Widen<D>(t[j]) : -INFINITY;
        mx = v[s][j] > mx ? v[s][j] : mx;
      }
    }
    mx = GroupReduce<float>(mx, /*kind=*/1, -INFINITY, shm, group);
    float sum = 0;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      if (s * group + lane < nv) {
#pragma unroll
        for (int j = 0; j < V; ++j) sum += exp(v[s][j] - mx);
      }
    }
    sum = GroupReduce<float>(sum, /*kind=*/0, 0.f, shm, group);
    const float lse = mx + log(sum), inv = 1.f / sum;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const uint32_t k = s * group + lane;
      if (k < nv) {
        St t[V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          t[j] = Narrow<D>(log_softmax ? v[s][j] - lse : exp(v[s][j] - mx) * inv);
        }
        StoreVec<St, V>(y + k * V, t);
      }
    }
  }
}

// V lanes of a layer_norm parameter: V elements at p + e, or p[0] everywhere (`bcast`).
template <DT D, int V>
__device__ __forceinline__ void LoadParam(const typename Ty<D>::S* p, bool bcast, uint32_t e,
                                          float (&x)[V]) {
  if (bcast) {
    const float c = Load<D>(p, 0);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = c;
  } else {
    typename Ty<D>::S t[V];
    LoadVec<typename Ty<D>::S, V>(p + e, t);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = Widen<D>(t[j]);
  }
}

template <DT D, DT O, int V>
__global__ void __launch_bounds__(kMaxRowGroup, kRowMinBlocks)
    LayerNormRegKernel(uint32_t rows, uint32_t d, int group, float eps, bool rms,
                       const typename Ty<D>::S* __restrict__ x,
                       const typename Ty<D>::S* __restrict__ scale, bool scale_bcast,
                       const typename Ty<D>::S* __restrict__ bias, bool bias_bcast,
                       typename Ty<O>::S* __restrict__ y, float* __restrict__ mean_out,
                       float* __restrict__ istd_out) {
  using St = typename Ty<D>::S;
  using So = typename Ty<O>::S;
  constexpr int kSteps = kRowRegs / V;
  __shared__ float shm[32];
  const uint32_t nv = d / V;
  const uint32_t lane = threadIdx.x % group, rpb = blockDim.x / group;
  for (uint32_t row = blockIdx.x * rpb + threadIdx.x / group; row < rows;
       row += gridDim.x * rpb) {
    const St* xr = x + static_cast<int64_t>(row) * d;
    So* yr = y + static_cast<int64_t>(row) * d;
    float v[kSteps][V];
    float sum = 0;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const uint32_t k = s * group + lane;
      St t[V];
      if (k < nv) LoadVec<St, V>(xr + k * V, t);
#pragma unroll
      for (int j = 0; j < V; ++j) {
        v[s][j] = k < nv ? Widen<D>(t[j]) : 0.f;
        sum += v[s][j];
      }
    }
    // RMS (uniform per launch): no centering, one reduction fewer.
    if (!rms) sum = GroupReduce<float>(sum, /*kind=*/0, 0.f, shm, group);
    const float mean = rms ? 0.f : sum / static_cast<float>(d);
    float sq = 0;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      if (s * group + lane < nv) {
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float c = v[s][j] - mean;
          sq += c * c;
        }
      }
    }
    sq = GroupReduce<float>(sq, /*kind=*/0, 0.f, shm, group);
    const float var = sq / static_cast<float>(d);
    const float istd = 1.f / sqrt(var + eps);
    if (lane == 0) {
      if (mean_out != nullptr) mean_out[row] = mean;
      if (istd_out != nullptr) istd_out[row] = istd;
    }
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const uint32_t k = s * group + lane;
      if (k < nv) {
        float sc[V], bi[V];
        LoadParam<D, V>(scale, scale_bcast, k * V, sc);
        if (bias != nullptr) LoadParam<D, V>(bias, bias_bcast, k * V, bi);
        So t[V];
#pragma unroll
        for (int j = 0; j < V; ++j) {
          float o = (v[s][j] - mean) * istd * sc[j];
          if (bias != nullptr) o += bi[j];
          t[j] = Narrow<O>(o);
        }
        StoreVec<So, V>(yr + k * V, t);
      }
    }
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
  // One dim (the common case after dims were merged: a row or a column of a matrix): i is
  // already the index along it, no div/mod.
  if (rank == 1) return i * strides[0];
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

// Column reductions ([rows, cols] -> [cols], the bias gradients of training): the kept dim is
// contiguous, the reduced one strided. A block of 32 columns x 8 row lanes per (column tile,
// chunk of rows): coalesced 128-byte rows, partials per chunk into scratch, then one thread per
// column combines the chunks in order (fixed order: deterministic, like layer_norm_grad's
// dscale / dbias).
constexpr int kColTile = 32, kColLanes = 8;

template <DT D>
__global__ void __launch_bounds__(kColTile * kColLanes)
    ReduceColumnsPartialKernel(ReduceKind kind, int64_t cols, int64_t rows, int64_t row_stride,
                               int64_t chunk_rows, const typename Ty<D>::S* __restrict__ in,
                               Acc<D>* __restrict__ part) {
  using A = Acc<D>;
  __shared__ A sh[kColLanes][kColTile];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  A a = Identity<A>(kind);
  if (col < cols) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColLanes) {
      a = Combine<A>(kind, a, static_cast<A>(Load<D>(in, r * row_stride + col)));
    }
  }
  sh[threadIdx.y][threadIdx.x] = a;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
#pragma unroll
    for (int y = 1; y < kColLanes; ++y) a = Combine<A>(kind, a, sh[y][threadIdx.x]);
    part[chunk * cols + col] = a;
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    ReduceColumnsFinalKernel(ReduceKind kind, int64_t cols, int64_t rows, int64_t chunks,
                             const Acc<D>* __restrict__ part,
                             typename Ty<D>::S* __restrict__ out) {
  using A = Acc<D>;
  for (int64_t col = GlobalThread(); col < cols; col += GridStride()) {
    A a = part[col];
    for (int64_t c = 1; c < chunks; ++c) a = Combine<A>(kind, a, part[c * cols + col]);
    StoreReduced<D>(kind, rows, out, col, a);
  }
}

unsigned RowGrid(int64_t rows) {
  return static_cast<unsigned>(rows < (int64_t{1} << 31) - 1 ? rows : (int64_t{1} << 31) - 1);
}

}  // namespace

#define PTC_FLOAT_DTYPES(X) X(DT::kF32) X(DT::kF16) X(DT::kBF16) X(DT::kF64)

namespace {

// Whether the register kernels of one dtype may read rows of n elements at these pointers with
// kVec-element (16-byte) accesses: every base pointer aligned and n a multiple of kVec (so that
// every row starts aligned). Otherwise the streaming kernels run (scalar accesses).
template <DT D>
bool RowsVectorAligned(int64_t n, std::initializer_list<const void*> ptrs) {
  using St = typename Ty<D>::S;
  bool aligned = n % kVec<St> == 0;
  for (const void* p : ptrs) aligned = aligned && IsAligned(p, kVec<St> * sizeof(St));
  return aligned;
}

template <DT D>
bool LaunchSoftmaxReg(int64_t rows, int64_t n, bool log_softmax, const void* in, void* out,
                      cudaStream_t stream) {
  using St = typename Ty<D>::S;
  if (rows >= (int64_t{1} << 31) || n >= (int64_t{1} << 31)) return false;
  if (!RowsVectorAligned<D>(n, {in, out})) return false;
  const RowGroup g = PickRowGroup(n, kVec<St>, kRowRegs);
  if (g.group == 0) return false;
  const int64_t blocks = (rows + g.rows_per_block - 1) / g.rows_per_block;
  const auto grid = PersistentGrid(SoftmaxRegKernel<D, kVec<St>>, g.block, blocks);
  SoftmaxRegKernel<D, kVec<St>><<<grid, g.block, 0, stream>>>(
      static_cast<uint32_t>(rows), static_cast<uint32_t>(n), g.group, log_softmax,
      static_cast<const St*>(in), static_cast<St*>(out));
  return true;
}

template <DT D, DT O>
bool LaunchLayerNormReg(int64_t rows, int64_t d, double epsilon, bool rms, const void* x,
                        const void* scale,
                        bool scale_bcast, const void* bias, bool bias_bcast, void* y, float* mean,
                        float* inv_std_dev, cudaStream_t stream) {
  using St = typename Ty<D>::S;
  using So = typename Ty<O>::S;
  if (d == 0 || rows >= (int64_t{1} << 31) || d >= (int64_t{1} << 31)) return false;
  const void* scale_rows = scale_bcast ? nullptr : scale;
  const void* bias_rows = bias_bcast ? nullptr : bias;
  if (!RowsVectorAligned<D>(d, {x, y, scale_rows, bias_rows})) return false;
  const RowGroup g = PickRowGroup(d, kVec<St>, kRowRegs);
  if (g.group == 0) return false;
  const int64_t blocks = (rows + g.rows_per_block - 1) / g.rows_per_block;
  const auto grid = PersistentGrid(LayerNormRegKernel<D, O, kVec<St>>, g.block, blocks);
  LayerNormRegKernel<D, O, kVec<St>><<<grid, g.block, 0, stream>>>(
      static_cast<uint32_t>(rows), static_cast<uint32_t>(d), g.group, static_cast<float>(epsilon),
      rms, static_cast<const St*>(x), static_cast<const St*>(scale), scale_bcast,
      static_cast<const St*>(bias), bias_bcast, static_cast<So*>(y), mean, inv_std_dev);
  return true;
}

}  // namespace

cudaError_t LaunchSoftmax(DT dt, int64_t outer, int64_t n, int64_t inner, bool log_softmax,
                          const void* in, void* out, cudaStream_t stream) {
  if (outer * n * inner == 0) return cudaSuccess;
  if (inner == 1 && outer >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  // Contiguous f32 / f16 / bf16 rows that fit in registers: one read, one write per element.
  if (inner == 1) {
    bool done = false;
    if (dt == DT::kF32) done = LaunchSoftmaxReg<DT::kF32>(outer, n, log_softmax, in, out, stream);
    if (dt == DT::kF16) done = LaunchSoftmaxReg<DT::kF16>(outer, n, log_softmax, in, out, stream);
    if (dt == DT::kBF16) done = LaunchSoftmaxReg<DT::kBF16>(outer, n, log_softmax, in, out, stream);
    if (done) return cudaGetLastError();
  }
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

cudaError_t LaunchLayerNorm(DT dt, DT out_dt, int64_t rows, int64_t d, double epsilon, bool rms,
                            const void* x, const void* scale, bool scale_bcast, const void* bias,
                            bool bias_bcast, void* y, float* mean, float* inv_std_dev,
                            cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  if (rows >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  // x of D, y of O: rows in registers where they fit (x read once), else one block per row.
  auto launch = [&](auto d_tag, auto o_tag) {
    constexpr DT D = decltype(d_tag)::value, O = decltype(o_tag)::value;
    if constexpr (D == DT::kF32 || D == DT::kF16 || D == DT::kBF16) {
      if (LaunchLayerNormReg<D, O>(rows, d, epsilon, rms, x, scale, scale_bcast, bias,
                                   bias_bcast, y, mean, inv_std_dev, stream)) {
        return;
      }
    }
    LayerNormKernel<D, O><<<RowGrid(rows), kRowThreads, 0, stream>>>(
        d, static_cast<Acc<D>>(epsilon), rms, static_cast<const typename Ty<D>::S*>(x),
        static_cast<const typename Ty<D>::S*>(scale), scale_bcast,
        static_cast<const typename Ty<D>::S*>(bias), bias_bcast,
        static_cast<typename Ty<O>::S*>(y), mean, inv_std_dev);
  };
  using F32 = std::integral_constant<DT, DT::kF32>;
  if (out_dt != dt) {  // y in f16 / bf16 from an f32 x (layer_norm {dtype})
    if (dt != DT::kF32) return cudaErrorInvalidValue;
    if (out_dt == DT::kF16) {
      launch(F32{}, std::integral_constant<DT, DT::kF16>{});
    } else if (out_dt == DT::kBF16) {
      launch(F32{}, std::integral_constant<DT, DT::kBF16>{});
    } else {
      return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  }
#define PTC_LN_CASE(D)                                               \
  case D:                                                            \
    launch(std::integral_constant<DT, D>{}, std::integral_constant<DT, D>{}); \
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

namespace {

// Adjacent dims that are contiguous with each other merged (same offsets, fewer div/mod):
// [B, T, C] summed over (B, T) becomes one reduced dim of B * T rows of stride C.
void MergeDims(int32_t* rank, int64_t* shape, int64_t* strides) {
  int32_t r = 0;
  for (int32_t i = 0; i < *rank; ++i) {
    if (r > 0 && strides[r - 1] == strides[i] * shape[i]) {
      shape[r - 1] *= shape[i];
      strides[r - 1] = strides[i];
    } else {
      shape[r] = shape[i];
      strides[r] = strides[i];
      ++r;
    }
  }
  *rank = r;
}

ReduceDesc Merged(const ReduceDesc& d) {
  ReduceDesc m = d;
  MergeDims(&m.kept_rank, m.kept_shape, m.kept_strides);
  MergeDims(&m.red_rank, m.red_shape, m.red_strides);
  return m;
}

// Row chunks of the column path (0: not a column reduction, or too few rows to split).
int64_t ColumnChunks(const ReduceDesc& m) {
  if (m.kept_rank != 1 || m.kept_strides[0] != 1 || m.red_rank != 1 || m.count < 64) return 0;
  if (m.kept_shape[0] >= (int64_t{1} << 31) / kColTile * kColTile) return 0;
  int64_t chunks = (m.count + 63) / 64;
  if (chunks > 512) chunks = 512;
  // Partials of at most 64 MiB (f64 accumulators): fewer, longer chunks beyond.
  const int64_t max_chunks = (int64_t{64} << 20) / 8 / m.kept_shape[0];
  if (chunks > max_chunks) chunks = max_chunks;
  return chunks >= 2 ? chunks : 0;
}

size_t AccBytes(DT dt) { return dt == DT::kF64 || dt == DT::kI32 || dt == DT::kI64 ? 8 : 4; }

}  // namespace

size_t ReduceWorkspaceBytes(DT dt, const ReduceDesc& d) {
  if (d.out_n == 0) return 0;
  const ReduceDesc m = Merged(d);
  const int64_t chunks = ColumnChunks(m);
  return static_cast<size_t>(chunks * m.kept_shape[0]) * AccBytes(dt);
}

cudaError_t LaunchReduce(DT dt, ReduceKind kind, const ReduceDesc& d, const void* in, void* out,
                         cudaStream_t stream) {
  return LaunchReduce(dt, kind, d, in, out, /*workspace=*/nullptr, stream);
}

cudaError_t LaunchReduce(DT dt, ReduceKind kind, const ReduceDesc& desc, const void* in,
                         void* out, void* workspace, cudaStream_t stream) {
  if (desc.out_n == 0) return cudaSuccess;
  const ReduceDesc d = Merged(desc);
  // Column path: needs the scratch of ReduceWorkspaceBytes (callers without it get the paths
  // below).
  const int64_t chunks = workspace != nullptr ? ColumnChunks(d) : 0;
  const bool by_block = d.count >= 256 && d.out_n < (int64_t{1} << 31);
#define PTC_REDUCE_CASE(D)                                                                   \
  case D:                                                                                    \
    if (chunks > 0) {                                                                        \
      const int64_t cols = d.kept_shape[0];                                                  \
      Acc<D>* part = static_cast<Acc<D>*>(workspace);                                        \
      ReduceColumnsPartialKernel<D>                                                          \
          <<<dim3(static_cast<unsigned>((cols + kColTile - 1) / kColTile),                   \
                  static_cast<unsigned>(chunks)),                                            \
             dim3(kColTile, kColLanes), 0, stream>>>(kind, cols, d.count, d.red_strides[0],  \
                                                     (d.count + chunks - 1) / chunks,        \
                                                     static_cast<const Ty<D>::S*>(in), part); \
      ReduceColumnsFinalKernel<D><<<GridFor(cols, kThreads), kThreads, 0, stream>>>(         \
          kind, cols, d.count, chunks, part, static_cast<Ty<D>::S*>(out));                   \
    } else if (by_block) {                                                                   \
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
