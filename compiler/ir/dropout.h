// dropout's mask (compiler/ir/ops.h), one definition for every kernel that draws it (the CPU
// kernels of codegen/cpu, the CUDA ones of codegen/cuda, NVRTC's generated source), which must
// draw the same bits. Element i of a dropout with attribute `seed`, ratio r and counter c:
//   key      = splitmix64(seed ^ splitmix64(c + golden))
//   group(i) = 4 (i >> 4) + ((i >> 1) & 3)
//   field(i) = 2 (i & 1) + ((i >> 3) & 1)
//   kept where bits 16 field(i) .. 16 field(i) + 15 of splitmix64(key + group(i)) >= threshold,
//   threshold = round(r * 2^16) (0 keeps everything, 2^16 drops everything)
// splitmix64's finalizer is the hash: a counter-based generator, so any element is drawn
// without the ones before it, and the same (seed, c) draws the same mask: a recomputation or
// the gradient reproduces it instead of storing it. Kept values are scaled by 1 / (1 - r) (1
// where the threshold is 0: r below 2^-17 drops nothing).
//
// One hash draws four elements, a group {2q, 2q + 1, 2q + 8, 2q + 9} of a 16-element block
// (q = 0..3): the elements a tensor-core tile's thread holds of a row (two consecutive columns
// in each of two 8-column n-tiles, codegen/cuda/attention_tc.cu), so the attention kernels hash
// once per four probabilities; a row of 16-aligned elements is 4 hashes per 16 (DropoutKeepRun),
// and the group's low / high 32 bits are the even / odd columns (split between two threads by
// one shuffle where a tile holds columns g and g + 8, the dK / dV pass). The ratio's resolution
// is 2^-16.
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

constexpr uint32_t kDropoutDropAll = 1u << 16;  // the threshold of ratio 1

// round(ratio * 2^16), saturated: 0 keeps everything, kDropoutDropAll drops everything.
PTC_DROPOUT_FN uint32_t DropoutThreshold(double ratio) {
  if (!(ratio > 0.0)) return 0;
  if (ratio >= 1.0) return kDropoutDropAll;
  return static_cast<uint32_t>(ratio * 65536.0 + 0.5);
}

// The factor of kept values: 1 / (1 - ratio), 0 when everything is dropped, 1 when nothing is.
PTC_DROPOUT_FN double DropoutScale(double ratio) {
  if (DropoutThreshold(ratio) == 0) return 1.0;
  return ratio < 1.0 ? 1.0 / (1.0 - ratio) : 0.0;
}

// Element i's hash group and 16-bit field (above).
PTC_DROPOUT_FN uint64_t DropoutGroup(uint64_t i) { return ((i >> 4) << 2) | ((i >> 1) & 3); }
PTC_DROPOUT_FN int DropoutField(uint64_t i) {
  return static_cast<int>(((i & 1) << 1) | ((i >> 3) & 1));
}
PTC_DROPOUT_FN uint64_t DropoutHash(uint64_t key, uint64_t group) { return DropoutMix(key + group); }
// Whether the element of field `field` of a group hash is kept.
PTC_DROPOUT_FN bool DropoutFieldKeeps(uint64_t hash, int field, uint32_t threshold) {
  return static_cast<uint32_t>((hash >> (16 * field)) & 0xffffu) >= threshold;
}

// Whether element i is kept (one hash; none for threshold 0).
PTC_DROPOUT_FN bool DropoutKeeps(uint64_t key, uint64_t i, uint32_t threshold) {
  return threshold == 0 ||
         DropoutFieldKeeps(DropoutHash(key, DropoutGroup(i)), DropoutField(i), threshold);
}

// The keep bits of the N elements i0 .. i0 + N - 1 (N 1, 2, 4, 8 or 16; i0 a multiple of N):
// bit j for element i0 + j, from max(1, min(N / 2, 4)) hashes (the run's groups: 4 per 16).
template <int N>
PTC_DROPOUT_FN uint32_t DropoutKeepRun(uint64_t key, uint64_t i0, uint32_t threshold) {
  static_assert(N == 1 || N == 2 || N == 4 || N == 8 || N == 16, "N: 1, 2, 4, 8 or 16");
  if (threshold == 0) return (1u << N) - 1;
  if constexpr (N == 1) {
    return DropoutKeeps(key, i0, threshold) ? 1u : 0u;
  } else {
    constexpr int kHashes = N >= 8 ? 4 : N / 2;
    const uint64_t g0 = DropoutGroup(i0);
    // Run elements 2p, 2p + 1 (and with N = 16, 2p + 8, 2p + 9) are group g0 + p's.
    const int high = static_cast<int>((i0 >> 3) & 1);  // N <= 8: bit 3 of every element
    uint32_t bits = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int p = 0; p < kHashes; ++p) {
      const uint64_t h = DropoutHash(key, g0 + static_cast<uint64_t>(p));
      if constexpr (N == 16) {
        bits |= (DropoutFieldKeeps(h, 0, threshold) ? 1u : 0u) << (2 * p) |
                (DropoutFieldKeeps(h, 2, threshold) ? 1u : 0u) << (2 * p + 1) |
                (DropoutFieldKeeps(h, 1, threshold) ? 1u : 0u) << (2 * p + 8) |
                (DropoutFieldKeeps(h, 3, threshold) ? 1u : 0u) << (2 * p + 9);
      } else {
        bits |= (DropoutFieldKeeps(h, high, threshold) ? 1u : 0u) << (2 * p) |
                (DropoutFieldKeeps(h, 2 + high, threshold) ? 1u : 0u) << (2 * p + 1);
      }
    }
    return bits;
  }
}

#if !defined(__CUDACC__)
// f(j, kept) for the elements start + j, j in [0, n), in order: 4 hashes per 16-element block
// (the CPU kernels' rows and ranges).
template <typename F>
inline void DropoutForEach(uint64_t key, uint64_t start, int64_t n, uint32_t threshold, F&& f) {
  int64_t j = 0;
  while (j < n) {
    const uint64_t i = start + static_cast<uint64_t>(j);
    const int from = static_cast<int>(i & 15);
    const int64_t count = 16 - from < n - j ? 16 - from : n - j;
    const uint32_t bits = DropoutKeepRun<16>(key, i - static_cast<uint64_t>(from), threshold);
    for (int64_t k = 0; k < count; ++k) f(j + k, ((bits >> (from + k)) & 1u) != 0);
    j += count;
  }
}
#endif

}  // namespace ptc::ir

#undef PTC_DROPOUT_FN

#endif  // PTC_COMPILER_IR_DROPOUT_H_
