// Flash-style attention (SIMT, f32 accumulation) for f32 / f16 / bf16 inputs.
//
// Forward: one block of 4 warps per (batch, head, tile of kBr = 16 query rows); each warp owns
// 4 query rows. Key / value tiles of kBc = 32 rows go through shared memory (f32); for a query
// row, lane j scores key j of the tile (dot product over the head dim, K padded to avoid bank
// conflicts), then the warp does the online softmax (running max m, sum l, accumulator
// rescaled by exp(m_old - m_new)) and accumulates P V with lane c owning output columns
// c, c + 32, ... (head dims up to 256: the kernel is instantiated for head dims up to 128 and
// up to 256, whose tiles take 82 KiB of dynamic shared memory; Gemma's 256 has no tensor-core
// kernel). Scores never leave registers: no Tq x Tk buffer. A tile
// whose keys are all masked for a row is skipped for that row (a bool causal mask skips half
// the PV work; the QK dots of those tiles are still computed); with causal=1
// (kAttentionMaskCausal) the tiles past the block's last open key are not visited at all, and
// the backward starts each key tile's query loop at its first open query. A row whose keys are
// all masked gives NaN (0 / 0), as the CPU kernel and softmax of all -inf do.
//
// Backward (FlashAttention-2 order): D_t = dO_t . O_t per query row; then one warp per
// (batch, head, tile of 32 keys) with K, V, dK, dV of the tile in shared memory (lane j owns
// key j: its dK / dV rows are written by that lane only), looping over every query row t:
// p_j = exp(s_tj - lse_t), dp_j = dO_t . V_j, ds_j = p_j (dp_j - D_t) (times 1 - tanh^2 of
// the capped score with AttentionDesc::softcap); dV_j += p_j dO_t,
// dK_j += scale ds_j q_t, and dq_t += scale sum_j ds_j K_j (f32 atomics across key tiles).
//
// Attention dropout (AttentionDesc::dropout_threshold): the forward accumulates the dropped
// p_j * factor_j into O (l keeps the undropped sum); the backward redraws factor_j for
// dp_j *= factor_j and dV_j += p_j factor_j dO_t (D_t = dO_t . O_t stays: O is the dropped
// output).
//
// Grouped-query attention (AttentionDesc::hkv < h): query head h reads K / V of kv head
// h / (h / hkv) in place (forward and dq); the backward's warps are per (batch, kv head, key
// tile) and loop over the group's query heads in order, so each dK / dV row is still written
// once, by its lane, after a fixed-order sum.
//
// mma.sync / wgmma tensor-core versions are future work (runtime/cuda/README.md).
#include <cfloat>
#include <cmath>

#include "codegen/cuda/device_util.cuh"

namespace ptc::cuda::kernels {
namespace {

constexpr int kBr = 16;       // query rows per block (forward)
constexpr int kBc = 32;       // keys per tile
constexpr int kWarps = 4;     // forward block: 4 warps, kBr / kWarps rows each
constexpr int kRowsPerWarp = kBr / kWarps;
constexpr int kMaxD = kFlashMaxHeadDim;
// The forward's head-dim bound MD: 128 for head dims up to 128, else 256 (Gemma's). Q, K and V
// tiles are in dynamic shared memory, [kBr][MD], [kBc][MD + 1], [kBc][MD] f32: 41,088 bytes
// for 128 (under the 48 KiB default), 82,048 for 256 (opted in at launch).
constexpr int kNarrowD = 128;
__host__ __device__ constexpr size_t ForwardSmemBytes(int md) {
  return sizeof(float) * (kBr * md + kBc * (md + 1) + kBc * md);
}

template <DT D>
using S = typename Ty<D>::S;

template <DT D>
__device__ __forceinline__ float LoadF(const S<D>* p, int64_t i) {
  return static_cast<float>(Load<D>(p, i));
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Scaled, capped (AttentionDesc::softcap), masked score of (query t, key) given the dot
// product; -inf when masked out. dcap (the backward; may be null): the cap's derivative
// 1 - tanh^2 (1 without softcap).
template <DT D>
__device__ __forceinline__ float MaskedScore(const AttentionDesc& a, float dot, int64_t b,
                                             int64_t h, int64_t t, int64_t key,
                                             const void* mask, float* dcap = nullptr) {
  float s = dot * a.scale;
  if (a.softcap > 0.f) {
    const float th = tanhf(s / a.softcap);
    s = a.softcap * th;
    if (dcap != nullptr) *dcap = 1.f - th * th;
  }
  if (a.mask_kind == kAttentionMaskCausal) {
    if (key > t + a.tk - a.tq) s = -INFINITY;
  } else if (a.mask_kind != 0) {
    const int64_t mi = b * a.mask_strides[0] + h * a.mask_strides[1] + t * a.mask_strides[2] +
                       key * a.mask_strides[3];
    if (a.mask_kind == 1) {
      if (static_cast<const uint8_t*>(mask)[mi]) s = -INFINITY;
    } else {
      s += LoadF<D>(static_cast<const S<D>*>(mask), mi);
    }
  }
  return s;
}

template <DT D, int MD>
__global__ void __launch_bounds__(kWarps * 32)
    FlashForwardKernel(AttentionDesc a, const S<D>* __restrict__ q, const S<D>* __restrict__ k,
                       const S<D>* __restrict__ v, const void* __restrict__ mask,
                       S<D>* __restrict__ o, float* __restrict__ lse) {
  constexpr int kCols = MD / 32;  // output columns per lane
  extern __shared__ float fwd_smem[];
  float (*qs)[MD] = reinterpret_cast<float (*)[MD]>(fwd_smem);
  float (*ks)[MD + 1] = reinterpret_cast<float (*)[MD + 1]>(fwd_smem + kBr * MD);
  float (*vs)[MD] = reinterpret_cast<float (*)[MD]>(fwd_smem + kBr * MD + kBc * (MD + 1));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t q_tiles = (a.tq + kBr - 1) / kBr;
  const int64_t bh = blockIdx.x / q_tiles, qt = blockIdx.x % q_tiles;
  const int64_t b = bh / a.h, h = bh % a.h;
  const int64_t kh = a.hkv > 0 ? h / (a.h / a.hkv) : h;  // the kv head h reads
  const int64_t t0 = qt * kBr;
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const bool drop = a.dropout_threshold != 0;  // AttentionDropout(a)
  const AttentionDropper dropper(a);
  const S<D>* qb = q + b * a.q_strides[0] + h * a.q_strides[1];
  const S<D>* kb = k + b * a.k_strides[0] + kh * a.k_strides[1];
  const S<D>* vb = v + b * a.v_strides[0] + kh * a.v_strides[1];
  for (int i = threadIdx.x; i < kBr * d; i += blockDim.x) {
    const int r = i / d, c = i % d;
    qs[r][c] = t0 + r < a.tq ? LoadF<D>(qb, (t0 + r) * a.q_strides[2] + c) : 0.f;
  }
  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kCols];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.f;
#pragma unroll
    for (int j = 0; j < kCols; ++j) acc[i][j] = 0.f;
  }
  // Causal (kAttentionMaskCausal): no key past the last row's last open key is visited.
  const int64_t k_end = a.mask_kind == kAttentionMaskCausal
                            ? (t0 + kBr + (a.tk - a.tq) < a.tk ? t0 + kBr + (a.tk - a.tq) : a.tk)
                            : a.tk;
  for (int64_t k0 = 0; k0 < k_end; k0 += kBc) {
    const int nk = a.tk - k0 < kBc ? static_cast<int>(a.tk - k0) : kBc;
    __syncthreads();  // the previous tile is no longer read (and qs is written, first time)
    for (int i = threadIdx.x; i < kBc * d; i += blockDim.x) {
      const int j = i / d, c = i % d;
      ks[j][c] = j < nk ? LoadF<D>(kb, (k0 + j) * a.k_strides[2] + c) : 0.f;
    }
    for (int i = threadIdx.x; i < kBc * dv; i += blockDim.x) {
      const int j = i / dv, c = i % dv;
      vs[j][c] = j < nk ? LoadF<D>(vb, (k0 + j) * a.v_strides[2] + c) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int r = warp * kRowsPerWarp + i;
      const int64_t t = t0 + r;
      if (t >= a.tq) continue;  // warp-uniform
      float s = -INFINITY;
      if (lane < nk) {
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot = fmaf(qs[r][c], ks[lane][c], dot);
        s = MaskedScore<D>(a, dot, b, h, t, k0 + lane, mask);
      }
      const float tile_max = WarpMax(s);
      if (tile_max == -INFINITY) continue;  // every key of the tile masked for this row
      const float m_new = fmaxf(m[i], tile_max);
      const float alpha = __expf(m[i] - m_new);  // m[i] == -inf: 0
      const float p = s == -INFINITY ? 0.f : __expf(s - m_new);
      l[i] = l[i] * alpha + WarpSum(p);
      m[i] = m_new;
      // O takes the dropped probabilities (l the undropped ones).
      const float pd =
          drop && p != 0.f ? p * dropper.Factor(AttentionProbIndex(a, b, h, t, k0 + lane)) : p;
#pragma unroll
      for (int j = 0; j < kCols; ++j) acc[i][j] *= alpha;
      for (int jj = 0; jj < nk; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, pd, jj);
#pragma unroll
        for (int j = 0; j < kCols; ++j) {
          const int c = lane + 32 * j;
          if (c < dv) acc[i][j] = fmaf(pj, vs[jj][c], acc[i][j]);
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int64_t t = t0 + warp * kRowsPerWarp + i;
    if (t >= a.tq) continue;
    const float inv = 1.f / l[i];  // l == 0 (all masked): inf, and 0 * inf = NaN below
    S<D>* orow = o + b * a.o_strides[0] + h * a.o_strides[1] + t * a.o_strides[2];
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const int c = lane + 32 * j;
      if (c < dv) Store<D>(orow, c, l[i] > 0.f ? acc[i][j] * inv : NAN);
    }
    if (lse != nullptr && lane == 0) lse[(b * a.h + h) * a.tq + t] = m[i] + logf(l[i]);
  }
}

// D_t = sum_c dO[t, c] O[t, c]: one warp per query row (b, h, t).
template <DT D>
__global__ void __launch_bounds__(256)
    FlashBackwardDotKernel(AttentionDesc a, const S<D>* __restrict__ o,
                           const S<D>* __restrict__ d_o, float* __restrict__ dsum) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.b * a.h * a.tq;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t row = GlobalThread() >> 5; row < rows; row += warps) {
    const int64_t t = row % a.tq, h = (row / a.tq) % a.h, b = row / (a.tq * a.h);
    const int64_t off = b * a.o_strides[0] + h * a.o_strides[1] + t * a.o_strides[2];
    float s = 0.f;
    for (int64_t c = lane; c < a.dv; c += 32) s += LoadF<D>(o, off + c) * LoadF<D>(d_o, off + c);
    s = WarpSum(s);
    if (lane == 0) dsum[row] = s;
  }
}

// One warp per (b, kv head, tile of 32 keys), over the kv head's query heads in turn. Dynamic
// shared memory: K, V, dK, dV of the tile, [32][d_pad] f32 each (d_pad = max(d, dv) + 1).
template <DT D>
__global__ void __launch_bounds__(32)
    FlashBackwardKernel(AttentionDesc a, const S<D>* __restrict__ q, const S<D>* __restrict__ k,
                        const S<D>* __restrict__ v, const void* __restrict__ mask,
                        const S<D>* __restrict__ d_o, const float* __restrict__ lse,
                        const float* __restrict__ dsum, float* __restrict__ dq,
                        float* __restrict__ dk, float* __restrict__ dvo) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x;
  const int d = static_cast<int>(a.d), dv = static_cast<int>(a.dv);
  const int pad = (d > dv ? d : dv) + 1;
  const bool drop = a.dropout_threshold != 0;  // AttentionDropout(a)
  const AttentionDropper dropper(a);
  float* ks = smem;
  float* vs = ks + kBc * pad;
  float* dks = vs + kBc * pad;
  float* dvs = dks + kBc * pad;
  const int64_t k_tiles = (a.tk + kBc - 1) / kBc;
  const int64_t hkv = a.hkv > 0 ? a.hkv : a.h, group = a.h / hkv;
  const int64_t bkh = blockIdx.x / k_tiles, kt = blockIdx.x % k_tiles;
  const int64_t b = bkh / hkv, kh = bkh % hkv;
  const int64_t k0 = kt * kBc;
  const int nk = a.tk - k0 < kBc ? static_cast<int>(a.tk - k0) : kBc;
  const S<D>* kb = k + b * a.k_strides[0] + kh * a.k_strides[1];
  const S<D>* vb = v + b * a.v_strides[0] + kh * a.v_strides[1];
  for (int j = 0; j < kBc; ++j) {
    for (int c = lane; c < pad; c += 32) {
      ks[j * pad + c] = j < nk && c < d ? LoadF<D>(kb, (k0 + j) * a.k_strides[2] + c) : 0.f;
      vs[j * pad + c] = j < nk && c < dv ? LoadF<D>(vb, (k0 + j) * a.v_strides[2] + c) : 0.f;
      dks[j * pad + c] = 0.f;
      dvs[j * pad + c] = 0.f;
    }
  }
  __syncwarp();
  const float* krow = ks + lane * pad;
  const float* vrow = vs + lane * pad;
  float* dkrow = dks + lane * pad;
  float* dvrow = dvs + lane * pad;
  // Causal (kAttentionMaskCausal): queries before the first one that sees key k0 see none of
  // the tile.
  const int64_t t_begin = a.mask_kind == kAttentionMaskCausal && k0 - (a.tk - a.tq) > 0
                              ? k0 - (a.tk - a.tq)
                              : 0;
  for (int64_t h = kh * group; h < (kh + 1) * group; ++h) {  // the group's query heads
    const S<D>* qb = q + b * a.q_strides[0] + h * a.q_strides[1];
    const S<D>* dob = d_o + b * a.o_strides[0] + h * a.o_strides[1];
    float* dqb = dq + b * a.q_strides[0] + h * a.q_strides[1];
    const int64_t row0 = (b * a.h + h) * a.tq;
    for (int64_t t = t_begin; t < a.tq; ++t) {
      const S<D>* qr = qb + t * a.q_strides[2];
      const S<D>* dor = dob + t * a.o_strides[2];
      float p = 0.f, pd = 0.f, ds = 0.f;  // pd: the dropped p (dV)
      if (lane < nk) {
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot = fmaf(LoadF<D>(qr, c), krow[c], dot);  // q: broadcast
        float dcap = 1.f;
        const float s = MaskedScore<D>(a, dot, b, h, t, k0 + lane, mask, &dcap);
        const float lt = lse[row0 + t];
        p = (s == -INFINITY || !(lt > -INFINITY)) ? 0.f : __expf(s - lt);
        float dp = 0.f;
        for (int c = 0; c < dv; ++c) dp = fmaf(LoadF<D>(dor, c), vrow[c], dp);
        pd = p;
        if (drop && p != 0.f) {  // dropout: dP through the forward's mask
          const float f = dropper.Factor(AttentionProbIndex(a, b, h, t, k0 + lane));
          dp *= f;
          pd = p * f;
        }
        // A row with every key masked: D NaN. softcap: dS through the cap's derivative.
        ds = p == 0.f ? 0.f : p * (dp - dsum[row0 + t]) * dcap;
      }
      if (!__any_sync(0xffffffffu, p != 0.f)) continue;  // masked for every key of the tile
      if (lane < nk) {
        for (int c = 0; c < dv; ++c) dvrow[c] = fmaf(pd, LoadF<D>(dor, c), dvrow[c]);
        const float sds = ds * a.scale;
        for (int c = 0; c < d; ++c) dkrow[c] = fmaf(sds, LoadF<D>(qr, c), dkrow[c]);
      }
      // dq_t[c] += scale * sum_j ds_j K[j, c]: lane owns columns c = lane + 32 i.
      float* dqr = dqb + t * a.q_strides[2];
      for (int c0 = 0; c0 < d; c0 += 32) {
        const int c = c0 + lane;
        float acc = 0.f;
        for (int jj = 0; jj < nk; ++jj) {
          const float dsj = __shfl_sync(0xffffffffu, ds, jj);
          if (c < d) acc = fmaf(dsj, ks[jj * pad + c], acc);
        }
        if (c < d) atomicAdd(dqr + c, acc * a.scale);
      }
    }
  }  // query heads
  __syncwarp();
  // dK / dV rows of the tile (lane = column, rows in turn: coalesced stores).
  float* dkb = dk + b * a.k_strides[0] + kh * a.k_strides[1];
  float* dvb = dvo + b * a.v_strides[0] + kh * a.v_strides[1];
  for (int j = 0; j < nk; ++j) {
    for (int c = lane; c < d; c += 32) dkb[(k0 + j) * a.k_strides[2] + c] = dks[j * pad + c];
    for (int c = lane; c < dv; c += 32) dvb[(k0 + j) * a.v_strides[2] + c] = dvs[j * pad + c];
  }
}

// The forward for head dims up to MD: its tiles' dynamic shared memory (opted in past 48 KiB).
template <DT D, int MD>
cudaError_t LaunchForward(const AttentionDesc& d, int64_t blocks, const void* q, const void* k,
                          const void* v, const void* mask, void* o, float* lse,
                          cudaStream_t stream) {
  const size_t smem = ForwardSmemBytes(MD);
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        FlashForwardKernel<D, MD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  FlashForwardKernel<D, MD><<<static_cast<unsigned>(blocks), kWarps * 32, smem, stream>>>(
      d, static_cast<const S<D>*>(q), static_cast<const S<D>*>(k), static_cast<const S<D>*>(v),
      mask, static_cast<S<D>*>(o), lse);
  return cudaGetLastError();
}

}  // namespace

bool FlashAttentionSupported(DT dt, const AttentionDesc& d) {
  return AttentionHeadsValid(d) && (dt == DT::kF32 || dt == DT::kF16 || dt == DT::kBF16) && d.d >= 1 && d.dv >= 1 &&
         d.d <= kMaxD && d.dv <= kMaxD && d.b * d.h * ((d.tq + kBr - 1) / kBr) < (int64_t{1} << 31) &&
         d.b * d.h * ((d.tk + kBc - 1) / kBc) < (int64_t{1} << 31);
}

#define PTC_FLASH_DTYPES(X) X(DT::kF32) X(DT::kF16) X(DT::kBF16)

cudaError_t LaunchFlashAttention(DT dt, const AttentionDesc& d, const void* q, const void* k,
                                 const void* v, const void* mask, void* o, float* lse,
                                 cudaStream_t stream) {
  if (!FlashAttentionSupported(dt, d)) return cudaErrorInvalidValue;
  const int64_t blocks = d.b * d.h * ((d.tq + kBr - 1) / kBr);
  if (blocks == 0 || d.dv == 0) return cudaSuccess;
  const bool wide = d.d > kNarrowD || d.dv > kNarrowD;
#define PTC_FLASH_CASE(DD)                                                                     \
  case DD:                                                                                     \
    return wide ? LaunchForward<DD, kMaxD>(d, blocks, q, k, v, mask, o, lse, stream)           \
                : LaunchForward<DD, kNarrowD>(d, blocks, q, k, v, mask, o, lse, stream);
  switch (dt) {
    PTC_FLASH_DTYPES(PTC_FLASH_CASE)
    default: break;
  }
#undef PTC_FLASH_CASE
  return cudaErrorInvalidValue;
}

cudaError_t LaunchAttentionRowDot(DT dt, const AttentionDesc& d, const void* o, const void* d_o,
                                  float* dsum, cudaStream_t stream) {
  const int64_t rows = d.b * d.h * d.tq;
  if (rows == 0) return cudaSuccess;
#define PTC_FLASH_DOT_CASE(DD)                                                    \
  case DD:                                                                        \
    FlashBackwardDotKernel<DD><<<GridFor(rows * 32, 256), 256, 0, stream>>>(      \
        d, static_cast<const S<DD>*>(o), static_cast<const S<DD>*>(d_o), dsum);   \
    break;
  switch (dt) {
    PTC_FLASH_DTYPES(PTC_FLASH_DOT_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_FLASH_DOT_CASE
  return cudaGetLastError();
}

size_t FlashAttentionBackwardWorkspaceBytes(const AttentionDesc& d) {
  return sizeof(float) * static_cast<size_t>(d.b * d.h * d.tq);
}

cudaError_t LaunchFlashAttentionBackward(DT dt, const AttentionDesc& d, const void* q,
                                         const void* k, const void* v, const void* mask,
                                         const void* o, const void* d_o, const float* lse,
                                         float* dq, float* dk, float* dv, void* workspace,
                                         cudaStream_t stream) {
  if (!FlashAttentionSupported(dt, d)) return cudaErrorInvalidValue;
  // dq is accumulated: zero it: dense [b, h, tq, d] in either layout, or bthd rows of h * d
  // elements q_strides[2] apart (a slot of a packed bt3hd gradient).
  const bool dense = d.q_strides[2] == d.h * d.d || d.q_strides[2] == d.d;
  cudaError_t e =
      dense ? cudaMemsetAsync(dq, 0, sizeof(float) * d.b * d.h * d.tq * d.d, stream)
            : cudaMemset2DAsync(dq, sizeof(float) * d.q_strides[2], 0, sizeof(float) * d.h * d.d,
                                d.b * d.tq, stream);
  if (e != cudaSuccess) return e;
  const int64_t k_blocks = d.b * AttentionKvHeads(d) * ((d.tk + kBc - 1) / kBc);
  if (k_blocks == 0) return cudaSuccess;
  const int pad = static_cast<int>((d.d > d.dv ? d.d : d.dv) + 1);
  const size_t smem = sizeof(float) * 4 * kBc * pad;
  float* dsum = static_cast<float*>(workspace);
  e = LaunchAttentionRowDot(dt, d, o, d_o, dsum, stream);
  if (e != cudaSuccess) return e;
#define PTC_FLASH_BWD_CASE(DD)                                                                 \
  case DD:                                                                                     \
    e = cudaFuncSetAttribute(FlashBackwardKernel<DD>,                                          \
                             cudaFuncAttributeMaxDynamicSharedMemorySize,                      \
                             static_cast<int>(smem));                                          \
    if (e != cudaSuccess) return e;                                                            \
    FlashBackwardKernel<DD><<<static_cast<unsigned>(k_blocks), 32, smem, stream>>>(            \
        d, static_cast<const S<DD>*>(q), static_cast<const S<DD>*>(k),                         \
        static_cast<const S<DD>*>(v), mask, static_cast<const S<DD>*>(d_o), lse, dsum, dq, dk, \
        dv);                                                                                   \
    break;
  switch (dt) {
    PTC_FLASH_DTYPES(PTC_FLASH_BWD_CASE)
    default: return cudaErrorInvalidValue;
  }
#undef PTC_FLASH_BWD_CASE
  return cudaGetLastError();
}

}  // namespace ptc::cuda::kernels
