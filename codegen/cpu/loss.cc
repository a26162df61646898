// softmax_ce_loss and nll_loss with ONNX SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss
// semantics: inputs [N, C, d1...] viewed as [N, C, D], labels [N, d1...] viewed as [N, D].
// Per element: l = -w[label] * log_prob[n, label, d], w = 0 where label == ignore_index.
// reduction none -> l; sum -> sum(l); mean -> sum(l) / sum(w).
#include <cmath>
#include <limits>
#include <algorithm>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"

namespace ptc::cpu::internal {
namespace {

using ir::DType;

enum class Reduction { kNone, kSum, kMean };

// log(sum(exp(x[0..c)))) of one contiguous row: AVX2 max and exp; the exps are summed in float
// lanes over blocks of 256 and the blocks in double, so that a 50k-class row loses no more
// precision than the scalar double loop it replaces (checked against it in kernels_test).
// With `exps`, the row's exp(x[j] - max) are also stored there (softmax = exps / sum, without a
// second exp per element: linear_ce_loss's gradient) and *sum receives the sum; a row whose
// result is not finite-based (a NaN score, all -inf, a +inf) leaves `exps` unwritten and returns
// with *sum = 0.
float LogSumExpRow(const float* x, int64_t c, float* exps = nullptr, double* sum_out = nullptr) {
  if (sum_out != nullptr) *sum_out = 0;
  __m256 m8 = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 nan8 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= c; j += 8) {
    const __m256 v = _mm256_loadu_ps(x + j);
    m8 = _mm256_max_ps(m8, v);
    nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  float mx = HorizontalMax(m8);
  bool nan = _mm256_movemask_ps(nan8) != 0;
  for (; j < c; ++j) {
    mx = std::max(mx, x[j]);
    nan |= std::isnan(x[j]);
  }
  if (nan) return std::numeric_limits<float>::quiet_NaN();  // a NaN score poisons the row
  // All -inf: log(0) = -inf; +inf: inf - inf = NaN below, as the scalar loop gives.
  if (!std::isfinite(mx)) return mx == -std::numeric_limits<float>::infinity() ? mx : mx - mx;
  const __m256 mv = _mm256_set1_ps(mx);
  double sum = 0;
  j = 0;
  while (j + 8 <= c) {
    __m256 acc = _mm256_setzero_ps();
    const int64_t block_end = std::min<int64_t>(c, j + 256);
    if (exps != nullptr) {
      for (; j + 8 <= block_end; j += 8) {
        const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv));
        _mm256_storeu_ps(exps + j, e);
        acc = _mm256_add_ps(acc, e);
      }
    } else {
      for (; j + 8 <= block_end; j += 8) {
        acc = _mm256_add_ps(acc, Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
      }
    }
    sum += static_cast<double>(HorizontalSum(acc));
  }
  for (; j < c; ++j) {
    const double e = std::exp(static_cast<double>(x[j] - mx));
    if (exps != nullptr) exps[j] = static_cast<float>(e);
    sum += e;
  }
  if (sum_out != nullptr) *sum_out = sum;
  return mx + static_cast<float>(std::log(sum));
}

template <typename T, typename L>
class LossKernel : public Kernel {
 public:
  LossKernel(bool softmax, int64_t n, int64_t c, int64_t d, Reduction red,
             std::optional<int64_t> ignore, bool has_weight, bool log_prob_out, std::string where)
      : softmax_(softmax), n_(n), c_(c), d_(d), red_(red), ignore_(ignore),
        has_weight_(has_weight), log_prob_out_(log_prob_out), where_(std::move(where)) {}

  size_t WorkspaceBytes() const override {
    return softmax_ && !log_prob_out_ ? n_ * c_ * d_ * sizeof(T) : 0;
  }

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void* workspace) override {
    const T* x = static_cast<const T*>(inputs[0]);
    const L* labels = static_cast<const L*>(inputs[1]);
    const T* weight = has_weight_ ? static_cast<const T*>(inputs[2]) : nullptr;
    T* loss = static_cast<T*>(outputs[0]);
    const int64_t n = n_, c = c_, d = d_;
    // Validate labels first: untrusted data must not index out of bounds.
    for (int64_t i = 0; i < n * d; ++i) {
      int64_t lab = labels[i];
      if (ignore_.has_value() && lab == *ignore_) continue;
      if (lab < 0 || lab >= c) {
        return absl::InvalidArgumentError(absl::StrCat(where_, ": label ", lab, " (element ", i,
                                                       ") is out of range [0, ", c, ")"));
      }
    }
    const T* lp = x;
    if (softmax_) {
      T* out_lp = log_prob_out_ ? static_cast<T*>(outputs[1]) : static_cast<T*>(workspace);
      ParallelFor(n * d, std::max<int64_t>(1, kElementGrain / 4 / std::max<int64_t>(c, 1)),
                  [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const int64_t i = r / d, k = r % d;
          const T* xr = x + i * c * d + k;
          T* yr = out_lp + i * c * d + k;
          if constexpr (std::is_same_v<T, float>) {
            if (d == 1) {  // contiguous class axis (logits [N, C]): AVX2
              const float lse = LogSumExpRow(xr, c);
              for (int64_t j = 0; j < c; ++j) yr[j] = xr[j] - lse;
              continue;
            }
          }
          T mx = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < c; ++j) mx = std::max(mx, xr[j * d]);
          double sum = 0;
          for (int64_t j = 0; j < c; ++j) sum += std::exp(static_cast<double>(xr[j * d] - mx));
          const T lse = mx + static_cast<T>(std::log(sum));
          for (int64_t j = 0; j < c; ++j) yr[j * d] = xr[j * d] - lse;
        }
      });
      lp = out_lp;
    }
    double total = 0, wsum = 0;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t k = 0; k < d; ++k) {
        const int64_t lab = labels[i * d + k];
        double l = 0, w = 0;
        if (!(ignore_.has_value() && lab == *ignore_)) {
          w = weight ? static_cast<double>(weight[lab]) : 1.0;
          l = -w * static_cast<double>(lp[(i * c + lab) * d + k]);
        }
        if (red_ == Reduction::kNone) loss[i * d + k] = static_cast<T>(l);
        total += l;
        wsum += w;
      }
    }
    if (red_ == Reduction::kSum) loss[0] = static_cast<T>(total);
    if (red_ == Reduction::kMean) loss[0] = static_cast<T>(total / wsum);
    return absl::OkStatus();
  }

 private:
  bool softmax_;
  int64_t n_, c_, d_;
  Reduction red_;
  std::optional<int64_t> ignore_;
  bool has_weight_, log_prob_out_;
  std::string where_;
};

// linear_ce_loss(x [N, D], w, labels [, bias]) -> loss [, dx_unit, dw_unit [, db_unit]]
// (ops_fused.cc). Blocks of `rows_` rows: logits = x_blk op(w) (+ bias) into the workspace,
// then per row the log-sum-exp and the label's logit; with the gradient outputs the block's
// logits become G = (softmax - onehot) * norm in place and dx_unit_blk = G op(w)^T,
// dw_unit += (G^T x_blk or x_blk^T G), db_unit += the column sums of G (rows in order). Rows
// whose label is ignore_index add nothing. scale (Cohere's logit scale): the logits (bias
// added) times scale, and G times scale. softcap > 0 (Gemma 2): each logit z becomes softcap *
// tanh(z / softcap) before the softmax, and G is multiplied by the cap's derivative
// 1 - tanh^2, kept per logit of the block in a second workspace block.
template <typename L>
class LinearCeKernel : public Kernel {
 public:
  LinearCeKernel(int64_t n, int64_t d, int64_t v, bool trans_b, bool mean,
                 std::optional<int64_t> ignore, bool grads, bool bias, float scale,
                 float softcap, std::string where)
      : n_(n), d_(d), v_(v), trans_b_(trans_b), mean_(mean), ignore_(ignore), grads_(grads),
        bias_(bias), scale_(scale), softcap_(softcap), where_(std::move(where)) {
    // ~8 MiB of logits per block (a few hundred rows for GPT vocabularies), at least 16 rows.
    rows_ = std::max<int64_t>(16, std::min<int64_t>(n_, (int64_t{8} << 20) / (4 * std::max<int64_t>(v_, 1))));
    rows_ = std::min(rows_, std::max<int64_t>(n_, 1));
  }
  size_t WorkspaceBytes() const override {
    return static_cast<size_t>(rows_ * v_ * (Derivs() ? 2 : 1) + rows_) * sizeof(float);
  }
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void* workspace) override {
    const float* x = static_cast<const float*>(inputs[0]);
    const float* w = static_cast<const float*>(inputs[1]);
    const L* labels = static_cast<const L*>(inputs[2]);
    float* loss = static_cast<float*>(outputs[0]);
    float* dx = grads_ ? static_cast<float*>(outputs[1]) : nullptr;
    float* dw = grads_ ? static_cast<float*>(outputs[2]) : nullptr;
    const float* bias = bias_ ? static_cast<const float*>(inputs[3]) : nullptr;
    float* db = grads_ && bias_ ? static_cast<float*>(outputs[3]) : nullptr;
    if (db != nullptr) std::fill(db, db + v_, 0.0f);
    float* logits = static_cast<float*>(workspace);
    float* row_loss = logits + rows_ * v_;
    float* derivs = Derivs() ? row_loss + rows_ : nullptr;  // [rows_, v_]: 1 - tanh^2
    int64_t count = 0;
    for (int64_t i = 0; i < n_; ++i) {
      const int64_t lab = labels[i];
      if (ignore_.has_value() && lab == *ignore_) continue;
      if (lab < 0 || lab >= v_) {
        return absl::InvalidArgumentError(absl::StrCat(where_, ": label ", lab, " (element ", i,
                                                       ") is out of range [0, ", v_, ")"));
      }
      ++count;
    }
    const float norm = mean_ ? (count > 0 ? 1.0f / static_cast<float>(count)
                                          : std::numeric_limits<float>::quiet_NaN())
                             : 1.0f;
    if (grads_ && n_ == 0) std::fill(dw, dw + d_ * v_, 0.0f);  // no block to initialize it
    double total = 0;
    const int64_t ldw = trans_b_ ? d_ : v_;
    for (int64_t r0 = 0; r0 < n_; r0 += rows_) {
      const int64_t rows = std::min(rows_, n_ - r0);
      const float* xb = x + r0 * d_;
      ParallelSgemm(false, trans_b_, rows, v_, d_, 1.0f, xb, d_, w, ldw, 0.0f, logits, v_);
      ParallelFor(rows, 1, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          float* lr = logits + r * v_;
          if (bias != nullptr) {
            int64_t j = 0;
            for (; j + 8 <= v_; j += 8) {
              _mm256_storeu_ps(lr + j, _mm256_add_ps(_mm256_loadu_ps(lr + j),
                                                     _mm256_loadu_ps(bias + j)));
            }
            for (; j < v_; ++j) lr[j] += bias[j];
          }
          if (softcap_ > 0) {  // scale and cap in one pass
            const float inv = 1.0f / softcap_;
            float* dr = derivs != nullptr ? derivs + r * v_ : nullptr;
            for (int64_t j = 0; j < v_; ++j) {
              const float t = std::tanh(lr[j] * scale_ * inv);
              lr[j] = softcap_ * t;
              if (dr != nullptr) dr[j] = 1.0f - t * t;
            }
          } else if (scale_ != 1.0f) {
            for (int64_t j = 0; j < v_; ++j) lr[j] *= scale_;
          }
          const int64_t lab = labels[r0 + r];
          const bool ignored = ignore_.has_value() && lab == *ignore_;
          const float label_logit = ignored ? 0.0f : lr[lab];
          // With the gradient, the row's exps replace the logits in the same pass.
          double sum = 0;
          const bool in_place = grads_ && !ignored;
          const float lse = LogSumExpRow(lr, v_, in_place ? lr : nullptr, &sum);
          row_loss[r] = ignored ? 0.0f : lse - label_logit;
          if (!grads_) continue;
          if (ignored) {
            std::fill(lr, lr + v_, 0.0f);
            continue;
          }
          if (sum == 0) {  // a non-finite row: exp(logit - lse) is NaN throughout, as softmax
            std::fill(lr, lr + v_, std::numeric_limits<float>::quiet_NaN());
            continue;
          }
          // G = softmax * norm = exps * (norm / sum), then minus norm at the label; times the
          // logit scale (the chain rule through z * scale).
          const float scale = static_cast<float>(static_cast<double>(norm) * scale_ / sum);
          int64_t j = 0;
          const __m256 sv = _mm256_set1_ps(scale);
          for (; j + 8 <= v_; j += 8) _mm256_storeu_ps(lr + j, _mm256_mul_ps(_mm256_loadu_ps(lr + j), sv));
          for (; j < v_; ++j) lr[j] *= scale;
          lr[lab] -= norm * scale_;
          if (derivs != nullptr) {  // through the cap: G * (1 - tanh^2)
            const float* dr = derivs + r * v_;
            for (j = 0; j + 8 <= v_; j += 8) {
              _mm256_storeu_ps(lr + j, _mm256_mul_ps(_mm256_loadu_ps(lr + j),
                                                     _mm256_loadu_ps(dr + j)));
            }
            for (; j < v_; ++j) lr[j] *= dr[j];
          }
        }
      });
      for (int64_t r = 0; r < rows; ++r) total += row_loss[r];
      if (!grads_) continue;
      // dx_blk = G op(w)^T: op(w) is [D, V], so op(w)^T is w itself when trans_b (w [V, D]).
      ParallelSgemm(false, !trans_b_, rows, d_, v_, 1.0f, logits, v_, w, ldw, 0.0f,
                    dx + r0 * d_, d_);
      if (db != nullptr) {  // db += the column sums of G, each column's rows in order
        ParallelFor(v_, 256, [&](int64_t b, int64_t e) {
          for (int64_t r = 0; r < rows; ++r) {
            const float* gr = logits + r * v_;
            for (int64_t j = b; j < e; ++j) db[j] += gr[j];
          }
        });
      }
      const float beta = r0 == 0 ? 0.0f : 1.0f;  // the first block initializes dw
      if (trans_b_) {  // dw [V, D] += G^T x_blk
        ParallelSgemm(true, false, v_, d_, rows, 1.0f, logits, v_, xb, d_, beta, dw, d_);
      } else {  // dw [D, V] += x_blk^T G
        ParallelSgemm(true, false, d_, v_, rows, 1.0f, xb, d_, logits, v_, beta, dw, v_);
      }
    }
    loss[0] = static_cast<float>(total * static_cast<double>(norm));
    return absl::OkStatus();
  }

 private:
  bool Derivs() const { return grads_ && softcap_ > 0; }
  int64_t n_, d_, v_, rows_;
  bool trans_b_, mean_;
  std::optional<int64_t> ignore_;
  bool grads_, bias_;
  float scale_, softcap_;
  std::string where_;
};

KernelOr MakeLoss(const ir::Node& node, bool softmax) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 3, 1, softmax ? 2 : 1));
  const ir::TensorType& x = node.input(0)->type();
  const ir::TensorType& lab = node.input(1)->type();
  if (x.rank() < 2) return Invalid(node, absl::StrCat("scores must be [N, C, ...], got ", x.ToString()));
  ir::Shape lab_want = x.shape;
  lab_want.erase(lab_want.begin() + 1);
  if (lab.shape != lab_want || (lab.dtype != DType::kI32 && lab.dtype != DType::kI64)) {
    return Invalid(node, absl::StrCat("labels must be i32/i64", ir::ShapeToString(lab_want),
                                      " for scores ", x.ToString(), ", got ", lab.ToString()));
  }
  const int64_t n = x.shape[0], c = x.shape[1];
  const int64_t d = (n * c != 0) ? x.num_elements() / (n * c) : 0;
  bool has_weight = node.num_inputs() == 3;
  if (has_weight) {
    const ir::TensorType& w = node.input(2)->type();
    if (w.dtype != x.dtype || w.shape != ir::Shape{c}) {
      return Invalid(node, absl::StrCat("weights must be ", DTypeStr(x.dtype), "[", c,
                                        "], got ", w.ToString()));
    }
  }
  PTC_ASSIGN_OR_RETURN(std::string rs, node.GetString("reduction", "mean"));
  Reduction red;
  if (rs == "none") {
    red = Reduction::kNone;
  } else if (rs == "sum") {
    red = Reduction::kSum;
  } else if (rs == "mean") {
    red = Reduction::kMean;
  } else {
    return Invalid(node, absl::StrCat("reduction must be none, sum or mean, got \"", rs, "\""));
  }
  std::optional<int64_t> ignore;
  if (node.has_attr("ignore_index")) {
    PTC_ASSIGN_OR_RETURN(int64_t ii, node.GetInt("ignore_index"));
    ignore = ii;
  }
  ir::TensorType loss_want{x.dtype, red == Reduction::kNone ? lab.shape : ir::Shape{}};
  if (node.output(0)->type() != loss_want) {
    return Invalid(node, absl::StrCat("loss output should be ", loss_want.ToString(), ", got ",
                                      OutType(node, 0)));
  }
  bool log_prob_out = softmax && node.num_outputs() == 2;
  if (log_prob_out && node.output(1)->type() != x) {
    return Invalid(node, absl::StrCat("log_prob output should be ", x.ToString()));
  }
  std::string where = node.Describe();
#define PTC_LOSS(T)                                                                             \
  if (lab.dtype == DType::kI64) {                                                               \
    return KernelPtr(new LossKernel<T, int64_t>(softmax, n, c, d, red, ignore, has_weight,      \
                                                log_prob_out, where));                          \
  }                                                                                             \
  return KernelPtr(                                                                             \
      new LossKernel<T, int32_t>(softmax, n, c, d, red, ignore, has_weight, log_prob_out, where));
  switch (x.dtype) {
    case DType::kF32: {
      PTC_LOSS(float)
    }
    case DType::kF64: {
      PTC_LOSS(double)
    }
    default:
      return Unsupported(node, absl::StrCat("dtype ", x.ToString(), " is not supported"));
  }
#undef PTC_LOSS
}

}  // namespace

KernelOr MakeSoftmaxCeLossKernel(const ir::Node& node) { return MakeLoss(node, true); }
KernelOr MakeNllLossKernel(const ir::Node& node) { return MakeLoss(node, false); }

KernelOr MakeLinearCeLossKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 4, 1, 4));
  const ir::TensorType& x = node.input(0)->type();
  const ir::TensorType& w = node.input(1)->type();
  const ir::TensorType& lab = node.input(2)->type();
  const bool bias = node.num_inputs() == 4;
  const size_t grad_outputs = bias ? 4 : 3;
  PTC_ASSIGN_OR_RETURN(int64_t trans_b, node.GetInt("trans_b", 0));
  PTC_ASSIGN_OR_RETURN(std::string red, node.GetString("reduction", "mean"));
  if (x.dtype != DType::kF32 || w.dtype != DType::kF32 || x.rank() != 2 || w.rank() != 2 ||
      (red != "mean" && red != "sum") ||
      (node.num_outputs() != 1 && node.num_outputs() != grad_outputs)) {
    return Invalid(node, absl::StrCat("expects f32 x [N, D], w, reduction mean or sum, 1 or ",
                                      grad_outputs, " outputs"));
  }
  const int64_t n = x.shape[0], d = x.shape[1], v = trans_b ? w.shape[0] : w.shape[1];
  if ((trans_b ? w.shape[1] : w.shape[0]) != d || lab.shape != ir::Shape{n} ||
      (bias && node.input(3)->type() != ir::TensorType{DType::kF32, {v}})) {
    return Invalid(node, absl::StrCat("shapes do not match: ", x.ToString(), ", ", w.ToString(),
                                      ", ", lab.ToString(),
                                      bias ? ", " + node.input(3)->type().ToString() : ""));
  }
  std::optional<int64_t> ignore;
  if (node.has_attr("ignore_index")) {
    PTC_ASSIGN_OR_RETURN(int64_t ii, node.GetInt("ignore_index"));
    ignore = ii;
  }
  const bool grads = node.num_outputs() > 1;
  PTC_ASSIGN_OR_RETURN(double softcap, node.GetFloat("softcap", 0.0));
  PTC_ASSIGN_OR_RETURN(double scale, node.GetFloat("scale", 1.0));
  const float cap = static_cast<float>(softcap), s = static_cast<float>(scale);
  if (lab.dtype == DType::kI64) {
    return KernelPtr(new LinearCeKernel<int64_t>(n, d, v, trans_b != 0, red == "mean", ignore,
                                                 grads, bias, s, cap, node.Describe()));
  }
  if (lab.dtype == DType::kI32) {
    return KernelPtr(new LinearCeKernel<int32_t>(n, d, v, trans_b != 0, red == "mean", ignore,
                                                 grads, bias, s, cap, node.Describe()));
  }
  return Invalid(node, "labels must be i32 or i64");
}

}  // namespace ptc::cpu::internal
