// Device-side helpers shared by codegen/cuda/*.cu (included only by .cu files): dtype traits,
// broadcast index arithmetic, warp/block reductions, launch geometry.
#ifndef PTC_CODEGEN_CUDA_DEVICE_UTIL_CUH_
#define PTC_CODEGEN_CUDA_DEVICE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "codegen/cuda/kernels.h"

namespace ptc::cuda::kernels {

// Storage type S and compute type C of each dtype: 16-bit floats compute in f32, integers in
// i64, bool as 0/1 in i64.
template <DT D> struct Ty;
template <> struct Ty<DT::kF32> { using S = float; using C = float; };
template <> struct Ty<DT::kF16> { using S = __half; using C = float; };
template <> struct Ty<DT::kBF16> { using S = __nv_bfloat16; using C = float; };
template <> struct Ty<DT::kF64> { using S = double; using C = double; };
template <> struct Ty<DT::kI8> { using S = int8_t; using C = int64_t; };
template <> struct Ty<DT::kU8> { using S = uint8_t; using C = int64_t; };
template <> struct Ty<DT::kI32> { using S = int32_t; using C = int64_t; };
template <> struct Ty<DT::kI64> { using S = int64_t; using C = int64_t; };
template <> struct Ty<DT::kBool> { using S = uint8_t; using C = int64_t; };

template <DT D>
__device__ __forceinline__ typename Ty<D>::C Load(const typename Ty<D>::S* p, int64_t i) {
  if constexpr (D == DT::kF16) {
    return __half2float(p[i]);
  } else if constexpr (D == DT::kBF16) {
    return __bfloat162float(p[i]);
  } else if constexpr (D == DT::kBool) {
    return p[i] != 0;
  } else {
    return static_cast<typename Ty<D>::C>(__ldg(p + i));
  }
}

template <DT D>
__device__ __forceinline__ void Store(typename Ty<D>::S* p, int64_t i, typename Ty<D>::C v) {
  if constexpr (D == DT::kF16) {
    p[i] = __float2half_rn(v);
  } else if constexpr (D == DT::kBF16) {
    p[i] = __float2bfloat16_rn(v);
  } else if constexpr (D == DT::kBool) {
    p[i] = v != 0;
  } else {
    p[i] = static_cast<typename Ty<D>::S>(v);
  }
}

// Accumulator of reductions (softmax, layer_norm, reduce_*).
template <DT D>
using Acc = std::conditional_t<D == DT::kF64, double,
                               std::conditional_t<(D == DT::kF32 || D == DT::kF16 ||
                                                   D == DT::kBF16),
                                                  float, int64_t>>;

template <typename T>
__device__ __forceinline__ T WarpReduce(T v, int kind) {  // kind: 0 sum, 1 max, 2 min
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    T u = __shfl_xor_sync(0xffffffffu, v, o);
    v = kind == 0 ? v + u : kind == 1 ? (u > v ? u : v) : (u < v ? u : v);
  }
  return v;
}

// Every thread of the block gets the reduction of `v`. `shm` holds 32 T; safe to call again
// right after (the leading barrier protects shm).
template <typename T>
__device__ __forceinline__ T BlockReduce(T v, int kind, T identity, T* shm) {
  v = WarpReduce(v, kind);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) shm[warp] = v;
  __syncthreads();
  const int num_warps = (blockDim.x + 31) >> 5;
  v = lane < num_warps ? shm[lane] : identity;
  return WarpReduce(v, kind);
}

// Grid for a grid-stride loop over n elements.
inline unsigned GridFor(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks);
}

__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Storage type of `bytes`-wide elements, for kernels that only move data.
template <int B> struct Bits;
template <> struct Bits<1> { using T = uint8_t; };
template <> struct Bits<2> { using T = uint16_t; };
template <> struct Bits<4> { using T = uint32_t; };
template <> struct Bits<8> { using T = uint64_t; };

}  // namespace ptc::cuda::kernels

#endif  // PTC_CODEGEN_CUDA_DEVICE_UTIL_CUH_
