// matmul (numpy semantics, broadcast batch dims) and gemm through oneDNN's sgemm (float, where
// built with it) or OpenBLAS.
//
// matmul plans, in CreateKernel, either one GEMM (b has no batch dims and a's batch dims fold
// into M: the linear-layer case [B,T,K] x [K,N]) or a list of per-batch offsets. Many small
// batched products (attention: B*H products of [T,D] x [D,T]) run in parallel over the batch
// with a register-blocked micro-kernel; few large ones run one after another, each split into
// tiles that ptc's pool threads compute with single-threaded library calls (TiledGemm).
//
// Threads: OpenBLAS and oneDNN run single-threaded (openblas_set_num_threads(1), and
// omp_set_num_threads(1) on each thread that calls oneDNN), and all parallelism comes from
// ptc's one pool (thread_pool.cc). Two pools (ptc's for elementwise kernels, the library's for
// GEMM) on the same cores spin against each other between kernels: measured 3-4x slower on a
// loaded 2-core machine (bench/README.md). One pool also lets a tile's epilogue (bias,
// activation: fused_matmul) run while the tile is still in cache.
#include <cblas.h>
#include <immintrin.h>
#if PTC_HAVE_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

#include <cstdlib>
#include <string_view>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"
#include "compiler/ir/ops_fused.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

// float GEMMs: oneDNN's sgemm where ptc is built with it (PTC_HAVE_DNNL: measured 5-15%
// faster than OpenBLAS 0.3.21 on the GPT shapes, 104 vs 92 GFLOP/s a core on
// [1024,256] x [256,8192]^T, bench/README.md), else OpenBLAS; PTC_CPU_GEMM=openblas picks
// OpenBLAS at run time (A/B measurements).
//
// oneDNN's sgemm mallocs a packed panel of up to 384 x N floats per call (12.6 MiB at
// N = 8192, measured): TiledGemm cuts N into tiles of at most this many columns, which keeps
// that transient scratch at about 3 MiB per thread whatever the layer (same speed on
// [512,256] x [256,8192]^T in 1024-column tiles as whole).
constexpr int64_t kDnnlMaxCols = 2048;

// Whether float GEMMs go to oneDNN. oneDNN (OpenMP runtime) sizes its GEMM team from the calling
// thread's omp_get_max_threads(): set to 1 on each thread that calls it, since all parallelism
// comes from ptc's pool (created first, so that its own size still reads OMP_NUM_THREADS).
bool UseDnnl() {
#if PTC_HAVE_DNNL
  static const bool use = [] {
    const char* v = std::getenv("PTC_CPU_GEMM");
    return v == nullptr || std::string_view(v) != "openblas";
  }();
  if (!use) return false;
  static thread_local const bool once = [] {
    (void)MaxThreads();
    omp_set_num_threads(1);
    return true;
  }();
  return once;
#else
  return false;
#endif
}

// One BLAS call on the calling thread.
template <typename T>
void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
          const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if constexpr (std::is_same_v<T, float>) {
#if PTC_HAVE_DNNL
    if (UseDnnl() && dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                                beta, c, ldc) == dnnl_success) {
      return;
    }
#endif
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else if constexpr (std::is_same_v<T, double>) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  } else {  // integers: plain loops (shape arithmetic, tests)
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        using U = std::make_unsigned_t<T>;
        U acc = 0;
        for (int64_t p = 0; p < k; ++p) {
          T av = ta ? a[p * lda + i] : a[i * lda + p];
          T bv = tb ? b[j * ldb + p] : b[p * ldb + j];
          acc += static_cast<U>(av) * static_cast<U>(bv);
        }
        U prev = beta == T(0) ? U(0) : static_cast<U>(beta) * static_cast<U>(c[i * ldc + j]);
        c[i * ldc + j] = static_cast<T>(static_cast<U>(alpha) * acc + prev);
      }
    }
  }
}

struct NoEpilogue {
  template <typename T>
  void operator()(T*, int64_t, int64_t, int64_t, int64_t, int64_t) const {}
};

// C = alpha * op(A) op(B) + beta * C split into tiles over ptc's OpenMP threads (one
// single-threaded BLAS call per tile), then epilogue(c, ldc, r0, r1, c0, c1) on each finished
// tile while it is in cache. Tiles: up to 256 rows x 512 columns; small products run as one
// tile on the calling thread.
template <typename T, typename Epilogue = NoEpilogue>
void TiledGemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
               int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc,
               const Epilogue& epilogue = Epilogue()) {
  if (m == 0 || n == 0) return;
  SingleThreadedBlas();
  const int nt = MaxThreads();
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) *
                       static_cast<double>(k);
  if (nt <= 1 || flops < 4e6 || InParallelTask() || !std::is_floating_point_v<T>) {
    Gemm<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    epilogue(c, ldc, 0, m, 0, n);
    return;
  }
  // Few large tiles: each single-threaded BLAS call packs its B panel once per tile, so
  // splitting M into one row block per thread (whole N) is fastest when M is large (measured on
  // [1024,256]x[256,8192]: 256x512 tiles 163 GFLOP/s, 512x8192 177, OpenBLAS's own threads
  // 178). Small M (decode, short batches): split N instead.
  int64_t mb = m, nb = n;
  if (m >= 64 * nt) {
    mb = (m + nt - 1) / nt;
    mb = (mb + 7) / 8 * 8;
  } else {
    nb = (n + nt - 1) / nt;
    nb = std::max<int64_t>(64, (nb + 15) / 16 * 16);
    if (nb >= n) {  // narrow N too: split M as far as 8-row blocks allow
      nb = n;
      mb = std::max<int64_t>(8, ((m + nt - 1) / nt + 7) / 8 * 8);
    }
  }
  if (UseDnnl() && nb > kDnnlMaxCols) {  // even column tiles of at most kDnnlMaxCols
    const int64_t parts = (nb + kDnnlMaxCols - 1) / kDnnlMaxCols;
    nb = ((nb + parts - 1) / parts + 15) / 16 * 16;
  }
  const int64_t row_tiles = (m + mb - 1) / mb, col_tiles = (n + nb - 1) / nb;
  ParallelFor(row_tiles * col_tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t r0 = (t / col_tiles) * mb, c0 = (t % col_tiles) * nb;
      const int64_t r1 = std::min(m, r0 + mb), c1 = std::min(n, c0 + nb);
      const T* at = ta ? a + r0 : a + r0 * lda;
      const T* bt = tb ? b + c0 * ldb : b + c0;
      Gemm<T>(ta, tb, r1 - r0, c1 - c0, k, alpha, at, lda, bt, ldb, beta, c + r0 * ldc + c0,
              ldc);
      epilogue(c, ldc, r0, r1, c0, c1);
    }
  });
}

// C[m,n] = A[m,k] * B[k,n] (row-major, dense) for the small products of batched attention
// matmuls: a 4x16 register-blocked AVX2/FMA micro-kernel, run one product per thread.
// (Concurrent OpenBLAS calls from several threads serialize inside OpenBLAS 0.3.21, measured
// 2x slower than a sequential loop, hence this kernel.)
void SmallGemm(int64_t m, int64_t n, int64_t k, const float* __restrict a,
               const float* __restrict b, float* __restrict c) {
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) {
    const float* a0 = a + (i + 0) * k;
    const float* a1 = a + (i + 1) * k;
    const float* a2 = a + (i + 2) * k;
    const float* a3 = a + (i + 3) * k;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
      __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
      __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
      __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
      const float* bp = b + j;
      for (int64_t p = 0; p < k; ++p, bp += n) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        __m256 av = _mm256_broadcast_ss(a0 + p);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a1 + p);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a2 + p);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a3 + p);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
      }
      float* cp = c + i * n + j;
      _mm256_storeu_ps(cp, c00);
      _mm256_storeu_ps(cp + 8, c01);
      _mm256_storeu_ps(cp + n, c10);
      _mm256_storeu_ps(cp + n + 8, c11);
      _mm256_storeu_ps(cp + 2 * n, c20);
      _mm256_storeu_ps(cp + 2 * n + 8, c21);
      _mm256_storeu_ps(cp + 3 * n, c30);
      _mm256_storeu_ps(cp + 3 * n + 8, c31);
    }
    for (; j < n; ++j) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t p = 0; p < k; ++p) {
        const float bv = b[p * n + j];
        s0 += a0[p] * bv;
        s1 += a1[p] * bv;
        s2 += a2[p] * bv;
        s3 += a3[p] * bv;
      }
      c[(i + 0) * n + j] = s0;
      c[(i + 1) * n + j] = s1;
      c[(i + 2) * n + j] = s2;
      c[(i + 3) * n + j] = s3;
    }
  }
  for (; i < m; ++i) {
    float* cr = c + i * n;
    for (int64_t j = 0; j < n; ++j) cr[j] = 0;
    for (int64_t p = 0; p < k; ++p) {
      const float av = a[i * k + p];
      const float* br = b + p * n;
      for (int64_t j = 0; j < n; ++j) cr[j] += av * br[j];
    }
  }
}

template <typename T>
class MatMulKernel : public Kernel {
 public:
  struct Plan {
    int64_t m, n, k;
    std::vector<int64_t> a_off, b_off;  // per batch (elements); output batch i at i*m*n
  };
  explicit MatMulKernel(Plan p) : p_(std::move(p)) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    T* c = static_cast<T*>(outputs[0]);
    const int64_t m = p_.m, n = p_.n, k = p_.k;
    const int64_t batches = static_cast<int64_t>(p_.a_off.size());
    if (k == 0) {
      std::fill(c, c + batches * m * n, T(0));
      return absl::OkStatus();
    }
    // Many small products (attention): one product per thread with the micro-kernel.
    const bool small_batched = std::is_same_v<T, float> && MaxThreads() > 1 &&
                               batches >= 2 * MaxThreads() && m * n * k <= 256 * 256 * 128;
    if constexpr (std::is_same_v<T, float>) {
      if (small_batched) {
        ParallelFor(batches, 1, [&](int64_t b0, int64_t b1) {
          for (int64_t i = b0; i < b1; ++i) {
            SmallGemm(m, n, k, a + p_.a_off[i], b + p_.b_off[i], c + i * m * n);
          }
        });
        return absl::OkStatus();
      }
    }
    for (int64_t i = 0; i < batches; ++i) {
      TiledGemm<T>(false, false, m, n, k, T(1), a + p_.a_off[i], k, b + p_.b_off[i], n, T(0),
                   c + i * m * n, n);
    }
    return absl::OkStatus();
  }

 private:
  Plan p_;
};

template <typename T>
class GemmKernel : public Kernel {
 public:
  GemmKernel(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, double beta,
             std::optional<BroadcastPlan> c_plan)
      : ta_(ta), tb_(tb), m_(m), n_(n), k_(k), alpha_(alpha), beta_(beta),
        c_plan_(std::move(c_plan)) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    T* y = static_cast<T*>(outputs[0]);
    T beta = T(0);
    if (c_plan_.has_value() && beta_ != 0.0) {
      const T* c = static_cast<const T*>(inputs[2]);
      const T bt = static_cast<T>(beta_);
      const int64_t sc = c_plan_->inner_stride(0);
      c_plan_->ForEachSegment(0, c_plan_->total, [&](int64_t o, const auto& off, int64_t len) {
        for (int64_t i = 0; i < len; ++i) y[o + i] = bt * c[off[0] + i * sc];
      });
      beta = T(1);
    }
    if (k_ == 0) {
      if (beta == T(0)) std::fill(y, y + m_ * n_, T(0));
      return absl::OkStatus();
    }
    TiledGemm<T>(ta_, tb_, m_, n_, k_, static_cast<T>(alpha_), a, ta_ ? m_ : k_, b,
                 tb_ ? k_ : n_, beta, y, n_);
    return absl::OkStatus();
  }

 private:
  bool ta_, tb_;
  int64_t m_, n_, k_;
  double alpha_, beta_;
  std::optional<BroadcastPlan> c_plan_;
};

// gemm_bgrad: y = op(a) @ b (TiledGemm) and db = the column sums of b [K, N] (or, bias_of="a",
// of a [K, M]), summed in T (f32 for the f16 / bf16 operands the half wrapper widens:
// bias_dtype=f32 then costs nothing).
// Columns are split over the pool; each column block is summed row by row in a fixed order.
template <typename T>
class GemmBgradKernel : public Kernel {
 public:
  GemmBgradKernel(bool ta, int64_t m, int64_t n, int64_t k, bool bias_of_a)
      : ta_(ta), m_(m), n_(n), k_(k), bias_of_a_(bias_of_a) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    T* y = static_cast<T*>(outputs[0]);
    T* db = static_cast<T*>(outputs[1]);
    if (k_ == 0) {
      std::fill(y, y + m_ * n_, T(0));
    } else {
      TiledGemm<T>(ta_, false, m_, n_, k_, T(1), a, ta_ ? m_ : k_, b, n_, T(0), y, n_);
    }
    constexpr int64_t kCols = 256;
    const T* src = bias_of_a_ ? a : b;  // [K, cols]
    const int64_t cols = bias_of_a_ ? m_ : n_;
    ParallelFor((cols + kCols - 1) / kCols, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t cb = c0; cb < c1; ++cb) {
        const int64_t j0 = cb * kCols, j1 = std::min(cols, j0 + kCols);
        std::fill(db + j0, db + j1, T(0));
        for (int64_t r = 0; r < k_; ++r) {
          const T* row = src + r * cols;
          for (int64_t j = j0; j < j1; ++j) db[j] += row[j];
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  bool ta_;
  int64_t m_, n_, k_;
  bool bias_of_a_;
};

// fused_matmul: y = act(x @ op(w) + bias) [+ addend], the bias, activation and addend applied
// per finished tile (in f32 the addend's add has the bits of add(addend, y) after the product;
// through the half wrapper the sum is rounded once, as on CUDA, where the unfused graph rounded
// the product first).
enum class Activation { kNone, kGelu, kGeluTanh, kRelu };

template <typename T>
class FusedMatMulKernel : public Kernel {
 public:
  FusedMatMulKernel(bool tb, int64_t m, int64_t n, int64_t k, bool has_bias, bool has_addend,
                    Activation act)
      : tb_(tb), m_(m), n_(n), k_(k), has_bias_(has_bias), has_addend_(has_addend), act_(act) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* x = static_cast<const T*>(inputs[0]);
    const T* w = static_cast<const T*>(inputs[1]);
    const T* bias = has_bias_ ? static_cast<const T*>(inputs[2]) : nullptr;
    // The addend follows the bias, or is the third operand without one (ops_fused.h).
    const T* addend = has_addend_ ? static_cast<const T*>(inputs[has_bias_ ? 3 : 2]) : nullptr;
    T* y = static_cast<T*>(outputs[0]);
    // The second output (gelu's input, for the backward): the row before the activation.
    T* pre = outputs.size() > 1 ? static_cast<T*>(outputs[1]) : nullptr;
    if (k_ == 0) std::fill(y, y + m_ * n_, T(0));
    const Activation act = act_;
    auto epilogue = [bias, addend, act, pre](T* c, int64_t ldc, int64_t r0, int64_t r1,
                                             int64_t c0, int64_t c1) {
      if (bias == nullptr && addend == nullptr && act == Activation::kNone) return;
      for (int64_t r = r0; r < r1; ++r) {
        T* row = c + r * ldc;
        if (bias != nullptr) {
          for (int64_t j = c0; j < c1; ++j) row[j] += bias[j];
        }
        if (pre != nullptr) std::copy(row + c0, row + c1, pre + r * ldc + c0);
        switch (act) {
          case Activation::kNone: break;
          case Activation::kGelu:
            for (int64_t j = c0; j < c1; ++j) {
              const T v = row[j];
              row[j] = T(0.5) * v * (T(1) + Erf(v * T(0.70710678118654752440)));
            }
            break;
          case Activation::kGeluTanh:
            for (int64_t j = c0; j < c1; ++j) {
              const T v = row[j];
              row[j] = T(0.5) * v *
                       (T(1) + Tanh(T(0.79788456080286535588) * (v + T(0.044715) * v * v * v)));
            }
            break;
          case Activation::kRelu:
            for (int64_t j = c0; j < c1; ++j) row[j] = row[j] > T(0) ? row[j] : T(0);
            break;
        }
        if (addend != nullptr) {  // the output is [M, N] with ldc = N: row r of the addend
          const T* ar = addend + r * ldc;
          for (int64_t j = c0; j < c1; ++j) row[j] = ar[j] + row[j];
        }
      }
    };
    if (k_ == 0) {
      epilogue(y, n_, 0, m_, 0, n_);
      return absl::OkStatus();
    }
    TiledGemm<T>(false, tb_, m_, n_, k_, T(1), x, k_, w, tb_ ? k_ : n_, T(0), y, n_, epilogue);
    return absl::OkStatus();
  }

 private:
  bool tb_;
  int64_t m_, n_, k_;
  bool has_bias_, has_addend_;
  Activation act_;
};

// gemm_gelu_grad: y = (op(a) @ op(b)) * gelu'(pre), the multiply applied per finished tile.
template <typename T>
class GemmGeluGradKernel : public Kernel {
 public:
  GemmGeluGradKernel(bool ta, bool tb, int64_t m, int64_t n, int64_t k, bool tanh_approx)
      : ta_(ta), tb_(tb), m_(m), n_(n), k_(k), tanh_(tanh_approx) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* a = static_cast<const T*>(inputs[0]);
    const T* b = static_cast<const T*>(inputs[1]);
    const T* pre = static_cast<const T*>(inputs[2]);
    T* y = static_cast<T*>(outputs[0]);
    if (k_ == 0) {  // a zero product: zero gradient (0 * gelu'(pre), NaN where pre is)
      for (int64_t i = 0; i < m_ * n_; ++i) y[i] = T(0) * GeluDerivative(pre[i], tanh_);
      return absl::OkStatus();
    }
    const bool tanh_approx = tanh_;
    const int64_t n = n_;
    auto epilogue = [pre, tanh_approx, n](T* c, int64_t ldc, int64_t r0, int64_t r1, int64_t c0,
                                          int64_t c1) {
      for (int64_t r = r0; r < r1; ++r) {
        T* row = c + r * ldc;
        const T* p = pre + r * n;
        for (int64_t j = c0; j < c1; ++j) row[j] *= GeluDerivative(p[j], tanh_approx);
      }
    };
    TiledGemm<T>(ta_, tb_, m_, n_, k_, T(1), a, ta_ ? m_ : k_, b, tb_ ? k_ : n_, T(0), y, n_,
                 epilogue);
    return absl::OkStatus();
  }

 private:
  bool ta_, tb_;
  int64_t m_, n_, k_;
  bool tanh_;
};

}  // namespace

// OpenBLAS threads off, once per process (see the file comment).
void SingleThreadedBlas() {
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

void SerialSgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  Gemm<float>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void ParallelSgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                   const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                   int64_t ldc) {
  TiledGemm<float>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

KernelOr MakeMatMulKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 1, 1));
  const ir::TensorType& at = node.input(0)->type();
  const ir::TensorType& bt = node.input(1)->type();
  const ir::TensorType& ot = node.output(0)->type();
  if (at.dtype != bt.dtype || ot.dtype != at.dtype) {
    return Invalid(node, absl::StrCat("dtypes must match: ", at.ToString(), " x ", bt.ToString(),
                                      " -> ", ot.ToString()));
  }
  if (at.rank() < 1 || bt.rank() < 1) return Invalid(node, "operands must have rank >= 1");
  ir::Shape a = at.shape, b = bt.shape;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  const int64_t m = a[a.size() - 2], k = a.back(), n = b.back();
  if (b[b.size() - 2] != k) {
    return Invalid(node, absl::StrCat("inner dimensions differ: ", at.ToString(), " x ",
                                      bt.ToString()));
  }
  ir::Shape a_batch(a.begin(), a.end() - 2), b_batch(b.begin(), b.end() - 2);
  auto batch_or = [&]() -> absl::StatusOr<ir::Shape> {
    // numpy broadcasting of the batch dims
    size_t r = std::max(a_batch.size(), b_batch.size());
    ir::Shape out(r);
    for (size_t i = 0; i < r; ++i) {
      int64_t da = i + a_batch.size() >= r ? a_batch[i + a_batch.size() - r] : 1;
      int64_t db = i + b_batch.size() >= r ? b_batch[i + b_batch.size() - r] : 1;
      if (da != db && da != 1 && db != 1) {
        return absl::InvalidArgumentError("batch dims do not broadcast");
      }
      out[i] = da == 1 ? db : da;
    }
    return out;
  }();
  if (!batch_or.ok()) {
    return Invalid(node, absl::StrCat(batch_or.status().message(), ": ", at.ToString(), " x ",
                                      bt.ToString()));
  }
  ir::Shape batch = *batch_or;
  // Expected output shape (numpy drops the prepended / appended 1).
  ir::Shape want = batch;
  if (at.rank() > 1) want.push_back(m);
  if (bt.rank() > 1) want.push_back(n);
  if (want != ot.shape) {
    return Invalid(node, absl::StrCat("output type ", ot.ToString(), " should have shape ",
                                      ir::ShapeToString(want)));
  }
  int64_t nb = ir::NumElements(batch);
  typename MatMulKernel<float>::Plan plan;
  // b without (non-1) batch dims and a contiguous: fold a's batch into M.
  bool b_shared = ir::NumElements(b_batch) == 1;
  if (b_shared && nb > 1) {
    plan.m = m * nb;
    plan.n = n;
    plan.k = k;
    plan.a_off = {0};
    plan.b_off = {0};
  } else {
    plan.m = m;
    plan.n = n;
    plan.k = k;
    auto pa = MakeBroadcastPlan(batch, {a_batch, b_batch});
    if (!pa.ok()) return Invalid(node, pa.status().message());
    pa->ForEachSegment(0, pa->total, [&](int64_t, const auto& off, int64_t len) {
      for (int64_t i = 0; i < len; ++i) {
        plan.a_off.push_back((off[0] + i * pa->inner_stride(0)) * m * k);
        plan.b_off.push_back((off[1] + i * pa->inner_stride(1)) * k * n);
      }
    });
  }
  switch (at.dtype) {
    case DType::kF32: return KernelPtr(new MatMulKernel<float>(std::move(plan)));
    case DType::kF64: {
      typename MatMulKernel<double>::Plan p{plan.m, plan.n, plan.k, plan.a_off, plan.b_off};
      return KernelPtr(new MatMulKernel<double>(std::move(p)));
    }
    case DType::kI32: {
      typename MatMulKernel<int32_t>::Plan p{plan.m, plan.n, plan.k, plan.a_off, plan.b_off};
      return KernelPtr(new MatMulKernel<int32_t>(std::move(p)));
    }
    case DType::kI64: {
      typename MatMulKernel<int64_t>::Plan p{plan.m, plan.n, plan.k, plan.a_off, plan.b_off};
      return KernelPtr(new MatMulKernel<int64_t>(std::move(p)));
    }
    default:
      return Unsupported(node, absl::StrCat("dtype ", DTypeStr(at.dtype), " is not supported"));
  }
}

KernelOr MakeGemmKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 3, 1, 1));
  const ir::TensorType& at = node.input(0)->type();
  const ir::TensorType& bt = node.input(1)->type();
  const ir::TensorType& ot = node.output(0)->type();
  PTC_ASSIGN_OR_RETURN(double alpha, node.GetFloat("alpha", 1.0));
  PTC_ASSIGN_OR_RETURN(double beta, node.GetFloat("beta", 1.0));
  PTC_ASSIGN_OR_RETURN(int64_t ta, node.GetInt("trans_a", 0));
  PTC_ASSIGN_OR_RETURN(int64_t tb, node.GetInt("trans_b", 0));
  if (at.rank() != 2 || bt.rank() != 2) {
    return Invalid(node, absl::StrCat("a and b must have rank 2, got ", at.ToString(), " and ",
                                      bt.ToString()));
  }
  if (at.dtype != bt.dtype || ot.dtype != at.dtype) return Invalid(node, "dtypes must match");
  int64_t m = ta ? at.shape[1] : at.shape[0], k = ta ? at.shape[0] : at.shape[1];
  int64_t kb = tb ? bt.shape[1] : bt.shape[0], n = tb ? bt.shape[0] : bt.shape[1];
  if (k != kb || ot.shape != ir::Shape{m, n}) {
    return Invalid(node, absl::StrCat("shapes do not match: ", at.ToString(), " x ", bt.ToString(),
                                      " -> ", ot.ToString(), " (trans_a=", ta, ", trans_b=", tb,
                                      ")"));
  }
  std::optional<BroadcastPlan> c_plan;
  if (node.num_inputs() == 3) {
    const ir::TensorType& ct = node.input(2)->type();
    if (ct.dtype != at.dtype) return Invalid(node, "c must have the dtype of a");
    auto p = MakeBroadcastPlan(ot.shape, {ct.shape});
    if (!p.ok()) return Invalid(node, p.status().message());
    c_plan = std::move(p).value();
  }
  switch (at.dtype) {
    case DType::kF32:
      return KernelPtr(new GemmKernel<float>(ta, tb, m, n, k, alpha, beta, std::move(c_plan)));
    case DType::kF64:
      return KernelPtr(new GemmKernel<double>(ta, tb, m, n, k, alpha, beta, std::move(c_plan)));
    case DType::kI32:
      return KernelPtr(new GemmKernel<int32_t>(ta, tb, m, n, k, alpha, beta, std::move(c_plan)));
    case DType::kI64:
      return KernelPtr(new GemmKernel<int64_t>(ta, tb, m, n, k, alpha, beta, std::move(c_plan)));
    default:
      return Unsupported(node, absl::StrCat("dtype ", DTypeStr(at.dtype), " is not supported"));
  }
}

KernelOr MakeGemmBgradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 2, 2));
  const ir::TensorType& at = node.input(0)->type();
  const ir::TensorType& bt = node.input(1)->type();
  const ir::TensorType& yt = node.output(0)->type();
  const ir::TensorType& dbt = node.output(1)->type();
  PTC_ASSIGN_OR_RETURN(int64_t ta, node.GetInt("trans_a", 0));
  if (at.rank() != 2 || bt.rank() != 2 || bt.dtype != at.dtype || yt.dtype != at.dtype ||
      dbt.dtype != at.dtype) {
    return Invalid(node, absl::StrCat("expects 2-D a and b and outputs of one dtype, got ",
                                      at.ToString(), ", ", bt.ToString(), " -> ", yt.ToString(),
                                      ", ", dbt.ToString()));
  }
  const int64_t m = ta ? at.shape[1] : at.shape[0], k = ta ? at.shape[0] : at.shape[1];
  const int64_t n = bt.shape[1];
  PTC_ASSIGN_OR_RETURN(std::string of, node.GetString("bias_of", "b"));
  const bool bias_of_a = of == "a";
  if ((of != "a" && of != "b") || (bias_of_a && ta != 1)) {
    return Invalid(node, "bias_of must be \"b\", or \"a\" with trans_a=1");
  }
  if (bt.shape[0] != k || yt.shape != ir::Shape{m, n} ||
      dbt.shape != ir::Shape{bias_of_a ? m : n}) {
    return Invalid(node, absl::StrCat("shapes do not match: ", at.ToString(), " x ",
                                      bt.ToString(), " (trans_a=", ta, ") -> ", yt.ToString(),
                                      ", ", dbt.ToString()));
  }
  switch (at.dtype) {
    case DType::kF32: return KernelPtr(new GemmBgradKernel<float>(ta != 0, m, n, k, bias_of_a));
    case DType::kF64: return KernelPtr(new GemmBgradKernel<double>(ta != 0, m, n, k, bias_of_a));
    default:
      return Unsupported(node, absl::StrCat("dtype ", DTypeStr(at.dtype), " is not supported"));
  }
}

KernelOr MakeFusedMatMulKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 4, 1, 2));
  const ir::TensorType& xt = node.input(0)->type();
  const ir::TensorType& wt = node.input(1)->type();
  const ir::TensorType& ot = node.output(0)->type();
  PTC_ASSIGN_OR_RETURN(int64_t tb, node.GetInt("trans_b", 0));
  // {dtype=f32} of f16 / bf16 operands reaches this f32 kernel through the half wrapper (every
  // operand then f32): the dtypes below are all one.
  PTC_ASSIGN_OR_RETURN(std::string act_name, node.GetString("activation", "none"));
  Activation act;
  if (act_name == "none") {
    act = Activation::kNone;
  } else if (act_name == "gelu") {
    act = Activation::kGelu;
  } else if (act_name == "gelu_tanh") {
    act = Activation::kGeluTanh;
  } else if (act_name == "relu") {
    act = Activation::kRelu;
  } else {
    return Invalid(node, absl::StrCat("unknown activation '", act_name,
                                      "' (none, gelu, gelu_tanh, relu)"));
  }
  if (xt.rank() < 2 || wt.rank() != 2 || xt.dtype != wt.dtype || ot.dtype != xt.dtype) {
    return Invalid(node, absl::StrCat("expects x [..., K] and a 2-D w of one dtype, got ",
                                      xt.ToString(), " and ", wt.ToString()));
  }
  const int64_t k = xt.shape.back(), n = tb ? wt.shape[0] : wt.shape[1];
  if ((tb ? wt.shape[1] : wt.shape[0]) != k || ot.shape.back() != n ||
      ir::NumElements(ot.shape) != ir::NumElements(xt.shape) / std::max<int64_t>(k, 1) * n) {
    return Invalid(node, absl::StrCat("shapes do not match: ", xt.ToString(), " x ",
                                      wt.ToString(), " -> ", ot.ToString(), " (trans_b=", tb,
                                      ")"));
  }
  const ir::Value* bias = ir::FusedMatMulBias(node);
  const ir::Value* addend = ir::FusedMatMulAddend(node);
  const bool has_bias = bias != nullptr, has_addend = addend != nullptr;
  if (has_bias && bias->type().shape != ir::Shape{n}) {
    return Invalid(node, absl::StrCat("bias must have shape [", n, "], got ", InType(node, 2)));
  }
  if (has_addend && (addend->type() != ot || act != Activation::kNone)) {
    return Invalid(node, absl::StrCat("the addend must have the output's type ", ot.ToString(),
                                      " (activation none), got ", addend->type().ToString()));
  }
  if (node.num_outputs() == 2 &&
      (node.output(1)->type() != ot || (act != Activation::kGelu && act != Activation::kGeluTanh))) {
    return Invalid(node, absl::StrCat("the second output (the activation's input) needs a gelu "
                                      "activation and the output's type ", ot.ToString()));
  }
  int64_t m = 1;
  for (size_t i = 0; i + 1 < xt.shape.size(); ++i) m *= xt.shape[i];
  switch (xt.dtype) {
    case DType::kF32:
      return KernelPtr(new FusedMatMulKernel<float>(tb != 0, m, n, k, has_bias, has_addend, act));
    case DType::kF64:
      return KernelPtr(new FusedMatMulKernel<double>(tb != 0, m, n, k, has_bias, has_addend, act));
    default:
      return Unsupported(node, absl::StrCat("dtype ", DTypeStr(xt.dtype),
                                            " is not supported (f32, f64)"));
  }
}

KernelOr MakeGemmGeluGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 3, 1, 1));
  const ir::TensorType& at = node.input(0)->type();
  const ir::TensorType& bt = node.input(1)->type();
  const ir::TensorType& pt = node.input(2)->type();
  const ir::TensorType& ot = node.output(0)->type();
  PTC_ASSIGN_OR_RETURN(int64_t ta, node.GetInt("trans_a", 0));
  PTC_ASSIGN_OR_RETURN(int64_t tb, node.GetInt("trans_b", 0));
  PTC_ASSIGN_OR_RETURN(std::string approx, node.GetString("approximate", "none"));
  if (approx != "none" && approx != "tanh") {
    return Invalid(node, absl::StrCat("approximate must be \"none\" or \"tanh\", got \"",
                                      approx, "\""));
  }
  if (at.rank() != 2 || bt.rank() != 2 || bt.dtype != at.dtype || pt.dtype != at.dtype ||
      ot.dtype != at.dtype) {
    return Invalid(node, absl::StrCat("expects 2-D a and b, pre and output of one dtype, got ",
                                      at.ToString(), ", ", bt.ToString(), ", ", pt.ToString(),
                                      " -> ", ot.ToString()));
  }
  const int64_t m = ta ? at.shape[1] : at.shape[0], k = ta ? at.shape[0] : at.shape[1];
  const int64_t kb = tb ? bt.shape[1] : bt.shape[0], n = tb ? bt.shape[0] : bt.shape[1];
  if (k != kb || ot.shape != ir::Shape{m, n} || pt.shape != ot.shape) {
    return Invalid(node, absl::StrCat("shapes do not match: ", at.ToString(), " x ",
                                      bt.ToString(), " (trans_a=", ta, ", trans_b=", tb,
                                      "), pre ", pt.ToString(), " -> ", ot.ToString()));
  }
  switch (at.dtype) {
    case DType::kF32:
      return KernelPtr(new GemmGeluGradKernel<float>(ta, tb, m, n, k, approx == "tanh"));
    case DType::kF64:
      return KernelPtr(new GemmGeluGradKernel<double>(ta, tb, m, n, k, approx == "tanh"));
    default:
      return Unsupported(node, absl::StrCat("dtype ", DTypeStr(at.dtype), " is not supported"));
  }
}

}  // namespace ptc::cpu::internal

