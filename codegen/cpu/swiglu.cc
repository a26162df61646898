// swiglu(g, u) and swiglu_grad(dy, g, u) (compiler/ir/ops_fused.cc, ops_train.cc), per element
// with s = sigmoid(g):
//   y = g s u;   du = dy g s,   dg = dy u s (1 + g (1 - s));
// {activation} gelu_tanh / gelu (GeGLU) with a(g) = gelu(g) (kernel_util.h's GeluValue and
// GeluDerivative, the gelu op's and gelu_grad's own):
//   y = a(g) u;  du = dy a(g),  dg = dy u a'(g).
// f32 / f64 (f16 / bf16 through the f32 kernel: kernel.cc's HalfWrapperKernel, each output
// rounded once). The forward computes (g s) u in this order, as the exported mul chain does, so
// that an f32 plan's forward keeps the unfused bits. Every output element is written by one
// thread after it read that element of each input (the forward may write into g's or u's buffer:
// plan-memory's reuse of elementwise inputs).
#include "absl/strings/str_cat.h"
#include "compiler/ir/ops_fused.h"
#include "codegen/cpu/kernel_util.h"
#include "codegen/cpu/train_kernels_internal.h"

namespace ptc::cpu::internal {
namespace {

template <typename T>
class SwigluKernel final : public Kernel {
 public:
  SwigluKernel(int64_t n, ir::GateActivation act) : n_(n), act_(act) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* g = static_cast<const T*>(inputs[0]);
    const T* u = static_cast<const T*>(inputs[1]);
    T* y = static_cast<T*>(outputs[0]);
    if (act_ != ir::GateActivation::kSilu) {
      const bool tanh_form = act_ == ir::GateActivation::kGeluTanh;
      ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) y[i] = GeluValue(g[i], tanh_form) * u[i];
      });
      return absl::OkStatus();
    }
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        const T x = g[i];
        y[i] = (x * Sigmoid(x)) * u[i];
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
  ir::GateActivation act_;
};

template <typename T>
class SwigluGradKernel final : public Kernel {
 public:
  SwigluGradKernel(int64_t n, ir::GateActivation act) : n_(n), act_(act) {}
  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const T* dy = static_cast<const T*>(inputs[0]);
    const T* g = static_cast<const T*>(inputs[1]);
    const T* u = static_cast<const T*>(inputs[2]);
    T* dg = static_cast<T*>(outputs[0]);
    T* du = static_cast<T*>(outputs[1]);
    if (act_ != ir::GateActivation::kSilu) {
      const bool tanh_form = act_ == ir::GateActivation::kGeluTanh;
      ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const T x = g[i], d = dy[i];
          const T v = u[i];
          dg[i] = d * v * GeluDerivative(x, tanh_form);
          du[i] = d * GeluValue(x, tanh_form);
        }
      });
      return absl::OkStatus();
    }
    ParallelFor(n_, kElementGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        const T x = g[i], d = dy[i], v = u[i];
        const T s = Sigmoid(x);
        dg[i] = d * v * s * (T(1) + x * (T(1) - s));
        du[i] = d * (x * s);
      }
    });
    return absl::OkStatus();
  }

 private:
  int64_t n_;
  ir::GateActivation act_;
};

// All operands of `node` of one float type (what the op's type inference guarantees).
absl::Status SameType(const ir::Node& node) {
  const ir::TensorType& t = node.input(node.num_inputs() - 1)->type();
  for (const ir::Value* v : node.inputs()) {
    if (v->type() != t) {
      return Invalid(node, absl::StrCat("needs operands of one type, got ", v->type().ToString(),
                                        " and ", t.ToString()));
    }
  }
  for (const ir::Value* v : node.outputs()) {
    if (v->type() != t) {
      return Invalid(node, absl::StrCat("output ", v->type().ToString(), " must have type ",
                                        t.ToString()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

KernelOr MakeSwigluKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 2, 2, 1, 1));
  PTC_RETURN_IF_ERROR(SameType(node));
  const int64_t n = node.output(0)->type().num_elements();
  absl::StatusOr<ir::GateActivation> act = ir::SwigluActivation(node.attrs());
  if (!act.ok()) return Invalid(node, std::string(act.status().message()));
  return DispatchFloat(node, node.input(0)->type().dtype, [&](auto t) -> KernelOr {
    return KernelPtr(new SwigluKernel<decltype(t)>(n, *act));
  });
}

KernelOr MakeSwigluGradKernel(const ir::Node& node) {
  PTC_RETURN_IF_ERROR(CheckArity(node, 3, 3, 2, 2));
  PTC_RETURN_IF_ERROR(SameType(node));
  const int64_t n = node.input(1)->type().num_elements();
  absl::StatusOr<ir::GateActivation> act = ir::SwigluActivation(node.attrs());
  if (!act.ok()) return Invalid(node, std::string(act.status().message()));
  return DispatchFloat(node, node.input(1)->type().dtype, [&](auto t) -> KernelOr {
    return KernelPtr(new SwigluGradKernel<decltype(t)>(n, *act));
  });
}

}  // namespace ptc::cpu::internal
