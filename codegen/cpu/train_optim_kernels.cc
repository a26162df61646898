// Kernels of the optimizer ops (ops_train.cc): lr_schedule, adamw_update, sgd_update, and the
// no-op kernel of assign (the runtime performs the write after the step; see training.h).
#include <cmath>
#include <cstring>

#include "codegen/cpu/train_kernels_internal.h"

namespace ptc::cpu::internal {
namespace {

class LrScheduleKernel : public Kernel {
 public:
  LrScheduleKernel(double lr, bool cosine, int64_t warmup, int64_t total, double min_ratio)
      : lr_(lr), cosine_(cosine), warmup_(warmup), total_(total), min_ratio_(min_ratio) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const double step = *static_cast<const float*>(inputs[0]);
    double lr = lr_;
    if (step < static_cast<double>(warmup_)) {
      lr = lr_ * (step + 1) / static_cast<double>(warmup_);
    } else if (cosine_ && total_ > warmup_) {
      double p = std::min(1.0, (step - warmup_) / static_cast<double>(total_ - warmup_));
      lr = lr_ * (min_ratio_ + (1 - min_ratio_) * 0.5 * (1 + std::cos(M_PI * p)));
    }
    *static_cast<float*>(outputs[0]) = static_cast<float>(lr);
    return absl::OkStatus();
  }

 private:
  double lr_;
  bool cosine_;
  int64_t warmup_, total_;
  double min_ratio_;
};

// Element arithmetic in T like torch's foreach-free AdamW; scalar factors in double.
template <typename T>
class AdamWKernel : public Kernel {
 public:
  AdamWKernel(int64_t n, double b1, double b2, double eps, double wd)
      : n_(n), b1_(b1), b2_(b2), eps_(eps), wd_(wd) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* w = static_cast<const T*>(inputs[0]);
    const T* g = static_cast<const T*>(inputs[1]);
    const T* m = static_cast<const T*>(inputs[2]);
    const T* v = static_cast<const T*>(inputs[3]);
    const double lr = *static_cast<const float*>(inputs[4]);
    const double t = *static_cast<const float*>(inputs[5]);
    T* wo = static_cast<T*>(outputs[0]);
    T* mo = static_cast<T*>(outputs[1]);
    T* vo = static_cast<T*>(outputs[2]);
    if (inputs.size() > 6 && !*static_cast<const bool*>(inputs[6])) {  // not applied: unchanged
      if (wo != w) std::memcpy(wo, w, sizeof(T) * n_);
      if (mo != m) std::memcpy(mo, m, sizeof(T) * n_);
      if (vo != v) std::memcpy(vo, v, sizeof(T) * n_);
      return absl::OkStatus();
    }
    const T decay = static_cast<T>(1.0 - lr * wd_);
    const T b1 = static_cast<T>(b1_), b2 = static_cast<T>(b2_);
    const T c1 = static_cast<T>(1.0 - b1_), c2 = static_cast<T>(1.0 - b2_);
    const T step_size = static_cast<T>(lr / (1.0 - std::pow(b1_, t)));
    const T bc2_sqrt = static_cast<T>(std::sqrt(1.0 - std::pow(b2_, t)));
    const T eps = static_cast<T>(eps_);
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        T gi = g[i];
        T mi = b1 * m[i] + c1 * gi;
        T vi = b2 * v[i] + c2 * gi * gi;
        T denom = std::sqrt(vi) / bc2_sqrt + eps;
        wo[i] = w[i] * decay - step_size * mi / denom;
        mo[i] = mi;
        vo[i] = vi;
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
  double b1_, b2_, eps_, wd_;
};

template <typename T>
class SgdKernel : public Kernel {
 public:
  SgdKernel(int64_t n, double momentum, double wd, bool has_mom)
      : n_(n), momentum_(momentum), wd_(wd), has_mom_(has_mom) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* w = static_cast<const T*>(inputs[0]);
    const T* g = static_cast<const T*>(inputs[1]);
    const T lr = static_cast<T>(*static_cast<const float*>(inputs[2]));
    const T* mom = has_mom_ ? static_cast<const T*>(inputs[3]) : nullptr;
    T* wo = static_cast<T*>(outputs[0]);
    T* mo = has_mom_ ? static_cast<T*>(outputs[1]) : nullptr;
    const T wd = static_cast<T>(wd_), mu = static_cast<T>(momentum_);
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        T d = g[i] + wd * w[i];
        if (mom) {
          d = mu * mom[i] + d;
          mo[i] = d;
        }
        wo[i] = w[i] - lr * d;
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
  double momentum_, wd_;
  bool has_mom_;
};

class AssignKernel : public Kernel {
 public:
  absl::Status Run(absl::Span<const void* const>, absl::Span<void* const>, void*) override {
    return absl::OkStatus();
  }
};

}  // namespace

KernelOr MakeLrScheduleKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 1, 1, 1, 1));
  PTC_ASSIGN_OR_RETURN(double lr, node.GetFloat("lr"));
  PTC_ASSIGN_OR_RETURN(std::string s, node.GetString("schedule", "constant"));
  PTC_ASSIGN_OR_RETURN(int64_t warmup, node.GetInt("warmup", 0));
  PTC_ASSIGN_OR_RETURN(int64_t total, node.GetInt("total_steps", 0));
  PTC_ASSIGN_OR_RETURN(double min_ratio, node.GetFloat("min_lr_ratio", 0.0));
  return KernelPtr(new LrScheduleKernel(lr, s == "cosine", warmup, total, min_ratio));
}

KernelOr MakeAdamWKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 6, 7, 3, 3));
  PTC_ASSIGN_OR_RETURN(double b1, node.GetFloat("beta1"));
  PTC_ASSIGN_OR_RETURN(double b2, node.GetFloat("beta2"));
  PTC_ASSIGN_OR_RETURN(double eps, node.GetFloat("eps"));
  PTC_ASSIGN_OR_RETURN(double wd, node.GetFloat("weight_decay"));
  const ir::TensorType& w = node.input(0)->type();
  return DispatchFloat(node, w.dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    return KernelPtr(new AdamWKernel<T>(w.num_elements(), b1, b2, eps, wd));
  });
}

KernelOr MakeSgdKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 4, 1, 2));
  PTC_ASSIGN_OR_RETURN(double momentum, node.GetFloat("momentum", 0.0));
  PTC_ASSIGN_OR_RETURN(double wd, node.GetFloat("weight_decay", 0.0));
  const ir::TensorType& w = node.input(0)->type();
  const bool has_mom = node.num_inputs() == 4;
  if (static_cast<int>(node.num_outputs()) != (has_mom ? 2 : 1)) {
    return Invalid(node, "sgd_update has 2 outputs with a momentum buffer, else 1");
  }
  return DispatchFloat(node, w.dtype, [&](auto t) -> KernelOr {
    using T = decltype(t);
    return KernelPtr(new SgdKernel<T>(w.num_elements(), momentum, wd, has_mom));
  });
}

KernelOr MakeAssignKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 0, 0));
  return KernelPtr(new AssignKernel());
}

}  // namespace ptc::cpu::internal
