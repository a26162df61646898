// Device-side helpers shared by codegen/cuda/*.cu (included only by .cu files): dtype traits,
// broadcast index arithmetic, warp/block reductions, launch geometry.
#ifndef PTC_CODEGEN_CUDA_DEVICE_UTIL_CUH_
#define PTC_CODEGEN_CUDA_DEVICE_UTIL_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "codegen/cuda/kernels.h"
#include "compiler/ir/dropout.h"

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

// One storage value to its compute type and back. Load / Store and the vector paths below both
// go through these, so a fast path rounds exactly like the general one.
template <DT D>
__device__ __forceinline__ typename Ty<D>::C Widen(typename Ty<D>::S s) {
  if constexpr (D == DT::kF16) {
    return __half2float(s);
  } else if constexpr (D == DT::kBF16) {
    return __bfloat162float(s);
  } else if constexpr (D == DT::kBool) {
    return s != 0;
  } else {
    return static_cast<typename Ty<D>::C>(s);
  }
}

template <DT D>
__device__ __forceinline__ typename Ty<D>::S Narrow(typename Ty<D>::C v) {
  if constexpr (D == DT::kF16) {
    return __float2half_rn(v);
  } else if constexpr (D == DT::kBF16) {
    return __float2bfloat16_rn(v);
  } else if constexpr (D == DT::kBool) {
    return v != 0;
  } else {
    return static_cast<typename Ty<D>::S>(v);
  }
}

template <DT D>
__device__ __forceinline__ typename Ty<D>::C Load(const typename Ty<D>::S* p, int64_t i) {
  if constexpr (D == DT::kF16 || D == DT::kBF16 || D == DT::kBool) {
    return Widen<D>(p[i]);
  } else {
    return Widen<D>(__ldg(p + i));
  }
}

template <DT D>
__device__ __forceinline__ void Store(typename Ty<D>::S* p, int64_t i, typename Ty<D>::C v) {
  p[i] = Narrow<D>(v);
}

// ------------------------------------------------------------------------ vector loads / stores
// Raw storage of an N-byte vector access (one ld/st.global.v4.u32, .v2.u32, .u32, ...).
template <int N> struct RawVec;
template <> struct RawVec<16> { using T = uint4; };
template <> struct RawVec<8> { using T = uint2; };
template <> struct RawVec<4> { using T = unsigned int; };
template <> struct RawVec<2> { using T = unsigned short; };
template <> struct RawVec<1> { using T = unsigned char; };

// Elements of S per vector access: 16 bytes, but at most 8 elements (1-byte types use 8-byte
// accesses: fewer unrolled copies of the per-element code).
template <typename S>
constexpr int kVec = sizeof(S) >= 2 ? static_cast<int>(16 / sizeof(S)) : 8;

// V consecutive elements at p, which the launcher checked to be aligned to V * sizeof(T).
template <typename T, int V>
__device__ __forceinline__ void LoadVec(const T* p, T (&v)[V]) {
  using R = typename RawVec<static_cast<int>(sizeof(T)) * V>::T;
  static_assert(sizeof(R) == sizeof(T) * V, "vector size");
  const R r = __ldg(reinterpret_cast<const R*>(p));
  memcpy(v, &r, sizeof(R));
}
template <typename T, int V>
__device__ __forceinline__ void StoreVec(T* p, const T (&v)[V]) {
  using R = typename RawVec<static_cast<int>(sizeof(T)) * V>::T;
  static_assert(sizeof(R) == sizeof(T) * V, "vector size");
  R r;
  memcpy(&r, v, sizeof(R));
  *reinterpret_cast<R*>(p) = r;
}

// Host side: may `p` be accessed `bytes` at a time? (Null counts as aligned: an absent operand.)
inline bool IsAligned(const void* p, int64_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(bytes) == 0;
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

// ------------------------------------------------------------------ rows held in registers
// Row kernels (softmax, layer_norm, layer_norm_grad dx) give each row a group of G threads and
// keep the row in registers between their passes instead of re-reading it: thread `lane` of
// the group holds the row's V-element vectors lane, lane + G, lane + 2G, ... (at most
// `per_thread` elements). G = 32 is one warp (8 rows per 256-thread block, warp shuffles only);
// G = 64 .. kMaxRowGroup is the whole block (one row per block, block reductions).
constexpr int kMaxRowGroup = 256;
constexpr int kRowMinBlocks = 3;  // blocks of 256 threads per SM: at most 80 registers
constexpr int kWarpRowBlock = 256;

struct RowGroup {
  int group = 0;  // threads per row; 0: the row does not fit in registers
  int block = 0;  // threads per block
  int rows_per_block = 0;
};

// The smallest group whose threads hold a row of n elements (n % v == 0) in at most
// `per_thread` elements each.
inline RowGroup PickRowGroup(int64_t n, int v, int per_thread) {
  RowGroup g;
  const int64_t vectors = n / v, per = per_thread / v;
  int64_t group = 32;
  while (group * per < vectors) group *= 2;
  if (n <= 0 || group > kMaxRowGroup) return g;
  g.group = static_cast<int>(group);
  g.block = group == 32 ? kWarpRowBlock : static_cast<int>(group);
  g.rows_per_block = g.block / g.group;
  return g;
}

// Every thread of the row's group gets the reduction of `v` (group: 32, or the whole block).
template <typename T>
__device__ __forceinline__ T GroupReduce(T v, int kind, T identity, T* shm, int group) {
  if (group == 32) return WarpReduce(v, kind);
  return BlockReduce<T>(v, kind, identity, shm);
}

// Grid for a grid-stride loop over n elements.
inline unsigned GridFor(int64_t n, int threads) {
  int64_t blocks = (n + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > (int64_t{1} << 20)) blocks = int64_t{1} << 20;
  return static_cast<unsigned>(blocks);
}

// Streaming multiprocessors of the current device (queried once per device, then cached).
inline int SmCount() {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 1;  // the launch reports the error
  static std::mutex mu;
  static std::map<int, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dev);
  if (it != cache.end()) return it->second;
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
      sms < 1) {
    return 1;
  }
  cache.emplace(dev, sms);
  return sms;
}

// Grid of a persistent grid-stride loop: the blocks that are resident at once on the device
// (SMs x the occupancy calculator's blocks per SM for this kernel and block size, cached per
// kernel, block size and device), never more than the `blocks_needed` that cover the work.
// Every block then loops over the same share, with no second partial wave.
template <typename... Args>
unsigned PersistentGrid(void (*kernel)(Args...), int threads, int64_t blocks_needed) {
  if (blocks_needed < 1) blocks_needed = 1;
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 1;
  const void* key = reinterpret_cast<const void*>(kernel);
  static std::mutex mu;
  static std::map<std::tuple<const void*, int, int>, int64_t> cache;
  int64_t resident = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find({key, threads, dev});
    if (it != cache.end()) resident = it->second;
  }
  if (resident == 0) {
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, key, threads, 0) != cudaSuccess ||
        per_sm < 1) {
      // Not cached: the launch itself reports an impossible configuration.
      return static_cast<unsigned>(blocks_needed < 1024 ? blocks_needed : 1024);
    }
    resident = static_cast<int64_t>(per_sm) * SmCount();
    std::lock_guard<std::mutex> lock(mu);
    cache[{key, threads, dev}] = resident;
  }
  const int64_t blocks = blocks_needed < resident ? blocks_needed : resident;
  return static_cast<unsigned>(blocks);
}

__device__ __forceinline__ int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t GridStride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// gelu(x) and gelu'(x) in the compute type C (f32 / f64): the tanh form (tanh_approx) or the
// exact erf form. The gelu op (elementwise.cu), gelu_grad (train.cu) and GeGLU (swiglu.cu).
template <typename C>
__device__ __forceinline__ C GeluOf(C x, bool tanh_approx) {
  if (tanh_approx) {
    const C kAlpha = C(0.79788456080286535588);  // sqrt(2 / pi)
    return C(0.5) * x * (C(1) + tanh(kAlpha * (x + C(0.044715) * x * x * x)));
  }
  return C(0.5) * x * (C(1) + erf(x * C(0.70710678118654752440)));
}

template <typename C>
__device__ __forceinline__ C GeluDerivativeOf(C v, bool tanh_approx) {
  if (tanh_approx) {
    const C k0 = C(0.7978845608028654), k1 = C(0.044715);
    const C t = tanh(k0 * (v + k1 * v * v * v));
    return C(0.5) * (C(1) + t) + C(0.5) * v * (C(1) - t * t) * k0 * (C(1) + C(3) * k1 * v * v);
  }
  const C cdf = C(0.5) * (C(1) + erf(v * C(0.7071067811865476)));
  const C pdf = C(0.3989422804014327) * exp(C(-0.5) * v * v);
  return cdf + v * pdf;
}

// y[i] = f(a[i], b[i]) over n elements, f taking and giving Ty<D>::C values (16-bit values
// widened, the result rounded once): elementwise ops of two operands that no fused program
// covers (gelu_grad, swiglu). LaunchBinaryMap takes kVec elements per 16-byte access with a
// 32-bit index (and a scalar tail) when the three pointers are aligned for it and n < 2^31,
// else one element per grid-stride iteration; both call f alike, so they give the same bits.
// Each thread reads element i of a and b before it writes y[i]: y may be a's or b's buffer.
constexpr int kMapThreads = 256;

template <DT D, typename F>
__global__ void __launch_bounds__(kMapThreads)
    BinaryMapKernel(int64_t n, const typename Ty<D>::S* a, const typename Ty<D>::S* b,
                    typename Ty<D>::S* y, F f) {
  for (int64_t i = GlobalThread(); i < n; i += GridStride()) {
    Store<D>(y, i, f(Load<D>(a, i), Load<D>(b, i)));
  }
}

template <DT D, typename F>
__global__ void __launch_bounds__(kMapThreads)
    BinaryMapVecKernel(uint32_t n, const typename Ty<D>::S* a, const typename Ty<D>::S* b,
                       typename Ty<D>::S* y, F f) {
  using S = typename Ty<D>::S;
  constexpr int V = kVec<S>;
  const uint32_t nv = n / V, stride = gridDim.x * blockDim.x;
  const uint32_t first = blockIdx.x * blockDim.x + threadIdx.x;
  for (uint32_t i = first; i < nv; i += stride) {
    S va[V], vb[V], o[V];
    LoadVec<S, V>(a + i * V, va);
    LoadVec<S, V>(b + i * V, vb);
#pragma unroll
    for (int j = 0; j < V; ++j) o[j] = Narrow<D>(f(Widen<D>(va[j]), Widen<D>(vb[j])));
    StoreVec<S, V>(y + i * V, o);
  }
  const uint32_t t = nv * V + first;  // the last n % V elements
  if (t < n) Store<D>(y, t, f(Load<D>(a, t), Load<D>(b, t)));
}

// kernel<<<grid, block, 0, stream>>>(args) written in a header: the CUDA CPU emulation rewrites
// the launches of the .cu files (runtime/cuda/emu/rewrite_cu.py), not of the headers they
// include, so a header launches through its Launcher directly.
template <typename... P, typename... A>
void LaunchFromHeader(void (*kernel)(P...), const char* name, unsigned grid, int block,
                      cudaStream_t stream, A... args) {
#if defined(PTC_CUDA_EMU)
  ::ptc::emu::Launcher(kernel, name, grid, block, 0, stream)(args...);
#else
  (void)name;
  kernel<<<grid, block, 0, stream>>>(args...);
#endif
}

template <DT D, typename F>
void LaunchBinaryMap(int64_t n, const typename Ty<D>::S* a, const typename Ty<D>::S* b,
                     typename Ty<D>::S* y, F f, cudaStream_t stream) {
  constexpr int V = kVec<typename Ty<D>::S>;
  const int64_t vb = V * static_cast<int64_t>(sizeof(typename Ty<D>::S));
  auto blocks = [](int64_t work) { return (work + kMapThreads - 1) / kMapThreads; };
  if (n < (int64_t{1} << 31) && IsAligned(a, vb) && IsAligned(b, vb) && IsAligned(y, vb)) {
    LaunchFromHeader(BinaryMapVecKernel<D, F>, "BinaryMapVecKernel",
                     PersistentGrid(BinaryMapVecKernel<D, F>, kMapThreads, blocks(n / V + 1)),
                     kMapThreads, stream, static_cast<uint32_t>(n), a, b, y, f);
  } else {
    LaunchFromHeader(BinaryMapKernel<D, F>, "BinaryMapKernel",
                     PersistentGrid(BinaryMapKernel<D, F>, kMapThreads, blocks(n)), kMapThreads,
                     stream, n, a, b, y, f);
  }
}

// Storage type of `bytes`-wide elements, for kernels that only move data.
template <int B> struct Bits;
template <> struct Bits<1> { using T = uint8_t; };
template <> struct Bits<2> { using T = uint16_t; };
template <> struct Bits<4> { using T = uint32_t; };
template <> struct Bits<8> { using T = uint64_t; };
template <> struct Bits<16> { using T = uint4; };  // 16-byte aligned: one 128-bit load / store

// Attention dropout (AttentionDesc::dropout_threshold) in a kernel: the launch's mask key, and
// the factor of probability `index` of the [b, h, tq, tk] probabilities (dropout_scale or 0).
// The threshold and scale are read from the descriptor (a kernel parameter: the constant
// bank, no registers), only the key is held. Grouped() (tk a multiple of 16: every row of the
// probabilities starts a 16-element block of compiler/ir/dropout.h's mask) lets the
// tensor-core kernels draw a row's four elements of a thread from one hash (Hash, PairBits,
// HalfKeeps); else they draw element by element (Factor, KeepBits).
struct AttentionDropper {
  const AttentionDesc& a;
  uint64_t key;
  __device__ __forceinline__ explicit AttentionDropper(const AttentionDesc& desc)
      : a(desc),
        key(ir::DropoutKey(desc.dropout_seed,
                           ir::DropoutCounter(desc.dropout_counter, desc.dropout_counter_i32))) {}
  __device__ __forceinline__ float scale() const { return a.dropout_scale; }
  __device__ __forceinline__ bool Grouped() const { return a.tk % 16 == 0; }
  // The hash of mask group `group` (ir::DropoutGroup).
  __device__ __forceinline__ uint64_t Hash(uint64_t group) const {
    return ir::DropoutHash(key, group);
  }
  // The keep bits of a group's elements 2q, 2q + 1, 2q + 8, 2q + 9 (fields 0, 2, 1, 3) at bits
  // 0, 1, 4, 5: a tensor-core accumulator's s[j][e] at bit 4j + e, for n-tiles j = 0, 1 and
  // one row's e.
  __device__ __forceinline__ uint32_t PairBits(uint64_t hash) const {
    const uint32_t t = a.dropout_threshold;
    return (ir::DropoutFieldKeeps(hash, 0, t) ? 0x01u : 0u) |
           (ir::DropoutFieldKeeps(hash, 2, t) ? 0x02u : 0u) |
           (ir::DropoutFieldKeeps(hash, 1, t) ? 0x10u : 0u) |
           (ir::DropoutFieldKeeps(hash, 3, t) ? 0x20u : 0u);
  }
  // Whether 16-bit field `sub` of a hash's 32-bit half is kept (field 2 half + sub).
  __device__ __forceinline__ bool HalfKeeps(uint32_t half, int sub) const {
    return ir::DropoutFieldKeeps(half, sub, a.dropout_threshold);
  }
  __device__ __forceinline__ float Factor(uint64_t index) const {
    return ir::DropoutKeeps(key, index, a.dropout_threshold) ? a.dropout_scale : 0.f;
  }
  // The keep bits of up to 32 of a thread's probabilities: bit i set where bit i of `nonzero`
  // is (a probability not 0) and element index(i) is kept. One hash at a time, in a rolled
  // loop over the nonzero ones: few registers live beside a tile's accumulators (hashing a
  // whole unrolled tile at once spills the tensor-core forward), nothing for masked keys.
  template <typename Index>
  __device__ __forceinline__ uint32_t KeepBits(uint32_t nonzero, Index&& index) const {
    uint32_t bits = 0;
#pragma unroll 1
    while (nonzero != 0) {
      const int i = __ffs(static_cast<int>(nonzero)) - 1;
      nonzero &= nonzero - 1;
      if (ir::DropoutKeeps(key, index(i), a.dropout_threshold)) bits |= 1u << i;
    }
    return bits;
  }
};
// Element index of (query t, key) of batch b, query head h in the probabilities.
__device__ __forceinline__ uint64_t AttentionProbIndex(const AttentionDesc& a, int64_t b,
                                                       int64_t h, int64_t t, int64_t key) {
  return static_cast<uint64_t>(((b * a.h + h) * a.tq + t) * a.tk + key);
}

}  // namespace ptc::cuda::kernels

#endif  // PTC_CODEGEN_CUDA_DEVICE_UTIL_CUH_
