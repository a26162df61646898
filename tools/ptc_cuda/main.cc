// ptc-cuda: runs CUDA plans for `ptc run` (which execs it), so that the CPU commands of ptc
// never load the CUDA libraries. Usage:
//   ptc-cuda PLAN [--input=NAME=FILE.pb ...] [--random-inputs=SEED] [--output-dir=DIR]
//                 [--warmup=N] [--repeat=N] [--profile=1] [--json=FILE]
//                 (with autotuning at least one warm-up run: the first run tunes)
//   ptc-cuda PLAN --train [trainer flags: runtime/cpu/trainer.h TrainerOptionsToFlags]
//   ptc-cuda PLAN --generate [--prompt=TEXT --tokens=N --temperature=F --top-k=K --seed=S
//                 --no-kv-cache]   (`ptc generate` of a CUDA plan)
// Training runs the CPU trainer's loop (data, progress, logs, evaluation, checkpoints) with
// the steps on the GPU: CudaBackend below.
// Profiles (--profile) show each op's ideal time on the roofline (PTC_CUDA_ROOFLINE=TFLOPS,GBS).
// PTC_CUDA_OPTIONS=a,b,... switches kernels and the executor for a device session's
// comparisons and bypasses: attention_simt, attention_cudnn, attention_two_gemm,
// fused_interpreter, tf32, host_fallback, no_graphs, no_autotune, autotune, linear_ce_rows=N,
// linear_ce_f32_logits, gelu_pass
// (runtime/cuda/device.h KernelOptions, executor.h).
#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compiler/driver/cost_report.h"
#include "compiler/driver/run_report.h"
#include "compiler/driver/tensor_io.h"
#include "compiler/support/status.h"
#include "compiler/driver/generate_cli.h"
#include "runtime/cpu/generate.h"
#include "runtime/cpu/trainer.h"
#include "runtime/cuda/executor.h"
#include "runtime/plan/plan.h"

namespace {

absl::StatusOr<ptc::cuda::ExecutorOptions> OptionsFromEnv() {
  ptc::cuda::ExecutorOptions o;
#if PTC_CUDA_EMU
  // The CUDA CPU emulation's timings say nothing about a GPU: no autotuning there unless asked
  // for (PTC_CUDA_OPTIONS=autotune).
  o.autotune = false;
#endif
  // Autotuning choices kept across runs: $PTC_CUDA_TUNE_FILE ("off": none), else
  // $XDG_CACHE_HOME/ptc/cuda-autotune.tsv or ~/.cache/ptc/cuda-autotune.tsv.
  if (const char* f = std::getenv("PTC_CUDA_TUNE_FILE")) {
    o.tune_file = std::string(f) == "off" ? "" : f;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x != 0) {
    o.tune_file = std::string(x) + "/ptc/cuda-autotune.tsv";
  } else if (const char* h = std::getenv("HOME"); h != nullptr && *h != 0) {
    o.tune_file = std::string(h) + "/.cache/ptc/cuda-autotune.tsv";
  }
  const char* env = std::getenv("PTC_CUDA_OPTIONS");
  if (env == nullptr) return o;
  for (absl::string_view name : absl::StrSplit(env, ',', absl::SkipEmpty())) {
    if (name == "attention_simt") {
      o.kernels.attention_simt = true;
    } else if (name == "attention_cudnn") {
      o.kernels.attention_cudnn = true;
    } else if (name == "attention_two_gemm") {
      o.kernels.attention_two_gemm = true;
    } else if (name == "fused_interpreter") {
      o.kernels.fused_interpreter = true;
    } else if (name == "tf32") {
      o.kernels.allow_tf32 = true;
    } else if (name == "host_fallback") {
      o.kernels.host_fallback = true;
    } else if (name == "bgrad_reduce") {
      o.kernels.bgrad_reduce = true;
    } else if (name == "linear_ce_f32_logits") {
      o.kernels.linear_ce_f32_logits = true;
    } else if (name == "gelu_pass") {
      o.kernels.gelu_pass = true;
    } else if (name == "no_graphs") {
      o.cuda_graphs = false;
    } else if (name == "no_autotune") {
      o.autotune = false;
    } else if (name == "autotune") {
      o.autotune = true;
    } else if (absl::ConsumePrefix(&name, "linear_ce_rows=")) {
      if (!absl::SimpleAtoi(name, &o.kernels.linear_ce_rows) || o.kernels.linear_ce_rows < 1) {
        return absl::InvalidArgumentError("PTC_CUDA_OPTIONS: linear_ce_rows=N needs N >= 1");
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "PTC_CUDA_OPTIONS: unknown option '", name, "' (known: attention_simt, "
          "attention_cudnn, attention_two_gemm, fused_interpreter, tf32, host_fallback, "
          "bgrad_reduce, linear_ce_f32_logits, gelu_pass, no_graphs, no_autotune, autotune, "
          "linear_ce_rows=N)"));
    }
  }
  std::fprintf(stderr, "ptc-cuda: PTC_CUDA_OPTIONS=%s\n", env);
  return o;
}

// This GPU's roofline for the profiles' ideal times and the training MFU:
// PTC_CUDA_ROOFLINE=TFLOPS,GBS, else driver::CostOptions' defaults (an H200's measured bf16
// GEMM rate and HBM3e bandwidth).
ptc::driver::CostReport StepCost(const ptc::plan::Plan& plan) {
  ptc::driver::CostOptions co;
  if (const char* env = std::getenv("PTC_CUDA_ROOFLINE")) {
    std::vector<std::string> v = absl::StrSplit(env, ',');
    double t = 0, b = 0;
    if (v.size() == 2 && absl::SimpleAtod(v[0], &t) && absl::SimpleAtod(v[1], &b) && t > 0 &&
        b > 0) {
      co.peak_tflops = t;
      co.bandwidth_gbs = b;
    }
  }
  return ptc::driver::BuildCostReport(*plan.module->main(), co, &plan.memory);
}

// Per op, the ideal ms per run (the profiles' ideal column).
std::map<std::string, double> IdealMsPerOp(const ptc::driver::CostReport& cost) {
  std::map<std::string, double> out;
  for (const ptc::driver::OpCost& c : cost.ops) out[c.op] = c.ms;
  return out;
}

int Fail(const absl::Status& status) {
  std::string msg(status.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::fprintf(stderr, "ptc: error: %s\n", msg.c_str());
  return 1;
}

// The trainer's view of the CUDA executor. @eval runs in its own executor that reads the
// step's weights in place on the device (ExecutorOptions::shared_params): no copies.
class CudaBackend final : public ptc::train::Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const ptc::plan::Plan& plan) {
    auto b = std::make_unique<CudaBackend>();
    PTC_ASSIGN_OR_RETURN(ptc::cuda::ExecutorOptions options, OptionsFromEnv());
    PTC_ASSIGN_OR_RETURN(b->step_, ptc::cuda::Executor::Create(plan, options));
    const ptc::driver::CostReport cost = StepCost(plan);
    b->ideal_ms_ = IdealMsPerOp(cost);
#if PTC_CUDA_EMU
    b->roofline_ = {cost.flops, 0};  // the CPU emulation has no peak to measure against
#else
    b->roofline_ = {cost.flops, cost.options.peak_tflops};
#endif
    const ptc::ir::Function* ef = plan.module->FindFunction("eval");
    if (ef != nullptr && ef != plan.module->main()) {
      for (const auto& n : ef->nodes()) {
        if (n->op() == "assign") {
          return absl::InvalidArgumentError(
              "@eval must not update parameters (it has assign nodes)");
        }
      }
      b->step_params_ = b->step_->DeviceParams();
      ptc::cuda::ExecutorOptions eo = options;
      eo.function = "eval";
      eo.shared_params = &b->step_params_;
      PTC_ASSIGN_OR_RETURN(b->eval_, ptc::cuda::Executor::Create(plan, eo));
    }
    return b;
  }
  std::string name() const override { return "cuda (" + step_->device().name + ")"; }
  bool is_training() const override { return step_->is_training(); }
  absl::StatusOr<std::vector<ptc::ir::Tensor>> Step(
      const std::map<std::string, ptc::ir::Tensor>& inputs,
      const std::vector<bool>& fetch) override {
    return step_->Run(inputs, fetch);  // the gradients stay on the device unless fetched
  }
  bool has_eval() const override { return eval_ != nullptr; }
  std::string graph_status() const { return step_->graph_status(); }
  // The table of choices when PTC_CUDA_AUTOTUNE_TABLE is set.
  std::string autotune_summary() const {
    return step_->autotune_summary(std::getenv("PTC_CUDA_AUTOTUNE_TABLE") != nullptr);
  }
  absl::StatusOr<std::vector<ptc::ir::Tensor>> Eval(
      const std::map<std::string, ptc::ir::Tensor>& inputs) override {
    if (!eval_) return absl::FailedPreconditionError("the plan has no @eval");
    return eval_->Run(inputs);  // the step's Run synchronized: its weights are final
  }
  absl::StatusOr<std::map<std::string, ptc::ir::Tensor>> State() override {
    return step_->State();
  }
  absl::Status SetState(const std::map<std::string, ptc::ir::Tensor>& state) override {
    return step_->SetState(state);
  }
  int64_t arena_bytes() const override {
    return step_->memory().arena_bytes + (eval_ ? eval_->memory().arena_bytes : 0);
  }
  int64_t state_bytes() const override { return step_->memory().state_bytes; }
  bool host_memory() const override { return false; }
  void EnableProfiling(bool on) override { step_->EnableProfiling(on); }
  std::map<std::string, double> IdealMs() const override { return ideal_ms_; }
  Roofline GetRoofline() const override { return roofline_; }
  std::vector<OpTime> Profile() const override {  // device time per node (CUDA events)
    std::vector<OpTime> out;
    for (const ptc::cuda::NodeProfile& p : step_->Profile()) {
      out.push_back({p.op, p.seconds, p.calls});
    }
    return out;
  }

 private:
  std::unique_ptr<ptc::cuda::Executor> step_;
  std::map<std::string, void*> step_params_;  // the step's weights on the device, for @eval
  std::unique_ptr<ptc::cuda::Executor> eval_;  // destroyed before step_
  std::map<std::string, double> ideal_ms_;
  Roofline roofline_;
};

int Train(const std::string& plan_path, const std::vector<std::string>& flags) {
  auto options = ptc::train::TrainerOptionsFromFlags(flags);
  if (!options.ok()) return Fail(options.status());
  auto plan = ptc::plan::LoadPlan(plan_path);
  if (!plan.ok()) return Fail(plan.status());
  auto backend = CudaBackend::Create(*plan);
  if (!backend.ok()) return Fail(backend.status());
  absl::Status s = ptc::train::RunTraining(*plan, **backend, *options, std::cerr);
  if (!s.ok()) return Fail(s);
  std::fprintf(stderr, "training step on the device: %s\n", (*backend)->graph_status().c_str());
  std::fprintf(stderr, "%s\n", (*backend)->autotune_summary().c_str());
  return 0;
}

}  // namespace

// `ptc generate` of a CUDA plan: the plan (and its KV-cache decoder, made here as ptc does)
// runs on the CUDA executor; the sampling loop is generate::Generate's.
int GenerateOnDevice(const std::string& plan_path, const std::vector<std::string>& flags) {
  ptc::generate::GenerateOptions go;
  bool no_cache = false;
  for (const std::string& a : flags) {
    std::vector<std::string> kv = absl::StrSplit(a, absl::MaxSplits('=', 1));
    const std::string& v = kv.size() == 2 ? kv[1] : std::string();
    bool ok = kv.size() == 2;
    if (a == "--no-kv-cache") {
      no_cache = ok = true;
    } else if (kv[0] == "--prompt") {
      go.prompt = v;
    } else if (kv[0] == "--tokens") {
      ok = ok && absl::SimpleAtoi(v, &go.tokens);
    } else if (kv[0] == "--temperature") {
      ok = ok && absl::SimpleAtod(v, &go.temperature);
    } else if (kv[0] == "--top-k") {
      ok = ok && absl::SimpleAtoi(v, &go.top_k);
    } else if (kv[0] == "--seed") {
      ok = ok && absl::SimpleAtoi(v, &go.seed);
    } else {
      ok = false;
    }
    if (!ok) return Fail(absl::InvalidArgumentError(absl::StrCat("bad generate flag ", a)));
  }
  auto plan = ptc::plan::LoadPlan(plan_path);
  if (!plan.ok()) return Fail(plan.status());
  if (absl::Status st = ptc::generate::CheckGenerationPlan(*plan); !st.ok()) return Fail(st);
  auto options = OptionsFromEnv();
  if (!options.ok()) return Fail(options.status());
  if (auto dev = ptc::cuda::GetDevice(options->device); !dev.ok()) return Fail(dev.status());
  std::string device;
  go.runner_factory = [&](const ptc::plan::Plan& p, bool) -> absl::StatusOr<ptc::generate::Runner> {
    PTC_ASSIGN_OR_RETURN(std::unique_ptr<ptc::cuda::Executor> exec,
                         ptc::cuda::Executor::Create(p, *options));
    device = exec->device().name;
    std::shared_ptr<ptc::cuda::Executor> shared(std::move(exec));
    const size_t results = p.module->main()->results().size();
    std::vector<bool> fetch(results, false);
    fetch[0] = true;  // the logits; a decoder's other results (none today) stay on the device
    return ptc::generate::Runner(
        [shared, fetch](const std::map<std::string, ptc::ir::Tensor>& inputs) {
          return shared->Run(inputs, fetch);
        });
  };
  absl::Status st = ptc::driver::GenerateToStdout(
      *plan, go, !no_cache, [&device] { return absl::StrCat("cuda (", device, ")"); });
  if (!st.ok()) return Fail(st);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ptc-cuda PLAN [--input=NAME=FILE.pb ...] [--output-dir=DIR] "
                         "[--warmup=N] [--repeat=N]  (normally started by `ptc run`)\n");
    return 2;
  }
  std::string plan_path = argv[1], output_dir;
  if (argc >= 3 && std::string(argv[2]) == "--train") {
    return Train(plan_path, std::vector<std::string>(argv + 3, argv + argc));
  }
  if (argc >= 3 && std::string(argv[2]) == "--generate") {
    return GenerateOnDevice(plan_path, std::vector<std::string>(argv + 3, argv + argc));
  }
  int warmup = 0, repeat = 1, profile = 0;
  std::string json_path;
  bool random_inputs = false;
  uint64_t random_seed = 1;
  std::map<std::string, ptc::ir::Tensor> inputs;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    std::vector<std::string> kv = absl::StrSplit(a, absl::MaxSplits('=', 1));
    if (kv.size() != 2) return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag ", a)));
    if (kv[0] == "--input") {
      std::vector<std::string> nf = absl::StrSplit(kv[1], absl::MaxSplits('=', 1));
      if (nf.size() != 2) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--input '", kv[1], "' must look like NAME=FILE.pb")));
      }
      auto t = ptc::driver::ReadTensorFile(nf[1]);
      if (!t.ok()) return Fail(t.status());
      inputs[nf[0]] = std::move(t->tensor);
    } else if (kv[0] == "--random-inputs" && absl::SimpleAtoi(kv[1], &random_seed)) {
      random_inputs = true;
    } else if (kv[0] == "--output-dir") {
      output_dir = kv[1];
    } else if (kv[0] == "--warmup" && absl::SimpleAtoi(kv[1], &warmup)) {
    } else if (kv[0] == "--repeat" && absl::SimpleAtoi(kv[1], &repeat)) {
    } else if (kv[0] == "--profile" && absl::SimpleAtoi(kv[1], &profile)) {
    } else if (kv[0] == "--json") {
      json_path = kv[1];
    } else {
      return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag ", a)));
    }
  }
  auto plan = ptc::plan::LoadPlan(plan_path);
  if (!plan.ok()) return Fail(plan.status());
  if (random_inputs) {  // as `ptc run --random-inputs`
    std::mt19937_64 rng(random_seed);
    for (const ptc::ir::Value* p : plan->module->main()->params()) {
      if (p->is_param() || p->flags().count("state") || inputs.count(p->name())) continue;
      inputs[p->name()] = ptc::driver::RandomTensor(p->type(), rng);
    }
  }
  auto exec_options = OptionsFromEnv();
  if (!exec_options.ok()) return Fail(exec_options.status());
  auto exec = ptc::cuda::Executor::Create(*plan, *exec_options);
  if (!exec.ok()) return Fail(exec.status());
  // The first run autotunes: never a timed or profiled one.
  if (exec_options->autotune) warmup = std::max(warmup, 1);
  // Timed runs leave the results on the device, as a framework's timed forward does (a
  // [16, 1024, 50257] f32 logits tensor is 3.3 GB: copying it to the host would dominate);
  // one more run copies every result back (its time is reported beside) for --output-dir.
  const ptc::ir::Function* main = plan->module->main();
  const std::vector<bool> keep_on_device(main->results().size(), false);
  for (int i = 0; i < warmup; ++i) {
    auto r = (*exec)->Run(inputs, keep_on_device);
    if (!r.ok()) return Fail(r.status());
  }
  (*exec)->EnableProfiling(profile != 0);
  ptc::driver::RunReport report;
  report.plan = plan_path;
  report.device = absl::StrCat("cuda (", (*exec)->device().name, ")");
  for (int i = 0; i < std::max(1, repeat); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto r = (*exec)->Run(inputs, keep_on_device);
    if (!r.ok()) return Fail(r.status());
    report.seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  if (profile != 0) {
    report.profiled = true;
    for (const ptc::cuda::NodeProfile& p : (*exec)->Profile()) {
      report.profile.push_back({p.op, p.name, p.loc, p.seconds});
    }
    (*exec)->EnableProfiling(false);
  }
  auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<ptc::ir::Tensor>> outputs = (*exec)->Run(inputs);
  if (!outputs.ok()) return Fail(outputs.status());
  report.fetch_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t result_bytes = 0;
  for (const ptc::ir::Tensor& t : *outputs) result_bytes += static_cast<int64_t>(t.nbytes());
  report.result_bytes = result_bytes;
  report.memory_bytes = (*exec)->memory().total();
  std::fprintf(stderr,
               "ran %s on %s: median %.3f ms per run (%zu run(s), results left on the device); "
               "%.3f ms with the results (%.1f MiB) copied to the host; device memory %s; %s\n",
               plan_path.c_str(), report.device.c_str(), ptc::driver::Median(report.seconds) * 1e3,
               report.seconds.size(), *report.fetch_seconds * 1e3, result_bytes / 1048576.0,
               (*exec)->memory().ToString().c_str(), (*exec)->graph_status().c_str());
  std::fprintf(stderr, "%s\n",
               (*exec)->autotune_summary(std::getenv("PTC_CUDA_AUTOTUNE_TABLE") != nullptr)
                   .c_str());
  if (report.profiled) {
    const std::map<std::string, double> ideal = IdealMsPerOp(StepCost(*plan));
    std::fprintf(stderr, "\n%s",
                 ptc::driver::FormatRunProfile(report.profile, std::max(1, repeat), 10, &ideal)
                     .c_str());
  }
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << ptc::driver::RunReportJson(report).dump(2) << "\n";
    if (!out) return Fail(absl::InternalError(absl::StrCat("cannot write ", json_path)));
  }
  if (!output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(output_dir, ec);
    for (size_t i = 0; i < outputs->size(); ++i) {
      absl::Status s = ptc::driver::WriteTensorFile(absl::StrCat(output_dir, "/output_", i, ".pb"),
                                                    main->results()[i]->name(), (*outputs)[i]);
      if (!s.ok()) return Fail(s);
    }
  }
  return 0;
}
