// Flash attention on tensor cores (FlashAttention-2 order) for f16 / bf16 inputs with head dims
// d == dv in {64, 128}: mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16} (inline PTX), f32
// accumulation, online softmax in registers. Same semantics as the SIMT kernels of
// attention.cu (which stay the path for f32, other head dims and KernelOptions::attention_simt):
// layouts through AttentionDesc strides, scale, masks bool (true = masked out) or additive in
// q's dtype broadcast over [B, H, Tq, Tk], optional f32 log-sum-exp, NaN rows where every key
// is masked.
//
// ---- m16n8k16 fragments (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point
// type"); g = lane >> 2 (groupID), q = lane & 3 (threadID_in_group). Each .b32 register holds
// two 16-bit elements, the lower-indexed one in the low half.
//   A (16 x 16, row major), 4 registers:
//     a[0] = A[g    ][2q, 2q+1]      a[2] = A[g    ][2q+8, 2q+9]
//     a[1] = A[g + 8][2q, 2q+1]      a[3] = A[g + 8][2q+8, 2q+9]
//   B (16 x 8, "col": element (k, n)), 2 registers:
//     b[0] = B[2q, 2q+1][g]          b[1] = B[2q+8, 2q+9][g]
//   C / D (16 x 8, f32), 4 registers:
//     c[0], c[1] = C[g][2q, 2q+1]    c[2], c[3] = C[g + 8][2q, 2q+1]
// Consequences used below:
//   * A = X[rows][k] with X row-major in shared memory: a[i] is one 32-bit load of two
//     consecutive elements of a row.
//   * B = Y^T, i.e. B(k, n) = Y[n][k] with Y row-major (K in Q K^T): b[i] is one 32-bit load of
//     Y[n = g][k = 2q, 2q+1].
//   * B(k, n) = Y[k][n] with Y row-major (V in P V; dO, Q, K in the gradient products): two
//     elements of one column, consecutive rows. ldmatrix.x4.trans reads them from the same
//     row-major tile (LoadBTrans): lane l gives the address of row l & 7 of 8 x 8 matrix l >> 3,
//     and with .trans register m of lane (g, q) holds (M_m[2q][g], M_m[2q+1][g]). With matrices
//     Y[k0 + 8 (m & 1) ..][n0 + 8 (m >> 1) ..] that is b[0], b[1] of n-tile n0 and b[0], b[1] of
//     n-tile n0 + 8. No tile is stored transposed.
//   * Two C tiles of adjacent 8-column blocks j = 2kk, 2kk+1 of a 16-row strip are exactly the
//     A fragment of the 16 x 16 block kk: a[0] = pack(c_2kk[0], c_2kk[1]),
//     a[1] = pack(c_2kk[2], c_2kk[3]), a[2] = pack(c_2kk+1[0], c_2kk+1[1]),
//     a[3] = pack(c_2kk+1[2], c_2kk+1[3]). That is how P (or dS) goes from the scores'
//     accumulators into the next product without shared memory.
// Shared tiles are [64][HD + 8]: rows 16-byte aligned for the global loads and ldmatrix, and the
// 8-element pad shifts each row by 4 banks, so the 32-bit fragment loads and the eight row
// addresses of an ldmatrix matrix are conflict-free.
//
// ---- Forward: one block of 4 warps per (batch, head, 64 query rows); warp w owns rows
// 16w..16w+15 and keeps its Q strip as A fragments in registers (d/16 x 4 registers). Per
// 64-key tile: K and V in dynamic shared memory (each thread's 16-byte global loads issued
// together, then stored), S = Q K^T (8 n-tiles x d/16 mma), scale, mask, online softmax (row max
// / sum over the 4 threads of a quad by two xor shuffles), then O += P V (4 k-steps x d/8 mma)
// with P packed from the score accumulators.
//
// Masks:
//   * causal (mask_kind kAttentionMaskCausal: the node's causal=1; the mask operand is not
//     read): key j is open for query t iff j <= t + tk - tq. Each kernel visits only the tiles
//     with an open pair (the forward and dQ loops end at the block's last row's last key, the
//     dK / dV loop starts at the first query that sees the block's first key) and masks the
//     pairs of a diagonal tile by comparing indices: no mask loads and no barrier votes.
//   * bool / additive: before a tile's K / V are loaded the block reads the mask entries of the
//     64 x 64 (query, key) tile into shared memory as an additive bias in q's dtype (bool: 0 or
//     -inf; rows or keys past the end: -inf; each thread issues 4 loads before storing) and
//     votes (__syncthreads_or) whether any entry is not -inf. A tile masked everywhere is skipped
//     entirely: no K / V loads, no QK dots. The bias tile also serves the scores.
// Without a mask only the last tile's keys past Tk are masked. Rows whose keys are all masked
// keep l = 0 and give NaN (0 / 0) and lse = -inf, as the SIMT kernel.
//
// Pipelining: without a bias tile (no mask, causal) each loop is double-buffered with cp.async:
// at the top of an iteration a thread waits for its own copies of the current tile, one
// __syncthreads() publishes everyone's (and tells that every warp is done with the other
// buffer), then the next tile's copies are issued into the other buffer and the current tile is
// computed while they fly. Rows past the end are zero-filled by the copy (src-size 0) and masked
// by index (keys: LastOpenKey's nk; queries: KvGradTile's nq). The bias-tile loops keep plain
// loads: whether a tile is loaded at all depends on the mask vote.
//
// ---- Backward, deterministic (no atomics): D_t = dO_t . O_t (LaunchAttentionRowDot, the SIMT
// backward's kernel: one warp per row), then two
// kernels that each own their outputs:
//   * dK / dV: one block per (batch, head, 64 keys); warp w owns keys 16w..16w+15 and their
//     dK, dV accumulators (registers) for the whole pass. Loop over 64-query tiles (fully masked
//     ones skipped as above): Q, dO, lse, D of the tile in shared memory; per 16-query
//     chunk S^T = K Q^T and dP^T = V dO^T (A from K / V in shared memory), P^T = exp(scale S^T +
//     bias - lse), dS^T = P^T (dP^T - D), then dV += P^T dO, dK += dS^T Q.
//   * dQ: one block per (batch, head, 64 queries), Q and dO strips as A fragments in
//     registers, loop over 64-key tiles (skipped when masked): per 16-key chunk S = Q K^T,
//     dP = dO V^T, dS = P (dP - D), dQ += dS K.
// Every output element is written once by one thread after a fixed-order sum: the same inputs
// give the same bits.
// Grouped-query attention (AttentionDesc::hkv < h): the forward and dQ kernels read K / V of
// kv head h / (h / hkv) for query head h. The dK / dV kernel has one block per (batch, kv head,
// 64 keys) and visits the query tiles of the group's query heads one head after the other
// (the same double-buffered stream of tiles), so dK / dV of a kv head are summed over its
// group in registers, in head order, and still written once. P is recomputed once more than in a dq-by-atomics scheme (one extra
// Q K^T product): the price of determinism.
//
// softcap (AttentionDesc::softcap, Gemma 2): each scaled score is capped (Cap) before the bias;
// the backwards recompute the cap and multiply dS by its derivative.
//
// Attention dropout (AttentionDesc::dropout_threshold; template parameter kDrop, so attention
// without dropout runs the code it ran before): the forward multiplies each probability by its
// factor (AttentionDropper: 0 or 1 / (1 - ratio), compiler/ir/dropout.h's hash of its element
// index) after the row sums and before P V; the dK / dV and dQ passes redraw it: dP *= factor
// before dS = P (dP - D), and dV takes the dropped P^T. The mask's hash groups (dropout.h) are
// the four elements a thread holds of a row of a 16-key block, so with Tk a multiple of 16
// (AttentionDropper::Grouped) each hash draws four probabilities: the forward hashes its
// tile's groups with a nonzero probability one at a time, in a rolled loop (hashing the
// unrolled tile at once spilled at head dim 64's 128 registers); dQ draws a 16-key chunk's
// two groups per thread before its products; dK / dV, whose threads hold keys g and g + 8 of
// four queries, hashes two groups per thread and swaps halves with the thread of key g ^ 1
// (one shuffle per hash). Other Tk draw element by element, a hash each (KeepBits; dQ per
// nonzero probability). Chunks and tiles skipped as masked hash nothing.
//
// Rounding: P and dS are rounded to the input dtype for the tensor-core products (as
// FlashAttention-2 does); sums, the softmax and lse are f32. Outputs are written in the input
// dtype (the gradients too: no f32 scratch or cast pass).
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kTile = 64;      // query rows per block / keys per tile (and the converse in dK/dV)
constexpr int kThreads = 128;  // 4 warps of 16 rows each
constexpr int kPad = 8;        // 16-bit elements of padding per shared-memory row
constexpr int kTileLd = kTile + kPad;  // row length of the bias tile
// __launch_bounds__ minimum blocks per SM: the forward and dQ kernels with d = 64 fit in 128
// registers (4 blocks of 128 threads per SM) without spills; dK / dV's 64 + 64 accumulators
// need more (3 blocks); d = 128 is left to ptxas.

template <DT D>
using S = typename Ty<D>::S;

// The kv head that query head h reads (grouped-query attention: AttentionDesc::hkv).
__device__ __forceinline__ int64_t KvHead(const AttentionDesc& a, int64_t h) {
  return a.hkv > 0 ? h / (a.h / a.hkv) : h;
}

// AttentionDesc::softcap on a scaled score x: softcap * tanh(x / softcap), with dcap = 1 -
// tanh^2 for the backward (x and dcap = 1 unchanged without softcap). tanh is the hardware's
// approximation (__tanhf: tanh.approx.f32, about 2^-11 relative, below the f16 / bf16 inputs'
// rounding; the SIMT kernels use tanhf). kCap is a template parameter of every kernel below
// (the launchers pick it from softcap > 0), so attention without softcap runs the same code as
// before it existed.
template <bool kCap>
__device__ __forceinline__ float Cap(const AttentionDesc& a, float x, float& dcap) {
  if constexpr (!kCap) return x;
  const float th = __tanhf(x * (1.f / a.softcap));
  dcap = 1.f - th * th;
  return a.softcap * th;
}

// Bool and additive masks are read as bias tiles; the causal kind is index arithmetic.
__host__ __device__ __forceinline__ bool HasBias(const AttentionDesc& a) {
  return a.mask_kind == 1 || a.mask_kind == 2;
}

// D (+)= A B on one m16n8k16 tile (fragments as in the file comment).
template <DT D>
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
#if defined(PTC_CUDA_EMU)
  ::ptc::emu::MmaM16N8K16(D == DT::kBF16, c, a, b0, b1);  // the CPU emulation's warp collective
#else
  if constexpr (D == DT::kBF16) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    static_assert(D == DT::kF16, "tensor-core attention: f16 or bf16");
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
#endif
}

// Two floats rounded to the dtype, `lo` in the low 16 bits (the lower-indexed element).
template <DT D>
__device__ __forceinline__ uint32_t Pack(float lo, float hi) {
  uint32_t r;
  if constexpr (D == DT::kBF16) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &h, sizeof(r));  // not a pointer cast: no aliasing assumption (host builds)
  } else {
    const __half2 h = __floats2half2_rn(lo, hi);
    memcpy(&r, &h, sizeof(r));
  }
  return r;
}

template <DT D>
__device__ __forceinline__ float ToF(uint16_t bits) {
  if constexpr (D == DT::kBF16) {
    return __bfloat162float(__ushort_as_bfloat16(bits));
  } else {
    return __half2float(__ushort_as_half(bits));
  }
}
template <DT D>
__device__ __forceinline__ uint16_t FromF(float x) {
  if constexpr (D == DT::kBF16) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  } else {
    return __half_as_ushort(__float2half_rn(x));
  }
}

// Two consecutive 16-bit elements (4-byte aligned) as one register.
__device__ __forceinline__ uint32_t Ld32(const uint16_t* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}
// Fragment rows to and from global memory (Q / dO in, O / dQ / dK / dV out), two 16-bit
// elements per lane: a warp's access covers 8 rows x 16 bytes, half of each 32-byte sector
// (8 sectors per request for an ideal 4); the next column block's access takes the other
// halves, so L1 / L2 merge them and the DRAM traffic is the ideal. Staging the tile through
// shared memory would make each request ideal for a barrier more per tile: not done.
__device__ __forceinline__ uint32_t Ldg32(const void* p) {
  return __ldg(reinterpret_cast<const unsigned int*>(p));
}
__device__ __forceinline__ void Stg32(void* p, uint32_t v) {
  *reinterpret_cast<uint32_t*>(p) = v;
}

// The A fragment of rows r0..r0+15, columns c0..c0+15 of a row-major shared tile.
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const uint16_t* tile, int ld, int r0,
                                      int c0, int g, int q) {
  const uint16_t* p = tile + (r0 + g) * ld + c0 + 2 * q;
  a[0] = Ld32(p);
  a[1] = Ld32(p + 8 * ld);
  a[2] = Ld32(p + 8);
  a[3] = Ld32(p + 8 * ld + 8);
}

// The B fragments of n-tiles n0 and n0 + 8 for B(k, n) = Y[k0 + k][n0 + n] (k < 16, n < 16) of
// a row-major shared tile Y (row length ld), by ldmatrix.x4.trans (see the file comment):
// b[0], b[1] of n-tile n0, b[2], b[3] of n-tile n0 + 8. Whole warp.
__device__ __forceinline__ void LoadBTrans(uint32_t (&b)[4], const uint16_t* y, int ld, int k0,
                                           int n0, int lane) {
  const int m = lane >> 3, r = lane & 7;
  const uint16_t* p = y + (k0 + r + 8 * (m & 1)) * ld + n0 + 8 * (m >> 1);
#if defined(PTC_CUDA_EMU)
  ::ptc::emu::LdmatrixX4Trans(b, p);
#else
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(addr)
               : "memory");
#endif
}

// The A fragment of rows r_lo = row0 + g and r_lo + 8 (those >= n_rows are zeros), columns
// c0..c0+15, straight from global memory (row stride ld).
template <DT D>
__device__ __forceinline__ void LoadAGlobal(uint32_t (&a)[4], const S<D>* base, int64_t ld,
                                            int64_t r_lo, int64_t n_rows, int c0, int q) {
  const int64_t r_hi = r_lo + 8;
  const S<D>* lo = base + r_lo * ld + c0 + 2 * q;
  const S<D>* hi = base + r_hi * ld + c0 + 2 * q;
  a[0] = r_lo < n_rows ? Ldg32(lo) : 0u;
  a[1] = r_hi < n_rows ? Ldg32(hi) : 0u;
  a[2] = r_lo < n_rows ? Ldg32(lo + 8) : 0u;
  a[3] = r_hi < n_rows ? Ldg32(hi + 8) : 0u;
}

// Rows r0..r0+63 of a [n_rows, HD] matrix (row stride ld, 16-byte aligned rows) into the
// row-major shared tile rows[r * (HD + kPad) + c]; rows past n_rows are zeros. Each thread
// issues all its 16-byte loads before its stores. Whole block.
template <int HD, typename T>
__device__ __forceinline__ void LoadTile(uint16_t* rows, const T* src, int64_t ld, int64_t r0,
                                         int64_t n_rows) {
  constexpr int kChunks = HD / 8;                      // 16-byte chunks per row
  constexpr int kIters = kTile * kChunks / kThreads;   // 4 (HD 64) or 8 (HD 128)
  static_assert(kTile * kChunks % kThreads == 0, "whole chunks per thread");
  uint4 v[kIters];
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int i = threadIdx.x + it * kThreads, r = i / kChunks, c = (i % kChunks) * 8;
    v[it] = r0 + r < n_rows ? *reinterpret_cast<const uint4*>(src + (r0 + r) * ld + c)
                            : make_uint4(0u, 0u, 0u, 0u);
  }
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int i = threadIdx.x + it * kThreads, r = i / kChunks, c = (i % kChunks) * 8;
    *reinterpret_cast<uint4*>(rows + r * (HD + kPad) + c) = v[it];
  }
}

// The mask entries of queries t0..t0+63 x keys k0..k0+63 as an additive bias in the dtype
// (bool: 0 / -inf; outside [0, tq) x [0, tk): -inf) at bias[ti * kTileLd + kj], or at
// bias[kj * kTileLd + ti] when key_major. Whole block; returns (to every thread, after a
// barrier) whether any entry is not -inf, i.e. whether the tile has work. Entry i of the tile
// (keys fastest: coalesced for dense masks) is thread i % 128's; a thread issues the loads of
// kBatch entries before it stores them.
template <DT D, bool kBool>
__device__ __forceinline__ int LoadBiasEntries(const AttentionDesc& a, const void* mask,
                                               int64_t base, int64_t t0, int64_t k0,
                                               bool key_major, uint16_t* bias) {
  constexpr int kPer = kTile * kTile / kThreads, kBatch = 4;
  int open = 0;
#pragma unroll 1
  for (int it0 = 0; it0 < kPer; it0 += kBatch) {
    float x[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = threadIdx.x + (it0 + j) * kThreads;
      const int64_t t = t0 + i / kTile, key = k0 + i % kTile;
      x[j] = -INFINITY;
      if (t < a.tq && key < a.tk) {
        const int64_t mi = base + t * a.mask_strides[2] + key * a.mask_strides[3];
        if constexpr (kBool) {
          x[j] = static_cast<const uint8_t*>(mask)[mi] ? -INFINITY : 0.f;
        } else {
          x[j] = static_cast<float>(Load<D>(static_cast<const S<D>*>(mask), mi));
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const int i = threadIdx.x + (it0 + j) * kThreads, ti = i / kTile, kj = i % kTile;
      open |= x[j] != -INFINITY;  // NaN counts as open: it reaches the output, as on the CPU
      bias[key_major ? kj * kTileLd + ti : ti * kTileLd + kj] = FromF<D>(x[j]);
    }
  }
  return open;
}
template <DT D>
__device__ __forceinline__ bool LoadBias(const AttentionDesc& a, const void* mask, int64_t b,
                                         int64_t h, int64_t t0, int64_t k0, bool key_major,
                                         uint16_t* bias) {
  const int64_t base = b * a.mask_strides[0] + h * a.mask_strides[1];
  const int open = a.mask_kind == 1
                       ? LoadBiasEntries<D, true>(a, mask, base, t0, k0, key_major, bias)
                       : LoadBiasEntries<D, false>(a, mask, base, t0, k0, key_major, bias);
  return __syncthreads_or(open) != 0;
}

// Causal masks (see the file comment): key j is open for query t iff j <= t + tk - tq.
// The end of the key tiles that rows t0..t0+63 see (forward, dQ): every key without a mask.
__device__ __forceinline__ int64_t KeyEnd(const AttentionDesc& a, int64_t t0) {
  if (a.mask_kind != kAttentionMaskCausal) return a.tk;
  const int64_t end = t0 + kTile + (a.tk - a.tq);  // past the last open key of row t0 + 63
  return end < a.tk ? end : a.tk;
}
// The first query tile (a multiple of 64) with a query that sees key k0 (dK / dV).
__device__ __forceinline__ int64_t QueryBegin(const AttentionDesc& a, int64_t k0) {
  if (a.mask_kind != kAttentionMaskCausal) return 0;
  const int64_t t = k0 - (a.tk - a.tq);  // the first query that sees key k0
  return t <= 0 ? 0 : t / kTile * kTile;
}
// The last open key of a tile starting at k0 for absolute query `row` (tile-relative, clamped
// to [-1, nk - 1]; nk = the tile's keys before Tk).
__device__ __forceinline__ int LastOpenKey(const AttentionDesc& a, int64_t row, int64_t k0,
                                           int nk) {
  if (a.mask_kind != kAttentionMaskCausal) return nk - 1;
  const int64_t last = row + (a.tk - a.tq) - k0;
  return last < -1 ? -1 : (last > nk - 1 ? nk - 1 : static_cast<int>(last));
}
// The first open query of a tile starting at t0 for absolute key `key` (tile-relative,
// clamped to [0, 64]).
__device__ __forceinline__ int FirstOpenQuery(const AttentionDesc& a, int64_t key, int64_t t0) {
  if (a.mask_kind != kAttentionMaskCausal) return 0;
  const int64_t first = key - (a.tk - a.tq) - t0;
  return first < 0 ? 0 : (first > kTile ? kTile : static_cast<int>(first));
}

__device__ __forceinline__ float QuadMax(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}
__device__ __forceinline__ float QuadSum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

// ---- Asynchronous tile copies (cp.async, sm_80+): the mask-free and causal loops load the
// next tile into the other buffer while the current one is computed.
#if defined(PTC_CUDA_EMU)
// The CPU emulation holds each thread's copies until its wait (device_shim.h).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  ::ptc::emu::CpAsync(smem, gmem, 16, valid ? 16 : 0);
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem, bool valid) {
  ::ptc::emu::CpAsync(smem, gmem, 4, valid ? 4 : 0);
}
__device__ __forceinline__ void CpAsyncCommit() {}
__device__ __forceinline__ void CpAsyncWaitAll() { ::ptc::emu::CpAsyncWaitAll(); }
#else
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;  // 0: the 16 bytes are zero-filled and nothing is read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem, bool valid) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits for every copy this thread issued; a __syncthreads() after it publishes the block's.
__device__ __forceinline__ void CpAsyncWaitAll() {
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}
#endif

// LoadTile's tile by cp.async (rows past n_rows zero-filled); not committed. A thread's chunks
// are rows r_t + kStep * it at column c_t: one global pointer stepped by kStep rows and one
// shared address with constant offsets (few registers live across the compute it overlaps).
template <int HD, typename T>
__device__ __forceinline__ void CopyTileAsync(uint16_t* rows, const T* src, int64_t ld, int64_t r0,
                                              int64_t n_rows) {
  constexpr int kChunks = HD / 8;
  constexpr int kIters = kTile * kChunks / kThreads;
  constexpr int kStep = kThreads / kChunks;  // rows between a thread's chunks
  static_assert(kThreads % kChunks == 0, "a thread keeps its column");
  const int r_t = threadIdx.x / kChunks, c_t = (threadIdx.x % kChunks) * 8;
  const T* g = src + (r0 + r_t) * ld + c_t;
  uint16_t* sm = rows + r_t * (HD + kPad) + c_t;
  const int64_t left = n_rows - r0 - r_t;  // chunk `it` is valid iff kStep * it < left
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const bool valid = kStep * it < left;
    CpAsync16(sm + kStep * it * (HD + kPad), valid ? g : src, valid);
    g += kStep * ld;
  }
}

// Shared-memory slots of every kernel are T = 64 x (HD + 8) 16-bit elements each (the bias
// tile, 64 x 72, fits in one). Pipelined loops (no bias) use both buffers of the double-buffered
// pairs; with a bias tile the second buffer's first slot holds the bias and only buffer 0 is
// used.
__host__ __device__ constexpr int SlotElems(int hd) { return kTile * (hd + kPad); }
static_assert(kTile * kTileLd <= kTile * (64 + kPad), "the bias tile fits in a slot");
size_t ForwardSmem(int hd) {  // [K0][V0][K1 | bias][V1]
  return 4 * sizeof(uint16_t) * SlotElems(hd);
}
size_t KvSmem(int hd) {  // [K][V][Q0][dO0][Q1 | bias][dO1], then lse0, D0, lse1, D1 (f32 x 64)
  return 6 * sizeof(uint16_t) * SlotElems(hd) + 4 * sizeof(float) * kTile;
}
size_t QSmem(int hd) {  // [K0][V0][K1 | bias][V1]
  return 4 * sizeof(uint16_t) * SlotElems(hd);
}

// The key tiles that query rows t0..t0+63 visit (the forward and dQ kernels), K and V of each
// in the shared slots at `base` ([K0][V0][K1 | bias][V1]): with a bool / additive mask, plain
// loads after the mask vote (tiles masked everywhere skipped; the bias tile in the second
// buffer's K slot); otherwise double-buffered by cp.async (see the file comment), up to the
// last open key (KeyEnd). tile(ks, vs, bias or null, last[2], key_lim, k0) computes one tile for
// the calling warp (rows r_lo and r_lo + 8 of it; key_lim: its last row's last open key; k0: the
// tile's first key).
// Whole block.
template <DT D, int HD, typename Tile>
__device__ __forceinline__ void ForEachKeyTile(const AttentionDesc& a, const void* mask,
                                               int64_t b, int64_t h, int64_t t0, int64_t r_lo,
                                               int wr, const S<D>* kb, const S<D>* vb,
                                               uint16_t* base, Tile&& tile) {
  constexpr int kT = SlotElems(HD);
  // Buffer i's K and V slots (i computed: an array indexed at run time would live in local
  // memory).
  auto kbuf = [&](int i) { return base + 2 * kT * i; };
  auto vbuf = [&](int i) { return base + kT + 2 * kT * i; };
  const int64_t k_end = KeyEnd(a, t0);
  auto tile_keys = [&](int64_t k0) {
    return a.tk - k0 < kTile ? static_cast<int>(a.tk - k0) : kTile;
  };
  if (HasBias(a)) {
    uint16_t* bias = base + 2 * kT;
    for (int64_t k0 = 0; k0 < k_end; k0 += kTile) {
      __syncthreads();  // the previous tile's shared memory is no longer read
      if (!LoadBias<D>(a, mask, b, h, t0, k0, /*key_major=*/false, bias)) {
        continue;  // every (query, key) of the tile masked: no loads, no dots (block-uniform)
      }
      LoadTile<HD>(kbuf(0), kb, a.k_strides[2], k0, a.tk);
      LoadTile<HD>(vbuf(0), vb, a.v_strides[2], k0, a.tk);
      __syncthreads();
      const int nk = tile_keys(k0);
      const int last[2] = {nk - 1, nk - 1};
      tile(kbuf(0), vbuf(0), bias, last, nk - 1, k0);
    }
    return;
  }
  if (k_end <= 0) return;
  // Double-buffered: tile k0 + 64 is copied into the other buffer while k0 is computed.
  CopyTileAsync<HD>(kbuf(0), kb, a.k_strides[2], 0, a.tk);
  CopyTileAsync<HD>(vbuf(0), vb, a.v_strides[2], 0, a.tk);
  CpAsyncCommit();
  int buf = 0;
  for (int64_t k0 = 0; k0 < k_end; k0 += kTile, buf ^= 1) {
    CpAsyncWaitAll();
    __syncthreads();  // tile k0 is in buf; every warp is done with the other buffer
    if (k0 + kTile < k_end) {
      CopyTileAsync<HD>(kbuf(buf ^ 1), kb, a.k_strides[2], k0 + kTile, a.tk);
      CopyTileAsync<HD>(vbuf(buf ^ 1), vb, a.v_strides[2], k0 + kTile, a.tk);
      CpAsyncCommit();
    }
    const int nk = tile_keys(k0);
    const int last[2] = {LastOpenKey(a, r_lo, k0, nk), LastOpenKey(a, r_lo + 8, k0, nk)};
    tile(kbuf(buf), vbuf(buf), static_cast<const uint16_t*>(nullptr), last,
         LastOpenKey(a, t0 + wr + 15, k0, nk), k0);
  }
}

// ---- Forward
template <int HD>
struct FwdState {
  float acc[HD / 8][4];  // O strip (unnormalized), n-tile n = columns 8n..8n+7
  float m[2], l[2];      // running max and sum of rows lo (g) and hi (g + 8)
};

// One key tile of the forward for a warp's 16 rows (first row wr of the block tile): S = Q K^T,
// scale, mask (the bias tile when non-null; keys past last[i] for row i), online softmax,
// O += P V. key_lim (warp-uniform, >= every last[i] of the warp): the key 8-blocks and 16-blocks
// past it are masked for all 16 rows, and their products are skipped (a causal diagonal tile).
// kDrop: probability (row, key) of the tile is element drop_base + row * tk + key.
template <DT D, int HD, bool kCap, bool kDrop>
__device__ __forceinline__ void ForwardTile(const AttentionDesc& a, const uint32_t (&qf)[HD / 16][4],
                                            const uint16_t* ks, const uint16_t* vs,
                                            const uint16_t* bias, const int (&last)[2],
                                            int key_lim, int wr, int lane, FwdState<HD>& st,
                                            const AttentionDropper& dropper,
                                            uint64_t drop_base) {
  constexpr int kLd = HD + kPad;
  const int g = lane >> 2, qd = lane & 3;
  // S = Q K^T: [16 rows] x [64 keys] per warp, n-tile j = keys 8j..8j+7.
  float s[8][4];
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (8 * j > key_lim) break;  // masked below for every row of the warp
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint16_t* kr = ks + (8 * j + g) * kLd + 16 * kk + 2 * qd;  // B(k, n) = K[n][k]
      Mma<D>(s[j], qf[kk], Ld32(kr), Ld32(kr + 8));
    }
  }
  // Scale, mask; s[j][e] is row wr + g + 8 (e >> 1), key 8j + 2qd + (e & 1).
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = wr + g + 8 * (e >> 1), key = 8 * j + 2 * qd + (e & 1);
      float dcap = 1.f;  // unused: the forward needs no derivative
      float x = Cap<kCap>(a, s[j][e] * a.scale, dcap);
      if (bias != nullptr) x += ToF<D>(bias[row * kTileLd + key]);
      s[j][e] = key <= last[e >> 1] ? x : -INFINITY;
    }
  }
  // Online softmax for rows lo (i = 0: e = 0, 1) and hi (i = 1: e = 2, 3).
  float mt[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    mt[0] = fmaxf(mt[0], fmaxf(s[j][0], s[j][1]));
    mt[1] = fmaxf(mt[1], fmaxf(s[j][2], s[j][3]));
  }
  float mu[2], alpha[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const float m_new = fmaxf(st.m[i], QuadMax(mt[i]));
    mu[i] = m_new == -INFINITY ? 0.f : m_new;  // no open key yet: exp(-inf - 0) = 0
    alpha[i] = __expf(st.m[i] - mu[i]);        // m == -inf: 0
    st.m[i] = m_new;
  }
  float rs[2] = {0.f, 0.f};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float p = __expf(s[j][e] - mu[e >> 1]);  // masked (-inf): 0
      s[j][e] = p;
      rs[e >> 1] += p;
    }
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) st.l[i] = st.l[i] * alpha[i] + QuadSum(rs[i]);
  if constexpr (kDrop) {  // P V takes the dropped probabilities (l the undropped ones)
    uint32_t nonzero = 0;  // bit 4j + e: s[j][e]
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) nonzero |= (s[j][e] != 0.f ? 1u : 0u) << (4 * j + e);
    }
    const uint64_t row_lo = drop_base + (wr + g) * a.tk + 2 * qd;  // (row lo, key 2qd)
    uint32_t keep = 0;
    if (dropper.Grouped()) {
      // Row r (lo, hi) of 16-key block m: keys 16m + 2qd, +1, +8, +9 are one hash group, the
      // elements s[2m + jj][2r + (e & 1)] at bits 8m + 2r + {0, 1, 4, 5}. Row hi is 8 rows
      // on: 8 tk / 16 blocks of 4 groups. Groups without a nonzero probability hash nothing.
      const uint64_t group_lo = ir::DropoutGroup(row_lo);
#pragma unroll 1
      for (int gi = 0; gi < 8; ++gi) {
        const int r = gi & 1, m = gi >> 1, shift = 8 * m + 2 * r;
        if (((nonzero >> shift) & 0x33u) == 0) continue;
        keep |= dropper.PairBits(dropper.Hash(group_lo + r * 2 * a.tk + 4 * m)) << shift;
      }
    } else {
      keep = dropper.KeepBits(nonzero, [&](int i) {
        const int j = i >> 2, e = i & 3;
        return row_lo + ((e >> 1) * 8) * a.tk + 8 * j + (e & 1);
      });
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = (keep >> (4 * j + e)) & 1u ? s[j][e] * dropper.scale() : 0.f;
      }
    }
  }
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) {
    st.acc[n][0] *= alpha[0];
    st.acc[n][1] *= alpha[0];
    st.acc[n][2] *= alpha[1];
    st.acc[n][3] *= alpha[1];
  }
  // O += P V: k-step kk = keys 16kk..16kk+15; B(k, n) = V[k][n] (ldmatrix.trans, two n-tiles).
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk > key_lim) break;  // P = 0 for these keys in every row of the warp
    const uint32_t pa[4] = {
        Pack<D>(s[2 * kk][0], s[2 * kk][1]), Pack<D>(s[2 * kk][2], s[2 * kk][3]),
        Pack<D>(s[2 * kk + 1][0], s[2 * kk + 1][1]), Pack<D>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
    for (int np = 0; np < HD / 16; ++np) {
      uint32_t bv[4];
      LoadBTrans(bv, vs, kLd, 16 * kk, 16 * np, lane);
      Mma<D>(st.acc[2 * np], pa, bv[0], bv[1]);
      Mma<D>(st.acc[2 * np + 1], pa, bv[2], bv[3]);
    }
  }
}

template <DT D, int HD, bool kCap, bool kDrop>
__global__ void __launch_bounds__(kThreads, HD == 64 ? 4 : 2)
    TcForwardKernel(AttentionDesc a, const S<D>* __restrict__ q, const S<D>* __restrict__ k,
                    const S<D>* __restrict__ v, const void* __restrict__ mask, S<D>* __restrict__ o,
                    float* __restrict__ lse) {
  extern __shared__ __align__(16) unsigned char tc_smem[];
  uint16_t* base = reinterpret_cast<uint16_t*>(tc_smem);  // [K0][V0][K1 | bias][V1]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, qd = lane & 3;
  const int64_t q_tiles = (a.tq + kTile - 1) / kTile;
  const int64_t bh = blockIdx.x / q_tiles, t0 = (blockIdx.x % q_tiles) * kTile;
  const int64_t b = bh / a.h, h = bh % a.h, kh = KvHead(a, h);
  const S<D>* qb = q + b * a.q_strides[0] + h * a.q_strides[1];
  const S<D>* kb = k + b * a.k_strides[0] + kh * a.k_strides[1];
  const S<D>* vb = v + b * a.v_strides[0] + kh * a.v_strides[1];
  const int wr = warp * 16;          // the warp's first row in the tile
  const int64_t r_lo = t0 + wr + g;  // this thread's rows: r_lo and r_lo + 8

  uint32_t qf[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    LoadAGlobal<D>(qf[kk], qb, a.q_strides[2], r_lo, a.tq, 16 * kk, qd);
  }
  FwdState<HD> st;
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) st.acc[n][0] = st.acc[n][1] = st.acc[n][2] = st.acc[n][3] = 0.f;
  st.m[0] = st.m[1] = -INFINITY;
  st.l[0] = st.l[1] = 0.f;

  const AttentionDropper dropper(a);
  ForEachKeyTile<D, HD>(a, mask, b, h, t0, r_lo, wr, kb, vb, base,
                        [&](const uint16_t* ks, const uint16_t* vs, const uint16_t* bias,
                            const int(&last)[2], int key_lim, int64_t k0) {
                          ForwardTile<D, HD, kCap, kDrop>(a, qf, ks, vs, bias, last, key_lim, wr,
                                                          lane, st, dropper,
                                                          AttentionProbIndex(a, b, h, t0, k0));
                        });

  S<D>* ob = o + b * a.o_strides[0] + h * a.o_strides[1];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t t = r_lo + 8 * i;
    if (t >= a.tq) continue;
    const float inv = st.l[i] > 0.f ? 1.f / st.l[i] : NAN;  // every key masked: NaN, as the CPU
    S<D>* orow = ob + t * a.o_strides[2];
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      Stg32(orow + 8 * n + 2 * qd, Pack<D>(st.acc[n][2 * i] * inv, st.acc[n][2 * i + 1] * inv));
    }
    if (lse != nullptr && qd == 0) lse[bh * a.tq + t] = st.m[i] + logf(st.l[i]);  // l = 0: -inf
  }
}

// ---- dK / dV (see the file comment)
// One query tile for a warp's 16 keys (first key wr of the block tile): per 16-query chunk
// S^T = K Q^T and dP^T = V dO^T, P^T = exp(scale S^T + bias - lse), dS^T = P^T (dP^T - D),
// dV += P^T dO, dK += dS^T Q. Queries before first[i] (causal) or from nq on are P = 0;
// q_lim (warp-uniform, <= every first[i] of the warp): 16-query chunks wholly before it, or
// from nq on, are skipped. kDrop: probability (query qi, key kj) of the tile is element
// drop_base + qi * tk + kj.
template <DT D, int HD, bool kCap, bool kDrop>
__device__ __forceinline__ void KvGradTile(const AttentionDesc& a, const uint16_t* ks,
                                           const uint16_t* vs, const uint16_t* qs,
                                           const uint16_t* dos, const float* lse_s,
                                           const float* dsum_s, const uint16_t* bias,
                                           const int (&first)[2], int q_lim, int nq, int wr,
                                           int lane, float (&dka)[HD / 8][4],
                                           float (&dva)[HD / 8][4],
                                           const AttentionDropper& dropper, uint64_t drop_base) {
  constexpr int kLd = HD + kPad;
  const int g = lane >> 2, qd = lane & 3;
  // 16-query chunks: the score tiles stay at 2 x 4 registers each.
#pragma unroll 1
  for (int qc = 0; qc < kTile / 16; ++qc) {
    if (16 * qc + 15 < q_lim || 16 * qc >= nq) continue;  // P = 0 for the whole chunk
    // kDrop: the forward's mask of the chunk's 8 elements per thread (bit 4jj + e, below),
    // drawn before the products (fewer registers live than after them).
    uint32_t keep = ~0u;
    if constexpr (kDrop) {
      const uint64_t key_lo = drop_base + (16 * qc + 2 * qd) * a.tk + wr + g;
      if (dropper.Grouped()) {
        // Query 16qc + 8jj + 2qd + h: keys wr + (g & ~1), +1, +8, +9 are one hash group, whose
        // 32-bit half g & 1 holds this thread's keys g, g + 8 (fields 2 (g & 1) + (e >> 1)).
        // The thread of lane ^ 4 (key g ^ 1) holds the same queries: each hashes the two
        // queries of h = g & 1 and passes the other half over (one shuffle per hash, every
        // lane: the chunk loop is warp-uniform).
        const int odd = g & 1;
        keep = 0;
#pragma unroll 1
        for (int jj = 0; jj < 2; ++jj) {  // rolled: one hash live beside the accumulators
          const uint64_t hash = dropper.Hash(ir::DropoutGroup(key_lo + (8 * jj + odd) * a.tk));
          const uint32_t lo = static_cast<uint32_t>(hash), hi = static_cast<uint32_t>(hash >> 32);
          const uint32_t mine = odd ? hi : lo;
          const uint32_t other = __shfl_xor_sync(0xffffffffu, odd ? lo : hi, 4);
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const uint32_t half = (e & 1) == odd ? mine : other;
            keep |= (dropper.HalfKeeps(half, e >> 1) ? 1u : 0u) << (4 * jj + e);
          }
        }
      } else {
        keep = dropper.KeepBits(0xffu, [&](int i) {
          const int jj = i >> 2, e = i & 3;
          return key_lo + (8 * jj + (e & 1)) * a.tk + 8 * (e >> 1);
        });
      }
    }
    float st[2][4], dpt[2][4];  // [16 keys] x [16 queries]; n-tile jj = queries 8jj..
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
      for (int e = 0; e < 4; ++e) st[jj][e] = dpt[jj][e] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t ka[4], va[4];
      LoadA(ka, ks, kLd, wr, 16 * kk, g, qd);
      LoadA(va, vs, kLd, wr, 16 * kk, g, qd);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        // S^T = K Q^T: B(k, n) = Q[n][k]; dP^T = V dO^T: B(k, n) = dO[n][k].
        const int off = (16 * qc + 8 * jj + g) * kLd + 16 * kk + 2 * qd;
        Mma<D>(st[jj], ka, Ld32(qs + off), Ld32(qs + off + 8));
        Mma<D>(dpt[jj], va, Ld32(dos + off), Ld32(dos + off + 8));
      }
    }
    // P^T and dS^T; element e of n-tile jj (bit 4jj + e of keep): key wr + g + 8 (e >> 1),
    // query 16qc + 8jj + 2qd + (e & 1). The lse and D of this thread's 4 queries are read
    // first, each once (by every lane: no divergent loads).
    float lse_q[2][2], dsum_q[2][2];  // [jj][e & 1]
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        lse_q[jj][h] = lse_s[16 * qc + 8 * jj + 2 * qd + h];
        dsum_q[jj][h] = dsum_s[16 * qc + 8 * jj + 2 * qd + h];
      }
    }
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = wr + g + 8 * (e >> 1), qi = 16 * qc + 8 * jj + 2 * qd + (e & 1);
        float dcap = 1.f;
        float x = Cap<kCap>(a, st[jj][e] * a.scale, dcap);
        if (bias != nullptr) x += ToF<D>(bias[key * kTileLd + qi]);
        const float lt = lse_q[jj][e & 1], ds = dsum_q[jj][e & 1];
        const float p = (qi < first[e >> 1] || qi >= nq || x == -INFINITY || lt == -INFINITY)
                            ? 0.f
                            : __expf(x - lt);
        float dp = dpt[jj][e], pd = p;  // pd: the dropped P^T that dV takes
        if constexpr (kDrop) {  // dP through the forward's mask
          const float f = (keep >> (4 * jj + e)) & 1u ? dropper.scale() : 0.f;
          dp *= f;
          pd = p * f;
        }
        st[jj][e] = pd;
        // p = 0 adds nothing, even where D is NaN (a query row with every key masked: its O,
        // and so D = dO . O, are NaN); as the CPU kernel and the SIMT backward.
        dpt[jj][e] = p == 0.f ? 0.f : p * (dp - ds) * dcap;
      }
    }
    // dV += P^T dO and dK += dS^T Q over this chunk's 16 queries (the k dim): B(k, n) =
    // dO[k][n], Q[k][n] (ldmatrix.trans, two n-tiles per load).
    const uint32_t pa[4] = {Pack<D>(st[0][0], st[0][1]), Pack<D>(st[0][2], st[0][3]),
                            Pack<D>(st[1][0], st[1][1]), Pack<D>(st[1][2], st[1][3])};
    const uint32_t da[4] = {Pack<D>(dpt[0][0], dpt[0][1]), Pack<D>(dpt[0][2], dpt[0][3]),
                            Pack<D>(dpt[1][0], dpt[1][1]), Pack<D>(dpt[1][2], dpt[1][3])};
#pragma unroll
    for (int np = 0; np < HD / 16; ++np) {
      uint32_t bo[4], bq[4];
      LoadBTrans(bo, dos, kLd, 16 * qc, 16 * np, lane);
      LoadBTrans(bq, qs, kLd, 16 * qc, 16 * np, lane);
      Mma<D>(dva[2 * np], pa, bo[0], bo[1]);
      Mma<D>(dva[2 * np + 1], pa, bo[2], bo[3]);
      Mma<D>(dka[2 * np], da, bq[0], bq[1]);
      Mma<D>(dka[2 * np + 1], da, bq[2], bq[3]);
    }
  }
}

template <DT D, int HD, bool kCap, bool kDrop>
__global__ void __launch_bounds__(kThreads, HD == 64 ? 3 : 1)
    TcBackwardKvKernel(AttentionDesc a, const S<D>* __restrict__ q, const S<D>* __restrict__ k,
                       const S<D>* __restrict__ v, const void* __restrict__ mask,
                       const S<D>* __restrict__ d_o, const float* __restrict__ lse,
                       const float* __restrict__ dsum, S<D>* __restrict__ dk,
                       S<D>* __restrict__ dv) {
  extern __shared__ __align__(16) unsigned char tc_smem[];
  constexpr int kT = SlotElems(HD);
  uint16_t* ks = reinterpret_cast<uint16_t*>(tc_smem);  // [64 keys][HD + 8]
  uint16_t* vs = ks + kT;                               // [64 keys][HD + 8]
  // Buffer i's slots (computed: an array indexed at run time would live in local memory).
  auto qbuf = [&](int i) { return ks + 2 * kT + 2 * kT * i; };   // [64 queries][HD + 8]
  auto dobuf = [&](int i) { return ks + 3 * kT + 2 * kT * i; };  // [64 queries][HD + 8]
  float* const stats = reinterpret_cast<float*>(ks + 6 * kT);
  auto lsebuf = [&](int i) { return stats + 2 * kTile * i; };           // [64]
  auto dsumbuf = [&](int i) { return stats + kTile + 2 * kTile * i; };  // [64]
  uint16_t* bias = ks + 4 * kT;  // [64 keys][64 q + 8] (bias tiles): buffer 1's Q slot
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2;
  const int64_t k_tiles = (a.tk + kTile - 1) / kTile;
  const int64_t hkv = a.hkv > 0 ? a.hkv : a.h, group = a.h / hkv;
  const int64_t bkh = blockIdx.x / k_tiles, k0 = (blockIdx.x % k_tiles) * kTile;
  const int64_t b = bkh / hkv, kh = bkh % hkv;
  const S<D>* kb = k + b * a.k_strides[0] + kh * a.k_strides[1];
  const S<D>* vb = v + b * a.v_strides[0] + kh * a.v_strides[1];
  // Query head h of the group (kh * group + gi): its Q, dO and lse / dsum row of query 0.
  auto q_head = [&](int64_t gi) {
    return b * a.q_strides[0] + (kh * group + gi) * a.q_strides[1];
  };
  auto o_head = [&](int64_t gi) {
    return b * a.o_strides[0] + (kh * group + gi) * a.o_strides[1];
  };
  auto row0 = [&](int64_t gi) { return (b * a.h + kh * group + gi) * a.tq; };
  const int wr = warp * 16;        // the warp's first key in the tile
  const int qd = lane & 3;
  const AttentionDropper dropper(a);

  float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[n][e] = dva[n][e] = 0.f;
  }
  auto tile_queries = [&](int64_t t0) {
    return a.tq - t0 < kTile ? static_cast<int>(a.tq - t0) : kTile;
  };

  if (HasBias(a)) {
    LoadTile<HD>(ks, kb, a.k_strides[2], k0, a.tk);
    LoadTile<HD>(vs, vb, a.v_strides[2], k0, a.tk);
    for (int64_t gi = 0; gi < group; ++gi) {  // the kv head's query heads, in order
      const S<D>* qb = q + q_head(gi);
      const S<D>* dob = d_o + o_head(gi);
      const int64_t r0 = row0(gi);
      for (int64_t t0 = 0; t0 < a.tq; t0 += kTile) {
        __syncthreads();  // the previous query tile is no longer read (and K, V are in place)
        if (!LoadBias<D>(a, mask, b, kh * group + gi, t0, k0, /*key_major=*/true, bias)) {
          continue;
        }
        LoadTile<HD>(qbuf(0), qb, a.q_strides[2], t0, a.tq);
        LoadTile<HD>(dobuf(0), dob, a.o_strides[2], t0, a.tq);
        for (int i = threadIdx.x; i < kTile; i += kThreads) {
          const bool in = t0 + i < a.tq;
          lsebuf(0)[i] = in ? lse[r0 + t0 + i] : -INFINITY;  // rows past the end: P = 0
          dsumbuf(0)[i] = in ? dsum[r0 + t0 + i] : 0.f;
        }
        __syncthreads();
        const int first[2] = {0, 0};
        KvGradTile<D, HD, kCap, kDrop>(a, ks, vs, qbuf(0), dobuf(0), lsebuf(0), dsumbuf(0), bias,
                                       first, 0, tile_queries(t0), wr, lane, dka, dva, dropper,
                                       AttentionProbIndex(a, b, kh * group + gi, t0, k0));
      }
    }
  } else {
    // Double-buffered over the query tiles of the group's heads in turn (step n: head
    // n / tiles, tile t_begin + 64 (n % tiles)): Q, dO, lse and D of step n + 1 are copied into
    // the other buffer while step n is computed (K and V arrive with the first).
    const int64_t t_begin = QueryBegin(a, k0);
    const int64_t tiles = t_begin < a.tq ? (a.tq - t_begin + kTile - 1) / kTile : 0;
    auto step_t0 = [&](int64_t n) { return t_begin + (n % tiles) * kTile; };
    auto issue = [&](int64_t n, int buf) {
      const int64_t gi = n / tiles, t0 = step_t0(n);
      CopyTileAsync<HD>(qbuf(buf), q + q_head(gi), a.q_strides[2], t0, a.tq);
      CopyTileAsync<HD>(dobuf(buf), d_o + o_head(gi), a.o_strides[2], t0, a.tq);
      const int i = threadIdx.x & (kTile - 1);  // threads 0-63: lse; 64-127: D
      const bool in = t0 + i < a.tq;
      const float* src = threadIdx.x < kTile ? lse : dsum;
      float* dst = threadIdx.x < kTile ? lsebuf(buf) : dsumbuf(buf);
      CpAsync4(dst + i, in ? src + row0(gi) + t0 + i : src, in);  // past the end: 0 (and nq)
      CpAsyncCommit();
    };
    const int64_t steps = tiles * group;
    if (steps > 0) {
      CopyTileAsync<HD>(ks, kb, a.k_strides[2], k0, a.tk);
      CopyTileAsync<HD>(vs, vb, a.v_strides[2], k0, a.tk);
      issue(0, 0);
    }
    int buf = 0;
    for (int64_t n = 0; n < steps; ++n, buf ^= 1) {
      const int64_t t0 = step_t0(n);
      CpAsyncWaitAll();
      __syncthreads();  // step n is in buf; every warp is done with the other buffer
      if (n + 1 < steps) issue(n + 1, buf ^ 1);
      // The first open query of this thread's keys lo (wr + g) and hi (+ 8).
      const int first[2] = {FirstOpenQuery(a, k0 + wr + g, t0),
                            FirstOpenQuery(a, k0 + wr + g + 8, t0)};
      const int q_lim = FirstOpenQuery(a, k0 + wr, t0);  // the warp's first key's
      KvGradTile<D, HD, kCap, kDrop>(a, ks, vs, qbuf(buf), dobuf(buf), lsebuf(buf), dsumbuf(buf),
                                     nullptr, first, q_lim, tile_queries(t0), wr, lane, dka, dva,
                                     dropper,
                                     AttentionProbIndex(a, b, kh * group + n / tiles, t0, k0));
    }
  }

  S<D>* dkb = dk + b * a.k_strides[0] + kh * a.k_strides[1];
  S<D>* dvb = dv + b * a.v_strides[0] + kh * a.v_strides[1];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t key = k0 + wr + g + 8 * i;
    if (key >= a.tk) continue;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      const int c = 8 * n + 2 * qd;
      Stg32(dkb + key * a.k_strides[2] + c,
            Pack<D>(dka[n][2 * i] * a.scale, dka[n][2 * i + 1] * a.scale));
      Stg32(dvb + key * a.v_strides[2] + c, Pack<D>(dva[n][2 * i], dva[n][2 * i + 1]));
    }
  }
}

// ---- dQ (see the file comment)
// One key tile for a warp's 16 rows: per 16-key chunk S = Q K^T, dP = dO V^T, dS = P (dP - D),
// dQ += dS K; keys past last[i] of row i are P = 0, and 16-key chunks wholly past key_lim
// (warp-uniform, >= every last[i] of the warp) are skipped. kDrop: probability (row, key) of
// the tile is element drop_base + row * tk + key.
template <DT D, int HD, bool kCap, bool kDrop>
__device__ __forceinline__ void QGradTile(const AttentionDesc& a, const uint32_t (&qf)[HD / 16][4],
                                          const uint32_t (&of)[HD / 16][4], const uint16_t* ks,
                                          const uint16_t* vs, const uint16_t* bias,
                                          const int (&last)[2], int key_lim,
                                          const float (&lt)[2], const float (&ds_row)[2], int wr,
                                          int lane, float (&dqa)[HD / 8][4],
                                          const AttentionDropper& dropper, uint64_t drop_base) {
  constexpr int kLd = HD + kPad;
  const int g = lane >> 2, qd = lane & 3;
#pragma unroll 1
  for (int kc = 0; kc < kTile / 16; ++kc) {
    if (16 * kc > key_lim) break;  // P = 0 for the rest of the tile
    // kDrop with Grouped(): the forward's mask of the chunk's 8 elements per thread (bit
    // 4jj + e, below), one hash per row (keys 16kc + 2qd, +1, +8, +9), drawn before the
    // products. Other Tk: a hash per nonzero probability in the loop below (Factor; drawing
    // those up front too spilled at head dim 64).
    uint32_t keep = ~0u;
    if constexpr (kDrop) {
      const uint64_t row_lo = drop_base + (wr + g) * a.tk + 16 * kc + 2 * qd;
      if (dropper.Grouped()) {
        keep = 0;
#pragma unroll 1
        for (int r = 0; r < 2; ++r) {  // row hi: 8 rows on
          keep |= dropper.PairBits(dropper.Hash(ir::DropoutGroup(row_lo + r * 8 * a.tk)))
                  << (2 * r);
        }
      }
    }
    float s[2][4], dp[2][4];  // [16 rows] x [16 keys]; n-tile jj = keys 16kc + 8jj..
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[jj][e] = dp[jj][e] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        // S = Q K^T: B(k, n) = K[n][k]; dP = dO V^T: B(k, n) = V[n][k].
        const int off = (16 * kc + 8 * jj + g) * kLd + 16 * kk + 2 * qd;
        Mma<D>(s[jj], qf[kk], Ld32(ks + off), Ld32(ks + off + 8));
        Mma<D>(dp[jj], of[kk], Ld32(vs + off), Ld32(vs + off + 8));
      }
    }
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = e >> 1, row = wr + g + 8 * i, key = 16 * kc + 8 * jj + 2 * qd + (e & 1);
        float dcap = 1.f;
        float x = Cap<kCap>(a, s[jj][e] * a.scale, dcap);
        if (bias != nullptr) x += ToF<D>(bias[row * kTileLd + key]);
        const float p =
            (key > last[i] || x == -INFINITY || lt[i] == -INFINITY) ? 0.f : __expf(x - lt[i]);
        float dpv = dp[jj][e];
        if constexpr (kDrop) {
          if (dropper.Grouped()) {
            dpv *= (keep >> (4 * jj + e)) & 1u ? dropper.scale() : 0.f;
          } else if (p != 0.f) {
            dpv *= dropper.Factor(drop_base + row * a.tk + key);
          }
        }
        s[jj][e] = p == 0.f ? 0.f : p * (dpv - ds_row[i]) * dcap;  // dS (0 where p = 0)
      }
    }
    const uint32_t da[4] = {Pack<D>(s[0][0], s[0][1]), Pack<D>(s[0][2], s[0][3]),
                            Pack<D>(s[1][0], s[1][1]), Pack<D>(s[1][2], s[1][3])};
#pragma unroll
    for (int np = 0; np < HD / 16; ++np) {
      // dQ += dS K: B(k, n) = K[k][n] (ldmatrix.trans, two n-tiles).
      uint32_t bk[4];
      LoadBTrans(bk, ks, kLd, 16 * kc, 16 * np, lane);
      Mma<D>(dqa[2 * np], da, bk[0], bk[1]);
      Mma<D>(dqa[2 * np + 1], da, bk[2], bk[3]);
    }
  }
}

template <DT D, int HD, bool kCap, bool kDrop>
__global__ void __launch_bounds__(kThreads, HD == 64 ? 4 : 2)
    TcBackwardQKernel(AttentionDesc a, const S<D>* __restrict__ q, const S<D>* __restrict__ k,
                      const S<D>* __restrict__ v, const void* __restrict__ mask,
                      const S<D>* __restrict__ d_o, const float* __restrict__ lse,
                      const float* __restrict__ dsum, S<D>* __restrict__ dq) {
  extern __shared__ __align__(16) unsigned char tc_smem[];
  uint16_t* base = reinterpret_cast<uint16_t*>(tc_smem);  // [K0][V0][K1 | bias][V1]
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, qd = lane & 3;
  const int64_t q_tiles = (a.tq + kTile - 1) / kTile;
  const int64_t bh = blockIdx.x / q_tiles, t0 = (blockIdx.x % q_tiles) * kTile;
  const int64_t b = bh / a.h, h = bh % a.h, kh = KvHead(a, h);
  const S<D>* qb = q + b * a.q_strides[0] + h * a.q_strides[1];
  const S<D>* dob = d_o + b * a.o_strides[0] + h * a.o_strides[1];
  const S<D>* kb = k + b * a.k_strides[0] + kh * a.k_strides[1];
  const S<D>* vb = v + b * a.v_strides[0] + kh * a.v_strides[1];
  const int wr = warp * 16;
  const int64_t r_lo = t0 + wr + g;

  uint32_t qf[HD / 16][4], of[HD / 16][4];
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    LoadAGlobal<D>(qf[kk], qb, a.q_strides[2], r_lo, a.tq, 16 * kk, qd);
    LoadAGlobal<D>(of[kk], dob, a.o_strides[2], r_lo, a.tq, 16 * kk, qd);
  }
  float lt[2], ds_row[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t t = r_lo + 8 * i;
    lt[i] = t < a.tq ? lse[bh * a.tq + t] : -INFINITY;
    ds_row[i] = t < a.tq ? dsum[bh * a.tq + t] : 0.f;
  }
  float dqa[HD / 8][4];
#pragma unroll
  for (int n = 0; n < HD / 8; ++n) dqa[n][0] = dqa[n][1] = dqa[n][2] = dqa[n][3] = 0.f;

  const AttentionDropper dropper(a);
  ForEachKeyTile<D, HD>(a, mask, b, h, t0, r_lo, wr, kb, vb, base,
                        [&](const uint16_t* ks, const uint16_t* vs, const uint16_t* bias,
                            const int(&last)[2], int key_lim, int64_t k0) {
                          QGradTile<D, HD, kCap, kDrop>(a, qf, of, ks, vs, bias, last, key_lim, lt,
                                                        ds_row, wr, lane, dqa, dropper,
                                                        AttentionProbIndex(a, b, h, t0, k0));
                        });

  S<D>* dqb = dq + b * a.q_strides[0] + h * a.q_strides[1];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int64_t t = r_lo + 8 * i;
    if (t >= a.tq) continue;
#pragma unroll
    for (int n = 0; n < HD / 8; ++n) {
      Stg32(dqb + t * a.q_strides[2] + 8 * n + 2 * qd,
            Pack<D>(dqa[n][2 * i] * a.scale, dqa[n][2 * i + 1] * a.scale));
    }
  }
}

bool Aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// run(cap, drop) with std::true_type / std::false_type for AttentionDesc::softcap > 0 and
// AttentionDropout: the kernels' kCap and kDrop.
template <typename Run>
cudaError_t WithVariant(const AttentionDesc& d, Run&& run) {
  auto with_drop = [&](auto cap) {
    return AttentionDropout(d) ? run(cap, std::true_type{}) : run(cap, std::false_type{});
  };
  return d.softcap > 0.f ? with_drop(std::true_type{}) : with_drop(std::false_type{});
}

int64_t Tiles(int64_t n) { return (n + kTile - 1) / kTile; }

template <typename Kernel>
cudaError_t SetSmem(Kernel kernel, size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

template <DT D, int HD, bool kCap, bool kDrop>
cudaError_t Forward(const AttentionDesc& d, const void* q, const void* k, const void* v,
                    const void* mask, void* o, float* lse, cudaStream_t stream) {
  const size_t smem = ForwardSmem(HD);
  cudaError_t e = SetSmem(TcForwardKernel<D, HD, kCap, kDrop>, smem);
  if (e != cudaSuccess) return e;
  TcForwardKernel<D, HD, kCap, kDrop>
      <<<static_cast<unsigned>(d.b * d.h * Tiles(d.tq)), kThreads, smem, stream>>>(
          d, static_cast<const S<D>*>(q), static_cast<const S<D>*>(k), static_cast<const S<D>*>(v),
          mask, static_cast<S<D>*>(o), lse);
  return cudaGetLastError();
}

template <DT D, int HD, bool kCap, bool kDrop>
cudaError_t Backward(const AttentionDesc& d, const void* q, const void* k, const void* v,
                     const void* mask, const void* o, const void* d_o, const float* lse, void* dq,
                     void* dk, void* dv, float* dsum, cudaStream_t stream) {
  cudaError_t e = LaunchAttentionRowDot(D, d, o, d_o, dsum, stream);
  if (e != cudaSuccess) return e;
  const int64_t kv_blocks = d.b * AttentionKvHeads(d) * Tiles(d.tk);  // per kv head
  if (kv_blocks > 0) {
    const size_t smem = KvSmem(HD);
    e = SetSmem(TcBackwardKvKernel<D, HD, kCap, kDrop>, smem);
    if (e != cudaSuccess) return e;
    TcBackwardKvKernel<D, HD, kCap, kDrop><<<static_cast<unsigned>(kv_blocks), kThreads, smem, stream>>>(
        d, static_cast<const S<D>*>(q), static_cast<const S<D>*>(k), static_cast<const S<D>*>(v),
        mask, static_cast<const S<D>*>(d_o), lse, dsum, static_cast<S<D>*>(dk),
        static_cast<S<D>*>(dv));
  }
  const int64_t q_blocks = d.b * d.h * Tiles(d.tq);
  if (q_blocks > 0) {
    const size_t smem = QSmem(HD);
    e = SetSmem(TcBackwardQKernel<D, HD, kCap, kDrop>, smem);
    if (e != cudaSuccess) return e;
    TcBackwardQKernel<D, HD, kCap, kDrop><<<static_cast<unsigned>(q_blocks), kThreads, smem, stream>>>(
        d, static_cast<const S<D>*>(q), static_cast<const S<D>*>(k), static_cast<const S<D>*>(v),
        mask, static_cast<const S<D>*>(d_o), lse, dsum, static_cast<S<D>*>(dq));
  }
  return cudaGetLastError();
}

}  // namespace

bool FlashAttentionTcSupported(DT dt, const AttentionDesc& d) {
  if (dt != DT::kF16 && dt != DT::kBF16) return false;
  if (d.d != d.dv || (d.d != 64 && d.d != 128)) return false;
  if (d.b < 0 || d.h < 0 || d.tq < 0 || d.tk < 0 || !AttentionHeadsValid(d)) return false;
  // 16-byte row loads: every row starts at a multiple of 8 elements.
  for (const int64_t* s : {d.q_strides, d.k_strides, d.v_strides, d.o_strides}) {
    for (int i = 0; i < 3; ++i) {
      if (s[i] % 8 != 0) return false;
    }
  }
  constexpr int64_t kMaxBlocks = int64_t{1} << 31;
  return d.b * d.h * Tiles(d.tq) < kMaxBlocks && d.b * d.h * Tiles(d.tk) < kMaxBlocks;
}

cudaError_t LaunchFlashAttentionTc(DT dt, const AttentionDesc& d, const void* q, const void* k,
                                   const void* v, const void* mask, void* o, float* lse,
                                   cudaStream_t stream) {
  if (!FlashAttentionTcSupported(dt, d)) return cudaErrorInvalidValue;
  if (!Aligned16(q) || !Aligned16(k) || !Aligned16(v) || !Aligned16(o)) {
    return cudaErrorMisalignedAddress;
  }
  if (d.b * d.h * d.tq == 0) return cudaSuccess;
  return WithVariant(d, [&](auto cap, auto drop) {
    constexpr bool kCap = decltype(cap)::value, kDrop = decltype(drop)::value;
    if (d.d == 64) {
      return dt == DT::kBF16
                 ? Forward<DT::kBF16, 64, kCap, kDrop>(d, q, k, v, mask, o, lse, stream)
                 : Forward<DT::kF16, 64, kCap, kDrop>(d, q, k, v, mask, o, lse, stream);
    }
    return dt == DT::kBF16
               ? Forward<DT::kBF16, 128, kCap, kDrop>(d, q, k, v, mask, o, lse, stream)
               : Forward<DT::kF16, 128, kCap, kDrop>(d, q, k, v, mask, o, lse, stream);
  });
}

cudaError_t LaunchFlashAttentionTcBackward(DT dt, const AttentionDesc& d, const void* q,
                                           const void* k, const void* v, const void* mask,
                                           const void* o, const void* d_o, const float* lse,
                                           void* dq, void* dk, void* dv, void* workspace,
                                           cudaStream_t stream) {
  if (!FlashAttentionTcSupported(dt, d)) return cudaErrorInvalidValue;
  for (const void* p : {q, k, v, o, d_o, static_cast<const void*>(dq), static_cast<const void*>(dk),
                        static_cast<const void*>(dv)}) {
    if (!Aligned16(p)) return cudaErrorMisalignedAddress;
  }
  float* dsum = static_cast<float*>(workspace);
  return WithVariant(d, [&](auto cap, auto drop) {
    constexpr bool kCap = decltype(cap)::value, kDrop = decltype(drop)::value;
    if (d.d == 64) {
      return dt == DT::kBF16 ? Backward<DT::kBF16, 64, kCap, kDrop>(d, q, k, v, mask, o, d_o, lse,
                                                                    dq, dk, dv, dsum, stream)
                             : Backward<DT::kF16, 64, kCap, kDrop>(d, q, k, v, mask, o, d_o, lse,
                                                                   dq, dk, dv, dsum, stream);
    }
    return dt == DT::kBF16 ? Backward<DT::kBF16, 128, kCap, kDrop>(d, q, k, v, mask, o, d_o, lse,
                                                                   dq, dk, dv, dsum, stream)
                           : Backward<DT::kF16, 128, kCap, kDrop>(d, q, k, v, mask, o, d_o, lse,
                                                                  dq, dk, dv, dsum, stream);
  });
}

}  // namespace ptc::cuda::kernels
