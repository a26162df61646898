// matmul / gemm through cuBLASLt.
//
// Row-major C[M,N] = A[M,K] B[K,N] is computed as the column-major product C^T = B^T A^T, so no
// data is transposed: cuBLASLt's "A" is our B and its "B" is our A. The algorithm is chosen once
// per node at creation (cublasLtMatmulAlgoGetHeuristic's first); with autotuning the executor's
// first run times the heuristic's first kTuneAlgos on the real operands and keeps the fastest
// (runtime/cuda/autotune.h).
//
// Precision: f32 computes in f32 (or TF32 on tensor cores with KernelOptions::allow_tf32),
// f16 / bf16 with f32 accumulation and f32 alpha/beta, f64 in f64.
// Batching (matmul): equal batch dims or a broadcast operand with one matrix use one strided
// batched call; a right operand shared by every batch folds the batch into M (one plain GEMM,
// the linear-layer case); other broadcasts loop over the batch with precomputed offsets.
#include <cublasLt.h>

#include <algorithm>
#include <functional>
#include <numeric>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/cuda/kernels.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/ir/ops.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/autotune.h"
#include "runtime/cuda/cudnn_attention.h"
#include "runtime/cuda/device_kernels.h"

namespace ptc::cuda {
namespace {

// Algorithms the autotuner times per GEMM problem (the heuristic's best first).
constexpr int kTuneAlgos = 8;

// Scratch regions start 256-byte aligned.
size_t AlignScratch(size_t bytes) { return (bytes + 255) / 256 * 256; }

// The alignment (bytes, at most 256: the executor's buffers and scratch slices) that every
// operand pointer of a GEMM keeps when it is a buffer plus multiples of these byte offsets.
// cuBLASLt assumes 256 unless told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), and an algorithm
// picked for 256 may fail on a less aligned pointer.
uint32_t GuaranteedAlign(std::initializer_list<int64_t> byte_offsets) {
  int64_t a = 256;
  for (int64_t o : byte_offsets) a = std::gcd(a, o < 0 ? -o : o);  // gcd(a, 0) = a
  return static_cast<uint32_t>(a);
}
// Row length of padded scratch matrices: with rows of an odd element count (a vocabulary of
// 50257) cuBLASLt only has slow kernels; 64 elements keep every row 128-byte aligned.
int64_t PaddedLd(int64_t n) { return (n + 63) / 64 * 64; }

using ir::DType;

struct LtDeleter {
  void operator()(cublasLtMatmulDescOpaque_t* p) const { cublasLtMatmulDescDestroy(p); }
  void operator()(cublasLtMatrixLayoutOpaque_t* p) const { cublasLtMatrixLayoutDestroy(p); }
  void operator()(cublasLtMatmulPreferenceOpaque_t* p) const { cublasLtMatmulPreferenceDestroy(p); }
};
using MatmulDesc = std::unique_ptr<cublasLtMatmulDescOpaque_t, LtDeleter>;
using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LtDeleter>;
using Preference = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, LtDeleter>;

absl::Status Invalid(const ir::Node& node, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": ", std::string(what)));
}

// One column-major cuBLASLt problem: D[m,n] = alpha op(A) op(B) + beta C, `batch` times.
struct Problem {
  int64_t m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;  // cuBLASLt's A / B (our B / A)
  int64_t lda = 0, ldb = 0, ldd = 0;
  int64_t batch = 1;
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;  // elements
};

class GemmKernel final : public DeviceKernel {
 public:
  // out_dt: D's dtype when it differs from A / B's (f32 results of bf16 / f16 products).
  // bias_dt: the dtype of an epilogue's bias (gradient) vector; it must be D's (cuBLASLt's
  // default, the only documented type for a BGRAD epilogue's output): otherwise an error, and
  // the caller takes its fallback. min_align: the alignment in bytes every A, B, C, D pointer
  // keeps relative to its buffer (GuaranteedAlign), told to the heuristic together with the
  // buffers' own (KernelOptions::buffer_align).
  absl::Status Init(const ir::Node& node, DType dt, const Problem& p, double alpha, double beta,
                    const KernelOptions& options, cublasLtHandle_t lt,
                    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT,
                    DType out_dt = DType::kBool, DType bias_dt = DType::kBool,
                    uint32_t min_align = 256, int64_t aux_ld = 0) {
    node_ = &node;
    p_ = p;
    // The buffers' own alignment bounds what the offsets into them keep.
    min_align = std::gcd(min_align, static_cast<uint32_t>(std::max<int64_t>(options.buffer_align, 1)));
    elem_ = ir::DTypeSize(out_dt == DType::kBool ? dt : out_dt);
    in_elem_ = ir::DTypeSize(dt);
    const DType d_dt = out_dt == DType::kBool ? dt : out_dt;
    if (bias_dt != DType::kBool && bias_dt != d_dt) {
      return absl::UnimplementedError(absl::StrCat(
          node.Describe(), ": an epilogue bias of ", std::string(ir::DTypeName(bias_dt)),
          " with a ", std::string(ir::DTypeName(d_dt)), " result"));
    }
    cudaDataType_t data;
    cublasComputeType_t compute;
    cudaDataType_t scale = CUDA_R_32F;
    switch (dt) {
      case DType::kF32:
        data = CUDA_R_32F;
        compute = options.allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
        break;
      case DType::kF16: data = CUDA_R_16F; compute = CUBLAS_COMPUTE_32F; break;
      case DType::kBF16: data = CUDA_R_16BF; compute = CUBLAS_COMPUTE_32F; break;
      case DType::kF64:
        data = CUDA_R_64F;
        compute = CUBLAS_COMPUTE_64F;
        scale = CUDA_R_64F;
        break;
      default:
        return absl::UnimplementedError(absl::StrCat(
            node.Describe(), ": no CUDA GEMM for dtype ", std::string(ir::DTypeName(dt)),
            " (f32, f16, bf16, f64 are supported)"));
    }
    f64_ = dt == DType::kF64;
    alpha_f_ = static_cast<float>(alpha);
    beta_f_ = static_cast<float>(beta);
    alpha_d_ = alpha;
    beta_d_ = beta;
    cublasLtMatmulDesc_t desc;
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&desc, compute, scale));
    desc_.reset(desc);
    const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                              &ta, sizeof(ta)));
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                              &tb, sizeof(tb)));
    if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
      PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
          desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    }
    // GELU_AUX* / DGELU: the GELU input matrix (D's layout and type; its leading dimension a
    // multiple of 8, at least D's rows), its pointer set at each launch (SetAuxPointer).
    if (aux_ld > 0) {
      PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
          desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof(aux_ld)));
    }
    // Stored (pre-op) shapes, column-major.
    PTC_ASSIGN_OR_RETURN(a_, MakeLayout(data, p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda,
                                        p.batch, p.stride_a));
    PTC_ASSIGN_OR_RETURN(b_, MakeLayout(data, p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb,
                                        p.batch, p.stride_b));
    span_a_ = SpanBytes(p.trans_a ? p.k : p.m, p.trans_a ? p.m : p.k, p.lda, p.batch, p.stride_a,
                        in_elem_);
    span_b_ = SpanBytes(p.trans_b ? p.n : p.k, p.trans_b ? p.k : p.n, p.ldb, p.batch, p.stride_b,
                        in_elem_);
    span_d_ = SpanBytes(p.m, p.n, p.ldd, p.batch, p.stride_d, elem_);
    cudaDataType_t d_data = data;
    if (out_dt == DType::kF32 && ir::IsHalfFloat(dt)) {
      d_data = CUDA_R_32F;
    } else if (out_dt != DType::kBool && out_dt != dt) {
      return absl::UnimplementedError(absl::StrCat(
          node.Describe(), ": no CUDA GEMM from ", std::string(ir::DTypeName(dt)), " to ",
          std::string(ir::DTypeName(out_dt))));
    }
    PTC_ASSIGN_OR_RETURN(d_, MakeLayout(d_data, p.m, p.n, p.ldd, p.batch, p.stride_d));
    cublasLtMatmulPreference_t pref;
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    Preference pref_owner(pref);
    const uint64_t ws = kLtWorkspaceBytes;
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    for (cublasLtMatmulPreferenceAttributes_t a :
         {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES}) {
      PTC_CUBLAS_RETURN_IF_ERROR(
          cublasLtMatmulPreferenceSetAttribute(pref, a, &min_align, sizeof(min_align)));
    }
    // The heuristic's first result is the default; with autotuning the next ones are the
    // candidates the first run times (runtime/cuda/autotune.h).
    cublasLtMatmulHeuristicResult_t results[kTuneAlgos] = {};
    int found = 0;
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulAlgoGetHeuristic(
        lt, desc, a_.get(), b_.get(), d_.get(), d_.get(), pref, options.autotune ? kTuneAlgos : 1,
        results, &found));
    algos_.clear();
    for (int i = 0; i < found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS) algos_.push_back(results[i].algo);
    }
    if (algos_.empty()) {
      return absl::UnimplementedError(absl::StrCat(
          node.Describe(), ": cuBLASLt has no algorithm for ", std::string(ir::DTypeName(dt)), " m=", p.m,
          " n=", p.n, " k=", p.k, " batch=", p.batch));
    }
    algo_ = algos_[0];
    tuned_ = algos_.size() < 2;
    // Everything the heuristic saw: equal keys get equal candidate lists.
    tune_key_ = absl::StrCat("gemm ", std::string(ir::DTypeName(dt)), "->",
                             std::string(ir::DTypeName(d_dt)),
                             options.allow_tf32 ? " tf32" : "", " m", p.m, " n", p.n, " k", p.k,
                             p.trans_a ? " Ta" : "", p.trans_b ? " Tb" : "");
    absl::StrAppend(&tune_key_, " ld", p.lda, ",", p.ldb, ",", p.ldd, " batch", p.batch, "/",
                    p.stride_a, ",", p.stride_b, ",", p.stride_d);
    absl::StrAppend(&tune_key_, " epi", static_cast<int>(epilogue), " alpha", alpha, " beta",
                    beta, " align", min_align);
    if (aux_ld > 0) absl::StrAppend(&tune_key_, " aux", aux_ld);
    return absl::OkStatus();
  }

  // Broadcast batches that need one call each: (offset of our A, offset of our B) in elements.
  void SetBatchLoop(std::vector<std::pair<int64_t, int64_t>> offsets) {
    loop_ = std::move(offsets);
  }
  // gemm's C operand: copied (broadcast) into the output before the product.
  void SetBias(kernels::CopyDesc copy) {
    bias_ = true;
    bias_copy_ = copy;
  }

  // Epilogue bias (fused_matmul): one value per output column, set at each launch.
  absl::Status SetBiasPointer(const void* bias) {
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        desc_.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    return absl::OkStatus();
  }

  // Epilogue aux matrix (GELU_AUX*: written; DGELU: read), set at each launch.
  absl::Status SetAuxPointer(const void* aux) {
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        desc_.get(), CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof(aux)));
    return absl::OkStatus();
  }

  // One product on explicit pointers (our A, our B, D), for composite kernels (attention).
  // With c (D's layout and type; may differ from d): D = alpha op(A) op(B) + beta C.
  absl::Status RunOn(const LaunchContext& ctx, const void* our_a, const void* our_b, void* d,
                     const void* c = nullptr) {
    const void* alpha = f64_ ? static_cast<const void*>(&alpha_d_) : &alpha_f_;
    const void* beta = f64_ ? static_cast<const void*>(&beta_d_) : &beta_f_;
    return Matmul(ctx, our_b, our_a, d, alpha, beta, c);
  }

  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    const char* our_a = static_cast<const char*>(in[0]);
    const char* our_b = static_cast<const char*>(in[1]);
    char* d = static_cast<char*>(out[0]);
    if (bias_) {
      const cudaError_t e =
          kernels::LaunchStridedCopy(static_cast<int>(elem_), bias_copy_, in[2], d, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "LaunchStridedCopy (gemm C)", __FILE__, __LINE__);
    }
    const void* alpha = f64_ ? static_cast<const void*>(&alpha_d_) : &alpha_f_;
    const void* beta = f64_ ? static_cast<const void*>(&beta_d_) : &beta_f_;
    if (loop_.empty()) return Matmul(ctx, our_b, our_a, d, alpha, beta);
    const int64_t d_step = p_.m * p_.n * static_cast<int64_t>(elem_);
    for (size_t i = 0; i < loop_.size(); ++i) {
      PTC_RETURN_IF_ERROR(Matmul(ctx, our_b + loop_[i].second * in_elem_,
                                 our_a + loop_[i].first * in_elem_, d + i * d_step, alpha, beta));
    }
    return absl::OkStatus();
  }

 private:
  static absl::StatusOr<Layout> MakeLayout(cudaDataType_t type, int64_t rows, int64_t cols,
                                           int64_t ld, int64_t batch, int64_t stride) {
    cublasLtMatrixLayout_t l;
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&l, type, static_cast<uint64_t>(rows),
                                                          static_cast<uint64_t>(cols), ld));
    Layout owner(l);
    if (batch > 1) {
      const int32_t count = static_cast<int32_t>(batch);
      PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
          l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
      PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
          l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
    }
    return owner;
  }

  static int64_t SpanBytes(int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                           int64_t stride, size_t elem) {
    if (rows <= 0 || cols <= 0 || batch <= 0) return 0;
    return ((batch - 1) * stride + (cols - 1) * ld + rows) * static_cast<int64_t>(elem);
  }

  absl::Status Matmul(const LaunchContext& ctx, const void* lt_a, const void* lt_b, void* d,
                      const void* alpha, const void* beta, const void* c = nullptr) {
    if (ctx.tuner != nullptr) {
      if (!tuned_) {
        PTC_RETURN_IF_ERROR(Tune(ctx, lt_a, lt_b, d, alpha, beta, c));
      } else if (algos_.size() > 1) {
        ctx.tuner->Count(tune_key_);
      }
    }
    return MatmulWith(algo_, ctx, lt_a, lt_b, d, alpha, beta, c);
  }

  absl::Status MatmulWith(const cublasLtMatmulAlgo_t& algo, const LaunchContext& ctx,
                          const void* lt_a, const void* lt_b, void* d, const void* alpha,
                          const void* beta, const void* c) {
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(ctx.lt, desc_.get(), alpha, lt_a, a_.get(), lt_b,
                                              b_.get(), beta, c != nullptr ? c : d, d_.get(), d,
                                              d_.get(), &algo,
                                              ctx.lt_workspace, ctx.lt_workspace_bytes,
                                              ctx.stream));
    return absl::OkStatus();
  }

  // Times the heuristic's algorithms on these operands (Tuner::Choose) and keeps the fastest.
  // Not when D overlaps A or B (a launch would change its own operands). A product that reads
  // D (beta != 0 with C in D, or a C overlapping it) is restored from a snapshot of D before
  // every launch; without the memory for the snapshot the default stays.
  absl::Status Tune(const LaunchContext& ctx, const void* lt_a, const void* lt_b, void* d,
                    const void* alpha, const void* beta, const void* c) {
    tuned_ = true;
    if (BytesOverlap(d, span_d_, lt_a, span_a_) || BytesOverlap(d, span_d_, lt_b, span_b_)) {
      return absl::OkStatus();
    }
    const bool reads_d = (f64_ ? beta_d_ != 0 : beta_f_ != 0) &&
                         (c == nullptr || BytesOverlap(d, span_d_, c, span_d_));
    void* snapshot = nullptr;
    if (reads_d) {
      if (cudaMalloc(&snapshot, static_cast<size_t>(span_d_)) != cudaSuccess) {
        (void)cudaGetLastError();  // no room: keep the default
        return absl::OkStatus();
      }
      PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(snapshot, d, static_cast<size_t>(span_d_),
                                               cudaMemcpyDeviceToDevice, ctx.stream));
    }
    std::vector<std::string> names;
    for (size_t i = 0; i < algos_.size(); ++i) names.push_back(absl::StrCat("algo", i));
    absl::StatusOr<int> chosen = ctx.tuner->Choose(
        "gemm", tune_key_, node_->Describe(), names, ctx.stream,
        [&](int i) { return MatmulWith(algos_[i], ctx, lt_a, lt_b, d, alpha, beta, c); },
        reads_d ? std::function<absl::Status()>([&]() -> absl::Status {
          PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(d, snapshot, static_cast<size_t>(span_d_),
                                                   cudaMemcpyDeviceToDevice, ctx.stream));
          return absl::OkStatus();
        })
                : std::function<absl::Status()>());
    if (snapshot != nullptr) {
      const cudaError_t e = cudaStreamSynchronize(ctx.stream);
      cudaFree(snapshot);
      if (e != cudaSuccess) return CudaStatus(e, "cudaStreamSynchronize (autotune)", __FILE__, __LINE__);
    }
    if (!chosen.ok()) return chosen.status();
    algo_ = algos_[static_cast<size_t>(*chosen)];
    return absl::OkStatus();
  }

 private:
  const ir::Node* node_ = nullptr;
  Problem p_;
  size_t elem_ = 4, in_elem_ = 4;  // D's and A / B's element sizes
  bool f64_ = false;
  float alpha_f_ = 1, beta_f_ = 0;
  double alpha_d_ = 1, beta_d_ = 0;
  MatmulDesc desc_;
  Layout a_, b_, d_;
  int64_t span_a_ = 0, span_b_ = 0, span_d_ = 0;  // bytes each layout reaches from its pointer
  cublasLtMatmulAlgo_t algo_{};
  std::vector<cublasLtMatmulAlgo_t> algos_;  // the heuristic's, best first
  bool tuned_ = true;
  std::string tune_key_;
  std::vector<std::pair<int64_t, int64_t>> loop_;
  bool bias_ = false;
  kernels::CopyDesc bias_copy_;
};

// Problem for row-major C[M,N] = op(A) op(B) with our A [M,K] (or [K,M] if trans_a) and our B
// [K,N] (or [N,K] if trans_b).
Problem RowMajorProblem(int64_t m, int64_t n, int64_t k, bool trans_a, bool trans_b) {
  Problem p;
  p.m = n;  // cuBLASLt D = C^T: n rows (our N), m columns (our M)
  p.n = m;
  p.k = k;
  p.trans_a = trans_b;  // cuBLASLt A = our B
  p.trans_b = trans_a;
  p.lda = trans_b ? k : n;
  p.ldb = trans_a ? m : k;
  p.ldd = n;
  return p;
}

// A matmul with one shared right operand (our B [K, N], the batch folded into M) whose rows
// are not 16-byte aligned (N * elem % 16 != 0, e.g. a tied LM head's V = 50257 columns):
// cuBLASLt then only has slow kernels for B and D. This kernel copies B into scratch rows
// padded to ldn_ (a multiple of 64 elements) once per launch and computes D in blocks of rows_
// rows into padded scratch, each block copied out with cudaMemcpy2DAsync. With trans_b (B is
// [N, K], rows of K elements: fused_matmul reading a tied [V, D] table as is) B is read in
// place and only D is padded.
class PaddedMatmulKernel final : public DeviceKernel {
 public:
  // out_dt: D's dtype when it differs from A / B's (an f32 LM head of bf16 operands).
  absl::Status Init(const ir::Node& node, DType dt, int64_t m, int64_t n, int64_t k,
                    const KernelOptions& options, cublasLtHandle_t lt, bool trans_b = false,
                    DType out_dt = DType::kBool) {
    elem_ = ir::DTypeSize(dt);
    out_elem_ = out_dt == DType::kBool ? elem_ : ir::DTypeSize(out_dt);
    m_ = m;
    n_ = n;
    k_ = k;
    trans_b_ = trans_b;
    ldn_ = PaddedLd(n);
    rows_ = std::max<int64_t>(256, (int64_t{256} << 20) / static_cast<int64_t>(ldn_ * out_elem_));
    rows_ = std::min(rows_, m);
    const int64_t tail = m % rows_;
    for (int s = 0; s < (tail ? 2 : 1); ++s) {
      Problem p = RowMajorProblem(s == 0 ? rows_ : tail, n, k, false, trans_b);
      if (!trans_b) p.lda = ldn_;  // cuBLASLt A = our B, copied into padded rows
      p.ldd = ldn_;
      // Our A advances by rows_ rows per block.
      PTC_RETURN_IF_ERROR(gemm_[s].Init(node, dt, p, 1.0, 0.0, options, lt,
                                        CUBLASLT_EPILOGUE_DEFAULT, out_dt, DType::kBool,
                                        GuaranteedAlign({rows_ * k * static_cast<int64_t>(elem_)})));
    }
    b_bytes_ = trans_b ? 0 : AlignScratch(elem_ * static_cast<size_t>(k_ * ldn_));
    return absl::OkStatus();
  }
  size_t WorkspaceBytes() const override {
    return b_bytes_ + AlignScratch(out_elem_ * static_cast<size_t>(rows_ * ldn_));
  }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    char* scratch = static_cast<char*>(workspace);
    char* d = scratch + b_bytes_;
    const size_t b_row = elem_ * static_cast<size_t>(n_);
    const size_t b_pitch = elem_ * static_cast<size_t>(ldn_);
    const size_t row = out_elem_ * static_cast<size_t>(n_);
    const size_t pitch = out_elem_ * static_cast<size_t>(ldn_);
    const void* b = in[1];
    cudaError_t e = cudaSuccess;
    if (!trans_b_) {
      e = cudaMemcpy2DAsync(scratch, b_pitch, in[1], b_row, b_row, static_cast<size_t>(k_),
                            cudaMemcpyDeviceToDevice, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "cudaMemcpy2DAsync (B)", __FILE__, __LINE__);
      b = scratch;
    }
    const char* a = static_cast<const char*>(in[0]);
    char* o = static_cast<char*>(out[0]);
    for (int64_t r0 = 0; r0 < m_; r0 += rows_) {
      const int64_t c = std::min(rows_, m_ - r0);
      PTC_RETURN_IF_ERROR(
          gemm_[c == rows_ ? 0 : 1].RunOn(ctx, a + r0 * k_ * static_cast<int64_t>(elem_), b, d));
      e = cudaMemcpy2DAsync(o + r0 * static_cast<int64_t>(row), row, d, pitch, row,
                            static_cast<size_t>(c), cudaMemcpyDeviceToDevice, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "cudaMemcpy2DAsync (D)", __FILE__, __LINE__);
    }
    return absl::OkStatus();
  }

 private:
  GemmKernel gemm_[2];  // full blocks, and the tail block when M % rows_ != 0
  size_t elem_ = 2, out_elem_ = 2, b_bytes_ = 0;
  int64_t m_ = 0, n_ = 0, k_ = 0, ldn_ = 0, rows_ = 1;
  bool trans_b_ = false;
};

// Whether a product of m rows with a shared right operand of n columns and inner dim k takes
// PaddedMatmulKernel: rows of n elements not 16-byte aligned, B's rows of k elements (trans_b)
// or the copy's aligned, and enough rows that the padding pays (not a decode step).
bool UsePaddedMatmul(DType dt, int64_t m, int64_t n, int64_t k, const KernelOptions& options,
                     DType out_dt = DType::kBool) {
  const int64_t elem = static_cast<int64_t>(ir::DTypeSize(dt));
  const int64_t out_elem =
      out_dt == DType::kBool ? elem : static_cast<int64_t>(ir::DTypeSize(out_dt));
  return options.padded_matmul && (n * out_elem) % 16 != 0 && k > 0 && (k * elem) % 16 == 0 &&
         n >= 64 && m >= 256 && dt != DType::kF64;
}

// With autotuning, `kernel` (named `name`, the default) and the kernel `alternative` makes
// from options changed by `change` compete (MakeTunedChoice); without autotuning, or when the
// alternative cannot be made, `kernel` alone.
absl::StatusOr<std::unique_ptr<DeviceKernel>> WithTunedAlternative(
    const ir::Node& node, const KernelOptions& options, std::string name,
    std::unique_ptr<DeviceKernel> kernel, std::string alternative_name,
    const std::function<void(KernelOptions&)>& change,
    const std::function<absl::StatusOr<std::unique_ptr<DeviceKernel>>(const KernelOptions&)>&
        alternative) {
  if (!options.autotune) return kernel;
  KernelOptions other = options;
  change(other);
  auto alt = alternative(other);
  if (!alt.ok()) return kernel;
  std::vector<std::pair<std::string, std::unique_ptr<DeviceKernel>>> candidates;
  candidates.emplace_back(std::move(name), std::move(kernel));
  candidates.emplace_back(std::move(alternative_name), *std::move(alt));
  return MakeTunedChoice(node, std::move(candidates));
}

// With autotuning, the padded kernel competes with the direct product on the unaligned rows
// (cuBLASLt's kernels for them may beat the copies at some shapes).
template <typename Create>
absl::StatusOr<std::unique_ptr<DeviceKernel>> PaddedOrDirect(
    const ir::Node& node, const KernelOptions& options, std::unique_ptr<DeviceKernel> padded,
    Create create) {
  return WithTunedAlternative(
      node, options, "padded", std::move(padded), "direct",
      [](KernelOptions& o) { o.padded_matmul = false; }, create);
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateMatmul(const ir::Node& node,
                                                            const KernelOptions& options,
                                                            cublasLtHandle_t lt) {
  if (node.num_inputs() != 2 || node.num_outputs() != 1) {
    return Invalid(node, "matmul takes two inputs and has one output");
  }
  const ir::TensorType& ta = node.input(0)->type();
  const ir::TensorType& tb = node.input(1)->type();
  if (ta.dtype != tb.dtype) return Invalid(node, "operands must share one dtype");
  if (ta.rank() < 1 || tb.rank() < 1) return Invalid(node, "operands must have rank >= 1");
  ir::Shape a = ta.shape, b = tb.shape;
  if (a.size() == 1) a.insert(a.begin(), 1);
  if (b.size() == 1) b.push_back(1);
  const int64_t m = a[a.size() - 2], k = a.back(), n = b.back();
  if (b[b.size() - 2] != k) {
    return Invalid(node, absl::StrCat("inner dims differ: ", ta.ToString(), " x ", tb.ToString()));
  }
  const ir::Shape a_batch(a.begin(), a.end() - 2), b_batch(b.begin(), b.end() - 2);
  PTC_ASSIGN_OR_RETURN(ir::Shape out_batch, ir::BroadcastShapes(a_batch, b_batch));
  const int64_t batch = ir::NumElements(out_batch);
  if (node.output()->type().num_elements() != batch * m * n) {
    return Invalid(node, absl::StrCat("output ", node.output()->type().ToString(),
                                      " does not match ", ta.ToString(), " x ", tb.ToString()));
  }
  const int64_t na = ir::NumElements(a_batch), nb = ir::NumElements(b_batch);
  // A batch shape that broadcasts to out_batch with as many elements equals it (padded).
  auto same = [&](const ir::Shape& s) { return ir::NumElements(s) == batch; };
  auto kernel = std::make_unique<GemmKernel>();
  Problem p;
  std::vector<std::pair<int64_t, int64_t>> loop;
  if (batch > INT32_MAX) return Invalid(node, "more than 2^31 matrices in one batch");
  if (nb == 1 && na == batch) {
    // Shared right operand: fold the batch into M (row-major A is [batch*M, K]).
    // Not for a few rows (a decode step): copying B would cost more than the slow kernel.
    if (UsePaddedMatmul(ta.dtype, batch * m, n, k, options)) {
      auto padded = std::make_unique<PaddedMatmulKernel>();
      PTC_RETURN_IF_ERROR(padded->Init(node, ta.dtype, batch * m, n, k, options, lt));
      return PaddedOrDirect(node, options, std::move(padded),
                            [&](const KernelOptions& o) { return CreateMatmul(node, o, lt); });
    }
    p = RowMajorProblem(batch * m, n, k, false, false);
  } else if ((na == 1 || same(a_batch)) && (nb == 1 || same(b_batch))) {
    p = RowMajorProblem(m, n, k, false, false);
    p.batch = batch;
    p.stride_a = nb == 1 ? 0 : k * n;  // cuBLASLt A = our B
    p.stride_b = na == 1 ? 0 : m * k;
    p.stride_d = m * n;
  } else {
    p = RowMajorProblem(m, n, k, false, false);
    // Offsets of each output batch's operands through broadcast strides.
    const size_t r = out_batch.size();
    std::vector<int64_t> sa(r, 0), sb(r, 0);
    int64_t s = m * k;
    for (size_t i = 0; i < a_batch.size(); ++i) {
      const size_t d = a_batch.size() - 1 - i;
      if (a_batch[d] != 1) sa[r - 1 - i] = s;
      s *= a_batch[d];
    }
    s = k * n;
    for (size_t i = 0; i < b_batch.size(); ++i) {
      const size_t d = b_batch.size() - 1 - i;
      if (b_batch[d] != 1) sb[r - 1 - i] = s;
      s *= b_batch[d];
    }
    for (int64_t bi = 0; bi < batch; ++bi) {
      int64_t rem = bi, oa = 0, ob = 0;
      for (int d = static_cast<int>(r) - 1; d >= 0; --d) {
        const int64_t c = rem % out_batch[d];
        rem /= out_batch[d];
        oa += c * sa[d];
        ob += c * sb[d];
      }
      loop.push_back({oa, ob});
    }
  }
  uint32_t align = 256;  // the broadcast loop's operand offsets
  const int64_t es = static_cast<int64_t>(ir::DTypeSize(ta.dtype));
  for (const auto& [oa, ob] : loop) align = std::min(align, GuaranteedAlign({oa * es, ob * es}));
  if (!loop.empty()) align = std::min(align, GuaranteedAlign({m * n * es}));
  PTC_RETURN_IF_ERROR(kernel->Init(node, ta.dtype, p, 1.0, 0.0, options, lt,
                                   CUBLASLT_EPILOGUE_DEFAULT, DType::kBool, DType::kBool, align));
  if (!loop.empty()) kernel->SetBatchLoop(std::move(loop));
  return std::unique_ptr<DeviceKernel>(std::move(kernel));
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateGemm(const ir::Node& node,
                                                          const KernelOptions& options,
                                                          cublasLtHandle_t lt) {
  if (node.num_inputs() < 2 || node.num_inputs() > 3 || node.num_outputs() != 1) {
    return Invalid(node, "gemm takes (a, b [, c]) and has one output");
  }
  const ir::TensorType& ta = node.input(0)->type();
  const ir::TensorType& tb = node.input(1)->type();
  if (ta.rank() != 2 || tb.rank() != 2 || ta.dtype != tb.dtype) {
    return Invalid(node, "a and b must be rank-2 tensors of one dtype");
  }
  PTC_ASSIGN_OR_RETURN(double alpha, node.GetFloat("alpha", 1.0));
  PTC_ASSIGN_OR_RETURN(double beta, node.GetFloat("beta", 1.0));
  PTC_ASSIGN_OR_RETURN(int64_t trans_a, node.GetInt("trans_a", 0));
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, node.GetInt("trans_b", 0));
  const int64_t m = trans_a ? ta.shape[1] : ta.shape[0];
  const int64_t k = trans_a ? ta.shape[0] : ta.shape[1];
  const int64_t n = trans_b ? tb.shape[0] : tb.shape[1];
  if ((trans_b ? tb.shape[1] : tb.shape[0]) != k) {
    return Invalid(node, absl::StrCat("inner dims differ: ", ta.ToString(), " x ", tb.ToString()));
  }
  if (node.output()->type().shape != ir::Shape{m, n}) {
    return Invalid(node, absl::StrCat("output must be [", m, ",", n, "]"));
  }
  const bool has_c = node.num_inputs() == 3 && beta != 0.0;
  // y: a's dtype, or f32 for f16 / bf16 a and b ({dtype=f32}, fold-grad-casts; no c).
  const DType y = node.output()->type().dtype;
  if (y != ta.dtype && (y != DType::kF32 || !ir::IsHalfFloat(ta.dtype) || has_c)) {
    return Invalid(node, "the output must have a's dtype, or f32 for f16 / bf16 a, b without c");
  }
  auto kernel = std::make_unique<GemmKernel>();
  const Problem p = RowMajorProblem(m, n, k, trans_a != 0, trans_b != 0);
  PTC_RETURN_IF_ERROR(kernel->Init(node, ta.dtype, p, alpha, has_c ? beta : 0.0, options, lt,
                                   CUBLASLT_EPILOGUE_DEFAULT,
                                   y == ta.dtype ? DType::kBool : y));
  if (has_c) {
    const ir::TensorType& tc = node.input(2)->type();
    if (tc.dtype != ta.dtype || tc.rank() > 2) return Invalid(node, "c must broadcast to [M, N]");
    ir::Shape c = tc.shape;
    while (c.size() < 2) c.insert(c.begin(), 1);
    if ((c[0] != 1 && c[0] != m) || (c[1] != 1 && c[1] != n)) {
      return Invalid(node, absl::StrCat("c ", tc.ToString(), " does not broadcast to [", m, ",",
                                        n, "]"));
    }
    kernels::CopyDesc d;
    d.rank = 2;
    d.n = m * n;
    d.shape[0] = m;
    d.shape[1] = n;
    d.in_strides[0] = c[0] == 1 ? 0 : c[1];
    d.in_strides[1] = c[1] == 1 ? 0 : 1;
    d.out_strides[0] = n;
    d.out_strides[1] = 1;
    kernel->SetBias(d);
  }
  return std::unique_ptr<DeviceKernel>(std::move(kernel));
}


// fused_matmul(x, w[, bias[, addend]]) {trans_b, activation, dtype}: one GEMM over the folded
// batch, the bias (and relu, and gelu_tanh: cuBLASLt's GELU) in the cuBLASLt epilogue, the
// addend as C (beta = 1, read from its own buffer: D = x w + bias + addend in f32, rounded once
// to D's dtype), the exact gelu as an in-place elementwise pass. {dtype=f32} of bf16 / f16
// operands: D (and the bias) in f32.
// With a second output (the GELU's input, fuse-gelu-aux): cuBLASLt's GELU_AUX(_BIAS) writes
// both when the epilogue applies the GELU (no gelu pass); else the GEMM writes the input into
// output 1 and the gelu pass reads it from there into output 0.
class FusedMatMulKernel final : public DeviceKernel {
 public:
  FusedMatMulKernel(std::unique_ptr<GemmKernel> gemm, bool has_bias, bool has_addend,
                    bool gelu_pass, kernels::Op gelu_op, kernels::DT dt, int64_t n,
                    bool aux_output = false)
      : gemm_(std::move(gemm)), has_bias_(has_bias), has_addend_(has_addend),
        gelu_pass_(gelu_pass), aux_output_(aux_output), gelu_op_(gelu_op), dt_(dt), n_(n) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    if (has_bias_) PTC_RETURN_IF_ERROR(gemm_->SetBiasPointer(in[2]));
    if (aux_output_ && !gelu_pass_) PTC_RETURN_IF_ERROR(gemm_->SetAuxPointer(out[1]));
    void* d = aux_output_ && gelu_pass_ ? out[1] : out[0];
    // The addend follows the bias, or is the third operand without one (ops_fused.h).
    PTC_RETURN_IF_ERROR(gemm_->RunOn(ctx, in[0], in[1], d,
                                     has_addend_ ? in[has_bias_ ? 3 : 2] : nullptr));
    if (!gelu_pass_) return absl::OkStatus();
    kernels::BroadcastDesc bd;
    bd.rank = 1;
    bd.n = n_;
    bd.shape[0] = n_;
    bd.strides[0][0] = 1;
    const cudaError_t e =
        kernels::LaunchElementwise(gelu_op_, dt_, bd, d, nullptr, out[0], ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchElementwise (gelu)", __FILE__, __LINE__);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<GemmKernel> gemm_;
  bool has_bias_, has_addend_, gelu_pass_, aux_output_;
  kernels::Op gelu_op_;
  kernels::DT dt_;
  int64_t n_;
};

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateFusedMatMul(const ir::Node& node,
                                                               const KernelOptions& options,
                                                               cublasLtHandle_t lt) {
  if (node.num_inputs() < 2 || node.num_inputs() > 4 || node.num_outputs() < 1 ||
      node.num_outputs() > 2) {
    return Invalid(node, "fused_matmul takes (x, w [, bias [, addend]]) and has one output "
                         "(or two: the GELU's input)");
  }
  const ir::TensorType& x = node.input(0)->type();
  const ir::TensorType& w = node.input(1)->type();
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, node.GetInt("trans_b", 0));
  PTC_ASSIGN_OR_RETURN(std::string act, node.GetString("activation", "none"));
  if (x.rank() < 2 || w.rank() != 2 || w.dtype != x.dtype) {
    return Invalid(node, "x must have rank >= 2 and w rank 2, one dtype");
  }
  const int64_t k = x.shape.back();
  const int64_t n = trans_b ? w.shape[0] : w.shape[1];
  if ((trans_b ? w.shape[1] : w.shape[0]) != k) return Invalid(node, "inner dims differ");
  const int64_t rows = x.num_elements() / std::max<int64_t>(k, 1);
  const ir::Value* bias = ir::FusedMatMulBias(node);
  const ir::Value* addend = ir::FusedMatMulAddend(node);
  const bool has_bias = bias != nullptr, has_addend = addend != nullptr;
  const ir::TensorType& y = node.output(0)->type();
  if (has_bias && (bias->type().num_elements() != n || bias->type().dtype != y.dtype)) {
    return Invalid(node, "bias must be [N] of the output's dtype");
  }
  if (has_addend && (addend->type() != y || act != "none")) {
    return Invalid(node, "the addend must have the output's type (activation none)");
  }
  const bool aux = node.num_outputs() == 2;
  if (aux && (node.output(1)->type() != y || (act != "gelu" && act != "gelu_tanh"))) {
    return Invalid(node, "the second output (the GELU's input) needs a gelu activation and "
                         "the output's type");
  }
  if (!has_bias && !has_addend && act == "none" && (y.dtype == x.dtype || y.dtype == DType::kF32) &&
      UsePaddedMatmul(x.dtype, rows, n, k, options, y.dtype)) {
    // A tied LM head read as is (trans_b=1, [V, D]) with V = 50257: padded output rows (in
    // f32 for a --precision inference plan's logits: fold-matmul-casts).
    auto padded = std::make_unique<PaddedMatmulKernel>();
    PTC_RETURN_IF_ERROR(padded->Init(node, x.dtype, rows, n, k, options, lt, trans_b != 0,
                                     y.dtype));
    return PaddedOrDirect(node, options, std::move(padded),
                          [&](const KernelOptions& o) { return CreateFusedMatMul(node, o, lt); });
  }
  cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
  bool gelu_pass = false;
  kernels::Op gelu_op = kernels::Op::kGelu;
  if (act == "relu") {
    epi = has_bias ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_RELU;
  } else {
    if (has_bias) epi = CUBLASLT_EPILOGUE_BIAS;
    if (act == "gelu" || act == "gelu_tanh") {
      gelu_pass = true;
      gelu_op = act == "gelu" ? kernels::Op::kGelu : kernels::Op::kGeluTanh;
    } else if (act != "none") {
      return Invalid(node, absl::StrCat("unknown activation '", act, "'"));
    }
  }
  auto gemm = std::make_unique<GemmKernel>();
  const Problem p = RowMajorProblem(rows, n, k, false, trans_b != 0);
  const double beta = has_addend ? 1.0 : 0.0;
  const DType bias_dt = has_bias ? y.dtype : DType::kBool;
  // gelu_tanh is cuBLASLt's GELU (the tanh form), applied to the f32 accumulator in the
  // epilogue; with a second output GELU_AUX(_BIAS) also writes the GELU's input (rounded to
  // y's dtype; its leading dimension N must be a multiple of 8). Where no algorithm has it,
  // the pass below (from output 1 with a second output, else in place).
  const cublasLtEpilogue_t gelu_epi =
      aux ? (has_bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX)
          : (has_bias ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_GELU);
  if (act == "gelu_tanh" && !options.gelu_pass && (!aux || n % 8 == 0) &&
      gemm->Init(node, x.dtype, p, 1.0, beta, options, lt, gelu_epi, y.dtype, bias_dt,
                 /*min_align=*/256, /*aux_ld=*/aux ? n : 0)
          .ok()) {
    gelu_pass = false;
  } else {
    gemm = std::make_unique<GemmKernel>();
    PTC_RETURN_IF_ERROR(gemm->Init(node, x.dtype, p, 1.0, beta, options, lt, epi,
                                   y.dtype, bias_dt));
  }
  return std::unique_ptr<DeviceKernel>(new FusedMatMulKernel(
      std::move(gemm), has_bias, has_addend, gelu_pass, gelu_op,
      static_cast<kernels::DT>(static_cast<int>(y.dtype)), rows * n, aux));
}

// gemm_gelu_grad(a, b, pre) {trans_a, trans_b, approximate}: y = (op(a) op(b)) * gelu'(pre).
// The tanh form: one GEMM with cuBLASLt's DGELU epilogue reading pre as its aux matrix (N a
// multiple of 8). Else (the erf form, no algorithm, KernelOptions::gelu_pass): the GEMM into y,
// then gelu_grad in place (y = y * gelu'(pre)).
class GemmGeluGradKernel final : public DeviceKernel {
 public:
  absl::Status Init(const ir::Node& node, const KernelOptions& options, cublasLtHandle_t lt) {
    if (node.num_inputs() != 3 || node.num_outputs() != 1) {
      return Invalid(node, "gemm_gelu_grad takes (a, b, pre) and has one output");
    }
    const ir::TensorType& ta = node.input(0)->type();
    const ir::TensorType& tb = node.input(1)->type();
    const ir::TensorType& y = node.output(0)->type();
    PTC_ASSIGN_OR_RETURN(int64_t trans_a, node.GetInt("trans_a", 0));
    PTC_ASSIGN_OR_RETURN(int64_t trans_b, node.GetInt("trans_b", 0));
    // (Held in the StatusOr: GCC 12 warns of an uninitialized string when it is moved out.)
    const absl::StatusOr<std::string> approx = node.GetString("approximate", "none");
    if (!approx.ok()) return approx.status();
    if (*approx != "none" && *approx != "tanh") {
      return Invalid(node, absl::StrCat("approximate must be \"none\" or \"tanh\", got \"",
                                        *approx, "\""));
    }
    if (ta.rank() != 2 || tb.rank() != 2 || tb.dtype != ta.dtype || y.dtype != ta.dtype ||
        node.input(2)->type() != y) {
      return Invalid(node, "a and b must be rank-2 of one dtype, pre and the output [M, N] of it");
    }
    const int64_t m = trans_a ? ta.shape[1] : ta.shape[0];
    const int64_t k = trans_a ? ta.shape[0] : ta.shape[1];
    const int64_t n = trans_b ? tb.shape[0] : tb.shape[1];
    if ((trans_b ? tb.shape[1] : tb.shape[0]) != k || y.shape != ir::Shape{m, n}) {
      return Invalid(node, absl::StrCat("shapes do not match: ", ta.ToString(), " x ",
                                        tb.ToString(), " -> ", y.ToString()));
    }
    dt_ = static_cast<kernels::DT>(static_cast<int>(y.dtype));
    tanh_ = *approx == "tanh";
    n_ = m * n;
    const Problem p = RowMajorProblem(m, n, k, trans_a != 0, trans_b != 0);
    epilogue_ = tanh_ && !options.gelu_pass && n % 8 == 0 &&
                gemm_.Init(node, ta.dtype, p, 1.0, 0.0, options, lt, CUBLASLT_EPILOGUE_DGELU,
                           DType::kBool, DType::kBool, /*min_align=*/256, /*aux_ld=*/n)
                    .ok();
    if (!epilogue_) {
      gemm_ = GemmKernel();
      PTC_RETURN_IF_ERROR(gemm_.Init(node, ta.dtype, p, 1.0, 0.0, options, lt));
    }
    return absl::OkStatus();
  }

  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    if (epilogue_) PTC_RETURN_IF_ERROR(gemm_.SetAuxPointer(in[2]));
    PTC_RETURN_IF_ERROR(gemm_.RunOn(ctx, in[0], in[1], out[0]));
    if (epilogue_) return absl::OkStatus();
    const cudaError_t e =
        kernels::LaunchGeluGrad(dt_, tanh_, n_, out[0], in[2], out[0], ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchGeluGrad (gemm_gelu_grad)", __FILE__, __LINE__);
    return absl::OkStatus();
  }
  // Whether the DGELU epilogue applies gelu' (else the separate pass).
  bool uses_epilogue() const { return epilogue_; }

 private:
  GemmKernel gemm_;
  bool epilogue_ = false, tanh_ = false;
  kernels::DT dt_ = kernels::DT::kF32;
  int64_t n_ = 0;
};

// attention(q, k, v[, mask][, counter]) {scale, layout, dropout}, the two-GEMM fallback: S =
// scale q k^T (cuBLASLt, batched over heads) into f32 scratch, masked row softmax in place,
// attention dropout by the dropout kernel on those [B, H, Tq, Tk] probabilities (the element
// index the fused kernels and the unfused graph draw with), O = P v (cuBLASLt).
// Materializes [Tq, Tk] per head; used for f32 nodes the flash kernel does not take (head dims
// over 128) or with KernelOptions::attention_two_gemm.
class AttentionKernel final : public DeviceKernel {
 public:
  size_t WorkspaceBytes() const override { return static_cast<size_t>(rows_ * tk_) * 4; }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    const float* q = static_cast<const float*>(in[0]);
    const float* k = static_cast<const float*>(in[1]);
    const float* v = static_cast<const float*>(in[2]);
    float* o = static_cast<float*>(out[0]);
    float* s = static_cast<float*>(workspace);
    for (int64_t i = 0; i < outer_; ++i) {
      PTC_RETURN_IF_ERROR(qk_.RunOn(ctx, q + i * q_outer_, k + i * k_outer_,
                                    s + i * s_outer_));
    }
    cudaError_t e = kernels::LaunchAttentionSoftmax(
        rows_, tq_, heads_, tk_, s, mask_kind_ != 0 ? in[3] : nullptr, mask_kind_, mask_strides_,
        ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchAttentionSoftmax", __FILE__, __LINE__);
    if (dropout_ > 0) {
      e = kernels::LaunchDropout(kernels::DT::kF32, rows_ * tk_, s,
                                 counter_at_ >= 0 ? in[counter_at_] : nullptr, counter_i32_,
                                 dropout_, seed_, s, nullptr, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "LaunchDropout", __FILE__, __LINE__);
    }
    for (int64_t i = 0; i < outer_; ++i) {
      PTC_RETURN_IF_ERROR(pv_.RunOn(ctx, s + i * s_outer_, v + i * v_outer_, o + i * o_outer_));
    }
    return absl::OkStatus();
  }

  GemmKernel qk_, pv_;
  int64_t outer_ = 1;  // separate launches (bthd: one per batch)
  int64_t q_outer_ = 0, k_outer_ = 0, v_outer_ = 0, o_outer_ = 0, s_outer_ = 0;
  int64_t rows_ = 0, tq_ = 0, tk_ = 0, heads_ = 0;
  int mask_kind_ = 0;
  int64_t mask_strides_[4] = {0, 0, 0, 0};
  double dropout_ = 0;  // attention dropout: ratio, seed, the counter's input (-1: none)
  uint64_t seed_ = 0;
  int counter_at_ = -1;
  bool counter_i32_ = false;
};

// attention through the flash-style kernels: tensor cores (codegen/cuda/attention_tc.cu: f16 /
// bf16 with d == dv in {64, 128}, unless KernelOptions::attention_simt) or SIMT
// (codegen/cuda/attention.cu: f32 / f16 / bf16, head dims up to 128). No scratch, scores never
// materialized.
class FlashAttentionKernel final : public DeviceKernel {
 public:
  // slot_bytes: layout bt3hd's distance between the q, k and v slots of a packed row (0: three
  // separate operands).
  // counter_at: the dropout counter's input (-1: none).
  FlashAttentionKernel(kernels::DT dt, kernels::AttentionDesc d, bool tc, size_t slot_bytes,
                       int counter_at)
      : dt_(dt), d_(d), tc_(tc), slot_(slot_bytes), counter_at_(counter_at) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    const void* mask = d_.mask_kind != 0 ? in[3] : nullptr;
    kernels::AttentionDesc d = d_;
    if (counter_at_ >= 0) d.dropout_counter = in[counter_at_];
    const void* q = in[0];
    const void* k = static_cast<const char*>(in[1]) + slot_;
    const void* v = static_cast<const char*>(in[2]) + 2 * slot_;
    // A second output (save-attention-stats): the log-sum-exp for attention_grad.
    float* lse = out.size() > 1 ? static_cast<float*>(out[1]) : nullptr;
    if (tc_) {
      const cudaError_t e =
          kernels::LaunchFlashAttentionTc(dt_, d, q, k, v, mask, out[0], lse, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "LaunchFlashAttentionTc", __FILE__, __LINE__);
      return absl::OkStatus();
    }
    const cudaError_t e =
        kernels::LaunchFlashAttention(dt_, d, q, k, v, mask, out[0], lse, ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchFlashAttention", __FILE__, __LINE__);
    return absl::OkStatus();
  }

 private:
  kernels::DT dt_;
  kernels::AttentionDesc d_;
  bool tc_;
  size_t slot_;
  int counter_at_;
};

// The flash kernel's descriptor, or an error status when the node is outside what it supports
// (the caller then uses the two-GEMM path for f32).
// The flash descriptor of attention's operands q, k, v[, mask] at inputs first.. of `node`
// (attention: 0; attention_grad: 1, after dy; `trailing` inputs after the mask).
absl::StatusOr<kernels::AttentionDesc> FlashDesc(const ir::Node& node, int first,
                                                 int trailing = 0) {
  PTC_ASSIGN_OR_RETURN(ir::AttentionProblem p, ir::DescribeAttention(node, first, trailing));
  const ir::TensorType& q = node.input(first)->type();
  const ir::TensorType& vt = node.input(first + 2)->type();
  kernels::AttentionDesc d;
  d.b = p.b;
  d.h = p.h;
  d.tq = p.tq;
  d.tk = p.tk;
  d.d = p.d;
  d.dv = p.dv;
  d.hkv = p.hkv == p.h ? 0 : p.hkv;  // grouped-query attention: k / v with fewer heads
  d.scale = static_cast<float>(p.scale);
  d.softcap = static_cast<float>(p.softcap);
  // `rows`: 1, or 3 for the slots of a packed bt3hd row (q, k, v read in place); `heads`: the
  // operand's (q / o: h, k / v: hkv).
  auto strides = [&](int64_t t, int64_t hd, int64_t* st, int64_t rows, int64_t heads) {
    if (p.bthd) {
      st[0] = t * rows * heads * hd, st[1] = hd, st[2] = rows * heads * hd;
    } else {
      st[0] = heads * t * hd, st[1] = t * hd, st[2] = hd;
    }
  };
  const int64_t slots = p.packed ? 3 : 1;
  strides(d.tq, d.d, d.q_strides, slots, p.h);
  strides(d.tk, d.d, d.k_strides, slots, p.hkv);
  strides(d.tk, d.dv, d.v_strides, slots, p.hkv);
  strides(d.tq, d.dv, d.o_strides, 1, p.h);
  d.mask_kind = p.mask_kind;
  for (int i = 0; i < 4; ++i) d.mask_strides[i] = p.mask_strides[i];
  // Attention dropout: the threshold and factor from the ratio here (the CPU kernel's numbers);
  // the counter's address is the launch's (dropout_counter).
  d.dropout_threshold = ir::DropoutThreshold(p.dropout);
  d.dropout_scale = static_cast<float>(ir::DropoutScale(p.dropout));
  d.dropout_seed = static_cast<uint64_t>(p.seed);
  if (const ir::Value* c = ir::AttentionCounter(node, first, trailing)) {
    d.dropout_counter_i32 = c->type().dtype == DType::kI32;
  }
  // causal=1 (annotate-causal: the mask operand is exactly the causal triangle): the kernels
  // mask by index and visit only the tiles below the diagonal; the mask is not read. Not for an
  // additive mask with Tq > Tk: its rows with every key at -1e4 or less are a uniform average,
  // where the causal kind (and a bool mask) give NaN.
  if (p.causal && (p.mask_kind == 1 || (p.mask_kind == 2 && p.tq <= p.tk))) {
    d.mask_kind = kernels::kAttentionMaskCausal;
  }
  const auto dt = static_cast<kernels::DT>(static_cast<int>(q.dtype));
  if (!kernels::FlashAttentionSupported(dt, d)) {
    return absl::UnimplementedError(absl::StrCat(
        node.Describe(), ": the flash attention kernel supports f32 / f16 / bf16 with head dims "
        "up to ", kernels::kFlashMaxHeadDim, ", got ", q.ToString(), " and v ", vt.ToString()));
  }
  return d;
}

// Layout bt3hd: bytes between the q, k and v slots of a packed row (H * D elements); else 0.
size_t SlotBytes(const ir::Node& node, int first) {
  const ir::TensorType& t = node.input(first)->type();
  if (node.GetString("layout", "bhtd").value_or("bhtd") != "bt3hd" || t.rank() != 5) return 0;
  return static_cast<size_t>(t.shape[3] * t.shape[4]) * ir::DTypeSize(t.dtype);
}

// Whether the tensor-core kernels take a node of this dtype and descriptor.
bool UseTensorCoreAttention(kernels::DT dt, const kernels::AttentionDesc& d,
                            const KernelOptions& options) {
  return !options.attention_simt && kernels::FlashAttentionTcSupported(dt, d);
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateFlashAttention(const ir::Node& node,
                                                                   const KernelOptions& options) {
  PTC_ASSIGN_OR_RETURN(kernels::AttentionDesc d, FlashDesc(node, 0));
  const auto dt = static_cast<kernels::DT>(static_cast<int>(node.input(0)->type().dtype));
  return std::unique_ptr<DeviceKernel>(new FlashAttentionKernel(
      dt, d, UseTensorCoreAttention(dt, d, options), SlotBytes(node, 0),
      ir::AttentionCounterInput(node, 0)));
}

// attention_grad(dy, q, k, v[, mask]) -> dq, dk, dv: the flash forward is run again for O and
// the log-sum-exp (f32 [b, h, tq]), then the flash backward; with {saved_stats=1} they are the
// node's last two inputs (the forward's outputs) and only the backward runs. Tensor cores (`tc`, see
// FlashAttentionKernel): the deterministic backward writes the f16 / bf16 gradients directly.
// SIMT: its f32 gradients are the outputs for f32, or are cast into them for f16 / bf16.
// Scratch: O, lse, the backward's row sums and (SIMT, f16 / bf16) the three f32 gradients.
class FlashAttentionGradKernel final : public DeviceKernel {
 public:
  // slot_bytes: as FlashAttentionKernel's; then the one output is the packed gradient.
  FlashAttentionGradKernel(kernels::DT dt, kernels::AttentionDesc d, size_t elem, bool tc,
                           bool saved, size_t slot_bytes, int counter_at)
      : dt_(dt), d_(d), elem_(elem), tc_(tc), saved_(saved), slot_(slot_bytes),
        counter_at_(counter_at) {
    o_elems_ = d.b * d.h * d.tq * d.dv;
    rows_ = d.b * d.h * d.tq;
    n_[0] = d.b * d.h * d.tq * d.d;
    n_[1] = d.b * kernels::AttentionKvHeads(d) * d.tk * d.d;  // dk, dv: per kv head
    n_[2] = d.b * kernels::AttentionKvHeads(d) * d.tk * d.dv;
    if (slot_ > 0) {  // the SIMT backward's f32 gradients: one packed f32 buffer, cast at once
      n_[0] = n_[0] + n_[1] + n_[2];
      n_[1] = n_[2] = 0;
    }
    size_t off = 0;
    auto take = [&](size_t bytes) {
      const size_t at = off;
      off += (bytes + 255) / 256 * 256;
      return at;
    };
    if (!saved_) {
      o_off_ = take(static_cast<size_t>(o_elems_) * elem_);
      lse_off_ = take(sizeof(float) * static_cast<size_t>(rows_));
    }
    bwd_off_ = take(kernels::FlashAttentionBackwardWorkspaceBytes(d_));  // both backwards
    for (int i = 0; i < 3; ++i) {
      f32_off_[i] = dt_ == kernels::DT::kF32 || tc_
                        ? 0
                        : take(sizeof(float) * static_cast<size_t>(n_[i]));
    }
    bytes_ = off;
  }
  size_t WorkspaceBytes() const override { return bytes_; }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    char* ws = static_cast<char*>(workspace);
    void* o = saved_ ? const_cast<void*>(in[in.size() - 2]) : ws + o_off_;
    float* lse = saved_ ? static_cast<float*>(const_cast<void*>(in[in.size() - 1]))
                        : reinterpret_cast<float*>(ws + lse_off_);
    const void* mask = d_.mask_kind != 0 ? in[4] : nullptr;
    kernels::AttentionDesc d = d_;
    if (counter_at_ >= 0) d.dropout_counter = in[counter_at_];
    const void* q = in[1];
    const void* k = static_cast<const char*>(in[2]) + slot_;
    const void* v = static_cast<const char*>(in[3]) + 2 * slot_;
    void* grad[3];
    for (int i = 0; i < 3; ++i) {
      grad[i] = slot_ > 0 ? static_cast<char*>(out[0]) + i * slot_ : out[i];
    }
    if (tc_) {
      cudaError_t e = cudaSuccess;
      if (!saved_) {
        e = kernels::LaunchFlashAttentionTc(dt_, d, q, k, v, mask, o, lse, ctx.stream);
        if (e != cudaSuccess) return CudaStatus(e, "LaunchFlashAttentionTc", __FILE__, __LINE__);
      }
      e = kernels::LaunchFlashAttentionTcBackward(dt_, d, q, k, v, mask, o, in[0], lse, grad[0],
                                                  grad[1], grad[2], ws + bwd_off_, ctx.stream);
      if (e != cudaSuccess) {
        return CudaStatus(e, "LaunchFlashAttentionTcBackward", __FILE__, __LINE__);
      }
      return absl::OkStatus();
    }
    cudaError_t e = cudaSuccess;
    if (!saved_) {
      e = kernels::LaunchFlashAttention(dt_, d, q, k, v, mask, o, lse, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "LaunchFlashAttention", __FILE__, __LINE__);
    }
    const bool f32 = dt_ == kernels::DT::kF32;
    float* g[3];
    for (int i = 0; i < 3; ++i) {
      // Packed: the f32 gradients' slots in one packed f32 buffer (elements of the packed row
      // apart, as the operands' slots are).
      g[i] = f32 ? static_cast<float*>(grad[i])
                 : slot_ > 0 ? reinterpret_cast<float*>(ws + f32_off_[0]) + i * (slot_ / elem_)
                             : reinterpret_cast<float*>(ws + f32_off_[i]);
    }
    e = kernels::LaunchFlashAttentionBackward(dt_, d, q, k, v, mask, o, in[0], lse, g[0], g[1],
                                              g[2], ws + bwd_off_, ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchFlashAttentionBackward", __FILE__, __LINE__);
    if (!f32) {
      for (int i = 0; i < 3; ++i) {
        if (n_[i] == 0) continue;
        e = kernels::LaunchCast(kernels::DT::kF32, dt_, n_[i], g[i], out[i], ctx.stream);
        if (e != cudaSuccess) return CudaStatus(e, "LaunchCast", __FILE__, __LINE__);
      }
    }
    return absl::OkStatus();
  }

 private:
  kernels::DT dt_;
  kernels::AttentionDesc d_;
  size_t elem_;
  bool tc_, saved_;
  size_t slot_;
  int counter_at_;
  int64_t o_elems_ = 0, rows_ = 0, n_[3] = {0, 0, 0};
  size_t o_off_ = 0, lse_off_ = 0, bwd_off_ = 0, f32_off_[3] = {0, 0, 0}, bytes_ = 0;
};

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateOwnAttentionGrad(const ir::Node& node,
                                                                     const KernelOptions& options) {
  PTC_ASSIGN_OR_RETURN(int64_t saved, node.GetInt("saved_stats", 0));
  const size_t extra = saved ? 2 : 0;
  const size_t slot = SlotBytes(node, 1);
  const size_t grads = slot > 0 ? 1 : 3;  // bt3hd: the packed gradient
  if (node.num_inputs() < 4 + extra || node.num_inputs() > 6 + extra ||
      node.num_outputs() != grads) {
    return Invalid(node, absl::StrCat("attention_grad takes (dy, q, k, v [, mask][, counter]",
                                      saved ? ", o, lse" : "", ") and returns ",
                                      slot > 0 ? "the packed dqkv" : "(dq, dk, dv)"));
  }
  PTC_ASSIGN_OR_RETURN(kernels::AttentionDesc d, FlashDesc(node, 1, static_cast<int>(extra)));
  for (size_t i = 0; i < grads; ++i) {
    if (node.output(i)->type() != node.input(i + 1)->type()) {
      return Invalid(node, "each gradient must have its operand's type");
    }
  }
  // dy (and the recomputed O) use the output's layout, which o_strides describe.
  const ir::DType dtype = node.input(1)->type().dtype;
  if (node.input(0)->type().dtype != dtype) return Invalid(node, "dy must have q's dtype");
  const auto dt = static_cast<kernels::DT>(static_cast<int>(dtype));
  const int counter_at = ir::AttentionCounterInput(node, 1, static_cast<int>(extra));
  return std::unique_ptr<DeviceKernel>(new FlashAttentionGradKernel(
      dt, d, ir::DTypeSize(dtype), UseTensorCoreAttention(dt, d, options), saved != 0, slot,
      counter_at));
}

// The flash kernels (tensor-core or SIMT), or the two-GEMM fallback.
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateOwnAttention(const ir::Node& node,
                                                                 const KernelOptions& options,
                                                                 cublasLtHandle_t lt) {
  if (node.num_inputs() < 3 || node.num_inputs() > 5) {
    return Invalid(node, "attention takes (q, k, v [, mask][, counter])");
  }
  const ir::TensorType& q = node.input(0)->type();
  const ir::TensorType& kt = node.input(1)->type();
  const ir::TensorType& vt = node.input(2)->type();
  if (!options.attention_two_gemm) {
    auto flash = CreateFlashAttention(node, options);
    if (flash.ok() || flash.status().code() != absl::StatusCode::kUnimplemented ||
        q.dtype != DType::kF32) {
      return flash;
    }
  }
  // Fallback (f32, head dims over 128, or KernelOptions::attention_two_gemm).
  if (node.num_outputs() != 1) {
    return absl::UnimplementedError(absl::StrCat(
        node.Describe(), ": the log-sum-exp output needs the flash kernels (head dims up to ",
        kernels::kFlashMaxHeadDim, ", not KernelOptions::attention_two_gemm)"));
  }
  if (q.dtype != DType::kF32 || kt.dtype != DType::kF32 || vt.dtype != DType::kF32) {
    return absl::UnimplementedError(absl::StrCat(
        node.Describe(), ": no CUDA attention kernel for ", q.ToString(),
        " yet (f32 only; bf16/f16 come with the flash kernel)"));
  }
  if (q.rank() != 4 || kt.rank() != 4 || vt.rank() != 4) return Invalid(node, "q, k, v must have rank 4");
  PTC_ASSIGN_OR_RETURN(std::string layout, node.GetString("layout", "bhtd"));
  const bool bthd = layout == "bthd";
  if (!bthd && layout != "bhtd") return Invalid(node, "layout must be bhtd or bthd");
  const int ta = bthd ? 1 : 2, ha = bthd ? 2 : 1;
  const int64_t b = q.shape[0], h = q.shape[ha], tq = q.shape[ta], tk = kt.shape[ta];
  const int64_t d = q.shape[3], dv = vt.shape[3];
  if (kt.shape[ha] != h || vt.shape[ha] != h) {
    return absl::UnimplementedError(absl::StrCat(
        node.Describe(), ": grouped-query attention (k / v with ", kt.shape[ha], " heads for q's ",
        h, ") needs the flash kernels (head dims up to ", kernels::kFlashMaxHeadDim,
        ", not KernelOptions::attention_two_gemm)"));
  }
  PTC_ASSIGN_OR_RETURN(double scale, node.GetFloat("scale", 1.0 / std::sqrt(double(d))));
  PTC_ASSIGN_OR_RETURN(double softcap, node.GetFloat("softcap", 0.0));
  if (softcap != 0.0) {
    return absl::UnimplementedError(absl::StrCat(
        node.Describe(), ": softcap needs the flash kernels (head dims up to ",
        kernels::kFlashMaxHeadDim, ", not KernelOptions::attention_two_gemm)"));
  }
  auto kernel = std::make_unique<AttentionKernel>();
  kernel->rows_ = b * h * tq;
  kernel->tq_ = tq;
  kernel->tk_ = tk;
  kernel->heads_ = h;
  // Row strides of one head's [T, D] matrix and the stride between heads.
  const int64_t q_ld = bthd ? h * d : d, k_ld = bthd ? h * d : d, v_ld = bthd ? h * dv : dv;
  const int64_t q_hs = bthd ? d : tq * d, k_hs = bthd ? d : tk * d, v_hs = bthd ? dv : tk * dv;
  const int64_t o_hs = q_hs / d * dv;
  const int64_t batch = bthd ? h : b * h;
  kernel->outer_ = bthd ? b : 1;
  kernel->q_outer_ = tq * h * d;
  kernel->k_outer_ = tk * h * d;
  kernel->v_outer_ = tk * h * dv;
  kernel->o_outer_ = tq * h * dv;
  kernel->s_outer_ = h * tq * tk;
  Problem qk = RowMajorProblem(tq, tk, d, false, true);
  qk.lda = k_ld;  // cuBLASLt A = K (read transposed)
  qk.ldb = q_ld;
  qk.batch = batch;
  qk.stride_a = k_hs;
  qk.stride_b = q_hs;
  qk.stride_d = tq * tk;
  // bthd: one launch per batch, each operand advanced by its batch stride (f32).
  const uint32_t align = GuaranteedAlign({4 * kernel->q_outer_, 4 * kernel->k_outer_,
                                          4 * kernel->v_outer_, 4 * kernel->o_outer_,
                                          4 * kernel->s_outer_});
  PTC_RETURN_IF_ERROR(kernel->qk_.Init(node, DType::kF32, qk, scale, 0.0, options, lt,
                                       CUBLASLT_EPILOGUE_DEFAULT, DType::kBool, DType::kBool,
                                       align));
  Problem pv = RowMajorProblem(tq, dv, tk, false, false);
  pv.lda = v_ld;  // cuBLASLt A = V
  pv.ldb = tk;
  pv.ldd = bthd ? h * dv : dv;
  pv.batch = batch;
  pv.stride_a = v_hs;
  pv.stride_b = tq * tk;
  pv.stride_d = o_hs;
  PTC_RETURN_IF_ERROR(kernel->pv_.Init(node, DType::kF32, pv, 1.0, 0.0, options, lt,
                                       CUBLASLT_EPILOGUE_DEFAULT, DType::kBool, DType::kBool,
                                       align));
  PTC_ASSIGN_OR_RETURN(kernel->dropout_, node.GetFloat("dropout", 0.0));
  PTC_ASSIGN_OR_RETURN(int64_t seed, node.GetInt("seed", 0));
  kernel->seed_ = static_cast<uint64_t>(seed);
  kernel->counter_at_ = ir::AttentionCounterInput(node, 0);
  kernel->counter_i32_ = kernel->counter_at_ >= 0 &&
                         node.input(kernel->counter_at_)->type().dtype == DType::kI32;
  if (const ir::Value* mask = ir::AttentionMask(node, 0)) {
    const ir::TensorType& m = mask->type();
    if (m.dtype != DType::kBool && m.dtype != DType::kF32) return Invalid(node, "mask must be bool or f32");
    if (m.rank() > 4) return Invalid(node, "mask has more than 4 dims");
    kernel->mask_kind_ = m.dtype == DType::kBool ? 1 : 2;
    // Broadcast strides of the mask over [B, H, Tq, Tk] (the mask is in that order in both
    // layouts).
    int64_t stride = 1;
    for (int i = 0; i < m.rank(); ++i) {
      const int dim = m.rank() - 1 - i;
      if (m.shape[dim] != 1) kernel->mask_strides_[3 - i] = stride;
      stride *= m.shape[dim];
    }
  }
  return std::unique_ptr<DeviceKernel>(std::move(kernel));
}

// cuDNN's SDPA (KernelOptions::attention_cudnn; what it declines runs on ptc's kernels) or
// ptc's kernels. With KernelOptions::autotune every implementation that takes the node is a
// candidate, the option's choice first (the default): ptc's tensor-core kernels and then the
// SIMT ones (which can win on short or single-query shapes), and cuDNN's where it loads; the
// first run keeps the fastest.
using KernelFactory = std::function<absl::StatusOr<std::unique_ptr<DeviceKernel>>()>;
absl::StatusOr<std::unique_ptr<DeviceKernel>> ChooseAttention(
    const ir::Node& node, const KernelOptions& options, bool tc_default,
    const KernelFactory& cudnn,
    const std::function<absl::StatusOr<std::unique_ptr<DeviceKernel>>(const KernelOptions&)>& own) {
  if (!options.attention_cudnn && !options.autotune) return own(options);
  auto fused = cudnn();
  if (!fused.ok() && fused.status().code() != absl::StatusCode::kUnimplemented) return fused;
  if (!options.autotune) return fused.ok() ? std::move(fused) : own(options);
  std::vector<std::pair<std::string, std::unique_ptr<DeviceKernel>>> candidates;
  if (fused.ok() && options.attention_cudnn) candidates.emplace_back("cudnn", std::move(*fused));
  auto mine = own(options);
  if (mine.ok()) {
    candidates.emplace_back(tc_default ? "tc" : "simt", std::move(*mine));
    if (tc_default) {
      KernelOptions simt = options;
      simt.attention_simt = true;
      auto s = own(simt);
      if (s.ok()) candidates.emplace_back("simt", std::move(*s));
    }
  }
  if (fused.ok() && !options.attention_cudnn) candidates.emplace_back("cudnn", std::move(*fused));
  if (candidates.empty()) return mine.status();
  if (candidates.size() == 1) return std::move(candidates[0].second);
  return MakeTunedChoice(node, std::move(candidates));
}

// Whether ptc's default kernel for the node's operands (q at `first`) is the tensor-core one.
bool TensorCoreDefault(const ir::Node& node, int first, int trailing,
                       const KernelOptions& options) {
  auto d = FlashDesc(node, first, trailing);
  if (!d.ok() || options.attention_two_gemm) return false;
  const auto dt = static_cast<kernels::DT>(static_cast<int>(node.input(first)->type().dtype));
  return UseTensorCoreAttention(dt, *d, options);
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateAttention(const ir::Node& node,
                                                              const KernelOptions& options,
                                                              cublasLtHandle_t lt) {
  return ChooseAttention(
      node, options, TensorCoreDefault(node, 0, 0, options),
      [&] { return CreateCudnnAttention(node); },
      [&](const KernelOptions& o) { return CreateOwnAttention(node, o, lt); });
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateAttentionGrad(const ir::Node& node,
                                                                  const KernelOptions& options) {
  const int saved = node.GetInt("saved_stats", 0).value_or(0) != 0 ? 2 : 0;
  return ChooseAttention(
      node, options, TensorCoreDefault(node, 1, saved, options),
      [&] { return CreateCudnnAttentionGrad(node); },
      [&](const KernelOptions& o) { return CreateOwnAttentionGrad(node, o); });
}

}  // namespace

// linear_ce_loss(x [N, D], w, labels [, bias]) -> loss [, dx_unit, dw_unit [, db_unit]]
// (ops_fused.cc): blocks of rows_ rows; per block one cuBLASLt product for the logits into
// scratch, the row kernel of train.cu (the bias added as it reads the logits; loss per row;
// with the gradient outputs G = (softmax - onehot) * norm, written in the product dtype), then
// dx_blk = G op(w)^T, dw += the block's outer product (beta 1 after one memset) and db += G's
// column sums (f32, LaunchColumnSumAccumulate). The final loss is a fixed-order sum over the rows: deterministic. The scratch
// rows of logits and G are padded to ld_ (a multiple of 64 elements): with V = 50257 unpadded
// rows are only 2-byte aligned, and cuBLASLt then falls back to slow kernels for all three
// products.
class LinearCeKernel final : public DeviceKernel {
 public:
  absl::Status Init(const ir::Node& node, const KernelOptions& options, cublasLtHandle_t lt) {
    const ir::TensorType& x = node.input(0)->type();
    const ir::TensorType& w = node.input(1)->type();
    const ir::TensorType& lab = node.input(2)->type();
    PTC_ASSIGN_OR_RETURN(int64_t tb, node.GetInt("trans_b", 0));
    PTC_ASSIGN_OR_RETURN(std::string red, node.GetString("reduction", "mean"));
    const bool float_ok = x.dtype == DType::kF32 || x.dtype == DType::kBF16 ||
                          x.dtype == DType::kF16;
    bias_ = node.num_inputs() == 4;
    const size_t grad_outputs = bias_ ? 4 : 3;
    if (!float_ok || w.dtype != x.dtype || x.rank() != 2 || w.rank() != 2 ||
        (red != "mean" && red != "sum") ||
        (node.num_outputs() != 1 && node.num_outputs() != grad_outputs) ||
        (lab.dtype != DType::kI64 && lab.dtype != DType::kI32)) {
      return Invalid(node, absl::StrCat("linear_ce_loss expects x [N, D] and w of one dtype "
                                        "(f32, bf16, f16), i32/i64 labels, reduction mean or "
                                        "sum, 1 or ", grad_outputs, " outputs"));
    }
    dt_ = x.dtype;
    low_ = dt_ != DType::kF32;
    elem_ = ir::DTypeSize(dt_);
    trans_b_ = tb != 0;
    n_ = x.shape[0];
    d_ = x.shape[1];
    v_ = trans_b_ ? w.shape[0] : w.shape[1];
    if ((trans_b_ ? w.shape[1] : w.shape[0]) != d_ || lab.shape != ir::Shape{n_} ||
        (bias_ && node.input(3)->type() != ir::TensorType{dt_, {v_}})) {
      return Invalid(node, "shapes of x, w, labels and bias do not match");
    }
    grads_ = node.num_outputs() > 1;
    // {grad_dtype=f32} of f16 / bf16 inputs: dx, dw (and db) in f32 (dx's GEMM writes f32 D,
    // dw and db are summed straight into the outputs: no f32 scratch, no cast).
    grad32_ = grads_ && low_ && node.output(1)->type().dtype == DType::kF32 &&
              node.output(2)->type().dtype == DType::kF32;
    dx_elem_ = grad32_ ? sizeof(float) : elem_;
    labels_i64_ = lab.dtype == DType::kI64;
    desc_.n = n_;
    desc_.c = v_;
    desc_.d = 1;
    desc_.reduction = red == "sum" ? 1 : 2;
    if (node.has_attr("ignore_index")) {
      PTC_ASSIGN_OR_RETURN(desc_.ignore_index, node.GetInt("ignore_index"));
      desc_.has_ignore = true;
    }
    ld_ = PaddedLd(v_);
    PTC_ASSIGN_OR_RETURN(double softcap, node.GetFloat("softcap", 0.0));
    softcap_ = static_cast<float>(softcap);  // Gemma 2's logit capping, in the row kernel
    PTC_ASSIGN_OR_RETURN(double scale, node.GetFloat("scale", 1.0));
    scale_ = static_cast<float>(scale);  // a logit scale (Cohere), in the row kernel too
    // f16 / bf16 inputs: the logits in that dtype, as autocast's (half the bytes written and
    // read twice by the row pass; G then overwrites them in place), unless
    // KernelOptions::linear_ce_f32_logits.
    low_logits_ = low_ && !options.linear_ce_f32_logits;
    logit_elem_ = low_logits_ ? elem_ : sizeof(float);
    // ~256 MiB of logits per block in a multiple of 128 rows (whole GEMM tiles), at least 256
    // rows (or KernelOptions::linear_ce_rows).
    rows_ = options.linear_ce_rows > 0
                ? options.linear_ce_rows
                : std::max<int64_t>(256, (int64_t{256} << 20) /
                                             (static_cast<int64_t>(logit_elem_) *
                                              std::max<int64_t>(ld_, 64)) /
                                             128 * 128);
    rows_ = std::max<int64_t>(1, std::min(rows_, n_));
    const int64_t tail = n_ % rows_;
    for (int s = 0; s < (tail ? 2 : 1); ++s) {
      const int64_t c = s == 0 ? rows_ : tail;
      auto& g = shapes_[s];
      // Low-precision inputs: the logits in the low dtype (or f32), G in the low dtype for the
      // two backward products, and dw summed over the blocks in f32.
      const DType f32_out = low_ ? DType::kF32 : DType::kBool;
      Problem logits = RowMajorProblem(c, v_, d_, false, trans_b_);
      logits.ldd = ld_;
      // x and dx advance by rows_ rows per block; the scratch is 256-byte aligned.
      const uint32_t align = GuaranteedAlign({rows_ * d_ * static_cast<int64_t>(elem_)});
      PTC_RETURN_IF_ERROR(g.logits.Init(node, dt_, logits, 1.0, 0.0, options, lt,
                                        CUBLASLT_EPILOGUE_DEFAULT,
                                        low_logits_ ? DType::kBool : f32_out, DType::kBool,
                                        align));
      if (!grads_) continue;
      Problem dx = RowMajorProblem(c, d_, v_, false, !trans_b_);
      dx.ldb = ld_;  // cuBLASLt B = our A = G
      const uint32_t dx_align =
          std::min(align, GuaranteedAlign({rows_ * d_ * static_cast<int64_t>(dx_elem_)}));
      PTC_RETURN_IF_ERROR(g.dx.Init(node, dt_, dx, 1.0, 0.0, options, lt,
                                    CUBLASLT_EPILOGUE_DEFAULT,
                                    grad32_ ? DType::kF32 : DType::kBool, DType::kBool,
                                    dx_align));
      Problem dw = trans_b_ ? RowMajorProblem(v_, d_, c, true, false)
                            : RowMajorProblem(d_, v_, c, true, false);
      (trans_b_ ? dw.ldb : dw.lda) = ld_;  // G: our A (dw = G^T x) or our B (dw = x^T G)
      PTC_RETURN_IF_ERROR(g.dw.Init(node, dt_, dw, 1.0, 1.0, options, lt,
                                    CUBLASLT_EPILOGUE_DEFAULT, f32_out, DType::kBool, align));
    }
    // Scratch: the block's logits, a low-precision copy of G (f32 logits of low inputs), dw in
    // f32 (low inputs), row losses and weights of all N rows, the normalizer.
    logits_bytes_ = AlignScratch(logit_elem_ * static_cast<size_t>(rows_ * ld_));
    g_low_bytes_ = low_ && !low_logits_ && grads_
                       ? AlignScratch(elem_ * static_cast<size_t>(rows_ * ld_))
                       : 0;
    dw32_bytes_ = low_ && grads_ && !grad32_
                      ? AlignScratch(sizeof(float) * static_cast<size_t>(d_ * v_))
                      : 0;
    db32_bytes_ = bias_ && low_ && grads_ && !grad32_
                      ? AlignScratch(sizeof(float) * static_cast<size_t>(v_))
                      : 0;
    rows_bytes_ = AlignScratch(sizeof(float) * static_cast<size_t>(n_));
    return absl::OkStatus();
  }

  size_t WorkspaceBytes() const override {
    return logits_bytes_ + g_low_bytes_ + dw32_bytes_ + db32_bytes_ + 2 * rows_bytes_ + 256;
  }
  int64_t rows() const { return rows_; }          // per block
  int64_t total_rows() const { return n_; }

  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    const char* x = static_cast<const char*>(in[0]);
    const void* w = in[1];
    const char* labels = static_cast<const char*>(in[2]);
    char* ws = static_cast<char*>(workspace);
    void* logits = ws;
    void* g_low = ws + logits_bytes_;
    void* dw32 = ws + logits_bytes_ + g_low_bytes_;
    void* db32 = ws + logits_bytes_ + g_low_bytes_ + dw32_bytes_;
    char* rows_base = ws + logits_bytes_ + g_low_bytes_ + dw32_bytes_ + db32_bytes_;
    float* row_loss = reinterpret_cast<float*>(rows_base);
    float* row_w = reinterpret_cast<float*>(rows_base + rows_bytes_);
    float* norm = reinterpret_cast<float*>(rows_base + 2 * rows_bytes_);
    char* dx = grads_ ? static_cast<char*>(out[1]) : nullptr;
    // dw accumulates over the blocks: in the output (f32) or in f32 scratch (low inputs
    // with a low-precision dw).
    void* dw = grads_ ? (low_ && !grad32_ ? dw32 : out[2]) : nullptr;
    // db likewise (f32 sums of G's columns over the blocks).
    float* db = grads_ && bias_ ? static_cast<float*>(low_ && !grad32_ ? db32 : out[3]) : nullptr;
    const void* bias = bias_ ? in[3] : nullptr;
    cudaError_t e = kernels::LaunchLossNorm(desc_, labels, labels_i64_, norm, ctx.error_flag,
                                            ctx.error_code, ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchLossNorm", __FILE__, __LINE__);
    if (grads_) {
      e = cudaMemsetAsync(dw, 0, sizeof(float) * static_cast<size_t>(d_ * v_), ctx.stream);  // f32
      if (e != cudaSuccess) return CudaStatus(e, "cudaMemsetAsync (dw)", __FILE__, __LINE__);
    }
    if (db != nullptr) {
      e = cudaMemsetAsync(db, 0, sizeof(float) * static_cast<size_t>(v_), ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "cudaMemsetAsync (db)", __FILE__, __LINE__);
    }
    const size_t label_size = labels_i64_ ? 8 : 4;
    for (int64_t r0 = 0; r0 < n_; r0 += rows_) {
      const int64_t c = std::min(rows_, n_ - r0);
      auto& g = shapes_[c == rows_ ? 0 : 1];
      const char* xb = x + r0 * d_ * static_cast<int64_t>(elem_);
      PTC_RETURN_IF_ERROR(g.logits.RunOn(ctx, xb, w, logits));
      void* gm = low_ && !low_logits_ ? g_low : logits;  // G in place where the dtypes agree
      const kernels::DT g_dt = low_ ? LowDT() : kernels::DT::kF32;
      e = kernels::LaunchLinearCeRows(c, v_, ld_, low_logits_ ? g_dt : kernels::DT::kF32, logits,
                                      g_dt, gm, bias, labels + r0 * label_size, labels_i64_,
                                      desc_.has_ignore, desc_.ignore_index, norm, grads_,
                                      scale_, softcap_, row_loss + r0, row_w + r0, ctx.error_flag,
                                      ctx.error_code, ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "LaunchLinearCeRows", __FILE__, __LINE__);
      if (!grads_) continue;
      PTC_RETURN_IF_ERROR(g.dx.RunOn(ctx, gm, w, dx + r0 * d_ * static_cast<int64_t>(dx_elem_)));
      if (trans_b_) {
        PTC_RETURN_IF_ERROR(g.dw.RunOn(ctx, gm, xb, dw));
      } else {
        PTC_RETURN_IF_ERROR(g.dw.RunOn(ctx, xb, gm, dw));
      }
      if (db != nullptr) {
        e = kernels::LaunchColumnSumAccumulate(c, v_, ld_, g_dt, gm, db, ctx.stream);
        if (e != cudaSuccess) return CudaStatus(e, "LaunchColumnSumAccumulate", __FILE__, __LINE__);
      }
    }
    if (grads_ && low_ && !grad32_) {
      e = kernels::LaunchCast(kernels::DT::kF32, LowDT(), d_ * v_, dw32, out[2], ctx.stream);
      if (e != cudaSuccess) return CudaStatus(e, "LaunchCast (dw)", __FILE__, __LINE__);
      if (db != nullptr) {
        e = kernels::LaunchCast(kernels::DT::kF32, LowDT(), v_, db, out[3], ctx.stream);
        if (e != cudaSuccess) return CudaStatus(e, "LaunchCast (db)", __FILE__, __LINE__);
      }
    }
    e = kernels::LaunchLossReduce(n_, desc_.reduction, row_loss, row_w,
                                  static_cast<float*>(out[0]), ctx.stream);
    if (e != cudaSuccess) return CudaStatus(e, "LaunchLossReduce", __FILE__, __LINE__);
    return absl::OkStatus();
  }

 private:
  kernels::DT LowDT() const { return static_cast<kernels::DT>(static_cast<int>(dt_)); }
  struct Shape {
    GemmKernel logits, dx, dw;
  };
  Shape shapes_[2];  // full blocks, and the tail block when N % rows_ != 0
  kernels::LossDesc desc_;
  int64_t n_ = 0, d_ = 0, v_ = 0, ld_ = 0, rows_ = 1;
  bool trans_b_ = false, grads_ = false, labels_i64_ = true, low_ = false, grad32_ = false;
  bool bias_ = false;
  bool low_logits_ = false;  // the logits (and G, in place) in the low dtype
  float softcap_ = 0.f;      // > 0: the logits capped (linear_ce_loss {softcap})
  float scale_ = 1.f;        // the logits' scale (linear_ce_loss {scale})
  DType dt_ = DType::kF32;
  size_t elem_ = 4, dx_elem_ = 4, logit_elem_ = 4;
  size_t logits_bytes_ = 0, g_low_bytes_ = 0, dw32_bytes_ = 0, db32_bytes_ = 0, rows_bytes_ = 0;
};

// gemm_bgrad(a, b) {trans_a, dtype, bias_dtype, bias_of} -> y, db: y = op(a) b (D in f32 for
// {dtype=f32}) and db = the column sums of b (bias_of="a", trans_a=1: of a).
// cuBLASLt's A is our b (RowMajorProblem), so BGRADA sums it over k: one pass over b for both;
// its B is op(a)^T, so BGRADB sums a's columns (nn.Linear's dW = dy^T x with db from dy).
// BGRADA writes the bias gradient in D's dtype, so it is used when db and y share one (GPT-2's
// {dtype=f32, bias_dtype=f32}). Otherwise, where cuBLASLt has no BGRADA algorithm for the
// problem, or with KernelOptions::bgrad_reduce: the plain GEMM and a column reduction
// (LaunchReduce) into db. A db wider than the operands (f32 for f16 / bf16) sums b widened into
// scratch, so db is rounded once, as the CPU kernel and the unfused graph (cast up, then an f32
// reduce_sum) compute it; a narrower db is summed in the operands' dtype and cast down.
class GemmBgradKernel final : public DeviceKernel {
 public:
  absl::Status Init(const ir::Node& node, const KernelOptions& options, cublasLtHandle_t lt) {
    if (node.num_inputs() != 2 || node.num_outputs() != 2) {
      return Invalid(node, "gemm_bgrad takes (a, b) and gives (y, db)");
    }
    const ir::TensorType& a = node.input(0)->type();
    const ir::TensorType& b = node.input(1)->type();
    const ir::TensorType& db = node.output(1)->type();
    PTC_ASSIGN_OR_RETURN(int64_t ta, node.GetInt("trans_a", 0));
    if (a.rank() != 2 || b.rank() != 2 || a.dtype != b.dtype) {
      return Invalid(node, "a and b must be matrices of one dtype");
    }
    dt_ = a.dtype;
    m_ = ta ? a.shape[1] : a.shape[0];
    k_ = b.shape[0];
    n_ = b.shape[1];
    if ((ta ? a.shape[0] : a.shape[1]) != k_) return Invalid(node, "shapes do not match");
    bias_dt_ = db.dtype;
    y_dt_ = node.output(0)->type().dtype;  // f32 for f16 / bf16 operands: D written in f32
    PTC_ASSIGN_OR_RETURN(std::string of, node.GetString("bias_of", "b"));
    of_a_ = of == "a";
    if ((of != "a" && of != "b") || (of_a_ && ta != 1) ||
        db.shape != ir::Shape{of_a_ ? m_ : n_}) {
      return Invalid(node, "bias_of must be \"b\", or \"a\" with trans_a=1, db its columns");
    }
    cols_ = of_a_ ? m_ : n_;  // db's length: the columns of the summed operand [K, cols_]
    const Problem p = RowMajorProblem(m_, n_, k_, ta != 0, false);
    if (k_ == 0) return absl::OkStatus();  // Launch writes zeros
    // BGRADA's / BGRADB's bias gradient has D's dtype (Init declines another): db and y of one
    // dtype.
    if (!options.bgrad_reduce && bias_dt_ == y_dt_) {
      epilogue_ = gemm_.Init(node, dt_, p, 1.0, 0.0, options, lt,
                             of_a_ ? CUBLASLT_EPILOGUE_BGRADB : CUBLASLT_EPILOGUE_BGRADA, y_dt_,
                             bias_dt_)
                      .ok();
    }
    if (!epilogue_) {
      PTC_RETURN_IF_ERROR(gemm_.Init(node, dt_, p, 1.0, 0.0, options, lt,
                                     CUBLASLT_EPILOGUE_DEFAULT, y_dt_));
      reduce_.kept_rank = 1;
      reduce_.red_rank = 1;
      reduce_.out_n = cols_;
      reduce_.count = k_;
      reduce_.kept_shape[0] = cols_;
      reduce_.kept_strides[0] = 1;
      reduce_.red_shape[0] = k_;
      reduce_.red_strides[0] = cols_;
      widen_ = ir::DTypeSize(bias_dt_) > ir::DTypeSize(dt_);
      sum_dt_ = widen_ ? bias_dt_ : dt_;
      reduce_ws_ = kernels::ReduceWorkspaceBytes(SumDT(), reduce_);
      if (widen_) {
        scratch_bytes_ = AlignScratch(ir::DTypeSize(bias_dt_) * static_cast<size_t>(k_ * cols_));
      } else if (bias_dt_ != dt_) {
        scratch_bytes_ = AlignScratch(ir::DTypeSize(dt_) * static_cast<size_t>(cols_));
      }
    }
    return absl::OkStatus();
  }

  size_t WorkspaceBytes() const override { return scratch_bytes_ + reduce_ws_; }

  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    auto check = [](cudaError_t e, const char* what) {
      return e == cudaSuccess ? absl::OkStatus() : CudaStatus(e, what, __FILE__, __LINE__);
    };
    if (k_ == 0) {  // empty sums: y and db are zero
      PTC_RETURN_IF_ERROR(check(cudaMemsetAsync(out[0], 0, ir::DTypeSize(y_dt_) * m_ * n_,
                                                ctx.stream),
                                "cudaMemsetAsync"));
      return check(cudaMemsetAsync(out[1], 0, ir::DTypeSize(bias_dt_) * cols_, ctx.stream),
                   "cudaMemsetAsync");
    }
    if (epilogue_) {
      PTC_RETURN_IF_ERROR(gemm_.SetBiasPointer(out[1]));
      return gemm_.Launch(ctx, in, out.subspan(0, 1), nullptr);
    }
    PTC_RETURN_IF_ERROR(gemm_.Launch(ctx, in, out.subspan(0, 1), nullptr));
    char* ws = static_cast<char*>(workspace);
    void* reduce_ws = reduce_ws_ > 0 ? ws + scratch_bytes_ : nullptr;
    const kernels::DT bias_dt = static_cast<kernels::DT>(static_cast<int>(bias_dt_));
    const void* src = in[of_a_ ? 0 : 1];  // the summed operand, [K, cols_]
    if (widen_) {  // the operand widened into scratch, summed into db
      PTC_RETURN_IF_ERROR(check(kernels::LaunchCast(LowDT(), bias_dt, k_ * cols_, src, ws,
                                                    ctx.stream),
                                "LaunchCast (gemm_bgrad)"));
      return check(kernels::LaunchReduce(SumDT(), kernels::ReduceKind::kSum, reduce_, ws, out[1],
                                         reduce_ws, ctx.stream),
                   "LaunchReduce (gemm_bgrad)");
    }
    void* sums = bias_dt_ != dt_ ? static_cast<void*>(ws) : out[1];
    PTC_RETURN_IF_ERROR(check(kernels::LaunchReduce(SumDT(), kernels::ReduceKind::kSum, reduce_,
                                                    src, sums, reduce_ws, ctx.stream),
                              "LaunchReduce (gemm_bgrad)"));
    if (bias_dt_ == dt_) return absl::OkStatus();
    return check(kernels::LaunchCast(LowDT(), bias_dt, cols_, sums, out[1], ctx.stream),
                 "LaunchCast (gemm_bgrad)");
  }
  // Whether db comes from cuBLASLt's BGRAD epilogue (else the column reduction).
  bool uses_epilogue() const { return epilogue_; }

 private:
  kernels::DT LowDT() const { return static_cast<kernels::DT>(static_cast<int>(dt_)); }
  kernels::DT SumDT() const { return static_cast<kernels::DT>(static_cast<int>(sum_dt_)); }
  GemmKernel gemm_;
  bool epilogue_ = false, widen_ = false, of_a_ = false;
  DType dt_ = DType::kF32, y_dt_ = DType::kF32, bias_dt_ = DType::kF32, sum_dt_ = DType::kF32;
  int64_t m_ = 0, n_ = 0, k_ = 0, cols_ = 0;
  kernels::ReduceDesc reduce_;
  size_t reduce_ws_ = 0, scratch_bytes_ = 0;
};

// A kernel K (Init(node, options, lt), uses_epilogue()) that does part of its work in a
// cuBLASLt epilogue where it can: with autotuning, the same node with `to_pass` applied to the
// options (the epilogue's work as a separate pass) is the other candidate.
template <typename K>
absl::StatusOr<std::unique_ptr<DeviceKernel>> EpilogueOrTunedPass(
    const ir::Node& node, const KernelOptions& options, cublasLtHandle_t lt,
    const char* pass_name, const std::function<void(KernelOptions&)>& to_pass) {
  auto make = [&node, lt](const KernelOptions& o) -> absl::StatusOr<std::unique_ptr<DeviceKernel>> {
    auto k = std::make_unique<K>();
    PTC_RETURN_IF_ERROR(k->Init(node, o, lt));
    return std::unique_ptr<DeviceKernel>(std::move(k));
  };
  auto k = std::make_unique<K>();
  PTC_RETURN_IF_ERROR(k->Init(node, options, lt));
  if (!k->uses_epilogue()) return std::unique_ptr<DeviceKernel>(std::move(k));
  return WithTunedAlternative(node, options, "epilogue", std::move(k), pass_name, to_pass, make);
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateGemmKernel(const ir::Node& node,
                                                                const KernelOptions& options,
                                                                cublasLtHandle_t lt) {
  if (node.op() == "gemm") return CreateGemm(node, options, lt);
  if (node.op() == "fused_matmul") return CreateFusedMatMul(node, options, lt);
  // With autotuning, the plain GEMM + a separate pass competes with the epilogue (whose
  // algorithms may be fewer and slower): gemm_bgrad's column reduction, gemm_gelu_grad's
  // gelu_grad.
  if (node.op() == "gemm_bgrad") {
    return EpilogueOrTunedPass<GemmBgradKernel>(node, options, lt, "reduce",
                                                [](KernelOptions& o) { o.bgrad_reduce = true; });
  }
  if (node.op() == "gemm_gelu_grad") {
    return EpilogueOrTunedPass<GemmGeluGradKernel>(node, options, lt, "pass",
                                                   [](KernelOptions& o) { o.gelu_pass = true; });
  }
  if (node.op() == "attention") return CreateAttention(node, options, lt);
  if (node.op() == "attention_grad") return CreateAttentionGrad(node, options);
  if (node.op() == "linear_ce_loss") {
    auto k = std::make_unique<LinearCeKernel>();
    PTC_RETURN_IF_ERROR(k->Init(node, options, lt));
    // With autotuning, blocks of twice as many rows are a candidate too (larger products,
    // twice the logits scratch: the workspace is the larger's).
    const int64_t rows = k->rows();
    if (rows >= k->total_rows()) return std::unique_ptr<DeviceKernel>(std::move(k));
    return WithTunedAlternative(
        node, options, absl::StrCat("rows", rows), std::move(k), absl::StrCat("rows", 2 * rows),
        [rows](KernelOptions& o) { o.linear_ce_rows = 2 * rows; },
        [&](const KernelOptions& o) -> absl::StatusOr<std::unique_ptr<DeviceKernel>> {
          auto big = std::make_unique<LinearCeKernel>();
          PTC_RETURN_IF_ERROR(big->Init(node, o, lt));
          return std::unique_ptr<DeviceKernel>(std::move(big));
        });
  }
  return CreateMatmul(node, options, lt);
}

}  // namespace ptc::cuda
