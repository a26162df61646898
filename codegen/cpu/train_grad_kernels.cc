// Kernels of the gradient ops (ops_train.cc): gather_grad, slice_grad, softmax_ce_loss_grad,
// nll_loss_grad, layer_norm_grad, gelu_grad. Deterministic: every output element is summed by
// one thread in a fixed order (no atomics), so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <optional>

#include "codegen/cpu/train_kernels_internal.h"
#include "compiler/ir/dropout.h"
#include "compiler/ir/ops_train.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

// ------------------------------------------------------------------------------ gather_grad
// data [pre, n, post], indices [ni], dy [pre, ni, post].
template <typename T, typename I>
class GatherGradKernel : public Kernel {
 public:
  GatherGradKernel(int64_t pre, int64_t n, int64_t post, int64_t ni, std::string where)
      : pre_(pre), n_(n), post_(post), ni_(ni), where_(std::move(where)) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dy = static_cast<const T*>(inputs[0]);
    const I* ind = static_cast<const I*>(inputs[1]);
    T* out = static_cast<T*>(outputs[0]);
    for (int64_t i = 0; i < ni_; ++i) {
      int64_t k = ind[i];
      if (k < -n_ || k >= n_) {
        return absl::InvalidArgumentError(absl::StrCat(where_, ": index ", k, " (element ", i,
                                                       ") is out of range [-", n_, ", ", n_, ")"));
      }
    }
    const int64_t pre = pre_, n = n_, post = post_, ni = ni_;
    // With a base the sums add to it; the output may be the base's own buffer (plan-memory).
    const T* base = inputs.size() > 2 ? static_cast<const T*>(inputs[2]) : nullptr;
    if (base == nullptr) {
      std::memset(out, 0, sizeof(T) * pre * n * post);
    } else if (base != out) {
      std::memcpy(out, base, sizeof(T) * pre * n * post);
    }
    auto body = [&](int64_t p, int64_t cb, int64_t ce) {
      for (int64_t i = 0; i < ni; ++i) {
        int64_t k = ind[i] < 0 ? ind[i] + n : ind[i];
        T* __restrict o = out + (p * n + k) * post;
        const T* __restrict s = dy + (p * ni + i) * post;
#pragma omp simd
        for (int64_t c = cb; c < ce; ++c) o[c] += s[c];
      }
    };
    if (post >= 256 || pre == 1) {  // columns split across threads
      ParallelFor(post, std::max<int64_t>(64, kElementGrain / std::max<int64_t>(ni, 1)),
                  [&](int64_t b, int64_t e) {
                    for (int64_t p = 0; p < pre; ++p) body(p, b, e);
                  });
    } else {
      ParallelFor(pre, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(ni * post, 1)),
                  [&](int64_t b, int64_t e) {
                    for (int64_t p = b; p < e; ++p) body(p, 0, post);
                  });
    }
    return absl::OkStatus();
  }

 private:
  int64_t pre_, n_, post_, ni_;
  std::string where_;
};

// ------------------------------------------------------------------------------- slice_grad
template <typename T>
class SliceGradKernel : public Kernel {
 public:
  SliceGradKernel(ir::Shape dy_shape, int64_t out_n, std::vector<int64_t> base,
                  std::vector<int64_t> step_strides)
      : dy_shape_(std::move(dy_shape)), out_n_(out_n), base_(std::move(base)),
        step_strides_(std::move(step_strides)) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dy = static_cast<const T*>(inputs[0]);
    T* out = static_cast<T*>(outputs[0]);
    std::memset(out, 0, sizeof(T) * out_n_);
    const int r = static_cast<int>(dy_shape_.size());
    const int64_t total = ir::NumElements(dy_shape_);
    ParallelFor(total, kElementGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        int64_t rem = i, off = base_[0];
        for (int d = r - 1; d >= 0; --d) {
          off += (rem % dy_shape_[d]) * step_strides_[d];
          rem /= dy_shape_[d];
        }
        out[off] = dy[i];
      }
    });
    return absl::OkStatus();
  }

 private:
  ir::Shape dy_shape_;
  int64_t out_n_;
  std::vector<int64_t> base_, step_strides_;
};

// ---------------------------------------------------------------------- loss gradients
// x / log_prob [N, C, D], labels [N, D].
template <typename T, typename L>
class LossGradKernel : public Kernel {
 public:
  LossGradKernel(bool softmax, int64_t n, int64_t c, int64_t d, int red,
                 std::optional<int64_t> ignore, bool has_weight, std::string where)
      : softmax_(softmax), n_(n), c_(c), d_(d), red_(red), ignore_(ignore),
        has_weight_(has_weight), where_(std::move(where)) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dloss = static_cast<const T*>(inputs[0]);
    const T* x = static_cast<const T*>(inputs[1]);
    const L* labels = static_cast<const L*>(inputs[2]);
    const T* weight = has_weight_ ? static_cast<const T*>(inputs[3]) : nullptr;
    T* dx = static_cast<T*>(outputs[0]);
    const int64_t n = n_, c = c_, d = d_;
    double wsum = 0;
    for (int64_t i = 0; i < n * d; ++i) {
      int64_t lab = labels[i];
      if (ignore_.has_value() && lab == *ignore_) continue;
      if (lab < 0 || lab >= c) {
        return absl::InvalidArgumentError(absl::StrCat(where_, ": label ", lab, " (element ", i,
                                                       ") is out of range [0, ", c, ")"));
      }
      wsum += weight ? static_cast<double>(weight[lab]) : 1.0;
    }
    const double norm = red_ == 2 ? (wsum != 0 ? 1.0 / wsum : 0.0) : 1.0;
    ParallelFor(n * d, std::max<int64_t>(1, kElementGrain / std::max<int64_t>(c, 1)),
                [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = r / d, k = r % d;
        const int64_t lab = labels[r];
        const bool ignored = ignore_.has_value() && lab == *ignore_;
        double coeff = 0;
        if (!ignored) {
          coeff = (red_ == 0 ? static_cast<double>(dloss[r]) : static_cast<double>(dloss[0])) *
                  (weight ? static_cast<double>(weight[lab]) : 1.0) * norm;
        }
        const T ct = static_cast<T>(coeff);
        const T* xr = x + i * c * d + k;
        T* yr = dx + i * c * d + k;
        if (softmax_) {
          int64_t j = 0;
          if constexpr (std::is_same_v<T, float>) {
            if (d == 1) {  // contiguous class axis: 8 lanes of FastExp (log-probs are <= 0)
              const __m256 cv = _mm256_set1_ps(ct);
              for (; j + 8 <= c; j += 8) {
                _mm256_storeu_ps(yr + j, _mm256_mul_ps(cv, Exp8(_mm256_loadu_ps(xr + j))));
              }
            }
          }
          for (; j < c; ++j) yr[j * d] = ct * static_cast<T>(std::exp(xr[j * d]));
        } else {
          for (int64_t j = 0; j < c; ++j) yr[j * d] = T(0);
        }
        if (!ignored) yr[lab * d] -= ct;
      }
    });
    return absl::OkStatus();
  }

 private:
  bool softmax_;
  int64_t n_, c_, d_;
  int red_;  // 0 none, 1 sum, 2 mean
  std::optional<int64_t> ignore_;
  bool has_weight_;
  std::string where_;
};

// --------------------------------------------------------------------------- layer_norm_grad
template <typename T>
class LayerNormGradKernel : public Kernel {
 public:
  // addend / counter: their input indices (-1: none); low_ratio / low_seed: dx_low's dropout.
  LayerNormGradKernel(int64_t rows, int64_t d, int addend, bool rms, int counter,
                      ir::DType counter_dtype, double low_ratio, uint64_t low_seed)
      : rows_(rows), d_(d), addend_(addend), rms_(rms), counter_(counter),
        counter_dtype_(counter_dtype), low_ratio_(low_ratio), low_seed_(low_seed) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dy = static_cast<const T*>(inputs[0]);
    const T* x = static_cast<const T*>(inputs[1]);
    const T* scale = static_cast<const T*>(inputs[2]);
    const float* mean = static_cast<const float*>(inputs[3]);
    const float* istd = static_cast<const float*>(inputs[4]);
    const T* add = addend_ >= 0 ? static_cast<const T*>(inputs[addend_]) : nullptr;  // dx += add
    T* dx = static_cast<T*>(outputs[0]);
    T* dscale = static_cast<T*>(outputs[1]);
    T* dbias = static_cast<T*>(outputs[2]);
    // dx_low: dx again (f32 here; HalfWrapperKernel rounds it to dy's dtype as a cast would),
    // through its dropout with low_dropout (compiler/ir/dropout.h over dx_low's index).
    T* dx2 = outputs.size() == 4 ? static_cast<T*>(outputs[3]) : nullptr;
    const uint64_t key = ir::DropoutKey(
        low_seed_, ir::DropoutCounter(counter_ >= 0 ? inputs[counter_] : nullptr,
                                      counter_dtype_ == ir::DType::kI32));
    const uint32_t threshold = ir::DropoutThreshold(low_ratio_);
    const T low_scale = static_cast<T>(ir::DropoutScale(low_ratio_));
    const int64_t rows = rows_, d = d_;
    const int64_t grain = std::max<int64_t>(1, kElementGrain / std::max<int64_t>(d, 1));
    ParallelFor(rows, grain, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* __restrict xr = x + r * d;
        const T* __restrict gr = dy + r * d;
        T* __restrict o = dx + r * d;
        const T mu = static_cast<T>(mean[r]), is = static_cast<T>(istd[r]);
        T sa = 0, sb = 0;
#pragma omp simd reduction(+ : sa, sb)
        for (int64_t j = 0; j < d; ++j) {
          T g = gr[j] * scale[j];
          sa += g;
          sb += g * (xr[j] - mu) * is;
        }
        // RMSNorm has no centering, so no mean(g) term.
        const T a = d && !rms_ ? sa / T(d) : T(0), bb = d ? sb / T(d) : T(0);
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) {
          o[j] = is * (gr[j] * scale[j] - a - (xr[j] - mu) * is * bb);
        }
        if (add != nullptr) {
          const T* __restrict ar = add + r * d;
#pragma omp simd
          for (int64_t j = 0; j < d; ++j) o[j] = ar[j] + o[j];  // add(addend, dx)'s rounding
        }
        if (dx2 != nullptr && threshold == 0) std::copy(o, o + d, dx2 + r * d);
        if (dx2 != nullptr && threshold != 0) {
          DropoutApply(key, static_cast<uint64_t>(r * d), d, threshold, low_scale, o, dx2 + r * d);
        }
      }
    });
    // Column sums: each thread owns a range of columns and walks every row in order.
    ParallelFor(d, std::max<int64_t>(16, kElementGrain / std::max<int64_t>(rows, 1)),
                [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        dscale[j] = T(0);
        dbias[j] = T(0);
      }
      for (int64_t r = 0; r < rows; ++r) {
        const T mu = static_cast<T>(mean[r]), is = static_cast<T>(istd[r]);
        const T* __restrict xr = x + r * d;
        const T* __restrict gr = dy + r * d;
#pragma omp simd
        for (int64_t j = b; j < e; ++j) {
          dscale[j] += gr[j] * (xr[j] - mu) * is;
          dbias[j] += gr[j];
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t rows_, d_;
  int addend_;
  bool rms_;  // layer_norm_grad {rms=1}
  int counter_;
  ir::DType counter_dtype_;
  double low_ratio_;
  uint64_t low_seed_;
};

// -------------------------------------------------------------------------------- gelu_grad
template <typename T>
class GeluGradKernel : public Kernel {
 public:
  GeluGradKernel(int64_t n, bool tanh_approx) : n_(n), tanh_(tanh_approx) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dy = static_cast<const T*>(inputs[0]);
    const T* x = static_cast<const T*>(inputs[1]);
    T* dx = static_cast<T*>(outputs[0]);
    const bool tanh_approx = tanh_;
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
      if (tanh_approx) {
#pragma omp simd
        for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * GeluDerivative(x[i], true);
      } else {
#pragma omp simd
        for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * GeluDerivative(x[i], false);
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
  bool tanh_;
};

}  // namespace

KernelOr MakeGatherGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 3, 1, 1));
  if (node.num_inputs() == 3 && node.input(2)->type() != node.output(0)->type()) {
    return Invalid(node, "base must have the result's type");
  }
  PTC_ASSIGN_OR_RETURN(int64_t axis, node.GetInt("axis"));
  const ir::Shape& s = node.output(0)->type().shape;
  if (axis < 0 || axis >= static_cast<int64_t>(s.size())) return Invalid(node, "axis out of range");
  int64_t pre = 1, post = 1;
  for (int64_t i = 0; i < axis; ++i) pre *= s[i];
  for (size_t i = axis + 1; i < s.size(); ++i) post *= s[i];
  const int64_t ni = node.input(1)->type().num_elements();
  const bool i64 = node.input(1)->type().dtype == DType::kI64;
  std::string where = node.Describe();
  return DispatchFloat(node, node.input(0)->type().dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    if (i64) return KernelPtr(new GatherGradKernel<T, int64_t>(pre, s[axis], post, ni, where));
    return KernelPtr(new GatherGradKernel<T, int32_t>(pre, s[axis], post, ni, where));
  });
}

KernelOr MakeSliceGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> starts, node.GetInts("starts"));
  PTC_ASSIGN_OR_RETURN(std::vector<int64_t> steps, node.GetInts("steps"));
  const ir::Shape& out = node.output(0)->type().shape;
  const ir::Shape& dy = node.input(0)->type().shape;
  if (starts.size() != out.size() || steps.size() != out.size() || dy.size() != out.size()) {
    return Invalid(node, "starts/steps must have one entry per axis");
  }
  std::vector<int64_t> stride(out.size() + 1, 1), step_strides(out.size());
  int64_t base = 0;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    stride[d] = stride[d + 1] * out[d];
  }
  for (size_t d = 0; d < out.size(); ++d) {
    base += starts[d] * stride[d + 1];
    step_strides[d] = steps[d] * stride[d + 1];
  }
  const int64_t n = node.output(0)->type().num_elements();
  return DispatchFloat(node, node.input(0)->type().dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    return KernelPtr(new SliceGradKernel<T>(dy, n, {base}, step_strides));
  });
}

KernelOr MakeLossGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 4, 1, 1));
  const bool softmax = node.op() == "softmax_ce_loss_grad";
  const ir::TensorType& x = node.input(1)->type();
  const ir::TensorType& lab = node.input(2)->type();
  if (x.rank() < 2) return Invalid(node, "scores must be [N, C, ...]");
  const int64_t n = x.shape[0], c = x.shape[1];
  const int64_t d = (n * c != 0) ? x.num_elements() / (n * c) : 0;
  PTC_ASSIGN_OR_RETURN(std::string rs, node.GetString("reduction", "mean"));
  int red = rs == "none" ? 0 : rs == "sum" ? 1 : 2;
  std::optional<int64_t> ignore;
  if (node.has_attr("ignore_index")) {
    PTC_ASSIGN_OR_RETURN(int64_t ii, node.GetInt("ignore_index"));
    ignore = ii;
  }
  const bool hw = node.num_inputs() == 4;
  const bool i64 = lab.dtype == DType::kI64;
  std::string where = node.Describe();
  return DispatchFloat(node, x.dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    if (i64) return KernelPtr(new LossGradKernel<T, int64_t>(softmax, n, c, d, red, ignore, hw, where));
    return KernelPtr(new LossGradKernel<T, int32_t>(softmax, n, c, d, red, ignore, hw, where));
  });
}

KernelOr MakeLayerNormGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 5, 7, 3, 4));
  const ir::TensorType& x = node.input(1)->type();
  const int64_t d = node.input(2)->type().num_elements();
  const int64_t rows = d ? x.num_elements() / d : 0;
  const ir::Value* addend = ir::LayerNormGradAddend(node);
  const ir::Value* counter = ir::LayerNormGradCounter(node);
  if (addend != nullptr && addend->type() != x) {
    return Invalid(node, "the addend must have x's type");
  }
  PTC_ASSIGN_OR_RETURN(int64_t rms, node.GetInt("rms", 0));
  PTC_ASSIGN_OR_RETURN(double low_ratio, node.GetFloat("low_dropout", 0.0));
  PTC_ASSIGN_OR_RETURN(int64_t low_seed, node.GetInt("low_seed", 0));
  if (!(low_ratio >= 0 && low_ratio < 1) || (low_ratio > 0 && node.num_outputs() != 4)) {
    return Invalid(node, "low_dropout must be in [0, 1), on a dx_low output");
  }
  const int counter_at = counter != nullptr ? static_cast<int>(node.num_inputs()) - 1 : -1;
  const ir::DType counter_dtype = counter != nullptr ? counter->type().dtype : ir::DType::kI64;
  return DispatchFloat(node, x.dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    return KernelPtr(new LayerNormGradKernel<T>(rows, d, addend != nullptr ? 5 : -1, rms != 0,
                                                counter_at, counter_dtype, low_ratio,
                                                static_cast<uint64_t>(low_seed)));
  });
}

KernelOr MakeGeluGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 1, 1));
  PTC_ASSIGN_OR_RETURN(std::string approx, node.GetString("approximate", "none"));
  const ir::TensorType& x = node.input(1)->type();
  return DispatchFloat(node, x.dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    return KernelPtr(new GeluGradKernel<T>(x.num_elements(), approx == "tanh"));
  });
}

}  // namespace ptc::cpu::internal
