// attention(q, k, v[, mask]) {scale, softcap, layout}: softmax(q k^T * scale [capped]
// [masked]) v per batch and head (op definition: compiler/ir/ops_fused.cc; made by
// passes/fuse_attention.cc). softcap > 0 caps each scaled score s to softcap * tanh(s /
// softcap) before the mask (Gemma 2); the backward multiplies dS by its derivative 1 - tanh^2.
//
// Float attention over at most kWholeRowKeys keys (training and decoding lengths): per (batch,
// head) and block of kQueryBlock query rows, S = q k^T against every open key and O = P v as
// two single-threaded library GEMMs reading q, k, v in place, with one softmax pass per row
// between them (the same row pass, Probs, as attention_grad's recompute).
//
// Otherwise flash-style: per (batch, head) and block of kQueryBlock query rows, key blocks of kKeyBlock
// are visited with an online softmax (running row max m, running sum l, output accumulator
// rescaled by exp(m_old - m_new)), so the scores never exist beyond a kQueryBlock x kKeyBlock
// tile in cache, whatever the sequence length. K is transposed once per (batch, head) into a
// [D, Tk] buffer so that both products run through one register-blocked micro-kernel; q, v and
// the output are read and written in place through row strides, which is what makes the "bthd"
// layout (heads interleaved in the projection output) free.
//
// Parallel over (batch, head) pairs, and over query blocks too when there are fewer pairs than
// twice the threads. Masks broadcast through per-dimension strides (0 where broadcast).
// Grouped-query attention (k / v with hkv < h heads): query head hi reads kv head
// hi / (h / hkv) in place; attention_grad sums each kv head's dk / dv over its group's query
// heads in one work item, in head order (deterministic, no repeated K / V anywhere).
// Attention dropout (attribute dropout > 0): the probabilities of each block are dropped
// (compiler/ir/dropout.h's mask, element ((b H + h) Tq + t) Tk + j, drawn from the counter
// operand) after the softmax's sums and before the product with v; attention_grad redraws the
// mask: dP = (dy v^T) * keep / (1 - dropout), dS = P (dP - rowsum(P dP)), dv += P'^T dy with
// P' the dropped probabilities.
#include <immintrin.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ops_fused.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

constexpr int64_t kQueryBlock = 32;
constexpr int64_t kKeyBlock = 32;
// Up to this many keys, float attention takes a query block's scores against all its open keys
// at once: two library GEMMs per block and one softmax pass per row, instead of the online
// softmax over key tiles (the block's kQueryBlock x Tk scores, <= 64 KiB, stay in L2).
// Measured on the GPT bench's step (T = 128, four layers), A/B in the same minute: 5.8-7.3 ms
// -> 4.3-5.1 ms (bench/README.md).
constexpr int64_t kWholeRowKeys = 512;
// attention_grad's float products through single-threaded OpenBLAS with transposed operands
// (measured 10.7 -> 9.3 ms on the GPT bench's step against BlockGemm plus explicit transposes).
constexpr bool kUseBlasGrad = true;

// 1 + the last key any of `rows` query rows attends to under a bool mask (true = masked out):
// keys from there on are masked for all of them. mr0 is the first row, rs / cs the row and
// column strides. Rows are visited last first, so a causal mask (whose last row opens every
// key) answers after one row.
int64_t OpenKeyEnd(const bool* mr0, int64_t rows, int64_t tk, int64_t rs, int64_t cs) {
  int64_t n = 0;
  for (int64_t r = rows - 1; r >= 0 && n < tk; --r) {
    const bool* mr = mr0 + r * rs;
    for (int64_t j = tk - 1; j >= n; --j) {
      if (!mr[j * cs]) {
        n = j + 1;
        break;
      }
    }
  }
  return n;
}

// C[m,n] (+)= A[m,k] B[k,n], row-major with leading dimensions; 4x16 AVX2 tiles for float.
template <typename T>
void BlockGemm(bool accumulate, int64_t m, int64_t n, int64_t k, const T* __restrict a,
               int64_t lda, const T* __restrict b, int64_t ldb, T* __restrict c, int64_t ldc) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    for (; i + 4 <= m; i += 4) {
      int64_t j = 0;
      for (; j + 16 <= n; j += 16) {
        __m256 c0[4], c1[4];
        for (int r = 0; r < 4; ++r) {
          float* cr = c + (i + r) * ldc + j;
          c0[r] = accumulate ? _mm256_loadu_ps(cr) : _mm256_setzero_ps();
          c1[r] = accumulate ? _mm256_loadu_ps(cr + 8) : _mm256_setzero_ps();
        }
        const float* bp = b + j;
        for (int64_t p = 0; p < k; ++p, bp += ldb) {
          const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
          for (int r = 0; r < 4; ++r) {
            const __m256 av = _mm256_broadcast_ss(a + (i + r) * lda + p);
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
          }
        }
        for (int r = 0; r < 4; ++r) {
          float* cr = c + (i + r) * ldc + j;
          _mm256_storeu_ps(cr, c0[r]);
          _mm256_storeu_ps(cr + 8, c1[r]);
        }
      }
      for (; j < n; ++j) {
        for (int r = 0; r < 4; ++r) {
          float s = accumulate ? c[(i + r) * ldc + j] : 0.0f;
          for (int64_t p = 0; p < k; ++p) s += a[(i + r) * lda + p] * b[p * ldb + j];
          c[(i + r) * ldc + j] = s;
        }
      }
    }
  }
  for (; i < m; ++i) {
    T* cr = c + i * ldc;
    if (!accumulate) {
      for (int64_t j = 0; j < n; ++j) cr[j] = T(0);
    }
    for (int64_t p = 0; p < k; ++p) {
      const T av = a[i * lda + p];
      const T* br = b + p * ldb;
      for (int64_t j = 0; j < n; ++j) cr[j] += av * br[j];
    }
  }
}

// Row helpers of the online softmax: AVX2 for float (the float sum/max reductions do not
// auto-vectorize without -ffast-math), plain loops otherwise.
template <typename T>
void ScaleRow(T* x, int64_t n, T scale) {
  for (int64_t j = 0; j < n; ++j) x[j] *= scale;
}

template <typename T>
T RowMax(const T* x, int64_t n) {
  T mx = -std::numeric_limits<T>::infinity();
  int64_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
    __m256 m = _mm256_set1_ps(mx);
    for (; j + 8 <= n; j += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + j));
    mx = HorizontalMax(m);
  }
  for (; j < n; ++j) mx = std::max(mx, x[j]);
  return mx;
}

// x[j] = exp(x[j] - mx); returns the sum. Scores of -inf (masked) give 0.
template <typename T>
T ExpRowAndSum(T* x, int64_t n, T mx) {
  T sum = T(0);
  int64_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
    const __m256 m = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
      const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), m));
      _mm256_storeu_ps(x + j, e);
      acc = _mm256_add_ps(acc, e);
    }
    sum = HorizontalSum(acc);
  }
  for (; j < n; ++j) {
    const T e = Exp(x[j] - mx);
    x[j] = e;
    sum += e;
  }
  return sum;
}

// x[j] = masked[j * ms] ? -inf : x[j] * scale (a bool mask row, true = masked out).
template <typename T>
void MaskScaleRow(T* x, const bool* masked, int64_t ms, int64_t n, T scale) {
  int64_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
    if (ms == 1) {
      const __m256 sv = _mm256_set1_ps(scale);
      const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
      for (; j + 8 <= n; j += 8) {
        int64_t bytes;
        std::memcpy(&bytes, masked + j, sizeof(bytes));
        const __m256i m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes));
        const __m256 hide = _mm256_castsi256_ps(_mm256_cmpgt_epi32(m, _mm256_setzero_si256()));
        _mm256_storeu_ps(x + j, _mm256_blendv_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), sv), ninf, hide));
      }
    }
  }
  for (; j < n; ++j) x[j] = masked[j * ms] ? -std::numeric_limits<T>::infinity() : x[j] * scale;
}

// sum(a[j] * b[j]), AVX2 lanes for float.
template <typename T>
T Dot(const T* a, const T* b, int64_t n) {
  T sum = T(0);
  int64_t j = 0;
  if constexpr (std::is_same_v<T, float>) {
    __m256 acc = _mm256_setzero_ps();
    for (; j + 8 <= n; j += 8) {
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc);
    }
    sum = HorizontalSum(acc);
  }
  for (; j < n; ++j) sum += a[j] * b[j];
  return sum;
}

// What attention and attention_grad share: the shapes, and where a (batch, head) starts.
template <typename T>
class AttentionBase : public Kernel {
 public:
  using Value = T;
  struct Plan {
    int64_t b, h, tq, tk, d, dv;
    int64_t hkv;  // k / v heads (h, or a divisor of h: grouped-query attention)
    bool bthd;
    T scale;
    T softcap;                        // 0: none
    int mask_kind;                    // 0 none, 1 bool (true = masked out), 2 additive
    std::array<int64_t, 4> mask_str;  // element strides over [B, H, Tq, Tk], 0 = broadcast
    double dropout;                   // 0: none
    uint64_t seed;
    int counter_at;                   // the counter's input index; -1: none (counter 0)
    bool counter_i32;
  };
  explicit AttentionBase(Plan p) : p_(p) {}

 protected:
  // The dropout mask's key for this run (its counter read from the inputs).
  uint64_t DropoutKey(absl::Span<const void* const> inputs) const {
    return ir::DropoutKey(p_.seed, ir::DropoutCounter(
                                       p_.counter_at >= 0 ? inputs[p_.counter_at] : nullptr,
                                       p_.counter_i32));
  }
  // Attention dropout on n probabilities of (bi, hi), query t, keys j0..: each times
  // keep / (1 - dropout). Nothing without dropout.
  void Drop(T* x, int64_t n, uint64_t key, int64_t bi, int64_t hi, int64_t t,
            int64_t j0) const {
    if (!(p_.dropout > 0)) return;
    const uint32_t threshold = ir::DropoutThreshold(p_.dropout);
    const T scale = static_cast<T>(ir::DropoutScale(p_.dropout));
    const uint64_t base = static_cast<uint64_t>(((bi * p_.h + hi) * p_.tq + t) * p_.tk + j0);
    internal::DropoutApply(key, base, n, threshold, scale, x, x);
  }

  // Row stride and (b, h) base offset of a [B,H,T,E] or [B,T,H,E] tensor.
  int64_t RowStride(int64_t e) const { return p_.bthd ? p_.h * e : e; }
  int64_t Base(int64_t bi, int64_t hi, int64_t t, int64_t e) const {
    return p_.bthd ? (bi * t * p_.h + hi) * e : (bi * p_.h + hi) * t * e;
  }
  // The same for k / v (hkv heads), at the kv head that query head hi reads.
  int64_t KvRowStride(int64_t e) const { return p_.bthd ? p_.hkv * e : e; }
  int64_t KvBase(int64_t bi, int64_t hi, int64_t t, int64_t e) const {
    const int64_t kh = hi / (p_.h / p_.hkv);
    return p_.bthd ? (bi * t * p_.hkv + kh) * e : (bi * p_.hkv + kh) * t * e;
  }

  // softcap > 0: the raw scores x[0, n) become softcap * tanh(x * scale / softcap) (the
  // scale applied: MaskScale() is then 1), and deriv (when not null) their derivative with
  // respect to the scaled score, 1 - tanh^2. Without softcap nothing happens.
  void Cap(T* x, int64_t n, T* deriv = nullptr) const {
    if (!(p_.softcap > T(0))) return;
    const T in = p_.scale / p_.softcap;
    for (int64_t j = 0; j < n; ++j) {
      const T t = std::tanh(x[j] * in);
      x[j] = p_.softcap * t;
      if (deriv != nullptr) deriv[j] = T(1) - t * t;
    }
  }
  // The factor the mask step multiplies the scores by: the scale, or 1 after Cap.
  T MaskScale() const { return p_.softcap > T(0) ? T(1) : p_.scale; }

  // Scores -> probabilities in place: rows `rows` query rows from i0 of (bi, hi), row r at
  // s + r * lds, over keys [0, n): scale, cap, mask, softmax. A row whose keys are all masked
  // becomes NaN, as softmax gives (the forward's output), or zeros with `empty_rows_zero` (the
  // backward: such a row adds nothing to any gradient, as in the CUDA kernels). lse
  // (optional): each row's log-sum-exp (-inf when masked). deriv (optional, with softcap; row
  // r at deriv + r * lds): the cap's derivative per score (Cap).
  void Probs(T* s, int64_t lds, int64_t rows, int64_t n, const void* mask, int64_t bi,
             int64_t hi, int64_t i0, float* lse = nullptr, bool empty_rows_zero = false,
             T* deriv = nullptr) const {
    const T neg_inf = -std::numeric_limits<T>::infinity();
    const int64_t mask_base = bi * p_.mask_str[0] + hi * p_.mask_str[1];
    const T scale = MaskScale();
    for (int64_t r = 0; r < rows; ++r) {
      T* sr = s + r * lds;
      Cap(sr, n, deriv != nullptr ? deriv + r * lds : nullptr);
      if (p_.mask_kind == 1) {
        const bool* mr = static_cast<const bool*>(mask) + mask_base + (i0 + r) * p_.mask_str[2];
        MaskScaleRow(sr, mr, p_.mask_str[3], n, scale);
      } else if (p_.mask_kind == 2) {
        const T* mr = static_cast<const T*>(mask) + mask_base + (i0 + r) * p_.mask_str[2];
        for (int64_t j = 0; j < n; ++j) sr[j] = sr[j] * scale + mr[j * p_.mask_str[3]];
      } else {
        ScaleRow(sr, n, scale);
      }
      const T mx = RowMax(sr, n);
      const T sum = mx == neg_inf ? T(0) : ExpRowAndSum(sr, n, mx);
      if (sum == T(0) && empty_rows_zero) {
        std::fill(sr, sr + n, T(0));
      } else {
        ScaleRow(sr, n, sum == T(0) ? std::numeric_limits<T>::quiet_NaN() : T(1) / sum);
      }
      if (lse != nullptr) lse[r] = static_cast<float>(sum == T(0) ? neg_inf : mx + std::log(sum));
    }
  }

  // 1 + the last key any of `rows` query rows from i0 attends to: keys past it are masked for
  // all of them (a bool mask's tail, e.g. the causal triangle) and the products stop there.
  // Every key when none is open, so that fully masked rows keep their NaN.
  int64_t KeyEnd(const void* mask, int64_t bi, int64_t hi, int64_t i0, int64_t rows) const {
    if (p_.mask_kind != 1) return p_.tk;
    const bool* m0 = static_cast<const bool*>(mask) + bi * p_.mask_str[0] +
                     hi * p_.mask_str[1] + i0 * p_.mask_str[2];
    const int64_t n = OpenKeyEnd(m0, rows, p_.tk, p_.mask_str[2], p_.mask_str[3]);
    return n == 0 ? p_.tk : n;
  }

  Plan p_;
};

template <typename T>
class AttentionKernel : public AttentionBase<T> {
 public:
  using Plan = typename AttentionBase<T>::Plan;
  explicit AttentionKernel(Plan p) : AttentionBase<T>(p) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* q = static_cast<const T*>(inputs[0]);
    const T* k = static_cast<const T*>(inputs[1]);
    const T* v = static_cast<const T*>(inputs[2]);
    const void* mask = p_.mask_kind != 0 ? inputs[3] : nullptr;
    T* out = static_cast<T*>(outputs[0]);
    float* lse = outputs.size() > 1 ? static_cast<float*>(outputs[1]) : nullptr;  // [B, H, Tq]
    const uint64_t key = this->DropoutKey(inputs);
    const int64_t pairs = p_.b * p_.h;
    const int64_t q_blocks = (p_.tq + kQueryBlock - 1) / kQueryBlock;
    int64_t chunks = 1;  // query-block chunks per pair
    const int nt = MaxThreads();
    if (pairs < 2 * nt) chunks = std::min<int64_t>(q_blocks, (2 * nt + pairs - 1) / pairs);
    if constexpr (std::is_same_v<T, float>) {
      if (p_.tk <= kWholeRowKeys && p_.tk > 0 && p_.d > 0) {
        SingleThreadedBlas();
        ParallelFor(pairs * q_blocks, 1, [&](int64_t w0, int64_t w1) {
          std::vector<float> s(kQueryBlock * p_.tk);
          for (int64_t w = w0; w < w1; ++w) {
            const int64_t pair = w / q_blocks;
            WholeRows(q, k, v, mask, out, lse, pair / p_.h, pair % p_.h,
                      (w % q_blocks) * kQueryBlock, s.data(), key);
          }
        });
        return absl::OkStatus();
      }
    }
    const double work = static_cast<double>(pairs) * p_.tq * p_.tk * (p_.d + p_.dv);
    ParallelFor(pairs * chunks, work < 1e6 ? pairs * chunks : 1, [&](int64_t w0, int64_t w1) {
      std::vector<T> kt(p_.d * p_.tk);
      std::vector<T> s(kQueryBlock * kKeyBlock), acc(kQueryBlock * p_.dv);
      std::vector<T> row_max(kQueryBlock), row_sum(kQueryBlock);
      int64_t kt_pair = -1;
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t pair = w / chunks, chunk = w % chunks;
        const int64_t bi = pair / p_.h, hi = pair % p_.h;
        if (kt_pair != pair) {
          TransposeK(k, bi, hi, kt.data(), OpenKeys(mask, bi, hi));
          kt_pair = pair;
        }
        const int64_t qb0 = q_blocks * chunk / chunks, qb1 = q_blocks * (chunk + 1) / chunks;
        for (int64_t qb = qb0; qb < qb1; ++qb) {
          QueryBlock(q, kt.data(), v, mask, out, lse, bi, hi, qb * kQueryBlock, s.data(),
                     acc.data(), row_max.data(), row_sum.data(), key);
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  using AttentionBase<T>::p_;
  using AttentionBase<T>::RowStride;
  using AttentionBase<T>::Base;
  using AttentionBase<T>::KvRowStride;
  using AttentionBase<T>::KvBase;

  // Keys [0, n) hold every key some query of (bi, hi) attends to under a bool mask (all of
  // them otherwise): the decoder's mask row opens only the filled part of the KV cache, whose
  // tail need not be transposed (key tiles past n are skipped as fully masked).
  int64_t OpenKeys(const void* mask, int64_t bi, int64_t hi) const {
    if (p_.mask_kind != 1) return p_.tk;
    const bool* mb = static_cast<const bool*>(mask) + bi * p_.mask_str[0] + hi * p_.mask_str[1];
    return OpenKeyEnd(mb, p_.tq, p_.tk, p_.mask_str[2], p_.mask_str[3]);
  }

  void TransposeK(const T* k, int64_t bi, int64_t hi, T* kt, int64_t n) const {
    const T* kb = k + KvBase(bi, hi, p_.tk, p_.d);
    const int64_t ld = KvRowStride(p_.d);
    for (int64_t t = 0; t < n; ++t) {
      const T* row = kb + t * ld;
      for (int64_t e = 0; e < p_.d; ++e) kt[e * p_.tk + t] = row[e];
    }
  }

  // Query rows [i0, i0 + kQueryBlock) of (bi, hi) on the whole-row path (float): S = q k^T
  // over the open keys into s ([rows, Tk]), P = softmax in place (dropped), out = P v.
  void WholeRows(const float* q, const float* k, const float* v, const void* mask, float* out,
                 float* lse, int64_t bi, int64_t hi, int64_t i0, float* s, uint64_t key) const {
    const int64_t rows = std::min(kQueryBlock, p_.tq - i0), tk = p_.tk;
    const int64_t ldd = RowStride(p_.d), lde = RowStride(p_.dv);
    const int64_t tke = this->KeyEnd(mask, bi, hi, i0, rows);
    SerialSgemm(false, true, rows, tke, p_.d, 1.0f, q + Base(bi, hi, p_.tq, p_.d) + i0 * ldd, ldd,
                k + KvBase(bi, hi, tk, p_.d), KvRowStride(p_.d), 0.0f, s, tk);
    this->Probs(s, tk, rows, tke, mask, bi, hi, i0,
                lse != nullptr ? lse + (bi * p_.h + hi) * p_.tq + i0 : nullptr);
    for (int64_t r = 0; r < rows; ++r) this->Drop(s + r * tk, tke, key, bi, hi, i0 + r, 0);
    SerialSgemm(false, false, rows, p_.dv, tke, 1.0f, s, tk, v + KvBase(bi, hi, tk, p_.dv),
                KvRowStride(p_.dv), 0.0f, out + Base(bi, hi, p_.tq, p_.dv) + i0 * lde, lde);
  }

  void QueryBlock(const T* q, const T* kt, const T* v, const void* mask, T* out, float* lse,
                  int64_t bi, int64_t hi, int64_t i0, T* s, T* acc, T* row_max,
                  T* row_sum, uint64_t key) const {
    const int64_t rows = std::min(kQueryBlock, p_.tq - i0);
    const int64_t dv = p_.dv;
    const T* qb = q + Base(bi, hi, p_.tq, p_.d) + i0 * RowStride(p_.d);
    const T* vb = v + KvBase(bi, hi, p_.tk, dv);
    const T neg_inf = -std::numeric_limits<T>::infinity();
    for (int64_t r = 0; r < rows; ++r) {
      row_max[r] = neg_inf;
      row_sum[r] = T(0);
    }
    std::fill(acc, acc + rows * dv, T(0));
    const int64_t mask_base = bi * p_.mask_str[0] + hi * p_.mask_str[1];
    for (int64_t j0 = 0; j0 < p_.tk; j0 += kKeyBlock) {
      const int64_t cols = std::min(kKeyBlock, p_.tk - j0);
      // A bool mask that hides the whole tile (the upper triangle of a causal mask) skips both
      // products: the tile would contribute exp(-inf) = 0 to every row.
      bool any_masked = false;
      if (p_.mask_kind == 1) {
        int64_t open = 0;
        for (int64_t r = 0; r < rows; ++r) {
          const bool* mr = static_cast<const bool*>(mask) + mask_base + (i0 + r) * p_.mask_str[2];
          for (int64_t j = 0; j < cols; ++j) open += !mr[(j0 + j) * p_.mask_str[3]];
        }
        if (open == 0) continue;
        any_masked = open != rows * cols;
      }
      BlockGemm<T>(false, rows, cols, p_.d, qb, RowStride(p_.d), kt + j0, p_.tk, s, kKeyBlock);
      const T scale = this->MaskScale();
      for (int64_t r = 0; r < rows; ++r) {
        T* sr = s + r * kKeyBlock;
        this->Cap(sr, cols);
        if (p_.mask_kind == 1 && any_masked) {
          const bool* mr = static_cast<const bool*>(mask) + mask_base + (i0 + r) * p_.mask_str[2];
          const int64_t ms = p_.mask_str[3];
          for (int64_t j = 0; j < cols; ++j) {
            sr[j] = mr[(j0 + j) * ms] ? neg_inf : sr[j] * scale;
          }
        } else if (p_.mask_kind == 2) {
          const T* mr = static_cast<const T*>(mask) + mask_base + (i0 + r) * p_.mask_str[2];
          const int64_t ms = p_.mask_str[3];
          for (int64_t j = 0; j < cols; ++j) sr[j] = sr[j] * scale + mr[(j0 + j) * ms];
        } else {
          ScaleRow(sr, cols, scale);
        }
        const T mx = std::max(row_max[r], RowMax(sr, cols));
        if (mx == neg_inf) {  // everything so far masked: contributes nothing
          for (int64_t j = 0; j < cols; ++j) sr[j] = T(0);
          continue;
        }
        const T alpha = Exp(row_max[r] - mx);  // exp(-inf) = 0 on the first block
        const T sum = ExpRowAndSum(sr, cols, mx);
        row_sum[r] = row_sum[r] * alpha + sum;
        row_max[r] = mx;
        if (alpha != T(1)) {
          T* ar = acc + r * dv;
          for (int64_t e = 0; e < dv; ++e) ar[e] *= alpha;
        }
        this->Drop(sr, cols, key, bi, hi, i0 + r, j0);  // after the sum, before P v
      }
      BlockGemm<T>(true, rows, dv, cols, s, kKeyBlock, vb + j0 * KvRowStride(dv),
                   KvRowStride(dv), acc, dv);
    }
    T* ob = out + Base(bi, hi, p_.tq, dv) + i0 * RowStride(dv);
    for (int64_t r = 0; r < rows; ++r) {
      const T inv = T(1) / row_sum[r];  // 0 when every key was masked: NaN, as softmax gives
      T* orow = ob + r * RowStride(dv);
      const T* ar = acc + r * dv;
      if (row_sum[r] == T(0)) {
        for (int64_t e = 0; e < dv; ++e) orow[e] = std::numeric_limits<T>::quiet_NaN();
      } else {
        for (int64_t e = 0; e < dv; ++e) orow[e] = ar[e] * inv;
      }
      if (lse != nullptr) {
        lse[(bi * p_.h + hi) * p_.tq + i0 + r] = static_cast<float>(
            row_sum[r] == T(0) ? neg_inf : row_max[r] + std::log(row_sum[r]));
      }
    }
  }
};

// attention_grad(dy, q, k, v[, mask]) -> dq, dk, dv. Per (batch, head), blocks of kQueryBlock
// query rows: the scores of the block against every key are recomputed (rows x Tk, never
// T x T), P = softmax, dP = dy V^T, dS = P * (dP - rowsum(P * dP)) * scale, then
// dq = dS K, dk += dS^T q, dv += P^T dy. A query row with every key masked (NaN in the
// forward's output) has P = 0: its dq row is 0 and it adds nothing to dk, dv. One (batch, kv
// head) per work item, its group's query heads in order: dk / dv are summed by one thread in a
// fixed order (deterministic, no atomics).
template <typename T>
class AttentionGradKernel : public AttentionBase<T> {
 public:
  using Plan = typename AttentionBase<T>::Plan;
  explicit AttentionGradKernel(Plan p) : AttentionBase<T>(p) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dy = static_cast<const T*>(inputs[0]);
    const T* q = static_cast<const T*>(inputs[1]);
    const T* k = static_cast<const T*>(inputs[2]);
    const T* v = static_cast<const T*>(inputs[3]);
    const void* mask = p_.mask_kind != 0 ? inputs[4] : nullptr;
    T* dq = static_cast<T*>(outputs[0]);
    T* dk = static_cast<T*>(outputs[1]);
    T* dv = static_cast<T*>(outputs[2]);
    const uint64_t key = this->DropoutKey(inputs);
    if constexpr (std::is_same_v<T, float>) SingleThreadedBlas();
    const int64_t pairs = p_.b * p_.hkv, group = p_.h / p_.hkv;
    ParallelFor(pairs, 1, [&](int64_t w0, int64_t w1) {
      const int64_t tk = p_.tk;
      // k^T, v^T and the transposed block are BlockGemm's; the OpenBLAS path reads k, v, P
      // and dS through transposed operands.
      const bool blas = std::is_same_v<T, float> && kUseBlasGrad;
      std::vector<T> kt(blas ? 0 : p_.d * tk), vt(blas ? 0 : p_.dv * tk);
      std::vector<T> st(blas ? 0 : tk * kQueryBlock);
      std::vector<T> s(kQueryBlock * tk), dp(kQueryBlock * tk);
      std::vector<T> dcap(p_.softcap > T(0) ? kQueryBlock * tk : 0);  // the cap's derivative
      for (int64_t w = w0; w < w1; ++w) {
        for (int64_t g = 0; g < group; ++g) {  // query heads of kv head w % hkv, in order
          Pair(dy, q, k, v, mask, dq, dk, dv, w / p_.hkv, (w % p_.hkv) * group + g,
               /*first=*/g == 0, kt.data(), vt.data(), s.data(), dp.data(), st.data(),
               dcap.empty() ? nullptr : dcap.data(), key);
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  using AttentionBase<T>::p_;
  using AttentionBase<T>::RowStride;
  using AttentionBase<T>::Base;
  using AttentionBase<T>::KvRowStride;
  using AttentionBase<T>::KvBase;
  // x [T, E] (row stride ld) -> xt [E, T].
  static void Transpose(const T* x, int64_t t, int64_t e, int64_t ld, T* xt) {
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j < e; ++j) xt[j * t + i] = x[i * ld + j];
    }
  }

  // Query head hi's contributions: its dq, and added into its kv head's dk / dv (zeroed first
  // by the group's first head).
  void Pair(const T* dy, const T* q, const T* k, const T* v, const void* mask, T* dq, T* dk,
            T* dv, int64_t bi, int64_t hi, bool first, T* kt, T* vt, T* s, T* dp, T* st,
            T* dcap, uint64_t key) const {
    const int64_t tq = p_.tq, tk = p_.tk, d = p_.d, e = p_.dv;
    const int64_t ldd = RowStride(d), lde = RowStride(e);
    const int64_t kdd = KvRowStride(d), kde = KvRowStride(e);  // k / v / dk / dv rows
    const T* kb = k + KvBase(bi, hi, tk, d);
    const T* vb = v + KvBase(bi, hi, tk, e);
    T* dkb = dk + KvBase(bi, hi, tk, d);
    T* dvb = dv + KvBase(bi, hi, tk, e);
    if (!(std::is_same_v<T, float> && kUseBlasGrad) && first) {  // BlockGemm wants k^T, v^T
      Transpose(kb, tk, d, kdd, kt);
      Transpose(vb, tk, e, kde, vt);
    }
    for (int64_t j = 0; j < tk && first; ++j) {
      std::fill(dkb + j * kdd, dkb + j * kdd + d, T(0));
      std::fill(dvb + j * kde, dvb + j * kde + e, T(0));
    }
    for (int64_t i0 = 0; i0 < tq; i0 += kQueryBlock) {
      const int64_t rows = std::min(kQueryBlock, tq - i0);
      const T* qb = q + Base(bi, hi, tq, d) + i0 * ldd;
      const T* dyb = dy + Base(bi, hi, tq, e) + i0 * lde;
      T* dqb = dq + Base(bi, hi, tq, d) + i0 * ldd;
      // Keys past the last one any row of the block attends to have P = 0 and dS = 0.
      const int64_t tke = this->KeyEnd(mask, bi, hi, i0, rows);
      if constexpr (std::is_same_v<T, float>) {
        if (kUseBlasGrad) {  // q k^T and dy v^T from k / v in place (transposed operands)
          SerialSgemm(false, true, rows, tke, d, 1.0f, qb, ldd, kb, kdd, 0.0f, s, tk);
          SerialSgemm(false, true, rows, tke, e, 1.0f, dyb, lde, vb, kde, 0.0f, dp, tk);
        }
      }
      if (!(std::is_same_v<T, float> && kUseBlasGrad)) {
        BlockGemm<T>(false, rows, tke, d, qb, ldd, kt, tk, s, tk);    // q k^T
        BlockGemm<T>(false, rows, tke, e, dyb, lde, vt, tk, dp, tk);  // dy v^T
      }
      this->Probs(s, tk, rows, tke, mask, bi, hi, i0, nullptr, /*empty_rows_zero=*/true,
                  dcap);  // P
      for (int64_t r = 0; r < rows; ++r) {
        // dS (scaled, and through the cap's derivative), overwriting dP; P stays in s, then
        // becomes the dropped P' that dv reads.
        T* sr = s + r * tk;
        T* pr = dp + r * tk;
        this->Drop(pr, tke, key, bi, hi, i0 + r, 0);  // dP through the dropout
        const T dsum = Dot(sr, pr, tke);
        if (dcap != nullptr) {
          const T* cr = dcap + r * tk;
          for (int64_t j = 0; j < tke; ++j) pr[j] = sr[j] * (pr[j] - dsum) * p_.scale * cr[j];
        } else {
          for (int64_t j = 0; j < tke; ++j) pr[j] = sr[j] * (pr[j] - dsum) * p_.scale;
        }
        this->Drop(sr, tke, key, bi, hi, i0 + r, 0);
      }
      // dq = dS k; dk += dS^T q; dv += P^T dy.
      if constexpr (std::is_same_v<T, float>) {
        if (kUseBlasGrad) {
          SerialSgemm(false, false, rows, d, tke, 1.0f, dp, tk, kb, kdd, 0.0f, dqb, ldd);
          SerialSgemm(true, false, tke, d, rows, 1.0f, dp, tk, qb, ldd, 1.0f, dkb, kdd);
          SerialSgemm(true, false, tke, e, rows, 1.0f, s, tk, dyb, lde, 1.0f, dvb, kde);
          continue;
        }
      }
      BlockGemm<T>(false, rows, d, tke, dp, tk, kb, kdd, dqb, ldd);
      Transpose(dp, rows, tke, tk, st);
      BlockGemm<T>(true, tke, d, rows, st, rows, qb, ldd, dkb, kdd);
      Transpose(s, rows, tke, tk, st);
      BlockGemm<T>(true, tke, e, rows, st, rows, dyb, lde, dvb, kde);
    }
  }
};

}  // namespace

namespace {

// Attention's operands q, k, v[, mask][, counter] at inputs first.. of `node` (attention: 0;
// attention_grad: 1, after dy; `trailing` inputs after them: attention_grad
// {saved_stats=1}'s forward output and log-sum-exp), checked against `out` (the attention
// output's type) and the CPU kernels' dtypes.
absl::StatusOr<ir::AttentionProblem> ParseAttention(const ir::Node& node, int first,
                                                    const ir::TensorType& ot, int trailing = 0) {
  PTC_ASSIGN_OR_RETURN(ir::AttentionProblem a, ir::DescribeAttention(node, first, trailing));
  if (ot != ir::TensorType{a.dtype, a.out_shape}) {
    return Invalid(node, absl::StrCat("the attention output is ", ot.ToString(), ", expected ",
                                      ir::TensorType{a.dtype, a.out_shape}.ToString()));
  }
  if (a.dtype != DType::kF32 && a.dtype != DType::kF64) {
    return Unsupported(node, absl::StrCat("dtype ", DTypeStr(a.dtype),
                                          " is not supported (f32, f64)"));
  }
  return a;
}

template <typename K>
KernelOr MakeUnpacked(const ir::AttentionProblem& a, int counter_at, bool counter_i32) {
  using T = typename K::Value;
  return KernelPtr(new K(typename K::Plan{a.b, a.h, a.tq, a.tk, a.d, a.dv, a.hkv, a.bthd,
                                          static_cast<T>(a.scale), static_cast<T>(a.softcap),
                                          a.mask_kind, a.mask_strides, a.dropout,
                                          static_cast<uint64_t>(a.seed), counter_at,
                                          counter_i32}));
}

// Layout bt3hd (q, k, v: slots of one packed [B, T, 3, H, D]): the slots are copied into bthd
// scratch, the bthd kernel runs, and attention_grad's three gradients are copied back into its
// one packed output. The CPU reference of the packed layout (the CUDA kernels read and write
// the slots in place).
class PackedAttention final : public Kernel {
 public:
  PackedAttention(KernelPtr inner, bool grad, int64_t rows, int64_t slot, size_t elem)
      : inner_(std::move(inner)), grad_(grad), rows_(rows), slot_(slot), elem_(elem) {}
  size_t WorkspaceBytes() const override {
    return inner_->WorkspaceBytes() + (grad_ ? 6 : 3) * SlotBytes();
  }
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void* workspace) override {
    char* ws = static_cast<char*>(workspace);
    char* buf[6];
    for (int i = 0; i < (grad_ ? 6 : 3); ++i) buf[i] = ws + i * SlotBytes();
    char* inner_ws = ws + (grad_ ? 6 : 3) * SlotBytes();
    const int first = grad_ ? 1 : 0;  // attention_grad: dy first
    const size_t row = static_cast<size_t>(slot_) * elem_;
    for (int s = 0; s < 3; ++s) {  // q: slot 0 of the q operand, k: slot 1 of k, v: slot 2 of v
      const char* qkv = static_cast<const char*>(inputs[first + s]);
      for (int64_t r = 0; r < rows_; ++r) {
        std::memcpy(buf[s] + r * row, qkv + (3 * r + s) * row, row);
      }
    }
    std::vector<const void*> in(inputs.begin(), inputs.end());
    for (int s = 0; s < 3; ++s) in[first + s] = buf[s];
    if (!grad_) return inner_->Run(in, outputs, inner_ws);
    std::vector<void*> out = {buf[3], buf[4], buf[5]};
    PTC_RETURN_IF_ERROR(inner_->Run(in, out, inner_ws));
    char* dqkv = static_cast<char*>(outputs[0]);
    for (int64_t r = 0; r < rows_; ++r) {
      for (int s = 0; s < 3; ++s) {
        std::memcpy(dqkv + (3 * r + s) * row, buf[3 + s] + r * row, row);
      }
    }
    return absl::OkStatus();
  }

 private:
  size_t SlotBytes() const {
    return (static_cast<size_t>(rows_ * slot_) * elem_ + 63) / 64 * 64;
  }
  KernelPtr inner_;
  bool grad_;
  int64_t rows_, slot_;  // B * T rows of H * D elements per slot
  size_t elem_;
};

// The kernel of `node` (its operands at first.., `trailing` inputs after them).
template <typename K>
KernelOr Make(const ir::Node& node, const ir::AttentionProblem& a, int first, int trailing) {
  const bool grad = first == 1;
  const int counter_at = ir::AttentionCounterInput(node, first, trailing);
  const bool counter_i32 = counter_at >= 0 && node.input(counter_at)->type().dtype == DType::kI32;
  if (!a.packed) return MakeUnpacked<K>(a, counter_at, counter_i32);
  PTC_ASSIGN_OR_RETURN(KernelPtr inner, MakeUnpacked<K>(a, counter_at, counter_i32));
  return KernelPtr(new PackedAttention(std::move(inner), grad, a.b * a.tq, a.h * a.d,
                                       sizeof(typename K::Value)));
}

}  // namespace

KernelOr MakeAttentionKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 5, 1, 2));
  PTC_ASSIGN_OR_RETURN(ir::AttentionProblem a, ParseAttention(node, 0, node.output(0)->type()));
  if (a.dtype == DType::kF32) return Make<AttentionKernel<float>>(node, a, 0, 0);
  return Make<AttentionKernel<double>>(node, a, 0, 0);
}

// {saved_stats=1}: the forward's output and log-sum-exp (the last two inputs) are not read:
// the row pass recomputes the probabilities from the scores either way.
KernelOr MakeAttentionGradKernel(const ir::Node& node) {
  PTC_ASSIGN_OR_RETURN(int64_t saved, node.GetInt("saved_stats", 0));
  const int trailing = saved ? 2 : 0;
  PTC_ASSIGN_OR_RETURN(ir::AttentionProblem a,
                       ParseAttention(node, 1, node.input(0)->type(), trailing));
  const int grads = a.packed ? 1 : 3;  // bt3hd: one packed gradient
  PTC_RETURN_IF_ERROR(CheckArity(node, 4 + trailing, 6 + trailing, grads, grads));
  for (int i = 0; i < grads; ++i) {
    if (node.output(i)->type() != node.input(i + 1)->type()) {
      return Invalid(node, absl::StrCat("gradient ", i, " must have the type of its operand ",
                                        node.input(i + 1)->type().ToString()));
    }
  }
  if (a.dtype == DType::kF32) return Make<AttentionGradKernel<float>>(node, a, 1, trailing);
  return Make<AttentionGradKernel<double>>(node, a, 1, trailing);
}

}  // namespace ptc::cpu::internal
