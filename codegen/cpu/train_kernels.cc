// Registry of the CPU kernels of training ops (compiler/ir/ops_train.cc). The kernels live in
// train_grad_kernels.cc (gradient ops) and train_optim_kernels.cc (optimizer ops, assign).
#include "codegen/cpu/train_kernels.h"

#include "codegen/cpu/train_kernels_internal.h"

namespace ptc::cpu {
namespace {

struct TrainOpEntry {
  std::string_view op;
  internal::KernelOr (*factory)(const ir::Node&);
  // f16 / bf16 operands computed in f32 (internal::WrapHalfViaF32): layer_norm_grad's dy of a
  // --precision plan (fold-norm-casts), swiglu_grad of a bf16 swiglu. The other ops have f32
  // operands only.
  bool half_via_f32 = false;
};

constexpr TrainOpEntry kTrainOps[] = {
    {"gather_grad", internal::MakeGatherGradKernel},
    {"slice_grad", internal::MakeSliceGradKernel},
    {"softmax_ce_loss_grad", internal::MakeLossGradKernel},
    {"nll_loss_grad", internal::MakeLossGradKernel},
    {"layer_norm_grad", internal::MakeLayerNormGradKernel, true},
    {"gelu_grad", internal::MakeGeluGradKernel},
    {"swiglu_grad", internal::MakeSwigluGradKernel, true},
    {"lr_schedule", internal::MakeLrScheduleKernel},
    {"adamw_update", internal::MakeAdamWKernel},
    {"sgd_update", internal::MakeSgdKernel},
    {"assign", internal::MakeAssignKernel},
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateTrainKernel(const ir::Node& node) {
  for (const TrainOpEntry& e : kTrainOps) {
    if (e.op == node.op()) {
      bool half = false;
      for (const ir::Value* v : node.inputs()) {
        if (v == nullptr) return internal::Invalid(node, "has a null input");
        half |= ir::IsHalfFloat(v->type().dtype);
      }
      if (!half) return e.factory(node);
      if (e.half_via_f32) return internal::WrapHalfViaF32(node, e.factory);
      return internal::Unsupported(node, "f16/bf16 training ops have no CPU kernel yet; "
                                         "train in f32 (master weights)");
    }
  }
  return std::unique_ptr<Kernel>();
}

bool HasTrainKernel(std::string_view op) {
  for (const TrainOpEntry& e : kTrainOps) {
    if (e.op == op) return true;
  }
  return false;
}

}  // namespace ptc::cpu
