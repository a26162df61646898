#include "runtime/cpu/trainer.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/support/status.h"
#include "runtime/cpu/checkpoint.h"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/file_util.h"

namespace ptc::train {

absl::Status RunTrainingWith(const plan::Plan& plan, Backend& backend,
                             const TrainerOptions& options, std::ostream& progress,
                             int64_t rss_before);

namespace {

using Clock = std::chrono::steady_clock;

std::string Bytes(int64_t b) {
  if (b < 0) return "?";
  if (b >= (int64_t{1} << 30)) return absl::StrFormat("%.2f GiB", b / 1073741824.0);
  if (b >= (int64_t{1} << 20)) return absl::StrFormat("%.1f MiB", b / 1048576.0);
  return absl::StrFormat("%.1f KiB", b / 1024.0);
}

std::string Duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

double Scalar(const ir::Tensor& t) {
  return t.num_elements() == 1 ? t.GetDouble(0) : std::nan("");
}

// The data inputs of a step function: token ids and labels, both integer [batch, seq].
struct DataInputs {
  std::string ids, labels;
  int64_t batch = 0, seq = 0;
  ir::DType dtype = ir::DType::kI64;
};

absl::StatusOr<DataInputs> FindDataInputs(const ir::Function& f, const std::string& labels_name) {
  std::vector<const ir::Value*> inputs;
  for (const ir::Value* p : f.params()) {
    if (!p->is_param() && !p->flags().count("state")) inputs.push_back(p);
  }
  std::string listing;
  for (const ir::Value* p : inputs) absl::StrAppend(&listing, " %", p->name(), ": ", p->type().ToString());
  if (inputs.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "@", f.name(), " has ", inputs.size(), " data inputs (", listing,
        " ); the trainer feeds exactly two: token ids and '", labels_name, "' [batch, seq]"));
  }
  DataInputs d;
  const ir::Value* ids = inputs[0]->name() == labels_name ? inputs[1] : inputs[0];
  const ir::Value* labels = inputs[0]->name() == labels_name ? inputs[0] : inputs[1];
  if (labels->name() != labels_name) {
    return absl::InvalidArgumentError(absl::StrCat("@", f.name(), " has no input named '",
                                                   labels_name, "' (inputs:", listing, ")"));
  }
  if (ids->type() != labels->type() || ids->type().rank() != 2 ||
      (ids->type().dtype != ir::DType::kI64 && ids->type().dtype != ir::DType::kI32)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "@", f.name(), ": token ids and labels must both be i64 or i32 [batch, seq] (inputs:",
        listing, ")"));
  }
  d.ids = ids->name();
  d.labels = labels->name();
  d.batch = ids->type().shape[0];
  d.seq = ids->type().shape[1];
  d.dtype = ids->type().dtype;
  return d;
}

std::map<std::string, ir::Tensor> Feed(const DataInputs& d, data::Batch b) {
  return {{d.ids, std::move(b.input_ids)}, {d.labels, std::move(b.labels)}};
}

std::string SanitizeFileName(const std::string& name) {
  std::string s = name;
  for (char& c : s) {
    if (c == '/' || c == '\\' || c == '\0') c = '_';
  }
  if (s.empty() || s == "." || s == "..") s = "_" + s;
  return s;
}

class Progress {
 public:
  Progress(std::ostream& out, const TrainerOptions& o, int64_t total) : out_(out), total_(total) {
    style_ = o.progress_style;
    if (style_ == ProgressStyle::kAuto) {
      style_ = (&out == &std::cerr && ::isatty(2)) ? ProgressStyle::kBar : ProgressStyle::kLines;
    }
    every_ = o.log_every > 0 ? o.log_every : std::max<int64_t>(1, total / 20);
  }
  void Step(int64_t step, const std::string& line) {
    if (style_ == ProgressStyle::kBar) {
      out_ << "\r" << line << "\x1b[K" << std::flush;
      dirty_ = true;
    } else if (style_ == ProgressStyle::kLines && (step % every_ == 0 || step == total_ || step == 1)) {
      out_ << line << "\n" << std::flush;
    }
  }
  void Line(const std::string& line) {
    if (style_ == ProgressStyle::kNone) return;
    if (dirty_) out_ << "\n";
    dirty_ = false;
    out_ << line << "\n" << std::flush;
  }
  void Finish() {
    if (dirty_) out_ << "\n" << std::flush;
    dirty_ = false;
  }

 private:
  std::ostream& out_;
  int64_t total_;
  ProgressStyle style_;
  int64_t every_ = 1;
  bool dirty_ = false;
};

}  // namespace

absl::StatusOr<data::Split> LoadTrainingData(const TrainerOptions& o, int64_t batch,
                                             int64_t seq) {
  PTC_ASSIGN_OR_RETURN(data::Tokens tokens, data::LoadCorpus(o.data));
  if (o.vocab_size > 0 && tokens.MaxId() >= o.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the data (", tokens.source(), ") has token id ", tokens.MaxId(),
        " but the model's vocabulary has ", o.vocab_size, " entries"));
  }
  return data::SplitTrainVal(tokens, o.val_fraction, batch * seq + 1);
}

namespace {

class CpuBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(const plan::Plan& plan) {
    auto b = std::make_unique<CpuBackend>();
    PTC_ASSIGN_OR_RETURN(b->step_, cpu::Executor::Create(plan));
    const ir::Function* ef = plan.module->FindFunction("eval");
    if (ef != nullptr && ef != plan.module->main()) {
      cpu::ExecutorOptions eo;
      eo.function = "eval";
      eo.shared_state = b->step_->LiveState();
      PTC_ASSIGN_OR_RETURN(b->eval_, cpu::Executor::Create(plan, eo));
      if (b->eval_->is_training()) {
        return absl::InvalidArgumentError(
            "@eval must not update parameters (it has assign nodes)");
      }
    }
    return b;
  }
  std::string name() const override { return "cpu"; }
  bool is_training() const override { return step_->is_training(); }
  absl::StatusOr<std::vector<ir::Tensor>> Step(const std::map<std::string, ir::Tensor>& inputs,
                                                const std::vector<bool>&) override {
    return step_->Run(inputs);  // results are written in place: nothing to save by skipping
  }
  bool has_eval() const override { return eval_ != nullptr; }
  absl::StatusOr<std::vector<ir::Tensor>> Eval(
      const std::map<std::string, ir::Tensor>& inputs) override {
    if (!eval_) return absl::FailedPreconditionError("the plan has no @eval");
    return eval_->Run(inputs);  // reads the step's weights in place
  }
  absl::StatusOr<std::map<std::string, ir::Tensor>> State() override { return step_->State(); }
  absl::Status SetState(const std::map<std::string, ir::Tensor>& state) override {
    return step_->SetState(state);
  }
  int64_t arena_bytes() const override {
    return step_->arena_bytes() + (eval_ ? eval_->arena_bytes() : 0);
  }
  int64_t state_bytes() const override { return step_->state_bytes(); }
  bool host_memory() const override { return true; }
  void EnableProfiling(bool on) override { step_->EnableProfiling(on); }
  std::vector<OpTime> Profile() const override {
    std::vector<OpTime> out;
    for (const cpu::NodeProfile& p : step_->Profile()) out.push_back({p.op, p.seconds, p.calls});
    return out;
  }

 private:
  std::unique_ptr<cpu::Executor> step_, eval_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const plan::Plan& plan) {
  if (!plan.module || plan.module->main() == nullptr) {
    return absl::InvalidArgumentError("the plan has no main function");
  }
  return CpuBackend::Create(plan);
}

std::vector<std::string> TrainerOptionsToFlags(const TrainerOptions& o) {
  const char* style = o.progress_style == ProgressStyle::kBar     ? "bar"
                      : o.progress_style == ProgressStyle::kLines ? "lines"
                      : o.progress_style == ProgressStyle::kNone  ? "none"
                                                                  : "auto";
  return {absl::StrCat("--steps=", o.steps),
          absl::StrCat("--data=", o.data),
          absl::StrFormat("--val-fraction=%.17g", o.val_fraction),
          absl::StrCat("--eval-every=", o.eval_every),
          absl::StrCat("--eval-batches=", o.eval_batches),
          absl::StrCat("--log-json=", o.log_json),
          absl::StrCat("--checkpoint=", o.checkpoint_dir),
          absl::StrCat("--checkpoint-every=", o.checkpoint_every),
          absl::StrCat("--resume=", o.resume ? 1 : 0),
          absl::StrCat("--dump-gradients=", o.dump_gradients),
          absl::StrCat("--seed=", o.seed),
          absl::StrCat("--labels-input=", o.labels_input),
          absl::StrCat("--vocab-size=", o.vocab_size),
          absl::StrCat("--progress=", style),
          absl::StrCat("--log-every=", o.log_every),
          absl::StrCat("--stop-after=", o.stop_after),
          absl::StrCat("--profile=", o.profile ? 1 : 0)};
}

absl::StatusOr<TrainerOptions> TrainerOptionsFromFlags(const std::vector<std::string>& flags) {
  TrainerOptions o;
  for (const std::string& f : flags) {
    const size_t eq = f.find('=');
    if (f.rfind("--", 0) != 0 || eq == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("training flag '", f, "' is not --name=value"));
    }
    const std::string name = f.substr(2, eq - 2), v = f.substr(eq + 1);
    bool ok = true;
    int64_t i = 0;
    if (name == "steps") ok = absl::SimpleAtoi(v, &o.steps);
    else if (name == "data") o.data = v;
    else if (name == "val-fraction") ok = absl::SimpleAtod(v, &o.val_fraction);
    else if (name == "eval-every") ok = absl::SimpleAtoi(v, &o.eval_every);
    else if (name == "eval-batches") ok = absl::SimpleAtoi(v, &o.eval_batches);
    else if (name == "log-json") o.log_json = v;
    else if (name == "checkpoint") o.checkpoint_dir = v;
    else if (name == "checkpoint-every") ok = absl::SimpleAtoi(v, &o.checkpoint_every);
    else if (name == "resume") { ok = absl::SimpleAtoi(v, &i) && (i == 0 || i == 1); o.resume = i == 1; }
    else if (name == "dump-gradients") o.dump_gradients = v;
    else if (name == "seed") ok = absl::SimpleAtoi(v, &o.seed);
    else if (name == "labels-input") o.labels_input = v;
    else if (name == "vocab-size") ok = absl::SimpleAtoi(v, &o.vocab_size);
    else if (name == "log-every") ok = absl::SimpleAtoi(v, &o.log_every);
    else if (name == "stop-after") ok = absl::SimpleAtoi(v, &o.stop_after);
    else if (name == "profile") { ok = absl::SimpleAtoi(v, &i) && (i == 0 || i == 1); o.profile = i == 1; }
    else if (name == "progress") {
      if (v == "auto") o.progress_style = ProgressStyle::kAuto;
      else if (v == "bar") o.progress_style = ProgressStyle::kBar;
      else if (v == "lines") o.progress_style = ProgressStyle::kLines;
      else if (v == "none") o.progress_style = ProgressStyle::kNone;
      else ok = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown training flag '", f, "'"));
    }
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad value in training flag '", f, "'"));
  }
  return o;
}

namespace {

// The CPU backend, with *rss_before measured before it exists: the base excludes heap memory
// freed by compilation and loading (glibc keeps it resident and the executor would reuse it).
absl::StatusOr<std::unique_ptr<Backend>> CpuBackendAfterRss(const plan::Plan& plan,
                                                            int64_t* rss_before) {
  malloc_trim(0);
  *rss_before = cpu::ProcessRssBytes();
  return CreateCpuBackend(plan);
}

}  // namespace

absl::StatusOr<TrainResult> Train(const plan::Plan& plan, const TrainerOptions& o,
                                  std::ostream& out) {
  int64_t rss_before = 0;
  PTC_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CpuBackendAfterRss(plan, &rss_before));
  PTC_ASSIGN_OR_RETURN(TrainResult r, Train(plan, *backend, o, out));
  r.rss_before = rss_before;
  return r;
}

absl::StatusOr<TrainResult> Train(const plan::Plan& plan, Backend& backend,
                                  const TrainerOptions& o, std::ostream& out) {
  TrainResult result;
  // The base excludes heap memory freed by compilation and loading (glibc keeps it resident and
  // the executor would reuse it, hiding part of the step's growth from the measurement).
  malloc_trim(0);
  result.rss_before = cpu::ProcessRssBytes();
  if (!plan.module || plan.module->main() == nullptr) {
    return absl::InvalidArgumentError("the plan has no main function");
  }
  if (o.steps <= 0) return absl::InvalidArgumentError("--steps must be positive");
  const ir::Function& main = *plan.module->main();
  if (!backend.is_training()) {
    return absl::InvalidArgumentError(
        "the plan is not a training step (its @main has no assign nodes): compile it with "
        "`ptc compile --train`");
  }
  PTC_ASSIGN_OR_RETURN(DataInputs din, FindDataInputs(main, o.labels_input));
  const auto& results = main.results();
  if (results.empty() || results[0]->type() != ir::TensorType{ir::DType::kF32, {}}) {
    return absl::InvalidArgumentError("the training step's first result must be the loss f32[]");
  }
  auto scalar_result = [&](size_t i) {
    return i < results.size() && results[i]->type().num_elements() == 1 &&
           !absl::StartsWith(results[i]->name(), "grad.");
  };
  const bool has_gnorm = scalar_result(1), has_lr = has_gnorm && scalar_result(2);
  // Without --grad-clip the step does not compute the global norm (its result is a constant
  // NaN placeholder): show "-" rather than a NaN that looks like divergence.
  const bool gnorm_computed = has_gnorm && results[1]->producer() != nullptr &&
                              results[1]->producer()->op() != "constant";
  std::vector<std::pair<size_t, std::string>> grads;  // result index, weight name
  for (size_t i = 0; i < results.size(); ++i) {
    if (absl::StartsWith(results[i]->name(), "grad.")) {
      grads.push_back({i, results[i]->name().substr(5)});
    }
  }
  // What a step reads back: the loss, the norm and the learning rate; the gradients only for
  // --dump-gradients.
  std::vector<bool> scalars_only(results.size(), false);
  for (size_t i = 0; i < results.size() && i < 3; ++i) scalars_only[i] = i == 0 || scalar_result(i);
  if (!o.dump_gradients.empty() && grads.empty()) {
    return absl::InvalidArgumentError(
        "--dump-gradients: the plan returns no gradients; compile it with `ptc compile --train "
        "--keep-gradients ...`");
  }
  const bool eval = backend.has_eval();
  std::optional<DataInputs> eval_din;
  if (eval) {
    const ir::Function* ef = plan.module->FindFunction("eval");
    if (ef == nullptr) return absl::InvalidArgumentError("the backend has @eval, the plan not");
    PTC_ASSIGN_OR_RETURN(eval_din, FindDataInputs(*ef, o.labels_input));
    if (eval_din->batch != din.batch || eval_din->seq != din.seq || eval_din->dtype != din.dtype) {
      return absl::InvalidArgumentError("@eval's data inputs differ in shape from @main's");
    }
  }

  PTC_ASSIGN_OR_RETURN(data::Split split, LoadTrainingData(o, din.batch, din.seq));
  uint64_t seed = o.seed;
  const std::string plan_hash = checkpoint::HashModule(*plan.module);
  std::map<std::string, std::string> kinds;
  for (const ir::Value* p : main.params()) {
    if (p->flags().count("state")) {
      kinds[p->name()] = "state";
    } else if (p->is_param()) {
      kinds[p->name()] = "param";
    }
  }
  Progress progress(out, o, o.steps);

  int64_t step = 0;
  data::IteratorState data_state;
  if (o.resume) {
    if (o.checkpoint_dir.empty()) {
      return absl::InvalidArgumentError("--resume needs --checkpoint DIR");
    }
    auto ck = checkpoint::LoadLatestCheckpoint(o.checkpoint_dir);
    if (ck.ok()) {
      if (ck->plan_hash != plan_hash) {
        return absl::FailedPreconditionError(absl::StrCat(
            "checkpoint ", ck->path, " was written by another plan (hash ", ck->plan_hash,
            ", this plan ", plan_hash, "): resume with the plan that trained it"));
      }
      for (const auto& [name, kind] : kinds) {
        if (!ck->tensors.count(name)) {
          return absl::InvalidArgumentError(
              absl::StrCat("checkpoint ", ck->path, " lacks the tensor '", name, "'"));
        }
      }
      PTC_RETURN_IF_ERROR(backend.SetState(ck->tensors));
      step = ck->step;
      seed = ck->seed;
      data_state = ck->data;
      progress.Line(absl::StrCat("resuming from ", ck->path, " (step ", step, ")"));
    } else if (absl::IsNotFound(ck.status())) {
      progress.Line(absl::StrCat("no checkpoint in ", o.checkpoint_dir, ": starting at step 0"));
    } else {
      return ck.status();
    }
  }
  PTC_ASSIGN_OR_RETURN(data::BatchIterator train_it,
                       data::BatchIterator::Create(split.train, din.batch, din.seq, seed,
                                                   /*shuffle=*/true, din.dtype));
  PTC_RETURN_IF_ERROR(train_it.SetState(data_state));
  std::optional<data::BatchIterator> val_it;
  if (eval && split.val.size() > din.batch * din.seq) {
    PTC_ASSIGN_OR_RETURN(val_it, data::BatchIterator::Create(split.val, din.batch, din.seq, seed,
                                                             /*shuffle=*/false, din.dtype));
  }

  std::ofstream log;
  if (!o.log_json.empty()) {
    log.open(o.log_json, step > 0 ? std::ios::app : std::ios::trunc);
    if (!log) return absl::InvalidArgumentError(absl::StrCat("cannot write ", o.log_json));
  }
  result.first_step = step;
  result.arena_bytes = backend.arena_bytes();
  result.state_bytes = backend.state_bytes();
  result.host_memory = backend.host_memory();
  result.backend = backend.name();
  for (const ir::Value* r : results) result.output_bytes += r->type().byte_size();
  if (eval) {
    for (const ir::Value* r : plan.module->FindFunction("eval")->results()) {
      result.output_bytes += r->type().byte_size();
    }
  }
  const int64_t planned = result.arena_bytes + result.state_bytes + result.output_bytes;
  progress.Line(absl::StrCat(
      "training ", o.steps, " steps of ", din.batch, "x", din.seq, " tokens on ",
      split.train.source(), ": ", split.train.size(), " train / ", split.val.size(),
      " val tokens on ", backend.name(), "; memory: arena ", Bytes(result.arena_bytes),
      ", weights+state ", Bytes(result.state_bytes), ", RSS ", Bytes(result.rss_before),
      eval ? "" : "; no @eval in the plan: no validation loss"));

  auto run_eval = [&]() -> absl::StatusOr<double> {
    PTC_RETURN_IF_ERROR(val_it->SetState({}));
    int64_t n = std::max<int64_t>(1, std::min(o.eval_batches, val_it->batches_per_epoch()));
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      PTC_ASSIGN_OR_RETURN(auto outs, backend.Eval(Feed(*eval_din, val_it->Next())));
      sum += Scalar(outs.at(0));
    }
    return sum / static_cast<double>(n);
  };
  auto write_checkpoint = [&]() -> absl::Status {
    checkpoint::Checkpoint ck;
    ck.step = step;
    ck.plan_hash = plan_hash;
    ck.seed = seed;
    ck.data = train_it.state();
    PTC_ASSIGN_OR_RETURN(ck.tensors, backend.State());
    ck.kinds = kinds;
    PTC_ASSIGN_OR_RETURN(result.last_checkpoint,
                         checkpoint::WriteCheckpoint(o.checkpoint_dir, ck));
    return absl::OkStatus();
  };

  // --profile: from the second step of a run of two or more (the first one pays one-time
  // costs: allocation, module loading, the CUDA executor's autotuning).
  const Backend::Roofline roofline = backend.GetRoofline();
  const bool skip_first = o.profile && o.steps - step > 1;
  bool profiling = o.profile && !skip_first;
  backend.EnableProfiling(profiling);
  const auto t_start = Clock::now();
  double ema = 0, ema_weight = 0;
  int64_t run_steps = 0;
  bool dumped = false;
  while (step < o.steps) {
    if (o.stop_after > 0 && run_steps >= o.stop_after) break;
    const auto t0 = Clock::now();
    const bool dump_now = !o.dump_gradients.empty() && !dumped;
    PTC_ASSIGN_OR_RETURN(auto outs,
                         backend.Step(Feed(din, train_it.Next()), dump_now ? std::vector<bool>()
                                                                          : scalars_only));
    ++step;
    ++run_steps;
    if (profiling) ++result.profiled_steps;
    if (skip_first && !profiling) {
      profiling = true;
      backend.EnableProfiling(true);
    }
    const double loss = Scalar(outs[0]);
    const double gnorm = has_gnorm ? Scalar(outs[1]) : std::nan("");
    const double lr = has_lr ? Scalar(outs[2]) : std::nan("");
    result.losses.push_back(loss);
    if (!std::isfinite(loss)) {
      progress.Finish();
      return absl::InternalError(absl::StrCat(
          "the loss is ", loss, " at step ", step, ": training diverged (lower the learning "
          "rate or enable gradient clipping)"));
    }
    if (dump_now) {
      PTC_RETURN_IF_ERROR(fileutil::MakeDirs(o.dump_gradients));
      nlohmann::json index = nlohmann::json::object();
      for (const auto& [i, weight] : grads) {
        std::string file = SanitizeFileName(weight) + ".pb";
        if (index.contains(file)) file = absl::StrCat(SanitizeFileName(weight), ".", i, ".pb");
        PTC_RETURN_IF_ERROR(checkpoint::WriteTensorProtoFile(
            absl::StrCat(o.dump_gradients, "/", file), weight, outs[i]));
        index[file] = weight;
      }
      PTC_RETURN_IF_ERROR(fileutil::WriteFileAtomic(
          absl::StrCat(o.dump_gradients, "/index.json"),
          nlohmann::json{{"step", step}, {"files", index}}.dump(1) + "\n"));
      dumped = true;
    }
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    const double elapsed = std::chrono::duration<double>(Clock::now() - t_start).count();
    const double tok_s = static_cast<double>(run_steps * din.batch * din.seq) / elapsed;
    ema = 0.9 * ema + 0.1 * loss;
    ema_weight = 0.9 * ema_weight + 0.1;
    const int64_t rss = cpu::ProcessRssBytes();
    const double eta = elapsed / run_steps * static_cast<double>(o.steps - step);
    // MFU: the step's model FLOPs per second over the device's peak (run average / this step).
    const bool has_mfu = roofline.step_flops > 0 && roofline.peak_tflops > 0;
    const double peak = roofline.peak_tflops * 1e12;
    const double mfu =
        has_mfu ? roofline.step_flops * static_cast<double>(run_steps) / elapsed / peak : 0;
    progress.Step(step, absl::StrFormat(
        "step %d/%d | loss %.4f | lr %.3g | grad_norm %s | %.0f tok/s%s | mem %s planned, RSS "
        "%s | ETA %s",
        step, o.steps, ema / ema_weight, lr,
        gnorm_computed ? absl::StrFormat("%.3g", gnorm) : std::string("-"), tok_s,
        has_mfu ? absl::StrFormat(" | MFU %.1f%%", 100 * mfu) : std::string(), Bytes(planned),
        Bytes(rss), Duration(eta)));
    if (log.is_open()) {
      nlohmann::json j = {{"step", step},           {"loss", loss},
                          {"lr", has_lr ? nlohmann::json(lr) : nlohmann::json(nullptr)},
                          {"grad_norm", gnorm_computed && std::isfinite(gnorm) ? nlohmann::json(gnorm)
                                                                          : nlohmann::json(nullptr)},
                          {"tokens_per_s", static_cast<double>(din.batch * din.seq) / dt},
                          {"peak_bytes", planned},  {"rss_bytes", rss}};
      if (has_mfu) j["mfu"] = roofline.step_flops / dt / peak;
      log << j.dump() << "\n" << std::flush;
    }
    const bool last = step == o.steps;
    if (val_it && ((o.eval_every > 0 && step % o.eval_every == 0) || last)) {
      PTC_ASSIGN_OR_RETURN(result.val_loss, run_eval());
      progress.Line(absl::StrFormat("step %d: val loss %.4f, perplexity %.2f", step,
                                    result.val_loss, std::exp(result.val_loss)));
      if (log.is_open()) {
        log << nlohmann::json{{"step", step},
                              {"val_loss", result.val_loss},
                              {"val_perplexity", std::exp(result.val_loss)}}
                   .dump()
            << "\n"
            << std::flush;
      }
    }
    if (!o.checkpoint_dir.empty() &&
        ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || last)) {
      PTC_RETURN_IF_ERROR(write_checkpoint());
    }
  }
  progress.Finish();
  result.last_step = step;
  result.rss_after = cpu::ProcessRssBytes();
  PTC_ASSIGN_OR_RETURN(result.final_state, backend.State());
  return result;
}

absl::Status RunTraining(const plan::Plan& plan, const TrainerOptions& options,
                         std::ostream& progress) {
  int64_t rss_before = 0;
  PTC_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CpuBackendAfterRss(plan, &rss_before));
  return RunTrainingWith(plan, *backend, options, progress, rss_before);
}

absl::Status RunTraining(const plan::Plan& plan, Backend& backend, const TrainerOptions& options,
                         std::ostream& progress) {
  return RunTrainingWith(plan, backend, options, progress, -1);
}

std::string IdealColumnsHeader() {
  return absl::StrFormat(" %10s %9s", "ideal ms", "x ideal");
}

std::string IdealColumns(const std::map<std::string, double>& ideal, const std::string& op,
                         double ms) {
  auto it = ideal.find(op);
  if (it == ideal.end() || it->second <= 0) return absl::StrFormat(" %10s %9s", "-", "-");
  return absl::StrFormat(" %10.4f %8.1fx", it->second, ms / it->second);
}

absl::Status RunTrainingWith(const plan::Plan& plan, Backend& backend,
                             const TrainerOptions& options, std::ostream& progress,
                             int64_t rss_before) {
  PTC_ASSIGN_OR_RETURN(TrainResult r, Train(plan, backend, options, progress));
  if (rss_before >= 0) r.rss_before = rss_before;
  auto print_profile = [&] {
    if (!options.profile) return;
    // Per op, summed over the nodes and the steps of this run, slowest first.
    std::map<std::string, Backend::OpTime> by_op;
    double total = 0;
    for (const Backend::OpTime& t : backend.Profile()) {
      Backend::OpTime& a = by_op[t.op];
      a.op = t.op;
      a.seconds += t.seconds;
      a.calls += t.calls;
      total += t.seconds;
    }
    std::vector<Backend::OpTime> ops;
    for (auto& [op, t] : by_op) ops.push_back(t);
    std::sort(ops.begin(), ops.end(), [](const Backend::OpTime& a, const Backend::OpTime& b) {
      return a.seconds > b.seconds;
    });
    const int64_t steps = std::max<int64_t>(1, r.profiled_steps);
    const std::map<std::string, double> ideal = backend.IdealMs();
    const bool skipped = r.last_step - r.first_step > r.profiled_steps;
    progress << absl::StrFormat("profile (%s, per step, %d step(s)%s):\n  %-24s %10s %7s",
                                backend.name(), steps, skipped ? " after the first" : "", "op",
                                "ms", "%");
    if (!ideal.empty()) progress << IdealColumnsHeader();
    progress << "\n";
    for (const Backend::OpTime& t : ops) {
      const double ms = 1e3 * t.seconds / static_cast<double>(steps);
      progress << absl::StrFormat("  %-24s %10.3f %6.1f%%", t.op, ms,
                                  total > 0 ? 100.0 * t.seconds / total : 0.0);
      if (!ideal.empty()) progress << IdealColumns(ideal, t.op, ms);
      progress << "\n";
    }
  };
  if (options.progress_style == ProgressStyle::kNone) {  // the profile was asked for anyway
    print_profile();
    return absl::OkStatus();
  }
  std::string line = absl::StrCat("trained steps ", r.first_step + 1, "..", r.last_step);
  if (!r.losses.empty()) absl::StrAppend(&line, absl::StrFormat(", last loss %.4f", r.losses.back()));
  if (r.val_loss >= 0) {
    absl::StrAppend(&line, absl::StrFormat(", val loss %.4f (perplexity %.2f)", r.val_loss,
                                           std::exp(r.val_loss)));
  }
  const int64_t planned = r.arena_bytes + r.state_bytes + r.output_bytes;
  absl::StrAppend(&line, "; memory", r.host_memory ? "" : absl::StrCat(" (", r.backend, ")"),
                  ": arena ", Bytes(r.arena_bytes), " + weights/state ", Bytes(r.state_bytes),
                  // results: a few scalars, or every gradient with --keep-gradients
                  r.output_bytes >= 1024 ? absl::StrCat(" + outputs ", Bytes(r.output_bytes)) : "",
                  " = ", Bytes(planned), " planned");
  if (r.host_memory) {
    absl::StrAppend(&line, "; RSS ", Bytes(r.rss_before), " -> ", Bytes(r.rss_after),
                    absl::StrFormat(" (grew %s = %.2f x plan; the rest: training data, "
                                    "evaluation, library buffers)",
                                    Bytes(r.rss_after - r.rss_before),
                                    static_cast<double>(r.rss_after - r.rss_before) /
                                        static_cast<double>(std::max<int64_t>(1, planned))));
  }
  if (!r.last_checkpoint.empty()) absl::StrAppend(&line, "; checkpoint ", r.last_checkpoint);
  progress << line << "\n";
  print_profile();
  return absl::OkStatus();
}

}  // namespace ptc::train
