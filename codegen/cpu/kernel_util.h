// Internal helpers shared by the CPU kernel files: dtype conversion, parallel loops, broadcast
// iteration plans, vectorizable math. Not part of the kernel API (see kernel.h).
#ifndef PTC_CODEGEN_CPU_KERNEL_UTIL_H_
#define PTC_CODEGEN_CPU_KERNEL_UTIL_H_

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ir.h"
#include "compiler/support/status.h"

namespace ptc::cpu::internal {

using KernelPtr = std::unique_ptr<Kernel>;
using KernelOr = absl::StatusOr<KernelPtr>;

// ---------------------------------------------------------------------------------------------
// Scalar conversions for the 16-bit float formats (round to nearest even).

inline float HalfToFloat(uint16_t h) { return _cvtsh_ss(h); }
inline uint16_t FloatToHalf(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }
inline float Bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// ---------------------------------------------------------------------------------------------
// Errors

inline absl::Status Unsupported(const ir::Node& node, absl::string_view what) {
  return absl::UnimplementedError(absl::StrCat(node.Describe(), ": ", what));
}
inline absl::Status Invalid(const ir::Node& node, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", what));
}
inline std::string DTypeStr(ir::DType d) { return std::string(ir::DTypeName(d)); }
// "f32[2,3]" of input / output i.
inline std::string InType(const ir::Node& node, int i) { return node.input(i)->type().ToString(); }
inline std::string OutType(const ir::Node& node, int i) {
  return node.output(i)->type().ToString();
}

// Checks input/output counts.
inline absl::Status CheckArity(const ir::Node& node, int min_in, int max_in, int min_out,
                               int max_out) {
  int ni = static_cast<int>(node.num_inputs()), no = static_cast<int>(node.num_outputs());
  if (ni < min_in || (max_in >= 0 && ni > max_in) || no < min_out || (max_out >= 0 && no > max_out)) {
    return Invalid(node, absl::StrCat("takes ", min_in, "..", max_in, " inputs and ", min_out, "..",
                                      max_out, " outputs, got ", ni, " and ", no));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Parallel loops. Small work runs on the calling thread (waking a worker costs microseconds).
// The pool (thread_pool.cc) has OMP_NUM_THREADS threads (omp_get_max_threads()) including the
// caller; its workers spin briefly and then sleep, whatever OMP_WAIT_POLICY says.

int MaxThreads();
bool InParallelTask();  // inside a ParallelFor chunk (nested loops run serially)
// Runs fn(c) for c in [0, chunks) on the pool; returns when all are done.
void RunChunks(int64_t chunks, const std::function<void(int64_t)>& fn);

// Calls f(begin, end) on disjoint chunks of [0, n) in parallel when n > grain.
template <typename F>
void ParallelFor(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  int nt = MaxThreads();
  if (nt <= 1 || n <= grain || InParallelTask()) {
    f(int64_t{0}, n);
    return;
  }
  int64_t chunks = std::min<int64_t>(nt, (n + grain - 1) / std::max<int64_t>(grain, 1));
  if (chunks <= 1) {
    f(int64_t{0}, n);
    return;
  }
  RunChunks(chunks, [&](int64_t c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    if (b < e) f(b, e);
  });
}

// Elements per thread below which elementwise loops stay serial.
inline constexpr int64_t kElementGrain = 1 << 15;

// ---------------------------------------------------------------------------------------------
// Broadcast plans: output dims with per-input element strides (0 where broadcast), size-1 dims
// dropped and adjacent dims merged, so that typical cases become 1-2 dims.

inline constexpr int kMaxBroadcastInputs = 3;

struct BroadcastPlan {
  int num_inputs = 0;
  std::vector<int64_t> dims;                                  // collapsed; never empty
  std::vector<std::array<int64_t, kMaxBroadcastInputs>> strides;  // [dim][input]
  int64_t total = 0;

  int64_t inner() const { return dims.back(); }
  int64_t inner_stride(int i) const { return strides.back()[i]; }

  // Calls f(out_offset, in_offsets (array), len) for each contiguous-output segment of
  // [begin, end); input i advances by inner_stride(i) per element within a segment.
  template <typename F>
  void ForEachSegment(int64_t begin, int64_t end, F&& f) const {
    if (begin >= end) return;
    const int r = static_cast<int>(dims.size());
    const int64_t in = inner();
    int64_t row = begin / in, col = begin % in;
    // Multi-index of `row` over the outer dims.
    int64_t idx[16] = {0};
    std::array<int64_t, kMaxBroadcastInputs> off{};
    int64_t rem = row;
    for (int d = r - 2; d >= 0; --d) {
      idx[d] = rem % dims[d];
      rem /= dims[d];
      for (int i = 0; i < num_inputs; ++i) off[i] += idx[d] * strides[d][i];
    }
    int64_t pos = begin;
    while (pos < end) {
      int64_t len = std::min(in - col, end - pos);
      std::array<int64_t, kMaxBroadcastInputs> o;
      for (int i = 0; i < num_inputs; ++i) o[i] = off[i] + col * strides[r - 1][i];
      f(pos, o, len);
      pos += len;
      col = 0;
      for (int d = r - 2; d >= 0; --d) {
        ++idx[d];
        for (int i = 0; i < num_inputs; ++i) off[i] += strides[d][i];
        if (idx[d] < dims[d]) break;
        for (int i = 0; i < num_inputs; ++i) off[i] -= idx[d] * strides[d][i];
        idx[d] = 0;
      }
    }
  }
};

// Plan for broadcasting `ins` (each numpy-broadcastable to `out`) to `out`.
absl::StatusOr<BroadcastPlan> MakeBroadcastPlan(const ir::Shape& out,
                                                const std::vector<ir::Shape>& ins);

// ---------------------------------------------------------------------------------------------
// Vectorizable float math (GCC vectorizes loops that call these; no libm calls).
// Accuracy: exp ~1 ulp, tanh ~2 ulp, erf ~3 ulp (checked against double precision in tests).

inline float FastExp(float x) {
  // exp(x) = 2^n * exp(r), r = x - n ln2, |r| <= ln2/2; Cephes polynomial. 2^n is applied as
  // two factors so that results near overflow and subnormal results stay exact.
  float xc = std::min(std::max(x, -104.0f), 88.8f);
  float n = std::floor(xc * 1.44269504088896341f + 0.5f);
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.0f;
  int32_t ni = static_cast<int32_t>(n);
  int32_t n1 = ni / 2, n2 = ni - n1;
  int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  float y = p * s1 * s2;
  y = x < -104.0f ? 0.0f : y;
  y = x > 88.75f ? INFINITY : y;
  return x != x ? x : y;
}

inline float FastTanh(float x) {
  float ax = std::fabs(x);
  // Small |x|: Cephes odd polynomial (relative error ~1e-7).
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = p * z * x + x;
  // Large |x|: 1 - 2 / (exp(2|x|) + 1).
  float e = FastExp(2.0f * std::min(ax, 20.0f));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = std::copysign(big, x);
  return ax < 0.625f ? small : big;
}

inline float FastSigmoid(float x) { return 1.0f / (1.0f + FastExp(-x)); }

inline float FastErf(float x) {
  // Rational approximation on [-4, 4] (Eigen / XLA); erf(|x| > 4) == 1 in f32.
  float xc = std::min(std::max(x, -4.0f), 4.0f);
  float x2 = xc * xc;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 + -2.10102402082508e-06f;
  p = p * x2 + -5.69250639462346e-05f;
  p = p * x2 + -7.34990630326855e-04f;
  p = p * x2 + -2.95459980854025e-03f;
  p = p * x2 + -1.60960333262415e-02f;
  p = p * xc;
  float q = -1.45660718464996e-05f;
  q = q * x2 + -2.13374055278905e-04f;
  q = q * x2 + -1.68282697438203e-03f;
  q = q * x2 + -7.37332916720468e-03f;
  q = q * x2 + -1.42647390514189e-02f;
  return p / q;
}

// AVX2 helpers for row reductions (float sum/max reductions do not auto-vectorize without
// -ffast-math): 8-lane FastExp, horizontal sum and max.
inline __m256 Exp8(__m256 x) {
  // FastExp on 8 lanes: same range reduction and polynomial.
  // Operand order matters: max/min return their second operand when either is NaN, so a NaN
  // x stays NaN through the clamp and the result (as std::exp gives).
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(88.7f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
  const __m256 n = _mm256_floor_ps(
      _mm256_fmadd_ps(xc, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
  const __m256 r2 = _mm256_mul_ps(r, r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(p, r2, r), _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  // x < -104 (including -inf: masked scores) -> 0; NaN is not < -104 and stays NaN.
  return _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-104.0f), _CMP_LT_OQ), y);
}

inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float HorizontalMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Math with one implementation per type: fast vectorizable for float, libm for double.
inline float Exp(float x) { return FastExp(x); }
inline double Exp(double x) { return std::exp(x); }
inline float Tanh(float x) { return FastTanh(x); }
inline double Tanh(double x) { return std::tanh(x); }
inline float Erf(float x) { return FastErf(x); }
inline double Erf(double x) { return std::erf(x); }
inline float Sigmoid(float x) { return FastSigmoid(x); }
inline double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// gelu(x): the exact erf form, or the tanh form (approximate="tanh"), for float as
// x * sigmoid(2u) == 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). The gelu op's
// kernel (elementwise.cc) and GeGLU's (swiglu.cc).
template <typename T>
inline T GeluValue(T x, bool tanh_approx) {
  if (!tanh_approx) return T(0.5) * x * (T(1) + Erf(x * T(0.70710678118654752440)));
  const T u = T(0.79788456080286535588) * (x + T(0.044715) * x * x * x);
  if constexpr (std::is_same_v<T, float>) {
    return x / (1.0f + FastExp(-2.0f * u));
  } else {
    return T(0.5) * x * (T(1) + std::tanh(u));
  }
}

// gelu'(x): the tanh form's (approximate="tanh") or the exact erf form's derivative; gelu_grad
// and gemm_gelu_grad multiply their incoming gradient by it.
template <typename T>
inline T GeluDerivative(T v, bool tanh_approx) {
  if (tanh_approx) {
    const T k0 = static_cast<T>(0.7978845608028654), k1 = static_cast<T>(0.044715);
    const T t = Tanh(k0 * (v + k1 * v * v * v));
    return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * k0 * (T(1) + T(3) * k1 * v * v);
  }
  const T cdf = T(0.5) * (T(1) + Erf(v * static_cast<T>(0.7071067811865476)));
  const T pdf = static_cast<T>(0.3989422804014327) * Exp(T(-0.5) * v * v);
  return cdf + v * pdf;
}

// ---------------------------------------------------------------------------------------------
// Kernel factories, one per op family (defined in the other files of this folder).

KernelOr MakeElementwiseKernel(const ir::Node& node);  // binary, compare, logical, unary, gelu
KernelOr MakeWhereKernel(const ir::Node& node);
KernelOr MakeCastKernel(const ir::Node& node);
KernelOr MakeMatMulKernel(const ir::Node& node);
KernelOr MakeGemmKernel(const ir::Node& node);
KernelOr MakeFusedMatMulKernel(const ir::Node& node);  // fused_matmul
KernelOr MakeGemmBgradKernel(const ir::Node& node);    // gemm_bgrad
KernelOr MakeGemmGeluGradKernel(const ir::Node& node);  // gemm_gelu_grad
KernelOr MakeRotaryKernel(const ir::Node& node);        // rotary (rotary.cc)
KernelOr MakeSwigluKernel(const ir::Node& node);        // swiglu (swiglu.cc)
// `node` on f16 / bf16 operands through the f32 kernel `factory` makes: the half operands are
// widened exactly into scratch, the half outputs rounded once (kernel.cc).
KernelOr WrapHalfViaF32(const ir::Node& node, KernelOr (*factory)(const ir::Node&));
KernelOr MakeAttentionKernel(const ir::Node& node);    // attention (attention.cc)
KernelOr MakeAttentionGradKernel(const ir::Node& node);  // attention_grad (attention.cc)
KernelOr MakeLinearCeLossKernel(const ir::Node& node);  // linear_ce_loss (loss.cc)
// OpenBLAS's own threads off (once per process): BLAS calls run on ptc's threads (linalg.cc).
void SingleThreadedBlas();
// C = alpha op(A) op(B) + beta C (row-major), one GEMM on the calling thread: oneDNN's sgemm
// where ptc is built with it (PTC_HAVE_DNNL), else OpenBLAS (linalg.cc).
void SerialSgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// The same on ptc's threads, one serial GEMM per tile (linalg.cc).
void ParallelSgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc);
KernelOr MakeSoftmaxKernel(const ir::Node& node);  // softmax, log_softmax
KernelOr MakeLayerNormKernel(const ir::Node& node);
KernelOr MakeReduceKernel(const ir::Node& node);
KernelOr MakeCopyKernel(const ir::Node& node);  // reshape, identity
KernelOr MakeExpandKernel(const ir::Node& node);
KernelOr MakeTransposeKernel(const ir::Node& node);
KernelOr MakeSplitKernel(const ir::Node& node);
KernelOr MakeSliceKernel(const ir::Node& node);
KernelOr MakeConcatKernel(const ir::Node& node);
KernelOr MakeGatherKernel(const ir::Node& node);
KernelOr MakeTriluKernel(const ir::Node& node);
KernelOr MakeConstantKernel(const ir::Node& node);
KernelOr MakeDropoutKernel(const ir::Node& node);
KernelOr MakeSoftmaxCeLossKernel(const ir::Node& node);
KernelOr MakeNllLossKernel(const ir::Node& node);

// ---------------------------------------------------------------------------------------------
// Dropout (compiler/ir/dropout.h's mask) applied to a range of values, vectorized.

// splitmix64's finalizer (ir::DropoutMix) on 4 lanes: 64-bit products from 32-bit ones.
inline __m256i DropoutMul64(__m256i z, uint64_t c) {
  const __m256i clo = _mm256_set1_epi64x(static_cast<int64_t>(c & 0xffffffffu));
  const __m256i chi = _mm256_set1_epi64x(static_cast<int64_t>(c >> 32));
  const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(z, 32), clo),
                                         _mm256_mul_epu32(z, chi));
  return _mm256_add_epi64(_mm256_mul_epu32(z, clo), _mm256_slli_epi64(cross, 32));
}
inline __m256i DropoutMix4(__m256i z) {
  z = DropoutMul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xbf58476d1ce4e5b9ull);
  z = DropoutMul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94d049bb133111ebull);
  return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}
// The keep masks of the 16 elements of block `block` (elements 16 block ..): its 4 group hashes
// as one vector; 16-bit word 4q + f is field f of group q, so element k < 8 is word 2k and
// element 8 + k word 2k + 1: the low / high halves of 32-bit lane k. lo: elements 0..7, hi:
// 8..15, all ones where kept. threshold < 2^16.
inline void DropoutBlockMasks(uint64_t key, uint64_t block, uint32_t threshold, __m256i& lo,
                              __m256i& hi) {
  const uint64_t g0 = ir::DropoutGroup(block << 4);  // the block's groups: g0 .. g0 + 3
  const __m256i z = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(key + g0)),
                                     _mm256_setr_epi64x(0, 1, 2, 3));
  const __m256i h = DropoutMix4(z);
  const __m256i t = _mm256_set1_epi16(static_cast<int16_t>(threshold));
  const __m256i keep = _mm256_cmpeq_epi16(_mm256_max_epu16(h, t), h);  // h >= t, unsigned
  lo = _mm256_srai_epi32(_mm256_slli_epi32(keep, 16), 16);
  hi = _mm256_srai_epi32(keep, 16);
}

// d[j] = element start + j kept ? a[j] * scale : 0 for j in [0, n) (d may be a; a dropped NaN
// is 0, as the scalar select). Whole 16-element blocks of f32 / f64 through DropoutBlockMasks,
// the rest through ir::DropoutForEach: the same bits (DropoutApply in kernels_test.cc).
template <typename T>
void DropoutApply(uint64_t key, uint64_t start, int64_t n, uint32_t threshold, T scale,
                  const T* a, T* d) {
  int64_t j = 0;
  auto scalar = [&](int64_t count) {
    ir::DropoutForEach(key, start + static_cast<uint64_t>(j), count, threshold,
                       [&](int64_t k, bool keep) { d[j + k] = keep ? a[j + k] * scale : T(0); });
    j += count;
  };
  constexpr bool kVector = std::is_same_v<T, float> || std::is_same_v<T, double>;
  if (!kVector || threshold == 0 || threshold >= ir::kDropoutDropAll || n < 16) {
    scalar(n);
    return;
  }
  scalar(std::min<int64_t>(n, (16 - static_cast<int64_t>(start & 15)) & 15));  // to a block
  for (; j + 16 <= n; j += 16) {
    __m256i lo, hi;
    DropoutBlockMasks(key, (start + static_cast<uint64_t>(j)) >> 4, threshold, lo, hi);
    if constexpr (std::is_same_v<T, float>) {
      const __m256 s = _mm256_set1_ps(scale);
      const __m256 x0 = _mm256_mul_ps(_mm256_loadu_ps(a + j), s);
      const __m256 x1 = _mm256_mul_ps(_mm256_loadu_ps(a + j + 8), s);
      _mm256_storeu_ps(d + j, _mm256_and_ps(_mm256_castsi256_ps(lo), x0));
      _mm256_storeu_ps(d + j + 8, _mm256_and_ps(_mm256_castsi256_ps(hi), x1));
    } else if constexpr (std::is_same_v<T, double>) {
      const __m256d s = _mm256_set1_pd(scale);
      const __m256i m[4] = {_mm256_cvtepi32_epi64(_mm256_castsi256_si128(lo)),
                            _mm256_cvtepi32_epi64(_mm256_extracti128_si256(lo, 1)),
                            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(hi)),
                            _mm256_cvtepi32_epi64(_mm256_extracti128_si256(hi, 1))};
      for (int q = 0; q < 4; ++q) {
        const __m256d x = _mm256_mul_pd(_mm256_loadu_pd(a + j + 4 * q), s);
        _mm256_storeu_pd(d + j + 4 * q, _mm256_and_pd(_mm256_castsi256_pd(m[q]), x));
      }
    }
  }
  scalar(n - j);
}

}  // namespace ptc::cpu::internal

#endif  // PTC_CODEGEN_CPU_KERNEL_UTIL_H_
