// Building a training step from a forward graph: loss, reverse-mode autodiff, optimizer update.
//
// Contract of a training-step module (what `ptc compile --train` produces and `ptc run --steps`
// executes; the runtime relies on exactly this):
//   - one function @main: one training step over one micro-batch window;
//   - its parameters are, in order: data inputs (token ids, labels, ... : plain params), the
//     trainable weights (flag "param"), frozen weights (flags "param", "frozen"), then the
//     optimizer state (flag "state": AdamW first/second moments named "adam.m.<weight>" /
//     "adam.v.<weight>", SGD momentum "sgd.mom.<weight>", the step counter "opt.step" f32[],
//     and, with gradient accumulation, "accum.<weight>" buffers and "accum.count");
//     every "param" / "state" parameter has an initial tensor in Module::tensors() (state
//     starts at zero);
//   - its results are, in order: loss f32[] (the mean loss of this micro-batch), then the
//     scalars grad_norm f32[] and lr f32[] (NaN / the scheduled lr; with accumulation they are
//     those of the last applied update), then, when TrainOptions::keep_gradients, one gradient
//     per trainable weight named "grad.<weight>" (in weight order; the gradient of this step
//     before clipping);
//   - state updates are `assign(%target_param, %new_value)` nodes (impure, no outputs): the
//     runtime writes new_value into the parameter's storage after every other node of the step
//     has run (so every read in the step sees the old value). Weights, optimizer state and the
//     step counter are all updated this way; the runtime keeps them in writable memory, and
//     checkpoints are exactly the "param" + "state" parameters.
//   - The lr schedule, bias corrections and accumulation are computed in the graph from
//     "opt.step" (no host-side logic), so that resuming from a checkpoint is bit-exact.
#ifndef PTC_COMPILER_AUTODIFF_TRAINING_H_
#define PTC_COMPILER_AUTODIFF_TRAINING_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::autodiff {

struct TrainOptions {
  // Loss: either the forward graph already outputs a scalar loss (loss_output names it; ""
  // means: the single f32[] result), or `loss` is "softmax-ce" and `labels` names a new i64
  // input appended for the labels of the logits output (logits_output, "" = the first result).
  std::string loss;           // "" (model outputs the loss) | "softmax-ce"
  std::string loss_output;
  std::string logits_output;
  std::string labels = "labels";
  int64_t ignore_index = -100;

  std::string frozen;         // regex over weight names: not trained
  std::string optimizer = "adamw";  // "adamw" | "sgd"
  double lr = 1e-3;
  double weight_decay = 0.0;  // AdamW: decoupled, exactly as torch.optim.AdamW
  std::string no_decay;       // regex over weight names excluded from weight decay
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double momentum = 0.0;      // SGD
  double grad_clip = 0.0;     // global-norm clipping; 0 = off
  std::string schedule = "constant";  // "constant" | "cosine" (linear warmup + cosine decay)
  int64_t warmup = 0;
  int64_t total_steps = 0;    // for cosine; 0 = no decay
  double min_lr_ratio = 0.0;
  int64_t accumulate = 1;     // micro-batches per optimizer update
  // Loss scaling for fp16 (optimizer.cc): "none" or "dynamic" (torch.cuda.amp.GradScaler's
  // rule: the backward starts from the loss times opt.loss_scale, the gradients are unscaled
  // before clipping and the update; a step whose gradients are not finite is skipped and
  // halves the scale; loss_scale_interval clean steps in a row double it).
  std::string loss_scale = "none";
  double loss_scale_init = 65536.0;
  int64_t loss_scale_interval = 2000;
  uint64_t dropout_seed = 0;
  // Return every gradient as a "grad.<weight>" result (for --dump-gradients and parity
  // checks). Off by default: a result lives to the end of the step, so kept gradients hold
  // their bytes through the optimizer; without them each gradient's buffer is freed as soon as
  // its update has read it (passes/schedule.cc applies updates as early as they can run).
  bool keep_gradients = false;
};

// Turns the forward module (imported ONNX) into a training-step module (contract above).
absl::Status BuildTrainingStep(ir::Module& module, const TrainOptions& options);

// Appends the scalar loss per `options` (the model's loss output, or softmax-ce over the logits
// with a new labels input) and returns it (f32[]).
absl::StatusOr<ir::Value*> AppendLoss(ir::Function& function, const TrainOptions& options);

// Adds function @eval to `train_module`: a copy of `forward`'s main with the loss appended,
// results (loss). It has the same data inputs and weight names as @main and no `assign`: the
// runtime runs it on the live weights for validation loss.
absl::Status AddEvalFunction(ir::Module& train_module, const ir::Function& forward,
                             const TrainOptions& options);

// Reverse-mode autodiff of `function`: appends the backward nodes that compute d(loss)/d(wrt[i])
// for each value in `wrt` (the seed is 1 for the f32[] `loss`). Returns the gradient values,
// nullptr entries for values the loss does not depend on. Errors name the op with no rule.
absl::StatusOr<std::vector<ir::Value*>> AppendGradients(ir::Function& function, ir::Value* loss,
                                                        const std::vector<ir::Value*>& wrt);

}  // namespace ptc::autodiff

#endif  // PTC_COMPILER_AUTODIFF_TRAINING_H_
