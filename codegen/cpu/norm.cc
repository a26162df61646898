// softmax / log_softmax, layer_norm and reduce_* kernels. Row-wise ops process one row per
// loop iteration (rows split across threads); accumulation is in double for f32.
#include <cmath>
#include <limits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

// Rows of `n` elements: grain so that each thread gets at least ~32K elements.
inline int64_t RowGrain(int64_t n) { return std::max<int64_t>(1, kElementGrain / 4 / std::max<int64_t>(n, 1)); }

// ---------------------------------------------------------------------------------------------
// softmax(x) {axis}: x viewed as [outer, n, inner].

template <typename T, bool kLog>
class SoftmaxKernel : public Kernel {
 public:
  SoftmaxKernel(int64_t outer, int64_t n, int64_t inner) : outer_(outer), n_(n), inner_(inner) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* x = static_cast<const T*>(inputs[0]);
    T* y = static_cast<T*>(outputs[0]);
    const int64_t n = n_, inner = inner_;
    if (n == 0) return absl::OkStatus();
    if (inner == 1) {
      ParallelFor(outer_, RowGrain(n), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) Row(x + r * n, y + r * n);
      });
      return absl::OkStatus();
    }
    // Strided rows: [outer, n, inner] with the softmax over n.
    ParallelFor(outer_ * inner, RowGrain(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t o = r / inner, i = r % inner;
        const T* xr = x + o * n * inner + i;
        T* yr = y + o * n * inner + i;
        T mx = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < n; ++j) mx = std::max(mx, xr[j * inner]);
        if (mx == -std::numeric_limits<T>::infinity()) mx = 0;
        double sum = 0;
        for (int64_t j = 0; j < n; ++j) sum += Exp(static_cast<T>(xr[j * inner] - mx));
        if constexpr (kLog) {
          const T lse = mx + static_cast<T>(std::log(sum));
          for (int64_t j = 0; j < n; ++j) yr[j * inner] = xr[j * inner] - lse;
        } else {
          const T inv = static_cast<T>(1.0 / sum);
          for (int64_t j = 0; j < n; ++j) yr[j * inner] = Exp(static_cast<T>(xr[j * inner] - mx)) * inv;
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  void Row(const T* __restrict x, T* __restrict y) const {
    const int64_t n = n_;
    T mx = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
    // A row of -inf (fully masked) gives NaN like PyTorch would not: keep it finite-safe.
    if (mx == -std::numeric_limits<T>::infinity()) mx = 0;
    if constexpr (kLog) {
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) sum += Exp(static_cast<T>(x[j] - mx));
      const T lse = mx + std::log(sum);
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) y[j] = x[j] - lse;
    } else {
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) {
        T e = Exp(static_cast<T>(x[j] - mx));
        y[j] = e;
        sum += e;
      }
      const T inv = T(1) / sum;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) y[j] *= inv;
    }
  }

  int64_t outer_, n_, inner_;
};

// ---------------------------------------------------------------------------------------------
// layer_norm(x, scale [, bias]) {axis, epsilon} -> (y [, mean [, inv_std_dev]])

template <typename T>
class LayerNormKernel : public Kernel {
 public:
  LayerNormKernel(int64_t rows, int64_t d, bool scale_bcast, int bias_mode, double eps, bool rms)
      : rows_(rows), d_(d), scale_bcast_(scale_bcast), bias_mode_(bias_mode), eps_(eps),
        rms_(rms) {}

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* x = static_cast<const T*>(inputs[0]);
    const T* scale = static_cast<const T*>(inputs[1]);
    const T* bias = bias_mode_ ? static_cast<const T*>(inputs[2]) : nullptr;
    T* y = static_cast<T*>(outputs[0]);
    float* mean_out = outputs.size() > 1 ? static_cast<float*>(outputs[1]) : nullptr;
    float* istd_out = outputs.size() > 2 ? static_cast<float*>(outputs[2]) : nullptr;
    const int64_t d = d_;
    ParallelFor(rows_, RowGrain(d), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* __restrict xr = x + r * d;
        T* __restrict yr = y + r * d;
        // Two passes over a row that sits in L1/L2: exact mean, then centered variance (RMS:
        // no centering, the mean of squares).
        T sum = 0;
        if (!rms_) {
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < d; ++j) sum += xr[j];
        }
        const T mean = d ? sum / T(d) : T(0);
        T sq = 0;
#pragma omp simd reduction(+ : sq)
        for (int64_t j = 0; j < d; ++j) {
          T c = xr[j] - mean;
          sq += c * c;
        }
        const T var = d ? sq / T(d) : T(0);
        const T istd = T(1) / std::sqrt(var + static_cast<T>(eps_));
        if (mean_out) mean_out[r] = static_cast<float>(mean);
        if (istd_out) istd_out[r] = static_cast<float>(istd);
        if (!scale_bcast_ && bias_mode_ == 2) {
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mean) * istd * scale[j] + bias[j];
        } else if (!scale_bcast_ && bias_mode_ == 0) {
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mean) * istd * scale[j];
        } else {
          for (int64_t j = 0; j < d; ++j) {
            T s = scale[scale_bcast_ ? 0 : j];
            T bv = bias_mode_ == 0 ? T(0) : bias[bias_mode_ == 1 ? 0 : j];
            yr[j] = (xr[j] - mean) * istd * s + bv;
          }
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t rows_, d_;
  bool scale_bcast_;
  int bias_mode_;  // 0 none, 1 one element, 2 full
  double eps_;
  bool rms_;  // layer_norm {rms=1}: RMSNorm
};

// ---------------------------------------------------------------------------------------------
// reduce_*(x) {axes, keepdims}: x's dims collapsed into alternating kept / reduced runs; the
// input is read once in order, accumulating into a workspace array of output size.

enum class ReduceKind { kSum, kMean, kMax, kMin };
constexpr int kMaxReduceRank = 64;

template <typename T>
using AccType = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

template <typename T, ReduceKind K>
class ReduceKernel : public Kernel {
 public:
  ReduceKernel(std::vector<int64_t> dims, std::vector<bool> reduced, int64_t out_n, int64_t count)
      : dims_(std::move(dims)), reduced_(std::move(reduced)), out_n_(out_n), count_(count) {
    // Output strides of kept dims (0 for reduced dims).
    out_strides_.assign(dims_.size(), 0);
    int64_t s = 1;
    for (int d = static_cast<int>(dims_.size()) - 1; d >= 0; --d) {
      if (!reduced_[d]) {
        out_strides_[d] = s;
        s *= dims_[d];
      }
    }
    total_ = 1;
    for (int64_t d : dims_) total_ *= d;
  }
  size_t WorkspaceBytes() const override { return out_n_ * sizeof(Acc); }

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void* workspace) override {
    const T* x = static_cast<const T*>(inputs[0]);
    T* y = static_cast<T*>(outputs[0]);
    Acc* acc = static_cast<Acc*>(workspace);
    Acc init = Init();
    for (int64_t i = 0; i < out_n_; ++i) acc[i] = init;
    const int r = static_cast<int>(dims_.size());
    if (total_ > 0) {
      const int64_t inner = dims_[r - 1];
      const bool inner_reduced = reduced_[r - 1];
      const int64_t rows = total_ / inner;
      // Rows fully independent in the output (reduce over the last run only): parallel.
      const bool row_parallel = inner_reduced && OnlyLastReduced();
      auto do_rows = [&](int64_t rb, int64_t re) {
        int64_t idx[kMaxReduceRank] = {0};
        int64_t rem = rb, out_off = 0;
        for (int d = r - 2; d >= 0; --d) {
          idx[d] = rem % dims_[d];
          rem /= dims_[d];
          out_off += idx[d] * out_strides_[d];
        }
        for (int64_t row = rb; row < re; ++row) {
          const T* __restrict xr = x + row * inner;
          if (inner_reduced) {
            Acc a = acc[out_off];
            for (int64_t j = 0; j < inner; ++j) a = Combine(a, static_cast<Acc>(xr[j]));
            acc[out_off] = a;
          } else {
            Acc* __restrict ar = acc + out_off;
            for (int64_t j = 0; j < inner; ++j) ar[j] = Combine(ar[j], static_cast<Acc>(xr[j]));
          }
          for (int d = r - 2; d >= 0; --d) {
            ++idx[d];
            out_off += out_strides_[d];
            if (idx[d] < dims_[d]) break;
            out_off -= idx[d] * out_strides_[d];
            idx[d] = 0;
          }
        }
      };
      if (row_parallel) {
        ParallelFor(rows, RowGrain(inner), do_rows);
      } else {
        do_rows(0, rows);
      }
    }
    for (int64_t i = 0; i < out_n_; ++i) {
      if constexpr (K == ReduceKind::kMean) {
        y[i] = static_cast<T>(static_cast<double>(acc[i]) / static_cast<double>(count_));
      } else {
        y[i] = static_cast<T>(acc[i]);
      }
    }
    return absl::OkStatus();
  }

 private:
  using Acc = std::conditional_t<K == ReduceKind::kSum || K == ReduceKind::kMean, AccType<T>, T>;
  bool OnlyLastReduced() const {
    for (size_t d = 0; d + 1 < reduced_.size(); ++d) {
      if (reduced_[d]) return false;
    }
    return true;
  }
  static Acc Init() {
    if constexpr (K == ReduceKind::kMax) {
      if constexpr (std::is_floating_point_v<T>) return -std::numeric_limits<T>::infinity();
      return std::numeric_limits<T>::lowest();
    } else if constexpr (K == ReduceKind::kMin) {
      if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::infinity();
      return std::numeric_limits<T>::max();
    } else {
      return Acc(0);
    }
  }
  static Acc Combine(Acc a, Acc v) {
    if constexpr (K == ReduceKind::kMax) {
      return (v > a || v != v) ? v : a;
    } else if constexpr (K == ReduceKind::kMin) {
      return (v < a || v != v) ? v : a;
    } else if constexpr (std::is_integral_v<Acc>) {
      return static_cast<Acc>(static_cast<uint64_t>(a) + static_cast<uint64_t>(v));
    } else {
      return a + v;
    }
  }

  std::vector<int64_t> dims_;
  std::vector<bool> reduced_;
  std::vector<int64_t> out_strides_;
  int64_t out_n_, count_, total_;
};

template <ReduceKind K>
KernelOr MakeReduceTyped(const ir::Node& node, std::vector<int64_t> dims, std::vector<bool> red,
                         int64_t out_n, int64_t count) {
  switch (node.input(0)->type().dtype) {
    case DType::kF32: return KernelPtr(new ReduceKernel<float, K>(dims, red, out_n, count));
    case DType::kF64: return KernelPtr(new ReduceKernel<double, K>(dims, red, out_n, count));
    case DType::kI32: return KernelPtr(new ReduceKernel<int32_t, K>(dims, red, out_n, count));
    case DType::kI64: return KernelPtr(new ReduceKernel<int64_t, K>(dims, red, out_n, count));
    default:
      return Unsupported(node, absl::StrCat("dtype ", InType(node, 0), " is not supported"));
  }
}

absl::StatusOr<int64_t> NormalizedAxis(const ir::Node& node, int64_t axis, int rank) {
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= std::max(rank, 1)) {
    return Invalid(node, absl::StrCat("axis ", axis, " is out of range for ", InType(node, 0)));
  }
  return axis;
}

}  // namespace

KernelOr MakeSoftmaxKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& t = node.input(0)->type();
  if (node.output(0)->type() != t) return Invalid(node, "output type must equal the input type");
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", -1));
  PTC_ASSIGN_OR_RETURN(axis, NormalizedAxis(node, axis, t.rank()));
  int64_t outer = 1, inner = 1, n = t.rank() ? t.shape[axis] : 1;
  for (int64_t d = 0; d < axis; ++d) outer *= t.shape[d];
  for (int64_t d = axis + 1; d < t.rank(); ++d) inner *= t.shape[d];
  bool log = node.op() == "log_softmax";
  switch (t.dtype) {
    case DType::kF32:
      if (log) return KernelPtr(new SoftmaxKernel<float, true>(outer, n, inner));
      return KernelPtr(new SoftmaxKernel<float, false>(outer, n, inner));
    case DType::kF64:
      if (log) return KernelPtr(new SoftmaxKernel<double, true>(outer, n, inner));
      return KernelPtr(new SoftmaxKernel<double, false>(outer, n, inner));
    default:
      return Unsupported(node, absl::StrCat("dtype ", t.ToString(), " is not supported"));
  }
}

KernelOr MakeLayerNormKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 3, 1, 3));
  const ir::TensorType& t = node.input(0)->type();
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis", -1));
  PTC_ASSIGN_OR_RETURN(axis, NormalizedAxis(node, axis, t.rank()));
  PTC_ASSIGN_OR_RETURN(double eps, node.GetFloat("epsilon", 1e-5));
  PTC_ASSIGN_OR_RETURN(int64_t rms, node.GetInt("rms", 0));
  int64_t rows = 1, d = 1;
  for (int64_t i = 0; i < axis; ++i) rows *= t.shape[i];
  for (int64_t i = axis; i < t.rank(); ++i) d *= t.shape[i];
  if (node.output(0)->type() != t) return Invalid(node, "output type must equal the input type");
  ir::Shape stat_shape = t.shape;
  for (int64_t i = axis; i < t.rank(); ++i) stat_shape[i] = 1;
  for (size_t i = 1; i < node.num_outputs(); ++i) {
    const ir::TensorType& o = node.output(i)->type();
    if (o.dtype != DType::kF32 || o.num_elements() != rows) {
      return Invalid(node, absl::StrCat("output ", i, " must be f32", ir::ShapeToString(stat_shape),
                                        ", got ", o.ToString()));
    }
  }
  const ir::TensorType& s = node.input(1)->type();
  if (s.dtype != t.dtype || (s.num_elements() != d && s.num_elements() != 1)) {
    return Invalid(node, absl::StrCat("scale ", s.ToString(), " must have the normalized shape of ",
                                      t.ToString(), " (axis ", axis, ")"));
  }
  int bias_mode = 0;
  if (node.num_inputs() == 3) {
    const ir::TensorType& b = node.input(2)->type();
    if (b.dtype != t.dtype || (b.num_elements() != d && b.num_elements() != 1)) {
      return Invalid(node, absl::StrCat("bias ", b.ToString(),
                                        " must have the normalized shape of ", t.ToString()));
    }
    bias_mode = b.num_elements() == d ? 2 : 1;
    if (d == 1) bias_mode = 2;
  }
  bool scale_bcast = s.num_elements() != d;
  switch (t.dtype) {
    case DType::kF32:
      return KernelPtr(new LayerNormKernel<float>(rows, d, scale_bcast, bias_mode, eps, rms != 0));
    case DType::kF64:
      return KernelPtr(new LayerNormKernel<double>(rows, d, scale_bcast, bias_mode, eps, rms != 0));
    default:
      return Unsupported(node, absl::StrCat("dtype ", t.ToString(), " is not supported"));
  }
}

KernelOr MakeReduceKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  const ir::TensorType& t = node.input(0)->type();
  const ir::TensorType& ot = node.output(0)->type();
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> axes, node.GetInts("axes", std::vector<int64_t>{}));
  PTC_ASSIGN_OR_RETURN(int64_t keepdims, node.GetInt("keepdims", 1));
  if (ot.dtype != t.dtype) return Invalid(node, "output dtype must equal the input dtype");
  const int r = t.rank();
  std::vector<bool> red(r, axes.empty());
  for (int64_t a : axes) {
    int64_t na = a < 0 ? a + r : a;
    if (na < 0 || na >= r) {
      return Invalid(node, absl::StrCat("axis ", a, " is out of range for ", t.ToString()));
    }
    red[na] = true;
  }
  ir::Shape want;
  int64_t count = 1;
  for (int d = 0; d < r; ++d) {
    if (red[d]) {
      count *= t.shape[d];
      if (keepdims) want.push_back(1);
    } else {
      want.push_back(t.shape[d]);
    }
  }
  if (want != ot.shape) {
    return Invalid(node, absl::StrCat("output type ", ot.ToString(), " should have shape ",
                                      ir::ShapeToString(want)));
  }
  // Collapse: drop size-1 dims, merge neighbours of the same kind.
  std::vector<int64_t> dims;
  std::vector<bool> kinds;
  for (int d = 0; d < r; ++d) {
    if (t.shape[d] == 1) continue;
    if (!dims.empty() && kinds.back() == red[d]) {
      dims.back() *= t.shape[d];
    } else {
      dims.push_back(t.shape[d]);
      kinds.push_back(red[d]);
    }
  }
  if (dims.empty()) {
    dims.push_back(1);
    kinds.push_back(true);
  }
  int64_t out_n = ot.num_elements();
  if (static_cast<int>(dims.size()) > kMaxReduceRank) return Unsupported(node, "rank > 64");
  if (t.num_elements() == 0) {  // some dim is 0
    dims.assign(1, 0);
    kinds.assign(1, true);
  }
  const std::string& op = node.op();
  if ((op == "reduce_max" || op == "reduce_min") && count == 0 && out_n > 0) {
    return Invalid(node, absl::StrCat("cannot take ", op, " over an empty axis of ", t.ToString()));
  }
  if (op == "reduce_sum") return MakeReduceTyped<ReduceKind::kSum>(node, dims, kinds, out_n, count);
  if (op == "reduce_mean") return MakeReduceTyped<ReduceKind::kMean>(node, dims, kinds, out_n, count);
  if (op == "reduce_max") return MakeReduceTyped<ReduceKind::kMax>(node, dims, kinds, out_n, count);
  return MakeReduceTyped<ReduceKind::kMin>(node, dims, kinds, out_n, count);
}

}  // namespace ptc::cpu::internal
