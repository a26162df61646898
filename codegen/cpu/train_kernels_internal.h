// Factories of the training-op kernels (train_*.cc), registered in train_kernels.cc.
#ifndef PTC_CODEGEN_CPU_TRAIN_KERNELS_INTERNAL_H_
#define PTC_CODEGEN_CPU_TRAIN_KERNELS_INTERNAL_H_

#include "codegen/cpu/kernel_util.h"

namespace ptc::cpu::internal {

KernelOr MakeGatherGradKernel(const ir::Node& node);
KernelOr MakeSliceGradKernel(const ir::Node& node);
KernelOr MakeLossGradKernel(const ir::Node& node);  // softmax_ce_loss_grad, nll_loss_grad
KernelOr MakeLayerNormGradKernel(const ir::Node& node);
KernelOr MakeGeluGradKernel(const ir::Node& node);
KernelOr MakeSwigluGradKernel(const ir::Node& node);  // swiglu.cc
KernelOr MakeLrScheduleKernel(const ir::Node& node);
KernelOr MakeAdamWKernel(const ir::Node& node);
KernelOr MakeSgdKernel(const ir::Node& node);
KernelOr MakeAssignKernel(const ir::Node& node);

// Runs `make.template operator()<T>()` for T = float or double by the node's dtype `d`.
template <typename F>
KernelOr DispatchFloat(const ir::Node& node, ir::DType d, F&& make) {
  switch (d) {
    case ir::DType::kF32: return make(float{});
    case ir::DType::kF64: return make(double{});
    default:
      return Unsupported(node, absl::StrCat("dtype ", DTypeStr(d), " is not supported (f32, f64)"));
  }
}

}  // namespace ptc::cpu::internal

#endif  // PTC_CODEGEN_CPU_TRAIN_KERNELS_INTERNAL_H_
