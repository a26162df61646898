// Force-included (g++ -include) into every codegen/cuda/*.cu file that the CUDA CPU emulation
// compiles as host C++ (cmake/cuda_emu.cmake; rewrite_cu.py has already turned each
// `kernel<<<grid, block, smem, stream>>>(args)` into `::ptc::emu::Launcher(kernel, ...)(args)`
// and each `__shared__` declaration into a static that is poisoned at every block's start).
//
// What a kernel sees: threadIdx / blockIdx / blockDim / gridDim of the fiber that runs it,
// __syncthreads* (block barriers), the warp collectives (__shfl*_sync, __any/__all/__ballot/
// __match_any_sync, __syncwarp) as exchanges between the warp's fibers, atomics (fibers never
// preempt each other, so a plain read-modify-write is atomic), and the device math intrinsics
// as their libm forms. The tensor cores' mma / ldmatrix / cp.async have emulated forms that
// attention_tc.cu calls under PTC_CUDA_EMU.
#ifndef PTC_RUNTIME_CUDA_EMU_DEVICE_SHIM_H_
#define PTC_RUNTIME_CUDA_EMU_DEVICE_SHIM_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#include "runtime/cuda/emu/emu.h"

#define PTC_CUDA_EMU 1


// Execution-space and launch qualifiers: host code now.
#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __forceinline__
#define __forceinline__ inline __attribute__((always_inline))
#undef __launch_bounds__
#define __launch_bounds__(...)
// rewrite_cu.py has turned the .cu files' declarations into poisoned statics; elsewhere (tests)
// a block-wide static is what __shared__ means.
#undef __shared__
#define __shared__ static

// cuda_runtime.h's C++ overloads that take a kernel (nvcc's only).
template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*f)(P...), cudaFuncAttribute attr, int value) {
  return ::cudaFuncSetAttribute(reinterpret_cast<const void*>(f), attr, value);
}
template <typename... P>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, void (*f)(P...),
                                                          int block_size, size_t smem) {
  return ::cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      blocks, reinterpret_cast<const void*>(f), block_size, smem);
}

#define threadIdx (::ptc::emu::t_thread_idx)
#define blockIdx (::ptc::emu::t_block_idx)
#define blockDim (::ptc::emu::t_block_dim)
#define gridDim (::ptc::emu::t_grid_dim)
#define warpSize 32

#define __syncthreads() ((void)::ptc::emu::SyncThreads(0, 0, __FILE__, __LINE__))
#define __syncthreads_or(p) ::ptc::emu::SyncThreads(1, (p) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_and(p) ::ptc::emu::SyncThreads(2, (p) ? 1 : 0, __FILE__, __LINE__)
#define __syncthreads_count(p) ::ptc::emu::SyncThreads(3, (p) ? 1 : 0, __FILE__, __LINE__)

inline void __syncwarp(unsigned mask = 0xffffffffu) {
  const int z = 0;
  ::ptc::emu::WarpExchange(mask, &z, sizeof z, "__syncwarp");
}
template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  const int lane = ::ptc::emu::LaneId();
  const int s = (lane / width) * width + (src % width);
  return ::ptc::emu::ShflFrom(mask, v, s, false, "__shfl_sync");
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = ::ptc::emu::LaneId();
  const int s = lane ^ lane_mask;
  return ::ptc::emu::ShflFrom(mask, v, s, s >= (lane / width + 1) * width, "__shfl_xor_sync");
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::ptc::emu::LaneId();
  const bool own = (lane % width) < static_cast<int>(delta);
  return ::ptc::emu::ShflFrom(mask, v, own ? lane : lane - static_cast<int>(delta), own,
                              "__shfl_up_sync");
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = ::ptc::emu::LaneId();
  const bool own = (lane % width) + static_cast<int>(delta) >= width;
  return ::ptc::emu::ShflFrom(mask, v, own ? lane : lane + static_cast<int>(delta), own,
                              "__shfl_down_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  const int p = pred != 0;
  const unsigned char* all = ::ptc::emu::WarpExchange(mask, &p, sizeof p, "__ballot_sync");
  unsigned out = 0;
  for (int j = 0; j < 32; ++j) {
    int v;
    std::memcpy(&v, all + 4 * j, 4);
    if (((mask >> j) & 1u) && v) out |= 1u << j;
  }
  return out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
template <typename T>
unsigned __match_any_sync(unsigned mask, T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  const unsigned char* all = ::ptc::emu::WarpExchange(mask, &v, sizeof v, "__match_any_sync");
  unsigned out = 0;
  for (int j = 0; j < 32; ++j) {
    if (((mask >> j) & 1u) && std::memcmp(all + j * sizeof(T), &v, sizeof(T)) == 0) {
      out |= 1u << j;
    }
  }
  return out;
}
inline unsigned __activemask() { return 0xffffffffu; }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline void __threadfence() {}
inline void __threadfence_block() {}
template <typename T>
__forceinline__ T __ldg(const T* p) { return *p; }  // inlined: each call site its own pc

// Atomics: fibers switch only at barriers, so these are plain read-modify-writes. The race
// checker (racecheck.cc) does not see them: atomics do not race with each other.
#define PTC_EMU_ATOMIC __attribute__((no_sanitize("thread")))
template <typename T>
PTC_EMU_ATOMIC T atomicAdd(T* p, T v) { T old = *p; *p = old + v; return old; }
template <typename T>
PTC_EMU_ATOMIC T atomicSub(T* p, T v) { T old = *p; *p = old - v; return old; }
template <typename T>
PTC_EMU_ATOMIC T atomicMax(T* p, T v) { T old = *p; if (v > old) *p = v; return old; }
template <typename T>
PTC_EMU_ATOMIC T atomicMin(T* p, T v) { T old = *p; if (v < old) *p = v; return old; }
template <typename T>
PTC_EMU_ATOMIC T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
template <typename T>
PTC_EMU_ATOMIC T atomicCAS(T* p, T compare, T v) { T old = *p; if (old == compare) *p = v; return old; }
template <typename T>
PTC_EMU_ATOMIC T atomicOr(T* p, T v) { T old = *p; *p = old | v; return old; }

// Device math intrinsics: their libm / exact forms (the GPU's fast versions differ by a few
// ulp; the case tables' bounds allow for that).
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __exp2f(float x) { return std::exp2(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline int __float2int_rn(float x) { return static_cast<int>(std::nearbyint(x)); }
inline int __float2int_rz(float x) { return static_cast<int>(x); }
inline int __float_as_int(float x) { int i; std::memcpy(&i, &x, 4); return i; }
inline unsigned __float_as_uint(float x) { unsigned i; std::memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; std::memcpy(&x, &i, 4); return x; }
inline float __uint_as_float(unsigned i) { float x; std::memcpy(&x, &i, 4); return x; }
inline long long __double_as_longlong(double x) { long long i; std::memcpy(&i, &x, 8); return i; }
inline double __longlong_as_double(long long i) { double x; std::memcpy(&x, &i, 8); return x; }
inline unsigned long long clock64() { return 0; }
inline void __nanosleep(unsigned) {}

#endif  // PTC_RUNTIME_CUDA_EMU_DEVICE_SHIM_H_
