// Internal to compiler/autodiff: the optimizer part of a training step (training.h contract):
// gradient accumulation, global-norm clipping, lr schedule, AdamW / SGD updates and the assign
// nodes of weights and optimizer state.
#ifndef PTC_COMPILER_AUTODIFF_OPTIMIZER_H_
#define PTC_COMPILER_AUTODIFF_OPTIMIZER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "compiler/autodiff/training.h"
#include "compiler/ir/ir.h"

namespace ptc::autodiff::internal {

struct OptimizerOutputs {
  ir::Value* grad_norm = nullptr;  // f32[]
  ir::Value* lr = nullptr;         // f32[]
  std::vector<ir::Value*> state;   // the "state" parameters, in creation order
};

// Appends the update of `weights` (parameters of `f`) from `grads` (same order, same types).
// State parameters that start at zero get no tensor in module.tensors(): the executors start
// them at zero, and plans do not store the zeros (2x the weights for AdamW).
// With dynamic loss scaling, `loss_scale` is the "state" parameter opt.loss_scale the backward
// was seeded with (the grads are scaled by it); it is listed first in OptimizerOutputs::state.
absl::StatusOr<OptimizerOutputs> AppendOptimizer(ir::Function& f,
                                                 const std::vector<ir::Value*>& weights,
                                                 const std::vector<ir::Value*>& grads,
                                                 const TrainOptions& options,
                                                 ir::Value* loss_scale = nullptr);

}  // namespace ptc::autodiff::internal

#endif  // PTC_COMPILER_AUTODIFF_OPTIMIZER_H_
