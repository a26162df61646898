// BuildTrainingStep (training.h): loss, trainable weights, gradients (gradients.cc), optimizer
// (optimizer.cc), results and parameter order of the training-step contract.
//
// Precondition: the forward module is unfused (autodiff runs before the fusion passes).
#include <regex>

#include "absl/strings/str_cat.h"
#include "compiler/autodiff/grad_builder.h"
#include "compiler/autodiff/optimizer.h"
#include "compiler/autodiff/training.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"

namespace ptc::autodiff {
namespace {

absl::Status Invalid(std::string msg) { return absl::InvalidArgumentError(std::move(msg)); }

absl::Status CheckOptions(const TrainOptions& o) {
  if (o.loss != "" && o.loss != "softmax-ce") {
    return Invalid(absl::StrCat("unknown loss \"", o.loss, "\" (expected \"\" or \"softmax-ce\")"));
  }
  if (o.optimizer != "adamw" && o.optimizer != "sgd") {
    return Invalid(absl::StrCat("unknown optimizer \"", o.optimizer, "\" (adamw | sgd)"));
  }
  if (o.schedule != "constant" && o.schedule != "cosine") {
    return Invalid(absl::StrCat("unknown lr schedule \"", o.schedule, "\" (constant | cosine)"));
  }
  if (o.accumulate < 1) return Invalid(absl::StrCat("accumulate must be >= 1, got ", o.accumulate));
  if (!(o.lr >= 0) || o.warmup < 0 || o.total_steps < 0 || !(o.grad_clip >= 0)) {
    return Invalid("lr, warmup, total_steps and grad_clip must be >= 0");
  }
  return absl::OkStatus();
}

// The scalar loss: a model output, or softmax cross-entropy over logits with a new labels input.
absl::StatusOr<ir::Value*> MakeLoss(ir::Function& f, const TrainOptions& o) {
  if (o.loss.empty()) {
    ir::Value* loss = nullptr;
    if (!o.loss_output.empty()) {
      loss = f.FindValue(o.loss_output);
      if (loss == nullptr) {
        return Invalid(absl::StrCat("loss output \"", o.loss_output, "\" is not a value of @",
                                    f.name()));
      }
    } else {
      for (ir::Value* r : f.results()) {
        if (r->type().shape.empty() && ir::IsFloat(r->type().dtype)) {
          if (loss != nullptr) {
            return Invalid("the model has several scalar float results; name the loss output");
          }
          loss = r;
        }
      }
      if (loss == nullptr) {
        return Invalid(absl::StrCat(
            "the model has no scalar float result to train on; pass the loss output name, or "
            "use the softmax-ce loss over the logits"));
      }
    }
    if (!loss->type().shape.empty() || !ir::IsFloat(loss->type().dtype)) {
      return Invalid(absl::StrCat("loss %", loss->name(), " must be a float scalar, got ",
                                  loss->type().ToString()));
    }
    return loss;
  }
  ir::Value* logits = nullptr;
  if (!o.logits_output.empty()) {
    logits = f.FindValue(o.logits_output);
  } else if (!f.results().empty()) {
    logits = f.results()[0];
  }
  if (logits == nullptr || logits->type().rank() < 1 || !ir::IsFloat(logits->type().dtype)) {
    return Invalid(absl::StrCat("softmax-ce needs float logits [..., classes]; got ",
                                logits ? logits->type().ToString() : "no such value \"" +
                                                                         o.logits_output + "\""));
  }
  if (f.FindValue(o.labels) != nullptr) {
    return Invalid(absl::StrCat("the labels input name \"", o.labels,
                                "\" is already used in the model; choose another"));
  }
  const ir::Shape& ls = logits->type().shape;
  const int64_t classes = ls.back();
  ir::Shape label_shape(ls.begin(), ls.end() - 1);
  int64_t rows = 1;
  for (int64_t d : label_shape) rows *= d;
  ir::Value* labels = f.AddParam(o.labels, {ir::DType::kI64, label_shape});
  internal::GradBuilder b(f, "loss", "softmax-ce");
  ir::Value* x = b.Reshape(logits, {rows, classes});
  if (x && x->type().dtype != ir::DType::kF32) x = b.Op("cast", {x}, {{"to", ir::DType::kF32}});
  ir::Value* y = b.Reshape(labels, {rows});
  ir::Value* loss = b.Op("softmax_ce_loss", {x, y},
                         {{"reduction", std::string("mean")}, {"ignore_index", o.ignore_index}},
                         "loss");
  PTC_RETURN_IF_ERROR(b.status());
  return loss;
}

}  // namespace

absl::StatusOr<ir::Value*> AppendLoss(ir::Function& f, const TrainOptions& o) {
  PTC_ASSIGN_OR_RETURN(ir::Value* loss, MakeLoss(f, o));
  if (loss->type().dtype != ir::DType::kF32) {
    internal::GradBuilder b(f, "loss", "");
    loss = b.Op("cast", {loss}, {{"to", ir::DType::kF32}}, "loss");
    PTC_RETURN_IF_ERROR(b.status());
  }
  return loss;
}

absl::Status AddEvalFunction(ir::Module& train_module, const ir::Function& forward,
                             const TrainOptions& o) {
  if (train_module.FindFunction("eval") != nullptr) {
    return Invalid("the module already has a function @eval");
  }
  ir::Function* eval = train_module.CopyFunction(forward, "eval");
  PTC_ASSIGN_OR_RETURN(ir::Value* loss, AppendLoss(*eval, o));
  eval->set_results({loss});
  return absl::OkStatus();
}

absl::Status BuildTrainingStep(ir::Module& module, const TrainOptions& o) {
  PTC_RETURN_IF_ERROR(CheckOptions(o));
  ir::Function* f = module.main();
  if (f == nullptr) return Invalid("the module has no function to train");
  std::regex frozen;
  try {
    frozen = std::regex(o.frozen.empty() ? std::string("$^") : o.frozen);
  } catch (const std::regex_error& e) {
    return Invalid(absl::StrCat("frozen: invalid regex \"", o.frozen, "\": ", e.what()));
  }
  std::vector<ir::Value*> data, candidates, frozen_weights;
  for (ir::Value* p : f->params()) {
    if (!p->is_param()) {
      data.push_back(p);
    } else if (ir::IsFloat(p->type().dtype) && !std::regex_search(p->name(), frozen)) {
      candidates.push_back(p);
    } else {
      frozen_weights.push_back(p);
    }
  }
  // Dropout (dropout nodes, and attentions with a fused dropout): a distinct, reproducible seed
  // per node, and the step's counter (the `rng.step` state, one more each step) as every
  // one's counter: each step draws new masks, and the gradient (the same dropout of dy, or
  // attention_grad's redraw) and a recomputation draw the forward's.
  int64_t dropout_index = 0;
  ir::Value* rng_step = nullptr;
  for (const auto& n : f->nodes()) {
    const bool attention = n->op() == "attention" && n->GetFloat("dropout", 0.0).value_or(0) > 0;
    if (n->op() != "dropout" && !attention) continue;
    n->set_attr("seed", static_cast<int64_t>(o.dropout_seed * 1000003ull + dropout_index++));
    // A counter of the model's own stays.
    if (attention ? ir::AttentionCounter(*n, 0) != nullptr : n->num_inputs() > 1) continue;
    if (rng_step == nullptr) {
      rng_step = f->AddParam("rng.step", {ir::DType::kI64, {}}, {"state"});
    }
    std::vector<ir::Value*> ins = n->inputs();
    ins.push_back(rng_step);  // the last operand of both
    n->set_inputs(ins);
  }
  if (rng_step != nullptr) {
    internal::GradBuilder b(*f, "rng", "");
    ir::Value* next = b.Op("add", {rng_step, b.Const(ir::DType::kI64, 1.0)}, {}, "rng.step.new");
    PTC_RETURN_IF_ERROR(b.status());
    f->AddNode("assign", {rng_step, next}, {}, {}, "", {});
  }
  PTC_ASSIGN_OR_RETURN(ir::Value* loss, AppendLoss(*f, o));
  if (!o.loss.empty()) data.push_back(f->params().back());  // the labels
  // Dynamic loss scaling: differentiate loss * opt.loss_scale (the state parameter); the
  // optimizer unscales (optimizer.h).
  ir::Value* loss_scale = nullptr;
  ir::Value* diff_target = loss;
  if (o.loss_scale == "dynamic") {
    if (o.accumulate > 1) {
      return Invalid("dynamic loss scaling with gradient accumulation is not supported yet; "
                     "use --accumulate 1 or --loss-scale none");
    }
    if (!(o.loss_scale_init > 0) || o.loss_scale_interval < 1) {
      return Invalid("loss scaling needs --loss-scale-init > 0 and --loss-scale-interval >= 1");
    }
    loss_scale = f->AddParam("opt.loss_scale", loss->type(), {"state"});
    module.tensors()["opt.loss_scale"] =
        ir::Tensor::FromVector(loss->type().dtype, {},
                               std::vector<float>{static_cast<float>(o.loss_scale_init)});
    if (loss->type().dtype != ir::DType::kF32) {
      return Invalid("loss scaling needs an f32 loss");
    }
    diff_target = f->AddNode("mul", {loss, loss_scale}, {loss->type()}, {}, loss->producer()
                                 ? loss->producer()->loc() : "", {"loss.scaled"})
                      ->output();
  } else if (o.loss_scale != "none") {
    return Invalid(absl::StrCat("loss_scale must be none or dynamic, got '", o.loss_scale, "'"));
  }
  f->set_results({loss});  // kept up to date by the node replacements of AppendGradients
  PTC_ASSIGN_OR_RETURN(std::vector<ir::Value*> grads,
                       AppendGradients(*f, diff_target, candidates));
  loss = f->results()[0];
  std::vector<ir::Value*> trainable, trainable_grads;
  for (size_t i = 0; i < candidates.size(); ++i) {
    if (grads[i] != nullptr) {
      trainable.push_back(candidates[i]);
      trainable_grads.push_back(grads[i]);
    } else {
      frozen_weights.push_back(candidates[i]);
    }
  }
  if (trainable.empty()) {
    return Invalid("no trainable weight: the loss depends on no unfrozen float weight");
  }
  for (ir::Value* w : frozen_weights) w->mutable_flags().insert("frozen");
  PTC_ASSIGN_OR_RETURN(internal::OptimizerOutputs opt,
                       internal::AppendOptimizer(*f, trainable, trainable_grads, o,
                                                 loss_scale));
  std::vector<ir::Value*> results = {loss, opt.grad_norm, opt.lr};
  if (o.keep_gradients) {
    for (size_t i = 0; i < trainable.size(); ++i) {
      internal::GradBuilder b(*f, "grad." + trainable[i]->name(), "");
      results.push_back(b.Op("identity", {trainable_grads[i]}));
      PTC_RETURN_IF_ERROR(b.status());
    }
  }
  f->set_results(results);
  // Parameter order of the contract: data, trainable, frozen, state.
  std::vector<ir::Value*> order = data;
  order.insert(order.end(), trainable.begin(), trainable.end());
  order.insert(order.end(), frozen_weights.begin(), frozen_weights.end());
  order.insert(order.end(), opt.state.begin(), opt.state.end());
  if (rng_step != nullptr) order.push_back(rng_step);
  if (order.size() != f->params().size()) {
    return absl::InternalError("training step: parameter bookkeeping mismatch");
  }
  for (ir::Value* p : order) {
    std::string name = p->name();
    ir::TensorType type = p->type();
    std::set<std::string> flags = p->flags();
    f->RemoveParam(p);
    ir::Value* fresh = f->AddParam(name, type, flags);
    f->ReplaceAllUsesWith(p, fresh);
  }
  module.metadata()["training_step"] = absl::StrCat(o.optimizer, ",accumulate=", o.accumulate);
  return absl::OkStatus();
}

}  // namespace ptc::autodiff
