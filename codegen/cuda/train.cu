// Kernels of the training ops (compiler/ir/ops_train.cc) and of the two losses of ops.h:
// softmax_ce_loss / nll_loss forward and gradient, layer_norm_grad, gelu_grad, gather_grad,
// lr_schedule, adamw_update (multi-tensor), sgd_update. slice_grad is a memset plus the strided
// copy of copy.cu (runtime/cuda/train_kernels.cc).
//
// Determinism: no float atomics. Sums over rows (loss reductions, layer_norm's dscale / dbias,
// gather_grad's scatter-add) are done by one thread or one block in a fixed order, so results
// do not depend on scheduling. 16-bit floats compute in f32, f64 in f64.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <type_traits>

#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kThreads = 256;

template <DT D>
using S = typename Ty<D>::S;

__device__ __forceinline__ int64_t LoadLabel(const void* labels, bool i64, int64_t i) {
  return i64 ? static_cast<const int64_t*>(labels)[i]
             : static_cast<int64_t>(static_cast<const int32_t*>(labels)[i]);
}

__device__ __forceinline__ void RaiseError(int* flag, int code) {
  if (flag != nullptr) atomicCAS(flag, 0, code);
}

template <typename A>
__device__ __forceinline__ A NegInf() {
  if constexpr (std::is_same_v<A, double>) {
    return -HUGE_VAL;
  } else {
    return -INFINITY;
  }
}

// The loss of row r = (i, k) given its log-sum-exp (0 for nll_loss): -w[label] * (x[label] - lse).
template <DT D>
__device__ __forceinline__ void RowLoss(const LossDesc& ld, int64_t r, Acc<D> lse,
                                        const S<D>* x, const void* labels, bool li64,
                                        const S<D>* weight, S<D>* loss_none, Acc<D>* row_loss,
                                        Acc<D>* row_w, int* err, int code) {
  using A = Acc<D>;
  const int64_t i = r / ld.d, kk = r % ld.d;
  const int64_t lab = LoadLabel(labels, li64, r);
  A l = 0, w = 0;
  if (!(ld.has_ignore && lab == ld.ignore_index)) {
    if (lab < 0 || lab >= ld.c) {
      RaiseError(err, code);
    } else {
      w = weight != nullptr ? static_cast<A>(Load<D>(weight, lab)) : A(1);
      l = -w * (static_cast<A>(Load<D>(x, (i * ld.c + lab) * ld.d + kk)) - lse);
    }
  }
  if (loss_none != nullptr) {
    Store<D>(loss_none, r, l);
  } else {
    row_loss[r] = l;
    row_w[r] = w;
  }
}

// softmax_ce_loss: one block per row (i, k) of scores [n, c, d]; the row's classes are d apart.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    SoftmaxCeRowKernel(LossDesc ld, const S<D>* __restrict__ x, const void* __restrict__ labels,
                       bool li64, const S<D>* __restrict__ weight, S<D>* __restrict__ log_prob,
                       S<D>* __restrict__ loss_none, Acc<D>* __restrict__ row_loss,
                       Acc<D>* __restrict__ row_w, int* err, int code) {
  using A = Acc<D>;
  __shared__ A shm[32];
  const int64_t rows = ld.n * ld.d;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t base = (r / ld.d) * ld.c * ld.d + r % ld.d;
    A mx = NegInf<A>();
    for (int64_t j = threadIdx.x; j < ld.c; j += blockDim.x) {
      const A v = Load<D>(x, base + j * ld.d);
      mx = v > mx ? v : mx;
    }
    mx = BlockReduce<A>(mx, /*kind=*/1, NegInf<A>(), shm);
    A sum = 0;
    for (int64_t j = threadIdx.x; j < ld.c; j += blockDim.x) {
      sum += exp(static_cast<A>(Load<D>(x, base + j * ld.d)) - mx);
    }
    sum = BlockReduce<A>(sum, /*kind=*/0, A(0), shm);
    const A lse = mx + log(sum);
    if (log_prob != nullptr) {
      for (int64_t j = threadIdx.x; j < ld.c; j += blockDim.x) {
        Store<D>(log_prob, base + j * ld.d, static_cast<A>(Load<D>(x, base + j * ld.d)) - lse);
      }
    }
    if (threadIdx.x == 0) {
      RowLoss<D>(ld, r, lse, x, labels, li64, weight, loss_none, row_loss, row_w, err, code);
    }
  }
}

// linear_ce_loss, one block per row of a block of logits (f32 [rows, v], row stride ld): the
// row's loss lse - x[label] (0 for an ignored label) into row_loss / row_w, and with `grads`
// G = (softmax - onehot(label)) * norm into g (type G, the same row stride: in place for f32,
// the product dtype otherwise, so no separate cast pass). One read pass keeps a running max and
// sum per thread (rescaled when the max grows); the gradient pass reads the row once more.
// With a bias (the LM head's, type G: the inputs' dtype) each logit is read as x[j] + bias[j],
// in f32, times `scale` (Cohere's logit scale; G times scale too); with softcap > 0 (Gemma 2)
// then capped to softcap * tanh(z / softcap), and G is multiplied by the cap's derivative
// 1 - tanh^2.
template <typename G>
__device__ __forceinline__ G FromF32(float v) {
  if constexpr (std::is_same_v<G, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else if constexpr (std::is_same_v<G, __half>) {
    return __float2half_rn(v);
  } else {
    return v;
  }
}

template <typename X>
__device__ __forceinline__ float ToF32(X v) {
  if constexpr (std::is_same_v<X, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<X, __half>) {
    return __half2float(v);
  } else {
    return v;
  }
}

template <typename X, typename G>
__global__ void __launch_bounds__(kThreads)
    LinearCeRowKernel(int64_t rows, int64_t v, int64_t ld, const X* x, G* g,
                      const G* __restrict__ bias, const void* __restrict__ labels, bool li64,
                      bool has_ignore, int64_t ignore_index, const float* __restrict__ norm,
                      bool grads, float scale, float softcap, float* __restrict__ row_loss,
                      float* __restrict__ row_w, int* err, int code) {
  __shared__ float shm[32];
  auto logit = [&](const X* xr, int64_t j) {
    const float z = (bias != nullptr ? ToF32(xr[j]) + ToF32(bias[j]) : ToF32(xr[j])) * scale;
    return softcap > 0.f ? softcap * tanhf(z / softcap) : z;
  };
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const X* xr = x + r * ld;
    float m = -INFINITY, sum = 0;
    for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
      const float xj = logit(xr, j);
      if (xj > m) {
        sum = sum * expf(m - xj) + 1.f;
        m = xj;
      } else if (xj != -INFINITY) {
        sum += expf(xj - m);
      }
    }
    const float mx = BlockReduce<float>(m, /*kind=*/1, -INFINITY, shm);
    sum = sum == 0.f ? 0.f : sum * expf(m - mx);  // keeps a NaN of a thread's elements
    sum = BlockReduce<float>(sum, /*kind=*/0, 0.f, shm);
    const float lse = mx + logf(sum);
    const int64_t lab = LoadLabel(labels, li64, r);
    const bool ignored = has_ignore && lab == ignore_index;
    const bool bad = !ignored && (lab < 0 || lab >= v);
    const float x_lab = ignored || bad ? 0.f : logit(xr, lab);
    if (threadIdx.x == 0) {
      if (bad) RaiseError(err, code);
      row_loss[r] = ignored || bad ? 0.f : lse - x_lab;
      row_w[r] = ignored || bad ? 0.f : 1.f;
    }
    if (grads) {
      __syncthreads();  // every thread has read x[label] before an in-place row is overwritten
      const float nm = ignored || bad ? 0.f : norm[0];
      G* gr = g + r * ld;
      for (int64_t j = threadIdx.x; j < v; j += blockDim.x) {
        const float c = logit(xr, j);
        const float p = expf(c - lse) * nm;
        float gj = (j == lab ? p - nm : p) * scale;
        if (softcap > 0.f) {
          const float t = c / softcap;
          gj *= 1.f - t * t;
        }
        gr[j] = FromF32<G>(gj);
      }
    }
    __syncthreads();
  }
}

// linear_ce_loss's bias gradient: acc[j] += sum over r < rows of g[r * ld + j] (f32), the rows
// of each column summed in a fixed order (deterministic). A block is 8 warps over 64 columns:
// lane l of warp y reads columns 2l, 2l + 1 of rows y, y + 8, ... (128 coalesced bytes of a
// bf16 row per warp), then lane l of warp 0 adds the 8 partial sums of its two columns in warp
// order (the partials stored as [warp][even | odd][lane]: no bank conflicts either way).
template <typename G>
__global__ void __launch_bounds__(256)
    ColumnSumAccumulateKernel(int64_t rows, int64_t v, int64_t ld, const G* __restrict__ g,
                              float* __restrict__ acc) {
  __shared__ float part[8][64];
  const int lane = threadIdx.x & 31, y = threadIdx.x >> 5;
  for (int64_t c0 = int64_t{blockIdx.x} * 64; c0 < v; c0 += int64_t{gridDim.x} * 64) {
    const int64_t j = c0 + 2 * lane;
    float s0 = 0.f, s1 = 0.f;
    for (int64_t r = y; r < rows; r += 8) {
      const G* gr = g + r * ld;
      if (j < v) s0 += ToF32(gr[j]);
      if (j + 1 < v) s1 += ToF32(gr[j + 1]);
    }
    part[y][lane] = s0;
    part[y][32 + lane] = s1;
    __syncthreads();
    if (y == 0) {
      float t0 = 0.f, t1 = 0.f;
      for (int k = 0; k < 8; ++k) {
        t0 += part[k][lane];
        t1 += part[k][32 + lane];
      }
      if (j < v) acc[j] += t0;
      if (j + 1 < v) acc[j + 1] += t1;
    }
    __syncthreads();
  }
}

// nll_loss: one thread per row.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    NllRowKernel(LossDesc ld, const S<D>* __restrict__ x, const void* __restrict__ labels,
                 bool li64, const S<D>* __restrict__ weight, S<D>* __restrict__ loss_none,
                 Acc<D>* __restrict__ row_loss, Acc<D>* __restrict__ row_w, int* err, int code) {
  const int64_t rows = ld.n * ld.d;
  for (int64_t r = GlobalThread(); r < rows; r += GridStride()) {
    RowLoss<D>(ld, r, Acc<D>(0), x, labels, li64, weight, loss_none, row_loss, row_w, err, code);
  }
}

// One block: sum (and weight sum) of the per-row losses in a fixed order.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    LossReduceKernel(int64_t rows, int reduction, const Acc<D>* __restrict__ row_loss,
                     const Acc<D>* __restrict__ row_w, S<D>* __restrict__ out) {
  using A = Acc<D>;
  __shared__ A shm[32];
  A l = 0, w = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    l += row_loss[r];
    w += row_w[r];
  }
  l = BlockReduce<A>(l, 0, A(0), shm);
  w = BlockReduce<A>(w, 0, A(0), shm);
  if (threadIdx.x == 0) Store<D>(out, 0, reduction == 1 ? l : l / w);
}

// One block: validates labels and stores the gradient's normalizer (1 / sum w for "mean").
template <DT D>
__global__ void __launch_bounds__(kThreads)
    LossGradNormKernel(LossDesc ld, const void* __restrict__ labels, bool li64,
                       const S<D>* __restrict__ weight, Acc<D>* __restrict__ norm, int* err,
                       int code) {
  using A = Acc<D>;
  __shared__ A shm[32];
  const int64_t rows = ld.n * ld.d;
  A w = 0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
    const int64_t lab = LoadLabel(labels, li64, r);
    if (ld.has_ignore && lab == ld.ignore_index) continue;
    if (lab < 0 || lab >= ld.c) {
      RaiseError(err, code);
      continue;
    }
    w += weight != nullptr ? static_cast<A>(Load<D>(weight, lab)) : A(1);
  }
  w = BlockReduce<A>(w, 0, A(0), shm);
  if (threadIdx.x == 0) norm[0] = ld.reduction == 2 ? (w != A(0) ? A(1) / w : A(0)) : A(1);
}

// dx[i, j, k] = coeff * (softmax ? exp(x) : 0) - (j == label ? coeff : 0),
// coeff = dloss * w[label] * norm (0 for ignored rows).
template <DT D>
__device__ __forceinline__ void LossGradElement(const LossDesc& ld, bool softmax,
                                                const S<D>* dloss, const S<D>* x,
                                                const void* labels, bool li64, const S<D>* weight,
                                                Acc<D> nm, S<D>* dx, int64_t i, int64_t j,
                                                int64_t kk, int64_t e) {
  using A = Acc<D>;
  const int64_t r = i * ld.d + kk;
  const int64_t lab = LoadLabel(labels, li64, r);
  const bool counted = !(ld.has_ignore && lab == ld.ignore_index) && lab >= 0 && lab < ld.c;
  A coeff = 0;
  if (counted) {
    coeff = static_cast<A>(Load<D>(dloss, ld.reduction == 0 ? r : 0)) *
            (weight != nullptr ? static_cast<A>(Load<D>(weight, lab)) : A(1)) * nm;
  }
  A v = softmax ? coeff * exp(static_cast<A>(Load<D>(x, e))) : A(0);
  if (counted && j == lab) v -= coeff;
  Store<D>(dx, e, v);
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    LossGradKernel(LossDesc ld, bool softmax, const S<D>* __restrict__ dloss,
                   const S<D>* __restrict__ x, const void* __restrict__ labels, bool li64,
                   const S<D>* __restrict__ weight, const Acc<D>* __restrict__ norm,
                   S<D>* __restrict__ dx) {
  const int64_t total = ld.n * ld.c * ld.d;
  const Acc<D> nm = norm[0];
  for (int64_t e = GlobalThread(); e < total; e += GridStride()) {
    const int64_t kk = e % ld.d, j = (e / ld.d) % ld.c, i = e / (ld.c * ld.d);
    LossGradElement<D>(ld, softmax, dloss, x, labels, li64, weight, nm, dx, i, j, kk, e);
  }
}

// d == 1 (scores [n, c], the language-model case) with n * c < 2^31: (row, class) advanced by
// the grid stride without division, 32-bit. Same element function as above.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    LossGradRowsKernel(LossDesc ld, bool softmax, const S<D>* __restrict__ dloss,
                       const S<D>* __restrict__ x, const void* __restrict__ labels, bool li64,
                       const S<D>* __restrict__ weight, const Acc<D>* __restrict__ norm,
                       S<D>* __restrict__ dx) {
  const uint32_t c = static_cast<uint32_t>(ld.c), total = static_cast<uint32_t>(ld.n) * c;
  const uint32_t stride = gridDim.x * blockDim.x, first = blockIdx.x * blockDim.x + threadIdx.x;
  const Acc<D> nm = norm[0];
  uint32_t i = first / c, j = first % c;
  const uint32_t di = stride / c, dj = stride % c;
  for (uint32_t e = first; e < total; e += stride) {
    LossGradElement<D>(ld, softmax, dloss, x, labels, li64, weight, nm, dx, i, j, 0, e);
    j += dj;
    i += di;
    if (j >= c) {
      j -= c;
      ++i;
    }
  }
}

// ---------------------------------------------------------------------------- layer_norm_grad
constexpr int kColTile = 32, kColRows = 8;

int64_t LnChunks(int64_t rows) {
  int64_t c = (rows + 63) / 64;
  return c < 1 ? 1 : (c > 512 ? 512 : c);
}

// dy is of dtype G in the kernels below: D's, or f16 / bf16 for an f32 x (layer_norm_grad
// reading a --precision plan's low-precision gradient, fold-norm-casts); widened exactly.

// Block (32, 8) per (32 columns, chunk of rows): partial dscale / dbias of the chunk.
template <DT D, DT G>
__global__ void __launch_bounds__(kColTile * kColRows)
    LnGradColumnPartialKernel(int64_t rows, int64_t d, int64_t chunk_rows,
                              const S<G>* __restrict__ dy, const S<D>* __restrict__ x,
                              const float* __restrict__ mean, const float* __restrict__ istd,
                              Acc<D>* __restrict__ part_scale, Acc<D>* __restrict__ part_bias) {
  using A = Acc<D>;
  __shared__ A ss[kColRows][kColTile];
  __shared__ A sb[kColRows][kColTile];
  const int64_t col = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  A gs = 0, gb = 0;
  if (col < d) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kColRows) {
      const A g = static_cast<A>(Load<G>(dy, r * d + col));
      const A xh = (static_cast<A>(Load<D>(x, r * d + col)) - static_cast<A>(mean[r])) *
                   static_cast<A>(istd[r]);
      gs += g * xh;
      gb += g;
    }
  }
  ss[threadIdx.y][threadIdx.x] = gs;
  sb[threadIdx.y][threadIdx.x] = gb;
  __syncthreads();
  if (threadIdx.y == 0 && col < d) {
    A ts = 0, tb = 0;
#pragma unroll
    for (int y = 0; y < kColRows; ++y) {
      ts += ss[y][threadIdx.x];
      tb += sb[y][threadIdx.x];
    }
    part_scale[chunk * d + col] = ts;
    part_bias[chunk * d + col] = tb;
  }
}

// The same partials with 16-byte loads (f32 / f16 / bf16, d a multiple of V, dy and x aligned:
// the launcher checked): each thread sums V adjacent columns over its rows of the chunk, a warp
// reads 32 x 16 bytes of a row per load, and the indices are 32-bit (rows * d < 2^31). Every
// column is summed in the scalar kernel's order (same rows per lane, lanes in order): the same
// bits.
template <DT D, DT G, int V>
__global__ void __launch_bounds__(kColTile * kColRows)
    LnGradColumnPartialVecKernel(uint32_t rows, uint32_t d, uint32_t chunk_rows,
                                 const S<G>* __restrict__ dy, const S<D>* __restrict__ x,
                                 const float* __restrict__ mean, const float* __restrict__ istd,
                                 float* __restrict__ part_scale, float* __restrict__ part_bias) {
  // Column x * V + j of the tile (thread x's j-th sum) at x * V + (j + x / (32 / V)) % V: the
  // lanes' stores of one j fall in 32 different banks, and so do the reads of 32 consecutive
  // columns (plain x * V + j was a V-way conflict on the stores).
  __shared__ float ss[kColRows][kColTile * V];
  __shared__ float sb[kColRows][kColTile * V];
  auto slot = [](uint32_t x, uint32_t j) { return x * V + (j + x / (32 / V)) % V; };
  const uint32_t col0 = (blockIdx.x * kColTile + threadIdx.x) * V;
  const uint32_t chunk = blockIdx.y;
  const uint32_t r0 = chunk * chunk_rows;
  const uint32_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  float gs[V], gb[V];
#pragma unroll
  for (int j = 0; j < V; ++j) gs[j] = gb[j] = 0.f;
  if (col0 < d) {
    for (uint32_t r = r0 + threadIdx.y; r < r1; r += kColRows) {
      S<G> g[V];
      S<D> xv[V];
      LoadVec<S<G>, V>(dy + r * d + col0, g);
      LoadVec<S<D>, V>(x + r * d + col0, xv);
      const float mu = mean[r], is = istd[r];
#pragma unroll
      for (int j = 0; j < V; ++j) {
        const float gj = Widen<G>(g[j]);
        const float xh = (Widen<D>(xv[j]) - mu) * is;  // as LnGradColumnPartialKernel rounds
        gs[j] += gj * xh;
        gb[j] += gj;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < V; ++j) {
    ss[threadIdx.y][slot(threadIdx.x, j)] = gs[j];
    sb[threadIdx.y][slot(threadIdx.x, j)] = gb[j];
  }
  __syncthreads();
  // Each of the block's threads finishes one column of the tile: the sum over the 8 row lanes
  // in a fixed order.
  const uint32_t t = threadIdx.y * kColTile + threadIdx.x;
  const uint32_t col = blockIdx.x * kColTile * V + t;
  if (t < kColTile * V && col < d) {
    float ts = 0, tb = 0;
    const uint32_t st = slot(t / V, t % V);
#pragma unroll
    for (int y = 0; y < kColRows; ++y) {
      ts += ss[y][st];
      tb += sb[y][st];
    }
    part_scale[chunk * d + col] = ts;
    part_bias[chunk * d + col] = tb;
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    LnGradColumnFinalKernel(int64_t d, int64_t chunks, const Acc<D>* __restrict__ part_scale,
                            const Acc<D>* __restrict__ part_bias, S<D>* __restrict__ dscale,
                            S<D>* __restrict__ dbias) {
  using A = Acc<D>;
  for (int64_t col = GlobalThread(); col < d; col += GridStride()) {
    A ts = 0, tb = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      ts += part_scale[c * d + col];
      tb += part_bias[c * d + col];
    }
    Store<D>(dscale, col, ts);
    Store<D>(dbias, col, tb);
  }
}

// One block per row: dx = istd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * scale; `rms`
// (RMSNorm, mean = 0): dx = istd * (g - xhat * mean(g * xhat)).
// dx_low's value from the stored dx `o` (D is f32 when dx_low is set): its rounding to G, and
// with kDrop the dropout of that (kernels.h DropoutArgs): o times `scale` where element i is
// kept, else 0, rounded once (the CPU kernel's f32 value, rounded by its half wrapper).
// `keep`: the element's mask bit (kDrop only).
template <DT D, DT G, bool kDrop>
__device__ __forceinline__ S<G> LowValue(S<D> o, bool keep, float scale) {
  if constexpr (!kDrop) {
    return Narrow<G>(static_cast<float>(o));
  } else {
    return Narrow<G>(keep ? static_cast<float>(o) * scale : 0.f);
  }
}

template <DT D, DT G, bool kDrop>
__global__ void __launch_bounds__(kThreads)
    LnGradRowKernel(int64_t rows, int64_t d, bool rms, const S<G>* __restrict__ dy,
                    const S<D>* __restrict__ x, const S<D>* __restrict__ scale,
                    const float* __restrict__ mean, const float* __restrict__ istd,
                    const S<D>* __restrict__ addend, S<D>* __restrict__ dx,
                    S<G>* __restrict__ dx_low, DropoutArgs ld) {
  using A = Acc<D>;
  __shared__ A shm[32];
  uint64_t key = 0;
  if constexpr (kDrop) key = ir::DropoutKey(ld.seed, ir::DropoutCounter(ld.counter, ld.counter_i32));
  const float low_scale = static_cast<float>(ld.scale);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const A mu = mean[r], is = istd[r];
    const S<G>* gr = dy + r * d;
    const S<D>* xr = x + r * d;
    A sa = 0, sb = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const A g = static_cast<A>(Load<G>(gr, j)) * static_cast<A>(Load<D>(scale, j));
      sa += g;
      sb += g * (static_cast<A>(Load<D>(xr, j)) - mu) * is;
    }
    sa = BlockReduce<A>(sa, 0, A(0), shm);
    sb = BlockReduce<A>(sb, 0, A(0), shm);
    const A a = rms ? A(0) : sa / A(d), b = sb / A(d);  // RMSNorm: no mean(g) term
    // Every thread's reads of this row are done (the reductions above are barriers), so dx
    // may alias dy.
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const A g = static_cast<A>(Load<G>(gr, j)) * static_cast<A>(Load<D>(scale, j));
      const A xh = (static_cast<A>(Load<D>(xr, j)) - mu) * is;
      A v = is * (g - a - xh * b);
      if (addend != nullptr) v = static_cast<A>(Load<D>(addend + r * d, j)) + v;
      Store<D>(dx + r * d, j, v);
      // dx_low: the stored dx rounded to dy's dtype, as the cast kernel would (D is f32 here).
      if (dx_low != nullptr) {
        const bool keep =
            kDrop && ir::DropoutKeeps(key, static_cast<uint64_t>(r * d + j), ld.threshold);
        dx_low[r * d + j] = LowValue<D, G, kDrop>(Narrow<D>(v), keep, low_scale);
      }
    }
  }
}

// Row in registers (f32 / f16 / bf16, rows of up to kMaxRowGroup x kLnGradRegs elements, 16-byte
// accesses; the launcher checked alignment): dy and x are read once and kept in registers in
// their storage type (64 bytes of each per thread), scale is read per pass (one row shared by
// every row: cache hits). Same formulas as LnGradRowKernel.
template <DT D>
constexpr int kLnGradRegs = 64 / static_cast<int>(sizeof(S<D>));  // elements per thread

template <DT D, DT G, bool kDrop>
__global__ void __launch_bounds__(kMaxRowGroup, kRowMinBlocks)
    LnGradRowRegKernel(uint32_t rows, uint32_t d, int group, bool rms, const S<G>* __restrict__ dy,
                       const S<D>* __restrict__ x, const S<D>* __restrict__ scale,
                       const float* __restrict__ mean, const float* __restrict__ istd,
                       const S<D>* __restrict__ addend, S<D>* dx, S<G>* __restrict__ dx_low,
                       DropoutArgs ld) {
  constexpr int V = kVec<S<D>>;
  uint64_t key = 0;
  if constexpr (kDrop) key = ir::DropoutKey(ld.seed, ir::DropoutCounter(ld.counter, ld.counter_i32));
  const float low_scale = static_cast<float>(ld.scale);
  constexpr int kSteps = kLnGradRegs<D> / V;
  __shared__ float shm[32];
  const uint32_t nv = d / V;
  const uint32_t lane = threadIdx.x % group, rpb = blockDim.x / group;
  for (uint32_t r = blockIdx.x * rpb + threadIdx.x / group; r < rows; r += gridDim.x * rpb) {
    const float mu = mean[r], is = istd[r];
    const int64_t base = static_cast<int64_t>(r) * d;
    S<G> gv[kSteps][V];
    S<D> xv[kSteps][V];
    float sa = 0, sb = 0;
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const uint32_t k = s * group + lane;
      if (k < nv) {
        S<D> sc[V];
        LoadVec<S<G>, V>(dy + base + k * V, gv[s]);
        LoadVec<S<D>, V>(x + base + k * V, xv[s]);
        LoadVec<S<D>, V>(scale + k * V, sc);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float g = Widen<G>(gv[s][j]) * Widen<D>(sc[j]);
          sa += g;
          sb += g * (Widen<D>(xv[s][j]) - mu) * is;
        }
      }
    }
    sa = GroupReduce<float>(sa, 0, 0.f, shm, group);
    sb = GroupReduce<float>(sb, 0, 0.f, shm, group);
    const float a = rms ? 0.f : sa / static_cast<float>(d), b = sb / static_cast<float>(d);
    // Every read of this row is done (held in registers), so dx may alias dy.
#pragma unroll
    for (int s = 0; s < kSteps; ++s) {
      const uint32_t k = s * group + lane;
      if (k < nv) {
        S<D> sc[V], o[V], ad[V];
        S<G> lo[V];
        LoadVec<S<D>, V>(scale + k * V, sc);
        if (addend != nullptr) LoadVec<S<D>, V>(addend + base + k * V, ad);
        // The V elements' mask bits: V / 2 hashes (ir::DropoutKeepRun; base + k V is a
        // multiple of V).
        uint32_t keep = 0;
        if constexpr (kDrop) {
          keep = ir::DropoutKeepRun<V>(key, static_cast<uint64_t>(base) + k * V, ld.threshold);
        }
#pragma unroll
        for (int j = 0; j < V; ++j) {
          const float g = Widen<G>(gv[s][j]) * Widen<D>(sc[j]);
          const float xh = (Widen<D>(xv[s][j]) - mu) * is;
          float v = is * (g - a - xh * b);
          if (addend != nullptr) v = Widen<D>(ad[j]) + v;
          o[j] = Narrow<D>(v);
          // dx_low (D is f32 when it is set): no conversions when there is none.
          if (dx_low != nullptr) {
            lo[j] = LowValue<D, G, kDrop>(o[j], ((keep >> j) & 1u) != 0, low_scale);
          }
        }
        StoreVec<S<D>, V>(dx + base + k * V, o);
        if (dx_low != nullptr) StoreVec<S<G>, V>(dx_low + base + k * V, lo);
      }
    }
  }
}

// ---------------------------------------------------------------------------------- gelu_grad
template <DT D>
__device__ __forceinline__ typename Ty<D>::C GeluGradValue(bool tanh_approx,
                                                           typename Ty<D>::C g,
                                                           typename Ty<D>::C v) {
  return g * GeluDerivativeOf(v, tanh_approx);
}

// gelu_grad as a two-operand map (device_util.cuh's LaunchBinaryMap: 16-byte accesses when the
// three pointers allow them and n < 2^31).
template <DT D>
struct GeluGradOp {
  bool tanh_approx;
  __device__ __forceinline__ typename Ty<D>::C operator()(typename Ty<D>::C dy,
                                                          typename Ty<D>::C x) const {
    return GeluGradValue<D>(tanh_approx, dy, x);
  }
};

// -------------------------------------------------------------------------------- gather_grad
__device__ __forceinline__ int32_t Bucket(const void* idx, bool i64, int64_t i, int64_t n) {
  int64_t k = LoadLabel(idx, i64, i);
  if (k < 0) k += n;
  return (k < 0 || k >= n) ? -1 : static_cast<int32_t>(k);
}

// The counting sort in chunks of positions, so that the fill runs one warp per chunk in
// parallel: counts[c][k] is how many positions of chunk c fall in bucket k (integer atomics:
// the result does not depend on their order).
__global__ void __launch_bounds__(kThreads)
    GatherGradCountKernel(int64_t ni, int64_t n, int64_t chunk, int64_t pn,
                          const void* __restrict__ idx, bool i64, int32_t* __restrict__ counts,
                          int* err, int code) {
  for (int64_t i = GlobalThread(); i < ni; i += GridStride()) {
    const int32_t k = Bucket(idx, i64, i, n);
    if (k < 0) {
      RaiseError(err, code);
    } else {
      atomicAdd(counts + (i / chunk) * pn + k, 1);
    }
  }
}

// Per bucket k (one thread each, coalesced over k): the chunks' counts become their exclusive
// prefix over the chunks (where chunk c's positions start within the bucket), and total[k]
// the bucket's size.
__global__ void __launch_bounds__(kThreads)
    GatherGradChunkPrefixKernel(int64_t n, int64_t chunks, int64_t pn,
                                int32_t* __restrict__ counts, int32_t* __restrict__ total) {
  for (int64_t k = GlobalThread(); k < n; k += GridStride()) {
    int32_t run = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      const int32_t t = counts[c * pn + k];
      counts[c * pn + k] = run;
      run += t;
    }
    total[k] = run;
  }
}

// One block of 1024, kScanItems consecutive entries per thread (one 16-byte load): exclusive
// scan of total into start, and start + total into end (in place of total). The arrays are
// padded to a multiple of 128 bytes, so the vector accesses stay inside them; entries past n
// count as 0.
constexpr int kScanThreads = 1024;
constexpr int kScanItems = 4;
__global__ void __launch_bounds__(kScanThreads)
    ExclusiveScanKernel(int64_t n, int32_t* __restrict__ total, int32_t* __restrict__ start) {
  __shared__ int32_t warp_sums[32];
  __shared__ int32_t carry_shm;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (threadIdx.x == 0) carry_shm = 0;
  __syncthreads();
  constexpr int64_t kPerBlock = int64_t{kScanThreads} * kScanItems;
  for (int64_t base = 0; base < n; base += kPerBlock) {
    const int64_t i0 = base + int64_t{threadIdx.x} * kScanItems;
    int4 v = make_int4(0, 0, 0, 0);
    if (i0 < n) v = *reinterpret_cast<const int4*>(total + i0);
    const int32_t x0 = v.x, x1 = i0 + 1 < n ? v.y : 0, x2 = i0 + 2 < n ? v.z : 0,
                  x3 = i0 + 3 < n ? v.w : 0;
    const int32_t own = x0 + x1 + x2 + x3;
    int32_t incl = own;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t u = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += u;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    if (warp == 0) {
      int32_t s = warp_sums[lane];  // 32 warps of 32: every entry written above
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int32_t u = __shfl_up_sync(0xffffffffu, s, o);
        if (lane >= o) s += u;
      }
      warp_sums[lane] = s;  // inclusive over warps
    }
    __syncthreads();
    const int32_t carry = carry_shm;
    const int32_t excl = carry + (warp > 0 ? warp_sums[warp - 1] : 0) + incl - own;
    if (i0 < n) {
      const int4 st = make_int4(excl, excl + x0, excl + x0 + x1, excl + x0 + x1 + x2);
      *reinterpret_cast<int4*>(start + i0) = st;
      *reinterpret_cast<int4*>(total + i0) =
          make_int4(st.x + x0, st.y + x1, st.z + x2, st.w + x3);  // end
    }
    __syncthreads();  // everyone read carry_shm and warp_sums
    if (threadIdx.x == 0) carry_shm = carry + warp_sums[31];
    __syncthreads();
  }
}

// One warp per chunk of positions, in order: position i goes to slot start[k] + cursor[k]++
// of its bucket, where chunk c's cursor row (its own, counts[c]) starts at the chunk's prefix:
// each bucket lists its positions in increasing order (a stable counting sort), the chunks'
// warps writing disjoint slots.
__global__ void __launch_bounds__(32)
    GatherGradFillKernel(int64_t ni, int64_t n, int64_t chunk, int64_t pn,
                         const void* __restrict__ idx, bool i64, int32_t* counts,
                         const int32_t* __restrict__ start, int32_t* __restrict__ list) {
  volatile int32_t* cur = counts + blockIdx.x * pn;
  const int lane = threadIdx.x;
  const int64_t first = blockIdx.x * chunk, stop = first + chunk < ni ? first + chunk : ni;
  // The next group's buckets are loaded before this group's cursors are read and written (the
  // loop is latency-bound: one global load less on its critical path).
  int32_t next = first + lane < stop ? Bucket(idx, i64, first + lane, n) : -1;
  for (int64_t base = first; base < stop; base += 32) {
    const int64_t i = base + lane;
    const int32_t k = next;
    next = i + 32 < stop ? Bucket(idx, i64, i + 32, n) : -1;
    const unsigned peers = __match_any_sync(0xffffffffu, k);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    int32_t c = 0;
    if (k >= 0) {
      c = cur[k];
      list[start[k] + c + rank] = static_cast<int32_t>(i);
    }
    __syncwarp();
    if (k >= 0 && rank == 0) cur[k] = c + __popc(peers);
    __syncwarp();
  }
}

// One output row (p, k) per block (grid-stride over k), its threads over the inner
// elements: each sums its bucket's rows of dy in the bucket's (index) order, as the CPU kernel
// does; the list and the bounds are read once per row, dy and out coalesced.
template <DT D>
__global__ void __launch_bounds__(kThreads)
    GatherGradAccumulateKernel(int64_t outer, int64_t n, int64_t inner, int64_t ni,
                               const int32_t* __restrict__ start,
                               const int32_t* __restrict__ end, const int32_t* __restrict__ list,
                               const S<D>* __restrict__ dy, const S<D>* base, S<D>* out) {
  // base (may be out itself: each element is read before it is written) or zeros.
  using A = Acc<D>;
  for (int64_t p = 0; p < outer; ++p) {
    const S<D>* src = dy + p * ni * inner;
    for (int64_t k = blockIdx.x; k < n; k += gridDim.x) {
      const int64_t row = p * n + k;
      const int32_t b = start[k], stop = end[k];
      const S<D>* brow = base != nullptr ? base + row * inner : nullptr;
      S<D>* orow = out + row * inner;
      for (int64_t c = threadIdx.x; c < inner; c += blockDim.x) {
        A s = brow != nullptr ? static_cast<A>(Load<D>(brow, c)) : A(0);
        const S<D>* col = src + c;
        for (int32_t j = b; j < stop; ++j) s += Load<D>(col, int64_t{list[j]} * inner);
        Store<D>(orow, c, s);
      }
    }
  }
}

// ------------------------------------------------------------------------------- optimizers
__global__ void LrScheduleKernel(double lr, bool cosine, int64_t warmup, int64_t total,
                                 double min_ratio, const float* step, float* out) {
  const double s = *step;
  double v = lr;
  if (s < static_cast<double>(warmup)) {
    v = lr * (s + 1) / static_cast<double>(warmup);
  } else if (cosine && total > warmup) {
    double p = (s - static_cast<double>(warmup)) / static_cast<double>(total - warmup);
    p = p < 1.0 ? p : 1.0;
    v = lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(3.14159265358979323846 * p)));
  }
  *out = static_cast<float>(v);
}

constexpr int kAdamPerThread = 4;
constexpr int kAdamChunk = kThreads * kAdamPerThread;

struct AdamWLaunch {
  AdamWTensors t;
  int64_t block_start[kMaxAdamTensors + 1];
  bool vec4;  // every pointer 16-byte aligned (f32 only)
};

template <typename C>
__device__ __forceinline__ void AdamWElement(C w, C g, C m, C v, const C* k, C& wo, C& mo,
                                             C& vo) {
  // k: decay, b1, 1-b1, b2, 1-b2, step_size, sqrt(1-b2^t), eps
  mo = k[1] * m + k[2] * g;
  vo = k[3] * v + k[4] * g * g;
  const C denom = sqrt(vo) / k[6] + k[7];
  wo = w * k[0] - k[5] * mo / denom;
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    AdamWKernel(AdamWLaunch a, AdamWParams p, const float* __restrict__ lr_p,
                const float* __restrict__ step_p, const bool* __restrict__ apply_p) {
  using C = typename Ty<D>::C;
  __shared__ C k[8];
  const int64_t blk = blockIdx.x;
  int t = 0;
  while (t + 1 < a.t.count && blk >= a.block_start[t + 1]) ++t;
  if (threadIdx.x == 0) {
    const double lr = *lr_p, step = *step_p;
    k[0] = static_cast<C>(1.0 - lr * p.weight_decay);
    k[1] = static_cast<C>(p.beta1);
    k[2] = static_cast<C>(1.0 - p.beta1);
    k[3] = static_cast<C>(p.beta2);
    k[4] = static_cast<C>(1.0 - p.beta2);
    k[5] = static_cast<C>(lr / (1.0 - pow(p.beta1, step)));
    k[6] = static_cast<C>(sqrt(1.0 - pow(p.beta2, step)));
    k[7] = static_cast<C>(p.eps);
  }
  __syncthreads();
  C kk[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) kk[i] = k[i];
  const int64_t n = a.t.n[t];
  const int64_t base = (blk - a.block_start[t]) * kAdamChunk + threadIdx.x * kAdamPerThread;
  const S<D>* w = static_cast<const S<D>*>(a.t.w[t]);
  const S<D>* g = static_cast<const S<D>*>(a.t.g[t]);
  const S<D>* m = static_cast<const S<D>*>(a.t.m[t]);
  const S<D>* v = static_cast<const S<D>*>(a.t.v[t]);
  S<D>* wo = static_cast<S<D>*>(a.t.w_out[t]);
  S<D>* mo = static_cast<S<D>*>(a.t.m_out[t]);
  S<D>* vo = static_cast<S<D>*>(a.t.v_out[t]);
  if (apply_p != nullptr && !*apply_p) {  // not applied: the outputs are the inputs
    for (int j = 0; j < kAdamPerThread && base + j < n; ++j) {
      const int64_t i = base + j;
      if (wo != w) wo[i] = w[i];
      if (mo != m) mo[i] = m[i];
      if (vo != v) vo[i] = v[i];
    }
    return;
  }
  if constexpr (D == DT::kF32) {
    if (a.vec4 && base + kAdamPerThread <= n) {
      const float4 w4 = *reinterpret_cast<const float4*>(w + base);
      const float4 g4 = *reinterpret_cast<const float4*>(g + base);
      const float4 m4 = *reinterpret_cast<const float4*>(m + base);
      const float4 v4 = *reinterpret_cast<const float4*>(v + base);
      float4 rw, rm, rv;
      AdamWElement<float>(w4.x, g4.x, m4.x, v4.x, kk, rw.x, rm.x, rv.x);
      AdamWElement<float>(w4.y, g4.y, m4.y, v4.y, kk, rw.y, rm.y, rv.y);
      AdamWElement<float>(w4.z, g4.z, m4.z, v4.z, kk, rw.z, rm.z, rv.z);
      AdamWElement<float>(w4.w, g4.w, m4.w, v4.w, kk, rw.w, rm.w, rv.w);
      *reinterpret_cast<float4*>(wo + base) = rw;
      *reinterpret_cast<float4*>(mo + base) = rm;
      *reinterpret_cast<float4*>(vo + base) = rv;
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < kAdamPerThread; ++j) {
    const int64_t i = base + j;
    if (i >= n) break;
    C rw, rm, rv;
    AdamWElement<C>(Load<D>(w, i), Load<D>(g, i), Load<D>(m, i), Load<D>(v, i), kk, rw, rm, rv);
    Store<D>(wo, i, rw);
    Store<D>(mo, i, rm);
    Store<D>(vo, i, rv);
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    SgdKernel(int64_t n, double momentum, double wd, const float* __restrict__ lr_p,
              const S<D>* w, const S<D>* g, const S<D>* mom, S<D>* w_out, S<D>* mom_out) {
  using C = typename Ty<D>::C;
  const C lr = static_cast<C>(*lr_p), mu = static_cast<C>(momentum), dec = static_cast<C>(wd);
  for (int64_t i = GlobalThread(); i < n; i += GridStride()) {
    const C wi = Load<D>(w, i);
    C d = static_cast<C>(Load<D>(g, i)) + dec * wi;
    if (mom != nullptr) {
      d = mu * static_cast<C>(Load<D>(mom, i)) + d;
      Store<D>(mom_out, i, d);
    }
    Store<D>(w_out, i, wi - lr * d);
  }
}

unsigned RowGrid(int64_t rows) {
  const int64_t cap = int64_t{1} << 20;  // grid-stride beyond
  return static_cast<unsigned>(rows < 1 ? 1 : (rows < cap ? rows : cap));
}

size_t AccBytes(DT dt) { return dt == DT::kF64 ? 8 : 4; }

int64_t BlocksFor(int64_t work) { return (work + kThreads - 1) / kThreads; }

// The gradient elements: the division-free 32-bit kernel for [n, c] scores (d == 1) with
// n * c < 2^31, else the general one; both over a persistent grid.
template <DT D>
void LaunchLossGradElements(const LossDesc& d, bool softmax, const S<D>* dloss, const S<D>* x,
                            const void* labels, bool labels_i64, const S<D>* weight,
                            const Acc<D>* norm, S<D>* dx, cudaStream_t stream) {
  const int64_t total = d.n * d.c * d.d;
  if (d.d == 1 && total < (int64_t{1} << 31)) {
    LossGradRowsKernel<D><<<PersistentGrid(LossGradRowsKernel<D>, kThreads, BlocksFor(total)),
                            kThreads, 0, stream>>>(d, softmax, dloss, x, labels, labels_i64,
                                                   weight, norm, dx);
  } else {
    LossGradKernel<D><<<PersistentGrid(LossGradKernel<D>, kThreads, BlocksFor(total)), kThreads,
                        0, stream>>>(d, softmax, dloss, x, labels, labels_i64, weight, norm, dx);
  }
}

// layer_norm_grad dx: rows in registers (LnGradRowRegKernel) for f32 / f16 / bf16 when every
// pointer is aligned for 16-byte accesses, d is a multiple of the vector width and the row fits;
// else the streaming LnGradRowKernel. dy of dtype G (see above).
template <DT D, DT G, bool kDrop>
void LaunchLnGradRows(int64_t rows, int64_t d, bool rms, const S<G>* dy, const S<D>* x,
                      const S<D>* scale,
                      const float* mean, const float* istd, const S<D>* addend, S<D>* dx,
                      S<G>* dx_low, const DropoutArgs& ld, cudaStream_t stream) {
  if constexpr (D == DT::kF32 || D == DT::kF16 || D == DT::kBF16) {
    constexpr int V = kVec<S<D>>;
    const int64_t vb = V * static_cast<int64_t>(sizeof(S<D>));
    const int64_t lb = V * static_cast<int64_t>(sizeof(S<G>));  // dx_low's V elements
    if (d % V == 0 && rows < (int64_t{1} << 31) && d < (int64_t{1} << 31) && IsAligned(dy, vb) &&
        IsAligned(x, vb) && IsAligned(scale, vb) && IsAligned(dx, vb) && IsAligned(addend, vb) &&
        IsAligned(dx_low, lb)) {
      const RowGroup g = PickRowGroup(d, V, kLnGradRegs<D>);
      if (g.group != 0) {
        const int64_t blocks = (rows + g.rows_per_block - 1) / g.rows_per_block;
        LnGradRowRegKernel<D, G, kDrop>
            <<<PersistentGrid(LnGradRowRegKernel<D, G, kDrop>, g.block, blocks), g.block, 0,
               stream>>>(static_cast<uint32_t>(rows), static_cast<uint32_t>(d), g.group, rms, dy,
                         x, scale, mean, istd, addend, dx, dx_low, ld);
        return;
      }
    }
  }
  LnGradRowKernel<D, G, kDrop><<<RowGrid(rows), kThreads, 0, stream>>>(
      rows, d, rms, dy, x, scale, mean, istd, addend, dx, dx_low, ld);
}

// layer_norm_grad of dtype D with dy of dtype G: column partials and their sum (dscale, dbias)
// first, then dx (which may alias dy when G == D).
template <DT D, DT G>
void LaunchLnGrad(int64_t rows, int64_t d, bool rms, const void* dy, const void* x,
                  const void* scale,
                  const float* mean, const float* istd, const void* addend, void* dx,
                  void* dscale, void* dbias, void* dx_low, void* workspace, cudaStream_t stream,
                  const DropoutArgs& ld = {}) {
  using A = Acc<D>;
  const int64_t chunks = LnChunks(rows);
  const int64_t chunk_rows = rows > 0 ? (rows + chunks - 1) / chunks : 0;
  const int64_t col_blocks = (d + kColTile - 1) / kColTile;
  A* ps = static_cast<A*>(workspace);
  A* pb = ps + chunks * d;
  bool vec = false;
  if constexpr (D == DT::kF32 || D == DT::kF16 || D == DT::kBF16) {
    constexpr int V = kVec<S<D>>;
    const int64_t vb = V * static_cast<int64_t>(sizeof(S<D>));
    vec = d % V == 0 && rows * d < (int64_t{1} << 31) && IsAligned(dy, vb) && IsAligned(x, vb);
    if (vec) {
      const int64_t vec_blocks = (d / V + kColTile - 1) / kColTile;
      LnGradColumnPartialVecKernel<D, G, V>
          <<<dim3(static_cast<unsigned>(vec_blocks), static_cast<unsigned>(chunks)),
             dim3(kColTile, kColRows), 0, stream>>>(
              static_cast<uint32_t>(rows), static_cast<uint32_t>(d),
              static_cast<uint32_t>(chunk_rows), static_cast<const S<G>*>(dy),
              static_cast<const S<D>*>(x), mean, istd, ps, pb);
    }
  }
  if (!vec) {
    LnGradColumnPartialKernel<D, G>
        <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(chunks)),
           dim3(kColTile, kColRows), 0, stream>>>(rows, d, chunk_rows,
                                                  static_cast<const S<G>*>(dy),
                                                  static_cast<const S<D>*>(x), mean, istd, ps, pb);
  }
  LnGradColumnFinalKernel<D><<<GridFor(d, kThreads), kThreads, 0, stream>>>(
      d, chunks, ps, pb, static_cast<S<D>*>(dscale), static_cast<S<D>*>(dbias));
  if (rows > 0) {
    // dx_low's dropout only where there is a dx_low (an f32 norm with a 16-bit dy): the other
    // instantiations never get one.
    if constexpr (D == DT::kF32 && G != DT::kF32) {
      if (dx_low != nullptr && ld.threshold != 0) {
        LaunchLnGradRows<D, G, true>(rows, d, rms, static_cast<const S<G>*>(dy),
                                     static_cast<const S<D>*>(x),
                                     static_cast<const S<D>*>(scale), mean, istd,
                                     static_cast<const S<D>*>(addend), static_cast<S<D>*>(dx),
                                     static_cast<S<G>*>(dx_low), ld, stream);
        return;
      }
    }
    LaunchLnGradRows<D, G, false>(rows, d, rms, static_cast<const S<G>*>(dy),
                                  static_cast<const S<D>*>(x),
                                  static_cast<const S<D>*>(scale), mean, istd,
                                  static_cast<const S<D>*>(addend), static_cast<S<D>*>(dx),
                                  static_cast<S<G>*>(dx_low), ld, stream);
  }
}

template <DT D>
void LaunchGeluGradT(bool tanh_approx, int64_t n, const S<D>* dy, const S<D>* x, S<D>* dx,
                     cudaStream_t stream) {
  LaunchBinaryMap<D>(n, dy, x, dx, GeluGradOp<D>{tanh_approx}, stream);
}

}  // namespace

#define PTC_TRAIN_FLOAT_CASES(X) X(DT::kF32) X(DT::kF16) X(DT::kBF16) X(DT::kF64)

size_t LossWorkspaceBytes(DT dt, const LossDesc& d) {
  return d.reduction == 0 ? 0 : 2 * AccBytes(dt) * static_cast<size_t>(d.n * d.d);
}

cudaError_t LaunchLoss(DT dt, bool softmax, const LossDesc& d, const void* x, const void* labels,
                       bool labels_i64, const void* weight, void* loss, void* log_prob,
                       void* workspace, int* error_flag, int error_code, cudaStream_t stream) {
  const int64_t rows = d.n * d.d;
#define PTC_LOSS_CASE(DD)                                                                      \
  case DD: {                                                                                   \
    using A = Acc<DD>;                                                                         \
    S<DD>* loss_none = d.reduction == 0 ? static_cast<S<DD>*>(loss) : nullptr;                 \
    A* row_loss = d.reduction == 0 ? nullptr : static_cast<A*>(workspace);                     \
    A* row_w = d.reduction == 0 ? nullptr : static_cast<A*>(workspace) + rows;                 \
    if (rows > 0 && softmax) {                                                                 \
      SoftmaxCeRowKernel<DD><<<RowGrid(rows), kThreads, 0, stream>>>(                          \
          d, static_cast<const S<DD>*>(x), labels, labels_i64,                                 \
          static_cast<const S<DD>*>(weight), static_cast<S<DD>*>(log_prob), loss_none,         \
          row_loss, row_w, error_flag, error_code);                                            \
    } else if (rows > 0) {                                                                     \
      NllRowKernel<DD><<<GridFor(rows, kThreads), kThreads, 0, stream>>>(                      \
          d, static_cast<const S<DD>*>(x), labels, labels_i64,                                 \
          static_cast<const S<DD>*>(weight), loss_none, row_loss, row_w, error_flag,           \
          error_code);                                                                         \
    }                                                                                          \
    if (d.reduction != 0) {                                                                    \
      LossReduceKernel<DD><<<1, kThreads, 0, stream>>>(rows, d.reduction, row_loss, row_w,     \
                                                       static_cast<S<DD>*>(loss));             \
    }                                                                                          \
    break;                                                                                     \
  }
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_LOSS_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_LOSS_CASE
  return cudaGetLastError();
}

cudaError_t LaunchLossGrad(DT dt, bool softmax, const LossDesc& d, const void* dloss,
                           const void* x, const void* labels, bool labels_i64, const void* weight,
                           void* dx, void* workspace, int* error_flag, int error_code,
                           cudaStream_t stream) {
  const int64_t total = d.n * d.c * d.d;
#define PTC_LOSS_GRAD_CASE(DD)                                                                 \
  case DD: {                                                                                   \
    using A = Acc<DD>;                                                                         \
    A* norm = static_cast<A*>(workspace);                                                      \
    LossGradNormKernel<DD><<<1, kThreads, 0, stream>>>(                                        \
        d, labels, labels_i64, static_cast<const S<DD>*>(weight), norm, error_flag,            \
        error_code);                                                                           \
    if (total > 0) {                                                                           \
      LaunchLossGradElements<DD>(d, softmax, static_cast<const S<DD>*>(dloss),                 \
                                 static_cast<const S<DD>*>(x), labels, labels_i64,             \
                                 static_cast<const S<DD>*>(weight), norm,                      \
                                 static_cast<S<DD>*>(dx), stream);                             \
    }                                                                                          \
    break;                                                                                     \
  }
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_LOSS_GRAD_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_LOSS_GRAD_CASE
  return cudaGetLastError();
}

cudaError_t LaunchLossNorm(const LossDesc& d, const void* labels, bool labels_i64, float* norm,
                           int* error_flag, int error_code, cudaStream_t stream) {
  LossGradNormKernel<DT::kF32><<<1, kThreads, 0, stream>>>(d, labels, labels_i64, nullptr, norm,
                                                           error_flag, error_code);
  return cudaGetLastError();
}

cudaError_t LaunchLinearCeRows(int64_t rows, int64_t v, int64_t ld, DT logits_dt,
                               const void* logits, DT g_dt, void* g, const void* bias,
                               const void* labels, bool labels_i64, bool has_ignore,
                               int64_t ignore_index, const float* norm, bool grads,
                               float scale, float softcap, float* row_loss, float* row_w,
                               int* error_flag, int error_code, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const unsigned grid = RowGrid(rows);
  auto launch = [&](auto x, auto gt) {
    using X = std::remove_cv_t<std::remove_pointer_t<decltype(x)>>;
    using G = std::remove_pointer_t<decltype(gt)>;
    LinearCeRowKernel<X, G><<<grid, kThreads, 0, stream>>>(
        rows, v, ld, static_cast<const X*>(logits), static_cast<G*>(g),
        static_cast<const G*>(bias), labels, labels_i64, has_ignore, ignore_index, norm, grads,
        scale, softcap, row_loss, row_w, error_flag, error_code);
  };
  // f32 logits with G in f32 / bf16 / f16, or logits and G of one low dtype (G in place).
  if (logits_dt == DT::kF32 && g_dt == DT::kF32) {
    launch(static_cast<const float*>(nullptr), static_cast<float*>(nullptr));
  } else if (logits_dt == DT::kF32 && g_dt == DT::kBF16) {
    launch(static_cast<const float*>(nullptr), static_cast<__nv_bfloat16*>(nullptr));
  } else if (logits_dt == DT::kF32 && g_dt == DT::kF16) {
    launch(static_cast<const float*>(nullptr), static_cast<__half*>(nullptr));
  } else if (logits_dt == DT::kBF16 && g_dt == DT::kBF16) {
    launch(static_cast<const __nv_bfloat16*>(nullptr), static_cast<__nv_bfloat16*>(nullptr));
  } else if (logits_dt == DT::kF16 && g_dt == DT::kF16) {
    launch(static_cast<const __half*>(nullptr), static_cast<__half*>(nullptr));
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t LaunchLossReduce(int64_t rows, int reduction, const float* row_loss,
                             const float* row_w, float* out, cudaStream_t stream) {
  LossReduceKernel<DT::kF32><<<1, kThreads, 0, stream>>>(rows, reduction, row_loss, row_w, out);
  return cudaGetLastError();
}

cudaError_t LaunchColumnSumAccumulate(int64_t rows, int64_t v, int64_t ld, DT g_dt,
                                      const void* g, float* acc, cudaStream_t stream) {
  if (rows <= 0 || v <= 0) return cudaSuccess;
  const int64_t tiles = (v + 63) / 64;
  const unsigned grid = static_cast<unsigned>(std::min<int64_t>(tiles, 65535));
  switch (g_dt) {
    case DT::kF32:
      ColumnSumAccumulateKernel<float><<<grid, 256, 0, stream>>>(
          rows, v, ld, static_cast<const float*>(g), acc);
      break;
    case DT::kBF16:
      ColumnSumAccumulateKernel<__nv_bfloat16><<<grid, 256, 0, stream>>>(
          rows, v, ld, static_cast<const __nv_bfloat16*>(g), acc);
      break;
    case DT::kF16:
      ColumnSumAccumulateKernel<__half><<<grid, 256, 0, stream>>>(
          rows, v, ld, static_cast<const __half*>(g), acc);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

size_t LayerNormGradWorkspaceBytes(DT dt, int64_t rows, int64_t d) {
  return 2 * AccBytes(dt) * static_cast<size_t>(LnChunks(rows) * d);
}

cudaError_t LaunchLayerNormGrad(DT dt, DT dy_dt, int64_t rows, int64_t d, bool rms, const void* dy,
                                const void* x, const void* scale, const float* mean,
                                const float* inv_std_dev, const void* addend, void* dx,
                                void* dscale, void* dbias, void* dx_low, void* workspace,
                                cudaStream_t stream, const DropoutArgs& low_dropout) {
  if (d == 0) return cudaSuccess;
  if (dx_low != nullptr && (dt != DT::kF32 || dy_dt == dt)) return cudaErrorInvalidValue;
  if (low_dropout.threshold != 0 && dx_low == nullptr) return cudaErrorInvalidValue;
  if ((d + kColTile - 1) / kColTile >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
  if (dy_dt != dt) {  // a low-precision dy of an f32 layer norm (fold-norm-casts)
    if (dt != DT::kF32) return cudaErrorInvalidValue;
    if (dy_dt == DT::kBF16) {
      LaunchLnGrad<DT::kF32, DT::kBF16>(rows, d, rms, dy, x, scale, mean, inv_std_dev, addend, dx,
                                        dscale, dbias, dx_low, workspace, stream, low_dropout);
    } else if (dy_dt == DT::kF16) {
      LaunchLnGrad<DT::kF32, DT::kF16>(rows, d, rms, dy, x, scale, mean, inv_std_dev, addend, dx,
                                       dscale, dbias, dx_low, workspace, stream, low_dropout);
    } else {
      return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  }
#define PTC_LNG_CASE(DD)                                                                     \
  case DD:                                                                                   \
    LaunchLnGrad<DD, DD>(rows, d, rms, dy, x, scale, mean, inv_std_dev, addend, dx, dscale,  \
                         dbias, nullptr, workspace, stream);                                 \
    break;
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_LNG_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_LNG_CASE
  return cudaGetLastError();
}

cudaError_t LaunchGeluGrad(DT dt, bool tanh_approx, int64_t n, const void* dy, const void* x,
                           void* dx, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
#define PTC_GELU_GRAD_CASE(DD)                                                                 \
  case DD:                                                                                     \
    LaunchGeluGradT<DD>(tanh_approx, n, static_cast<const S<DD>*>(dy),                         \
                        static_cast<const S<DD>*>(x), static_cast<S<DD>*>(dx), stream);        \
    break;
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_GELU_GRAD_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_GELU_GRAD_CASE
  return cudaGetLastError();
}

// The workspace: total / end and start (axis_dim each, padded to 128 bytes so that each
// array's warp requests start at a sector and the scan's 16-byte accesses stay inside), the
// chunks' count rows (as many, each padded so), then the list of positions. Chunks: at least
// kFillChunk positions each, at most kMaxFillChunks of them.
int64_t GatherGradPadded(int64_t axis_dim) { return (axis_dim + 31) / 32 * 32; }
constexpr int64_t kFillChunk = 1024, kMaxFillChunks = 64;
int64_t GatherGradChunk(int64_t num_indices) {
  const int64_t c = (num_indices + kMaxFillChunks - 1) / kMaxFillChunks;
  return std::max<int64_t>(kFillChunk, (c + 31) / 32 * 32);
}
int64_t GatherGradChunks(int64_t num_indices) {
  const int64_t chunk = GatherGradChunk(num_indices);
  return std::max<int64_t>(1, (num_indices + chunk - 1) / chunk);
}

size_t GatherGradWorkspaceBytes(int64_t axis_dim, int64_t num_indices) {
  const int64_t pn = GatherGradPadded(axis_dim);
  return sizeof(int32_t) *
         static_cast<size_t>((2 + GatherGradChunks(num_indices)) * pn + num_indices + 1);
}

cudaError_t LaunchGatherGrad(DT dt, int64_t outer, int64_t axis_dim, int64_t num_indices,
                             int64_t inner, const void* dy, const void* indices, bool indices_i64,
                             const void* base, void* out, void* workspace, int* error_flag,
                             int error_code, cudaStream_t stream) {
  if (outer * axis_dim * inner == 0) return cudaSuccess;
  if (axis_dim >= (int64_t{1} << 31) || num_indices >= (int64_t{1} << 31)) {
    return cudaErrorInvalidConfiguration;
  }
  const int64_t pn = GatherGradPadded(axis_dim);
  const int64_t chunk = GatherGradChunk(num_indices), chunks = GatherGradChunks(num_indices);
  int32_t* total = static_cast<int32_t*>(workspace);  // then end
  int32_t* start = total + pn;
  int32_t* counts = start + pn;
  int32_t* list = counts + chunks * pn;
  cudaError_t e = cudaMemsetAsync(counts, 0, sizeof(int32_t) * chunks * pn, stream);
  if (e != cudaSuccess) return e;
  if (num_indices > 0) {
    GatherGradCountKernel<<<GridFor(num_indices, kThreads), kThreads, 0, stream>>>(
        num_indices, axis_dim, chunk, pn, indices, indices_i64, counts, error_flag, error_code);
  }
  GatherGradChunkPrefixKernel<<<GridFor(axis_dim, kThreads), kThreads, 0, stream>>>(
      axis_dim, chunks, pn, counts, total);
  ExclusiveScanKernel<<<1, kScanThreads, 0, stream>>>(axis_dim, total, start);
  if (num_indices > 0) {
    GatherGradFillKernel<<<static_cast<unsigned>(chunks), 32, 0, stream>>>(
        num_indices, axis_dim, chunk, pn, indices, indices_i64, counts, start, list);
  }
  const unsigned rows = static_cast<unsigned>(std::min<int64_t>(axis_dim, 65535 * 8));
#define PTC_GATHER_GRAD_CASE(DD)                                                               \
  case DD:                                                                                     \
    GatherGradAccumulateKernel<DD><<<rows, kThreads, 0, stream>>>(                             \
        outer, axis_dim, inner, num_indices, start, total, list,                               \
        static_cast<const S<DD>*>(dy), static_cast<const S<DD>*>(base),                        \
        static_cast<S<DD>*>(out));                                                             \
    break;
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_GATHER_GRAD_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_GATHER_GRAD_CASE
  return cudaGetLastError();
}

cudaError_t LaunchLrSchedule(double lr, bool cosine, int64_t warmup, int64_t total_steps,
                             double min_lr_ratio, const float* step, float* out,
                             cudaStream_t stream) {
  LrScheduleKernel<<<1, 1, 0, stream>>>(lr, cosine, warmup, total_steps, min_lr_ratio, step, out);
  return cudaGetLastError();
}

cudaError_t LaunchAdamW(DT dt, const AdamWTensors& t, const AdamWParams& p, const float* lr,
                        const float* step, const bool* apply, cudaStream_t stream) {
  if (t.count <= 0 || t.count > kMaxAdamTensors) return cudaErrorInvalidValue;
  AdamWLaunch a;
  a.t = t;
  a.block_start[0] = 0;
  bool aligned = true;
  for (int i = 0; i < t.count; ++i) {
    a.block_start[i + 1] = a.block_start[i] + (t.n[i] + kAdamChunk - 1) / kAdamChunk;
    for (const void* ptr : {t.w[i], t.g[i], t.m[i], t.v[i], static_cast<const void*>(t.w_out[i]),
                            static_cast<const void*>(t.m_out[i]),
                            static_cast<const void*>(t.v_out[i])}) {
      aligned = aligned && (reinterpret_cast<uintptr_t>(ptr) % 16 == 0);
    }
  }
  for (int i = t.count + 1; i <= kMaxAdamTensors; ++i) a.block_start[i] = a.block_start[t.count];
  a.vec4 = aligned;
  const int64_t blocks = a.block_start[t.count];
  if (blocks == 0) return cudaSuccess;
  if (blocks >= (int64_t{1} << 31)) return cudaErrorInvalidConfiguration;
#define PTC_ADAMW_CASE(DD)                                                                     \
  case DD:                                                                                     \
    AdamWKernel<DD><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a, p, lr, step,    \
                                                                            apply);           \
    break;
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_ADAMW_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_ADAMW_CASE
  return cudaGetLastError();
}

cudaError_t LaunchSgd(DT dt, int64_t n, double momentum, double weight_decay, const float* lr,
                      const void* w, const void* g, const void* mom, void* w_out, void* mom_out,
                      cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
#define PTC_SGD_CASE(DD)                                                                       \
  case DD:                                                                                     \
    SgdKernel<DD><<<GridFor(n, kThreads), kThreads, 0, stream>>>(                              \
        n, momentum, weight_decay, lr, static_cast<const S<DD>*>(w),                           \
        static_cast<const S<DD>*>(g), static_cast<const S<DD>*>(mom),                          \
        static_cast<S<DD>*>(w_out), static_cast<S<DD>*>(mom_out));                             \
    break;
  switch (dt) {
    PTC_TRAIN_FLOAT_CASES(PTC_SGD_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_SGD_CASE
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
