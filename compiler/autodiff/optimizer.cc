// The optimizer part of a training step (optimizer.h). Everything that varies from step to step
// is computed in the graph from the state parameters, so that resuming from a checkpoint of
// the "param" + "state" parameters is bit-exact:
//   t      = opt.step + 1                         (1-based step of this update)
//   lr     = lr_schedule(opt.step)
//   g      = accumulate ? (accum.<w> + grad) / N : grad
//   g     *= min(1, max_norm / (sqrt(sum g^2) + 1e-6))        when grad_clip > 0
//   w', m', v' = adamw_update(w, g, m, v, lr, t)   or  w', mom' = sgd_update(w, g, lr, mom)
// With accumulation (N > 1) the update applies when accum.count + 1 reaches N (and, with fp16
// loss scaling, when the gradients are finite): adamw_update takes that flag as its `apply`
// input (a no-op when false, so its outputs are written in place), other new values are
// where(apply, updated, old); the graph stays static; accumulators reset on apply.
#include "compiler/autodiff/optimizer.h"

#include <regex>

#include "absl/strings/str_cat.h"
#include "compiler/autodiff/grad_builder.h"
#include "compiler/support/status.h"

namespace ptc::autodiff::internal {
namespace {

const ir::TensorType kScalar{ir::DType::kF32, {}};

// No initial tensor: the executors start state at zero (plans store no zeros).
ir::Value* AddState(ir::Function& f, const std::string& name, const ir::TensorType& type,
                    std::vector<ir::Value*>& state) {
  ir::Value* v = f.AddParam(name, type, {"state"});
  state.push_back(v);
  return v;
}

void Assign(ir::Function& f, ir::Value* target, ir::Value* value) {
  f.AddNode("assign", {target, value}, {}, {}, "", {});
}

}  // namespace

absl::StatusOr<OptimizerOutputs> AppendOptimizer(ir::Function& f,
                                                 const std::vector<ir::Value*>& weights,
                                                 const std::vector<ir::Value*>& grads,
                                                 const TrainOptions& o,
                                                 ir::Value* loss_scale) {
  OptimizerOutputs out;
  if (loss_scale != nullptr) out.state.push_back(loss_scale);
  const bool adamw = o.optimizer == "adamw";
  const bool accumulate = o.accumulate > 1;
  std::regex no_decay;
  try {
    no_decay = std::regex(o.no_decay.empty() ? std::string("$^") : o.no_decay);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("no_decay: invalid regex \"", o.no_decay, "\": ", e.what()));
  }
  for (ir::Value* w : f.params()) {
    if (w == loss_scale) continue;
    for (const char* prefix : {"adam.", "sgd.", "accum.", "opt."}) {
      if (w->name().rfind(prefix, 0) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "parameter %", w->name(), " uses the prefix \"", prefix,
            "\" reserved for optimizer state; rename it"));
      }
    }
  }
  // State parameters, in a fixed order.
  std::vector<ir::Value*> m(weights.size()), v(weights.size()), acc(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::string& n = weights[i]->name();
    if (adamw) {
      m[i] = AddState(f, "adam.m." + n, weights[i]->type(), out.state);
      v[i] = AddState(f, "adam.v." + n, weights[i]->type(), out.state);
    } else if (o.momentum != 0) {
      m[i] = AddState(f, "sgd.mom." + n, weights[i]->type(), out.state);
    }
  }
  if (accumulate) {
    for (size_t i = 0; i < weights.size(); ++i) {
      acc[i] = AddState(f, "accum." + weights[i]->name(), weights[i]->type(), out.state);
    }
  }
  ir::Value* step = AddState(f, "opt.step", kScalar, out.state);
  ir::Value* count = accumulate ? AddState(f, "accum.count", kScalar, out.state) : nullptr;
  ir::Value* last_norm =
      accumulate ? AddState(f, "opt.last_grad_norm", kScalar, out.state) : nullptr;
  ir::Value* last_lr = accumulate ? AddState(f, "opt.last_lr", kScalar, out.state) : nullptr;

  ir::Value* good_steps =
      loss_scale ? AddState(f, "opt.loss_scale.good_steps", kScalar, out.state) : nullptr;

  GradBuilder b(f, "opt", "");
  std::vector<ir::Value*> g = grads;
  // Loss scaling: unscale first (clipping and the update see true gradients); `finite` says
  // whether every gradient is finite (x - x is 0 exactly for finite sums, NaN otherwise).
  ir::Value* finite = nullptr;
  ir::Value* sum_sq = nullptr;
  auto sum_of_squares = [&]() {
    ir::Value* sum = nullptr;
    for (ir::Value* gi : g) {
      ir::Value* s = b.Op("reduce_sum", {b.Mul(gi, gi)},
                          {{"axes", std::vector<int64_t>{}}, {"keepdims", int64_t{0}}});
      if (s && s->type().dtype != ir::DType::kF32) s = b.Op("cast", {s}, {{"to", ir::DType::kF32}});
      sum = sum ? b.Add(sum, s) : s;
    }
    return sum;
  };
  if (loss_scale != nullptr) {
    b.set_name_base("unscale");
    ir::Value* inv = b.Div(b.Const(ir::DType::kF32, 1.0), loss_scale);
    for (size_t i = 0; i < g.size(); ++i) {
      b.set_name_base(absl::StrCat("unscaled.", weights[i]->name()));
      ir::Value* s = inv;
      if (g[i]->type().dtype != ir::DType::kF32) s = b.Op("cast", {s}, {{"to", g[i]->type().dtype}});
      g[i] = b.Mul(g[i], s);
    }
    b.set_name_base("grad_sum_sq");
    sum_sq = sum_of_squares();
    b.set_name_base("grads_finite");
    finite = b.Op("equal", {b.Sub(sum_sq, sum_sq), b.Const(ir::DType::kF32, 0.0)}, {},
                  "grads_finite");
  }
  // Accumulation.
  std::vector<ir::Value*> acc_new(weights.size());
  ir::Value* apply = nullptr;
  ir::Value* count_new = nullptr;
  if (accumulate) {
    count_new = b.Op("add", {count, b.Const(ir::DType::kF32, 1.0)}, {}, "accum.count.new");
    apply = b.Op("greater_equal", {count_new, b.Const(ir::DType::kF32, o.accumulate)}, {},
                 "accum.apply");
    for (size_t i = 0; i < weights.size(); ++i) {
      b.set_name_base(absl::StrCat("accum.", weights[i]->name(), ".new"));
      acc_new[i] = b.Add(acc[i], grads[i]);
      g[i] = b.Scale(acc_new[i], 1.0 / static_cast<double>(o.accumulate));
    }
  }
  // Global-norm clipping (torch.nn.utils.clip_grad_norm_).
  b.set_name_base("grad_norm");
  if (o.grad_clip > 0) {
    ir::Value* sum = sum_sq != nullptr && !accumulate ? sum_sq : sum_of_squares();
    out.grad_norm = b.Op("sqrt", {sum}, {}, "grad_norm");
    b.set_name_base("clip_scale");
    ir::Value* scale = b.Div(b.Const(ir::DType::kF32, o.grad_clip),
                             b.Add(out.grad_norm, b.Const(ir::DType::kF32, 1e-6)));
    scale = b.Op("min", {scale, b.Const(ir::DType::kF32, 1.0)}, {}, "clip_scale");
    for (size_t i = 0; i < g.size(); ++i) {
      b.set_name_base(absl::StrCat("clipped.", weights[i]->name()));
      ir::Value* s = scale;
      if (g[i]->type().dtype != ir::DType::kF32) s = b.Op("cast", {s}, {{"to", g[i]->type().dtype}});
      g[i] = b.Mul(g[i], s);
    }
  } else {
    out.grad_norm = b.Op("constant", {},
                         {{"value", ir::Tensor::FromVector(ir::DType::kF32, {},
                                                           std::vector<float>{NAN})}},
                         "grad_norm");
  }
  // Schedule and step counter.
  out.lr = b.Op("lr_schedule", {step},
                {{"lr", o.lr}, {"schedule", o.schedule}, {"warmup", o.warmup},
                 {"total_steps", o.total_steps}, {"min_lr_ratio", o.min_lr_ratio}},
                "lr");
  ir::Value* t = b.Op("add", {step, b.Const(ir::DType::kF32, 1.0)}, {}, "opt.step.new");
  auto select = [&](ir::Value* updated, ir::Value* old) {
    if (apply) updated = b.Op("where", {apply, updated, old});
    return finite ? b.Op("where", {finite, updated, old}) : updated;  // skipped step
  };
  // AdamW takes the same condition as an input instead (adamw_update's `apply`): its outputs
  // then stay plain new values of w, m, v, which plan-memory writes in place.
  ir::Value* adam_apply = apply;
  if (adamw && finite != nullptr) {
    b.set_name_base("opt.apply");
    adam_apply = apply != nullptr ? b.Op("and", {apply, finite}, {}, "opt.apply") : finite;
  }
  // Updates.
  for (size_t i = 0; i < weights.size(); ++i) {
    ir::Value* w = weights[i];
    b.set_name_base(absl::StrCat(w->name(), ".new"));
    const double wd = std::regex_search(w->name(), no_decay) ? 0.0 : o.weight_decay;
    std::vector<ir::Value*> upd;
    if (adamw) {
      std::vector<ir::Value*> ins = {w, g[i], m[i], v[i], out.lr, t};
      if (adam_apply != nullptr) ins.push_back(adam_apply);
      upd = b.OpN("adamw_update", ins,
                  {{"beta1", o.beta1}, {"beta2", o.beta2}, {"eps", o.eps}, {"weight_decay", wd}},
                  3);
    } else {
      std::vector<ir::Value*> ins = {w, g[i], out.lr};
      if (m[i]) ins.push_back(m[i]);
      upd = b.OpN("sgd_update", ins, {{"momentum", o.momentum}, {"weight_decay", wd}},
                  m[i] ? 2 : 1);
    }
    PTC_RETURN_IF_ERROR(b.status());
    if (adamw) {
      Assign(f, w, upd[0]);
      Assign(f, m[i], upd[1]);
      Assign(f, v[i], upd[2]);
      continue;
    }
    Assign(f, w, select(upd[0], w));
    if (m[i]) {
      Assign(f, m[i], select(upd[1], m[i]));
    }
  }
  b.set_name_base("opt");
  Assign(f, step, select(t, step));
  if (loss_scale != nullptr) {
    // GradScaler.update: not finite -> scale / 2, count 0; else count + 1, and at the interval
    // scale * 2, count 0.
    b.set_name_base("opt.loss_scale.next");
    ir::Value* count_up = b.Add(good_steps, b.Const(ir::DType::kF32, 1.0));
    ir::Value* grow = b.Op("greater_equal",
                           {count_up, b.Const(ir::DType::kF32,
                                              static_cast<double>(o.loss_scale_interval))});
    ir::Value* scale_ok = b.Op("where", {grow, b.Scale(loss_scale, 2.0), loss_scale});
    Assign(f, loss_scale, b.Op("where", {finite, scale_ok, b.Scale(loss_scale, 0.5)}));
    ir::Value* zero = b.Const(ir::DType::kF32, 0.0);
    Assign(f, good_steps,
           b.Op("where", {finite, b.Op("where", {grow, zero, count_up}), zero}));
  }
  if (accumulate) {
    for (size_t i = 0; i < weights.size(); ++i) {
      b.set_name_base(absl::StrCat("accum.", weights[i]->name(), ".next"));
      Assign(f, acc[i], b.Op("where", {apply, b.Zeros(acc[i]->type()), acc_new[i]}));
    }
    b.set_name_base("accum.count.next");
    Assign(f, count, b.Op("where", {apply, b.Const(ir::DType::kF32, 0.0), count_new}));
    // Results report the last applied update.
    b.set_name_base("grad_norm.last");
    out.grad_norm = b.Op("where", {apply, out.grad_norm, last_norm});
    Assign(f, last_norm, out.grad_norm);
    b.set_name_base("lr.last");
    out.lr = b.Op("where", {apply, out.lr, last_lr});
    Assign(f, last_lr, out.lr);
  }
  PTC_RETURN_IF_ERROR(b.status());
  return out;
}

}  // namespace ptc::autodiff::internal
