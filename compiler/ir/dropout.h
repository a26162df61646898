// dropout's mask (compiler/ir/ops.h), one definition for the CPU kernel (codegen/cpu) and the
// CUDA kernel (codegen/cuda/dropout.cu), which must draw the same bits: element i of a dropout
// with attribute `seed` and counter c is kept where
//   splitmix64(key + i) >= ratio * 2^64,   key = splitmix64(seed ^ splitmix64(c + golden))
// (splitmix64's finalizer as the hash: a counter-based generator, so any element is drawn
// without the ones before it, and the same (seed, c) draws the same mask: a recomputation or
// the gradient reproduces it instead of storing it). Kept values are scaled by 1 / (1 - ratio).
#ifndef PTC_COMPILER_IR_DROPOUT_H_
#define PTC_COMPILER_IR_DROPOUT_H_

#include <cstdint>

#if defined(__CUDACC__)
#define PTC_DROPOUT_FN __host__ __device__ __forceinline__
#else
#define PTC_DROPOUT_FN inline
#endif

namespace ptc::ir {

PTC_DROPOUT_FN uint64_t DropoutMix(uint64_t z) {  // splitmix64's finalizer
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The counter operand's value (an i32 / i64 scalar; nullptr: 0), read where the kernel runs
// (host memory for the CPU kernels, device memory for the CUDA ones).
PTC_DROPOUT_FN int64_t DropoutCounter(const void* counter, bool i32) {
  if (counter == nullptr) return 0;
  return i32 ? static_cast<int64_t>(*static_cast<const int32_t*>(counter))
             : *static_cast<const int64_t*>(counter);
}

PTC_DROPOUT_FN uint64_t DropoutKey(uint64_t seed, int64_t counter) {
  return DropoutMix(seed ^ DropoutMix(static_cast<uint64_t>(counter) + 0x9e3779b97f4a7c15ull));
}

// ratio * 2^64, saturated (ratio 1 drops everything, 0 keeps everything: see DropoutKeeps).
PTC_DROPOUT_FN uint64_t DropoutThreshold(double ratio) {
  if (!(ratio > 0.0)) return 0;
  if (ratio >= 1.0) return ~uint64_t{0};
  return static_cast<uint64_t>(ratio * 18446744073709551616.0);
}

// The factor of kept values (0 when everything is dropped).
PTC_DROPOUT_FN double DropoutScale(double ratio) { return ratio < 1.0 ? 1.0 / (1.0 - ratio) : 0.0; }

PTC_DROPOUT_FN bool DropoutKeeps(uint64_t key, uint64_t i, uint64_t threshold) {
  return threshold == 0 || (threshold != ~uint64_t{0} && DropoutMix(key + i) >= threshold);
}

}  // namespace ptc::ir

#undef PTC_DROPOUT_FN

#endif  // PTC_COMPILER_IR_DROPOUT_H_
