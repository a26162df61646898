// dropout(x [, counter]) {ratio, seed} (compiler/ir/ops.h): y[i] = keep(i) ? x[i] * scale : 0,
// keep(i) from compiler/ir/dropout.h's counter-based hash of (seed, counter, i), the CPU
// kernel's formula, so both draw the same mask bit for bit. The counter is read on the device
// (a training step's `rng.step` state), so a CUDA graph replays a new mask each step. 16-bit
// values are multiplied in f32 (f64 in f64) and rounded once, as the CPU kernel's f32 widening.
// When x, y (and the mask) are aligned for 16-byte accesses and n < 2^31, a thread takes kVec
// elements per access with a 32-bit index and draws their mask with kVec / 2 hashes
// (ir::DropoutKeepRun: an aligned run of 2 to 8 elements takes two per hash); else one element
// (one hash) per iteration; both through DropoutElement's formula. Each element of x is read
// before y's is written (y may take over x's buffer).
#include "codegen/cuda/device_util.cuh"
#include "compiler/ir/dropout.h"

namespace ptc::cuda::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMax32 = (int64_t{1} << 31) - 1;

template <DT D>
using S = typename Ty<D>::S;

template <DT D>
__device__ __forceinline__ S<D> DropoutElement(S<D> x, bool keep, typename Ty<D>::C scale) {
  return Narrow<D>(keep ? Widen<D>(x) * scale : typename Ty<D>::C(0));
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    DropoutKernel(int64_t n, const S<D>* x, S<D>* y, uint8_t* mask, DropoutArgs a) {
  const uint64_t key = ir::DropoutKey(a.seed, ir::DropoutCounter(a.counter, a.counter_i32));
  const auto scale = static_cast<typename Ty<D>::C>(a.scale);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const bool keep = ir::DropoutKeeps(key, static_cast<uint64_t>(i), a.threshold);
    y[i] = DropoutElement<D>(x[i], keep, scale);
    if (mask != nullptr) mask[i] = keep;
  }
}

template <DT D>
__global__ void __launch_bounds__(kThreads)
    DropoutVecKernel(uint32_t n, const S<D>* x, S<D>* y, uint8_t* mask, DropoutArgs a) {
  constexpr int V = kVec<S<D>>;
  const uint64_t key = ir::DropoutKey(a.seed, ir::DropoutCounter(a.counter, a.counter_i32));
  const auto scale = static_cast<typename Ty<D>::C>(a.scale);
  const uint32_t nv = n / V, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  for (uint32_t i = first; i < nv; i += stride) {
    S<D> in[V], out[V];
    uint8_t m[V];
    LoadVec<S<D>, V>(x + i * V, in);
    const uint32_t keep = ir::DropoutKeepRun<V>(key, uint64_t{i} * V, a.threshold);
#pragma unroll
    for (int j = 0; j < V; ++j) {
      m[j] = (keep >> j) & 1u;
      out[j] = DropoutElement<D>(in[j], m[j] != 0, scale);
    }
    StoreVec<S<D>, V>(y + i * V, out);
    if (mask != nullptr) {
#pragma unroll
      for (int j = 0; j < V; ++j) mask[i * V + j] = m[j];
    }
  }
  const uint32_t t = nv * V + first;
  if (t < n) {
    const bool keep = ir::DropoutKeeps(key, t, a.threshold);
    y[t] = DropoutElement<D>(x[t], keep, scale);
    if (mask != nullptr) mask[t] = keep;
  }
}

int64_t BlocksFor(int64_t work) { return (work + kThreads - 1) / kThreads; }

template <DT D>
void LaunchDropoutT(int64_t n, const void* xp, void* yp, uint8_t* mask, const DropoutArgs& a,
                    cudaStream_t stream) {
  const S<D>* x = static_cast<const S<D>*>(xp);
  S<D>* y = static_cast<S<D>*>(yp);
  const int64_t vb = kVec<S<D>> * static_cast<int64_t>(sizeof(S<D>));
  if (n <= kMax32 && IsAligned(xp, vb) && IsAligned(yp, vb)) {
    const unsigned grid =
        PersistentGrid(DropoutVecKernel<D>, kThreads, BlocksFor(n / kVec<S<D>> + 1));
    DropoutVecKernel<D><<<grid, kThreads, 0, stream>>>(static_cast<uint32_t>(n), x, y, mask, a);
  } else {
    const unsigned grid = PersistentGrid(DropoutKernel<D>, kThreads, BlocksFor(n));
    DropoutKernel<D><<<grid, kThreads, 0, stream>>>(n, x, y, mask, a);
  }
}

}  // namespace

cudaError_t LaunchDropout(DT dt, int64_t n, const void* x, const void* counter, bool counter_i32,
                          double ratio, uint64_t seed, void* y, void* mask, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!(ratio >= 0.0 && ratio <= 1.0)) return cudaErrorInvalidValue;
  const DropoutArgs a = MakeDropoutArgs(ratio, seed, counter, counter_i32);
  uint8_t* m = static_cast<uint8_t*>(mask);
  switch (dt) {
    case DT::kF32: LaunchDropoutT<DT::kF32>(n, x, y, m, a, stream); break;
    case DT::kF16: LaunchDropoutT<DT::kF16>(n, x, y, m, a, stream); break;
    case DT::kBF16: LaunchDropoutT<DT::kBF16>(n, x, y, m, a, stream); break;
    case DT::kF64: LaunchDropoutT<DT::kF64>(n, x, y, m, a, stream); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
