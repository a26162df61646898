// ptc: the command line. Parses flags, calls the libraries, prints. No logic of its own.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "CLI/CLI.hpp"
#include "google/protobuf/stubs/logging.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "compiler/driver/driver.h"
#include "compiler/driver/generate_cli.h"
#include "compiler/driver/dump.h"
#include "compiler/driver/cost_report.h"
#include "compiler/driver/memory_report.h"
#include "compiler/driver/run_report.h"
#include "compiler/driver/tensor_io.h"
#include "compiler/ir/printer.h"
#include "compiler/onnx/exporter.h"
#include "compiler/onnx/importer.h"
#include "compiler/support/status.h"
#include "models/models.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/checkpoint.h"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/generate.h"
#include "runtime/cpu/trainer.h"
#include "runtime/plan/plan.h"

namespace {

using ptc::ir::Tensor;

int Fail(const absl::Status& status) {
  std::string msg(status.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::fprintf(stderr, "ptc: error: %s\n", msg.c_str());
  return 1;
}

absl::StatusOr<std::map<std::string, int64_t>> ParseDims(const std::vector<std::string>& dims) {
  std::map<std::string, int64_t> out;
  for (const std::string& d : dims) {
    std::vector<std::string> kv = absl::StrSplit(d, absl::MaxSplits('=', 1));
    int64_t v = 0;
    if (kv.size() != 2 || kv[0].empty() || !absl::SimpleAtoi(kv[1], &v) || v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--dim '", d, "' must look like NAME=N with N > 0, e.g. --dim batch=8"));
    }
    out[kv[0]] = v;
  }
  return out;
}

std::string HumanBytes(int64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? absl::StrCat(b, " B") : absl::StrFormat("%.1f %s", v, units[u]);
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---------------------------------------------------------------------------------------------

struct CompileArgs {
  std::string model, output, target = "cpu", passes = "default", print_ir_after, dump_dir;
  std::string precision = "fp32", loss_scale = "auto";
  std::vector<std::string> dims;
  bool stats = false;
  bool train = false;
  bool no_inplace = false;
  ptc::autodiff::TrainOptions t;
  std::string mem_budget, remat = "auto";
  bool mem_sweep = false;
  std::string cuda_arch = "sm_90";
  bool no_cuda_codegen = false;
  bool no_pack_qkv = false;
  double dropout = -1;
};

int Compile(const CompileArgs& a) {
  auto dims = ParseDims(a.dims);
  if (!dims.ok()) return Fail(dims.status());
  if (a.dropout >= 0 && !a.train) {
    return Fail(absl::InvalidArgumentError(
        "--dropout sets the dropout of a training step (--train); inference plans have none"));
  }
  ptc::driver::CompileOptions opts;
  opts.target = a.target;
  opts.precision = a.precision;
  opts.dims = *dims;
  if (a.loss_scale != "auto" && a.loss_scale != "none" && a.loss_scale != "dynamic") {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--loss-scale '", a.loss_scale, "' is not one of auto, none, dynamic")));
  }
  opts.passes = a.passes;
  opts.print_ir_after = a.print_ir_after;
  opts.dump_dir = a.dump_dir;
  opts.train = a.train;
  opts.inplace_updates = !a.no_inplace;
  opts.train_options = a.t;
  opts.train_options.loss_scale =
      a.loss_scale == "auto" ? (a.precision == "fp16" ? "dynamic" : "none") : a.loss_scale;
  if (!a.mem_budget.empty()) {
    auto b = ptc::passes::ParseBytes(a.mem_budget);
    if (!b.ok()) return Fail(b.status());
    opts.mem_budget = *b;
  }
  opts.remat = a.remat;
  opts.mem_sweep = a.mem_sweep;
  opts.cuda_arch = a.cuda_arch;
  opts.cuda_codegen = !a.no_cuda_codegen;
  opts.pack_qkv = !a.no_pack_qkv;
  opts.dropout = a.dropout;
  opts.print_sink = [](const std::string& pass, const std::string& ir) {
    std::fprintf(stderr, "// ----- IR after %s -----\n%s", pass.c_str(), ir.c_str());
  };
  ptc::driver::CompileReport report;
  auto plan = ptc::driver::CompileOnnxFile(a.model, opts, &report);
  if (!plan.ok()) return Fail(plan.status());
  plan->options["source"] = a.model;
  if (absl::Status s = ptc::plan::SavePlan(*plan, a.output); !s.ok()) return Fail(s);
  std::fprintf(stderr, "compiled %s -> %s: %lld nodes -> %lld, arena %s (lower bound %s)\n",
               a.model.c_str(), a.output.c_str(), static_cast<long long>(report.nodes_before),
               static_cast<long long>(report.nodes_after),
               HumanBytes(plan->memory.arena_bytes).c_str(),
               HumanBytes(plan->memory.lower_bound).c_str());
  if (report.dropouts > 0) {
    std::fprintf(stderr,
                 "dropout: %lld in the forward (%lld fused into attention, %lld into elementwise "
                 "kernels), a new mask each step (rng.step)\n",
                 static_cast<long long>(report.dropouts),
                 static_cast<long long>(report.attention_dropouts),
                 static_cast<long long>(report.elementwise_dropouts));
  }
  if (report.dropouts_after_softmax > report.attention_dropouts) {
    std::fprintf(stderr,
                 "note: %lld dropouts on attention probabilities were not fused: those attentions "
                 "store their B x H x T x T probabilities (see --stats, fuse-attention's "
                 "declined.* counters); --dropout 0 removes every dropout\n",
                 static_cast<long long>(report.dropouts_after_softmax -
                                        report.attention_dropouts));
  }
  if (report.remat.changed) {
    const auto& r = report.remat;
    std::fprintf(stderr, "remat: %d of %d segments recomputed (%d nodes, +%.1f%% FLOPs), arena %s -> %s\n",
                 r.recomputed_segments, r.segments, r.recomputed_nodes,
                 r.step_flops > 0 ? 100.0 * r.added_flops / r.step_flops : 0.0,
                 HumanBytes(r.arena_before).c_str(), HumanBytes(r.arena_after).c_str());
  }
  if (a.target == "cuda" && !a.no_cuda_codegen && report.cuda_kernels.nodes > 0) {
    const auto& g = report.cuda_kernels;
    if (g.note.empty()) {
      std::fprintf(stderr, "cuda: %d fused_elementwise nodes -> %d generated kernels (%s, NVRTC %s, %.2f s)\n",
                   g.nodes, g.kernels, a.cuda_arch.c_str(), g.nvrtc_version.c_str(), g.seconds);
    } else {
      std::fprintf(stderr, "cuda: no generated kernels (%s): %d fused_elementwise nodes will run on the interpreter\n",
                   g.note.c_str(), g.nodes);
    }
  }
  if (a.target == "cuda") {
    // The step on an H200's roofline (driver/cost_report.h's defaults): what the GPU could do.
    const ptc::driver::CostReport c = ptc::driver::BuildCostReport(*plan->module->main(), {},
                                                                   &plan->memory);
    std::fprintf(stderr,
                 "roofline (H200: %.0f TFLOP/s, %.0f GB/s): %.1f GFLOP per run, ideal %.2f ms "
                 "(MFU at most %.0f%%); `ptc dump %s --cost` for the ops\n",
                 c.options.peak_tflops, c.options.bandwidth_gbs, c.flops / 1e9, c.ms,
                 100 * c.IdealMfu(), a.output.c_str());
  }
  if (a.mem_sweep) std::fputs(ptc::driver::SweepTable(report.sweep).c_str(), stdout);
  if (a.stats) {
    std::fprintf(stderr, "  import            %8.3f s\n", report.import_seconds);
    for (const auto& t : report.pass_timings) {
      std::string counters;
      for (const auto& [k, v] : t.counters) absl::StrAppend(&counters, " ", k, "=", v);
      std::fprintf(stderr, "  %-18s%8.3f s %s%s\n", t.name.c_str(), t.seconds,
                   t.changed ? "changed" : "-", counters.c_str());
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

struct RunArgs {
  std::string plan, output_dir, json;
  std::vector<std::string> inputs;
  bool profile = false, random_inputs = false;
  int repeat = 1, warmup = 0;
  uint64_t seed = 1;
  ptc::train::TrainerOptions train;
  std::string progress = "auto";
};

absl::StatusOr<ptc::train::TrainerOptions> TrainerOptionsOf(const RunArgs& a) {
  ptc::train::TrainerOptions t = a.train;
  t.profile = a.profile;
  if (a.progress == "bar") t.progress_style = ptc::train::ProgressStyle::kBar;
  else if (a.progress == "lines") t.progress_style = ptc::train::ProgressStyle::kLines;
  else if (a.progress == "none") t.progress_style = ptc::train::ProgressStyle::kNone;
  else if (a.progress != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--progress '", a.progress, "' is not one of auto, bar, lines, none"));
  }
  // ptc-cuda's stderr is this terminal too: resolve "auto" here, where isatty is known.
  if (t.progress_style == ptc::train::ProgressStyle::kAuto) {
    t.progress_style = ::isatty(2) ? ptc::train::ProgressStyle::kBar
                                   : ptc::train::ProgressStyle::kLines;
  }
  return t;
}

int Train(const RunArgs& a, const ptc::plan::Plan& plan) {
  auto t = TrainerOptionsOf(a);
  if (!t.ok()) return Fail(t.status());
  absl::Status s = ptc::train::RunTraining(plan, *t, std::cerr);
  return s.ok() ? 0 : Fail(s);
}

absl::StatusOr<std::map<std::string, Tensor>> ReadInputs(const RunArgs& a) {
  std::map<std::string, Tensor> inputs;
  for (const std::string& spec : a.inputs) {
    std::vector<std::string> kv = absl::StrSplit(spec, absl::MaxSplits('=', 1));
    if (kv.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("--input '", spec, "' must look like NAME=FILE.pb"));
    }
    PTC_ASSIGN_OR_RETURN(auto t, ptc::driver::ReadTensorFile(kv[1]));
    inputs[kv[0]] = std::move(t.tensor);
  }
  return inputs;
}

// CUDA plans run in `ptc-cuda` (next to this binary), so that the CPU commands never load the
// CUDA libraries (cuBLASLt alone maps ~200 MiB). PTC_CUDA_EMULATE=1 runs them in
// `ptc-cuda-emu` instead: the same backend on the CPU (runtime/cuda/emu; slow, for checking;
// AddressSanitizer), PTC_CUDA_EMULATE=race in `ptc-cuda-race` (the shared-memory race checker).
// Replaces this process with ptc-cuda PLAN MODE_ARGS... (returns only on failure).
int ExecPtcCuda(const std::string& plan, const std::vector<std::string>& mode_args) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const char* emulate_env = std::getenv("PTC_CUDA_EMULATE");
  const std::string emulate = emulate_env != nullptr ? emulate_env : "";
  const bool emu = emulate == "1", race = emulate == "race";
  if (!emulate.empty() && emulate != "0" && !emu && !race) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "PTC_CUDA_EMULATE=", emulate, " is not one of 1 (the CPU emulation with "
        "AddressSanitizer), race (with the shared-memory race checker) or 0")));
  }
  std::filesystem::path helper =
      self.parent_path() / (emu ? "ptc-cuda-emu" : race ? "ptc-cuda-race" : "ptc-cuda");
  if (emu || race) {
    std::fprintf(stderr, "ptc: PTC_CUDA_EMULATE=%s: running the CUDA plan on the CPU emulation "
                         "(%s)\n", emulate.c_str(), helper.c_str());
  }
  if (ec || !std::filesystem::exists(helper)) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "plan '", plan, "' targets cuda, but this ptc has no CUDA runtime (", helper.string(),
        " is missing); build ptc where nvcc is installed, or compile with --target cpu")));
  }
  std::vector<std::string> args = {helper.string(), plan};
  args.insert(args.end(), mode_args.begin(), mode_args.end());
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  execv(helper.c_str(), argv.data());
  return Fail(absl::InternalError(absl::StrCat("cannot run ", helper.string())));
}

int RunCuda(const RunArgs& a, bool training) {
  std::vector<std::string> args;
  if (training) {
    // The CPU trainer's loop, data, logs and checkpoints run in ptc-cuda on the CUDA executor.
    auto t = TrainerOptionsOf(a);
    if (!t.ok()) return Fail(t.status());
    args.push_back("--train");
    for (std::string& f : ptc::train::TrainerOptionsToFlags(*t)) args.push_back(std::move(f));
  } else {
    for (const std::string& in : a.inputs) args.push_back("--input=" + in);
    if (a.random_inputs) args.push_back(absl::StrCat("--random-inputs=", a.seed));
    if (!a.output_dir.empty()) args.push_back("--output-dir=" + a.output_dir);
    args.push_back(absl::StrCat("--warmup=", a.warmup));
    args.push_back(absl::StrCat("--repeat=", a.repeat));
    if (a.profile) args.push_back("--profile=1");
    if (!a.json.empty()) args.push_back("--json=" + a.json);
  }
  return ExecPtcCuda(a.plan, args);
}

int Run(const RunArgs& a) {
  auto plan = ptc::plan::LoadPlan(a.plan);
  if (!plan.ok()) return Fail(plan.status());
  if (plan->target == "cuda") return RunCuda(a, plan->options.count("train") > 0);
  if (plan->options.count("train")) return Train(a, *plan);
  auto exec = ptc::cpu::Executor::Create(*plan);
  if (!exec.ok()) return Fail(exec.status());
  const ptc::ir::Function* main = plan->module->main();
  auto read = ReadInputs(a);
  if (!read.ok()) return Fail(read.status());
  std::map<std::string, Tensor> inputs = std::move(*read);
  std::mt19937_64 rng(a.seed);
  std::vector<std::string> missing;
  for (const ptc::ir::Value* p : main->params()) {
    if (p->is_param() || inputs.count(p->name())) continue;
    if (a.random_inputs) {
      inputs[p->name()] = ptc::driver::RandomTensor(p->type(), rng);
    } else {
      missing.push_back(absl::StrCat(p->name(), ": ", p->type().ToString()));
    }
  }
  if (!missing.empty()) {
    std::string m;
    for (const auto& s : missing) absl::StrAppend(&m, m.empty() ? "" : ", ", s);
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "missing inputs (", m, "); pass --input NAME=FILE.pb or --random-inputs")));
  }
  for (int i = 0; i < a.warmup; ++i) {
    auto r = (*exec)->Run(inputs);
    if (!r.ok()) return Fail(r.status());
  }
  (*exec)->EnableProfiling(a.profile);
  std::vector<double> times;
  absl::StatusOr<std::vector<Tensor>> outputs;
  for (int i = 0; i < std::max(1, a.repeat); ++i) {
    outputs = absl::StatusOr<std::vector<Tensor>>();  // release: the executor reuses them
    auto t0 = std::chrono::steady_clock::now();
    outputs = (*exec)->Run(inputs);
    auto t1 = std::chrono::steady_clock::now();
    if (!outputs.ok()) return Fail(outputs.status());
    times.push_back(std::chrono::duration<double>(t1 - t0).count());
  }
  ptc::driver::RunReport report;
  report.plan = a.plan;
  report.device = "cpu";
  report.seconds = times;
  report.memory_bytes = (*exec)->arena_bytes();
  if (!a.output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(a.output_dir, ec);
    for (size_t i = 0; i < outputs->size(); ++i) {
      std::string path = absl::StrCat(a.output_dir, "/output_", i, ".pb");
      absl::Status s = ptc::driver::WriteTensorFile(path, main->results()[i]->name(), (*outputs)[i]);
      if (!s.ok()) return Fail(s);
    }
  }
  std::fprintf(stderr, "ran %s: %zu run(s), median %.3f ms, arena %s\n", a.plan.c_str(),
               times.size(), ptc::driver::Median(times) * 1e3,
               HumanBytes((*exec)->arena_bytes()).c_str());
  for (size_t i = 0; i < outputs->size(); ++i) {
    const Tensor& t = (*outputs)[i];
    double sum = 0;
    int64_t n = t.num_elements();
    for (int64_t k = 0; k < n; ++k) sum += t.GetDouble(k);
    std::fprintf(stderr, "  output %zu %%%s %s mean %.6g\n", i, main->results()[i]->name().c_str(),
                 t.type().ToString().c_str(), n ? sum / n : 0.0);
  }
  if (a.profile) {
    report.profiled = true;
    for (const ptc::cpu::NodeProfile& p : (*exec)->Profile()) {
      report.profile.push_back({p.op, p.name, p.loc, p.seconds});
    }
    std::fprintf(stderr, "\n%s",
                 ptc::driver::FormatRunProfile(report.profile, std::max(1, a.repeat)).c_str());
  }
  if (!a.json.empty()) {
    std::ofstream out(a.json);
    out << ptc::driver::RunReportJson(report).dump(2) << "\n";
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

struct DumpArgs {
  bool memory = false;
  bool cost = false;
  double peak_tflops = 732, bandwidth_gbs = 4800;
  bool kernels = false, verbose = false;
  std::string input, format = "text", function;
  std::vector<std::string> dims;
};

int Dump(const DumpArgs& a) {
  std::unique_ptr<ptc::ir::Module> owned;
  const ptc::ir::Module* module = nullptr;
  ptc::plan::Plan plan;
  const ptc::plan::MemoryPlan* memory = nullptr;
  if (EndsWith(a.input, ".onnx")) {
    auto dims = ParseDims(a.dims);
    if (!dims.ok()) return Fail(dims.status());
    ptc::onnx_import::ImportOptions opts;
    opts.dims = *dims;
    auto m = ptc::onnx_import::ImportOnnxFile(a.input, opts);
    if (!m.ok()) return Fail(m.status());
    owned = std::move(*m);
    module = owned.get();
  } else {
    auto p = ptc::plan::LoadPlan(a.input);
    if (!p.ok()) return Fail(p.status());
    plan = std::move(*p);
    module = plan.module.get();
    memory = &plan.memory;
  }
  if (a.kernels) {
    if (memory == nullptr) {
      return Fail(absl::InvalidArgumentError("--kernels needs a plan file (ptc compile --target cuda first)"));
    }
    std::printf("%zu generated CUDA kernels (target %s)\n", plan.cuda_kernels.size(), plan.target.c_str());
    for (const ptc::plan::CudaKernel& k : plan.cuda_kernels) {
      std::printf("%s  %s  cubin %zu bytes  %d registers  %d spill bytes  nodes: %s\n", k.name.c_str(),
                  k.arch.c_str(), k.cubin.size(), k.registers, k.spill_bytes, absl::StrJoin(k.nodes, ", ").c_str());
      if (a.verbose) std::printf("%s\n", k.source.c_str());
    }
    return 0;
  }
  if (a.cost) {
    if (a.format != "text" && a.format != "json") {
      return Fail(absl::InvalidArgumentError("--cost --format: text | json"));
    }
    ptc::driver::CostOptions co;
    co.peak_tflops = a.peak_tflops;
    co.bandwidth_gbs = a.bandwidth_gbs;
    const ptc::driver::CostReport r = ptc::driver::BuildCostReport(*module->main(), co, memory);
    std::fputs(a.format == "json" ? (ptc::driver::CostReportJson(r) + "\n").c_str()
                                  : ptc::driver::CostReportText(r).c_str(),
               stdout);
    return 0;
  }
  if (a.memory) {
    if (memory == nullptr) {
      return Fail(absl::InvalidArgumentError("--memory needs a plan file (ptc compile first)"));
    }
    if (a.format == "dot") {
      std::fputs(ptc::driver::MemoryDot(*module->main()).c_str(), stdout);
      return 0;
    }
    auto r = ptc::driver::BuildMemoryReport(plan);
    if (!r.ok()) return Fail(r.status());
    std::string out = a.format == "json"  ? ptc::driver::MemoryReportJson(*r) + "\n"
                      : a.format == "svg" ? ptc::driver::MemoryTimelineSvg(*r)
                                          : ptc::driver::MemoryReportText(*r);
    if (a.format != "json" && a.format != "svg" && a.format != "text") {
      return Fail(absl::InvalidArgumentError("--memory --format: text | json | svg | dot"));
    }
    std::fputs(out.c_str(), stdout);
    return 0;
  }
  if (a.format == "text") {
    std::fputs(ptc::ir::PrintModule(*module).c_str(), stdout);
  } else if (a.format == "json") {
    std::fputs(ptc::driver::DumpJson(*module, memory).c_str(), stdout);
  } else if (a.format == "dot") {
    std::fputs(ptc::driver::DumpDot(*module).c_str(), stdout);
  } else if (a.format == "onnx") {
    auto bytes = ptc::driver::ExportOnnx(*module, a.function);
    if (!bytes.ok()) return Fail(bytes.status());
    std::fwrite(bytes->data(), 1, bytes->size(), stdout);
  } else {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--format '", a.format, "' is not one of text, json, dot, onnx")));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------

struct ModelArgs {
  std::string family, preset = "tiny", output;
  std::vector<std::string> sets;
  bool loss = false;
  int64_t external_threshold = ptc::models::kDefaultExternalDataThreshold;
  std::map<std::string, std::string> overrides;
};

int Model(ModelArgs& a) {
  for (const std::string& kv : a.sets) {
    std::vector<std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (parts.size() != 2) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--set '", kv, "' must look like KEY=VALUE, e.g. --set layers=6")));
    }
    a.overrides[parts[0]] = parts[1];
  }
  if (a.loss) a.overrides["loss"] = "true";
  auto model = ptc::models::BuildModel(a.family, a.preset, a.overrides);
  if (!model.ok()) return Fail(model.status());
  if (absl::Status s = ptc::models::WriteModel(*model, a.output, a.external_threshold); !s.ok()) {
    return Fail(s);
  }
  int64_t params = 0;
  for (const auto& init : model->graph().initializer()) {
    int64_t n = 1;
    for (int64_t d : init.dims()) n *= d;
    params += n;
  }
  std::fprintf(stderr, "wrote %s: %s %s, %.2fM parameters, inputs:", a.output.c_str(),
               a.family.c_str(), a.preset.c_str(), params / 1e6);
  for (const auto& in : model->graph().input()) std::fprintf(stderr, " %s", in.name().c_str());
  std::fprintf(stderr, ", outputs:");
  for (const auto& out : model->graph().output()) std::fprintf(stderr, " %s", out.name().c_str());
  std::fprintf(stderr, "\n");
  return 0;
}

// `ptc generate CHECKPOINT --model MODEL.onnx`: the inference model imported for batch 1 x
// seq, its initializers replaced by the checkpoint's trained weights (by name, same type, as
// `ptc export` does), then compiled for the CPU like `ptc compile`.
absl::StatusOr<ptc::plan::Plan> PlanFromCheckpoint(const std::string& ckpt_path,
                                                   const std::string& model_path, int64_t seq,
                                                   std::string* note) {
  if (model_path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        ckpt_path, " is a checkpoint folder: add --model MODEL.onnx, the inference model (built "
        "without --loss) that the checkpoint's training plan was compiled from, e.g.\n"
        "  ptc generate ", ckpt_path, " --model tiny.onnx --prompt 'The '"));
  }
  if (seq <= 0) return absl::InvalidArgumentError("--seq must be positive");
  PTC_ASSIGN_OR_RETURN(ptc::checkpoint::Checkpoint ckpt,
                       ptc::checkpoint::LoadCheckpointOrLatest(ckpt_path));
  ptc::onnx_import::ImportOptions io;
  io.dims = {{"batch", 1}, {"seq", seq}};
  PTC_ASSIGN_OR_RETURN(auto module, ptc::onnx_import::ImportOnnxFile(model_path, io));
  int64_t replaced = 0;
  for (const auto& [name, tensor] : ckpt.tensors) {
    auto kind = ckpt.kinds.find(name);
    if (kind == ckpt.kinds.end() || kind->second != "param") continue;
    auto it = module->tensors().find(name);
    if (it == module->tensors().end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint ", ckpt.path, ": weight '", name, "' is not an initializer of ", model_path,
          " (is it the model that was trained?)"));
    }
    if (it->second.type() != tensor.type()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint ", ckpt.path, ": weight '", name, "' is ", tensor.type().ToString(),
          " but ", model_path, " has ", it->second.type().ToString()));
    }
    it->second = tensor;
    ++replaced;
  }
  if (replaced == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkpoint ", ckpt.path, " holds no weights (\"param\" tensors)"));
  }
  *note = absl::StrFormat("ptc: checkpoint %s (step %d, %d weights) in %s, batch 1 x seq %d\n",
                          ckpt.path, ckpt.step, replaced, model_path, seq);
  ptc::driver::CompileOptions co;
  co.dims = io.dims;
  return ptc::driver::CompileModule(std::move(module), co, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  // Protobuf logs parse problems of damaged files on its own; ptc reports them as one-line errors.
  google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char*, int,
                                     const std::string&) {});
  CLI::App app{"ptc: a compiler and runtime that makes transformer training and inference fit "
               "in less memory and run faster."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ptc 0.1.0");
  app.footer(
      "Examples:\n"
      "  ptc model gpt2 --preset tiny -o gpt.onnx\n"
      "  ptc compile gpt.onnx -o gpt.plan --dim batch=8 --dim seq=128\n"
      "  ptc run gpt.plan --input input_ids=input_0.pb --output-dir out/ --profile\n"
      "  ptc dump gpt.plan --format dot | dot -Tsvg > gpt.svg\n"
      "Run 'ptc SUBCOMMAND --help' for each command's flags.");

  CompileArgs ca;
  CLI::App* compile = app.add_subcommand("compile", "Compile an ONNX model into a plan");
  compile->add_option("model", ca.model, "ONNX model file")->required()->check(CLI::ExistingFile);
  compile->add_option("-o,--output", ca.output, "plan file to write (weights go to PLAN.weights)")
      ->required();
  compile->add_option("--target", ca.target, "cpu | cuda (NVIDIA GPUs: inference and training)")->capture_default_str();
  compile->add_option("--precision", ca.precision,
                      "fp32 | bf16 | fp16: bf16/fp16 compute matmuls and attention in the low "
                      "dtype, norms, softmax and losses in f32; weights and outputs stay f32 "
                      "(--target cuda)")
      ->capture_default_str();
  compile->add_option("--cuda-arch", ca.cuda_arch,
                      "--target cuda: architecture of the generated fused_elementwise kernels "
                      "(NVRTC CUBINs stored in the plan; another device falls back to the "
                      "interpreter)")
      ->capture_default_str();
  compile->add_flag("--no-cuda-codegen", ca.no_cuda_codegen,
                    "--target cuda: store no generated kernels (ptc-cuda compiles them at "
                    "load where NVRTC is available; PTC_CUDA_OPTIONS=fused_interpreter runs "
                    "the interpreter)");
  compile->add_flag("--no-pack-qkv", ca.no_pack_qkv,
                    "--target cuda: keep the split / concat around attention instead "
                    "of reading q, k, v as slots of the QKV projection's output (comparisons)");
  compile->add_option("--dim", ca.dims, "bind a symbolic dim: NAME=N (repeatable)");
  compile->add_option("--passes", ca.passes,
                      "comma-separated pass list, 'default' or 'none'; '-NAME' drops a pass listed before it (default,-fuse-residual-add); training and --precision plans run match-gelu, match-rms-norm, match-rotary, match-swiglu, fuse-attention and fuse-linear-ce before autodiff too, unless dropped so")->capture_default_str();
  compile->add_option("--print-ir-after", ca.print_ir_after,
                      "print the IR to stderr after passes whose name matches this regex");
  compile->add_option("--dump-dir", ca.dump_dir, "write the IR after each pass into this folder");
  compile->add_flag("--stats", ca.stats, "print per-pass time and counters");
  compile->add_flag("--train", ca.train, "compile a training step (gradients + optimizer)");
  compile->add_flag("--keep-gradients", ca.t.keep_gradients,
                    "training: also return every gradient (grad.<weight> results, for `ptc run "
                    "--dump-gradients`); they then stay allocated until the step ends");
  compile->add_flag("--no-inplace-updates", ca.no_inplace,
                    "training: keep updated weights and moments in the arena until the step ends "
                    "(default: the optimizer writes into the parameter storage)");
  compile->add_option("--mem-budget", ca.mem_budget,
                      "training: arena budget (2GiB, 512MiB, bytes); remat recomputes the "
                      "cheapest activations to fit, or fails with the minimum feasible budget");
  compile->add_option("--remat", ca.remat, "training: none | per-block | auto")
      ->capture_default_str();
  compile->add_flag("--mem-sweep", ca.mem_sweep,
                    "training: print the memory / recompute trade-off from no remat to the "
                    "minimum budget");
  compile->add_option("--loss", ca.t.loss,
                      "'' (the model outputs a scalar loss) or softmax-ce (append it to the logits)");
  compile->add_option("--labels", ca.t.labels, "name of the labels input added by --loss softmax-ce")
      ->capture_default_str();
  compile->add_option("--ignore-index", ca.t.ignore_index, "label ignored by the loss")
      ->capture_default_str();
  compile->add_option("--freeze", ca.t.frozen, "regex over weight names that are not trained");
  compile->add_option("--optimizer", ca.t.optimizer, "adamw | sgd")->capture_default_str();
  compile->add_option("--lr", ca.t.lr, "peak learning rate")->capture_default_str();
  compile->add_option("--weight-decay", ca.t.weight_decay, "decoupled (AdamW) weight decay")
      ->capture_default_str();
  compile->add_option("--no-decay", ca.t.no_decay, "regex over weight names excluded from decay");
  compile->add_option("--beta1", ca.t.beta1)->capture_default_str();
  compile->add_option("--beta2", ca.t.beta2)->capture_default_str();
  compile->add_option("--eps", ca.t.eps)->capture_default_str();
  compile->add_option("--momentum", ca.t.momentum, "SGD momentum")->capture_default_str();
  compile->add_option("--grad-clip", ca.t.grad_clip, "global-norm gradient clipping (0: off)")
      ->capture_default_str();
  compile->add_option("--schedule", ca.t.schedule, "constant | cosine")->capture_default_str();
  compile->add_option("--warmup", ca.t.warmup, "linear warmup steps")->capture_default_str();
  compile->add_option("--total-steps", ca.t.total_steps, "steps of the cosine schedule")
      ->capture_default_str();
  compile->add_option("--min-lr-ratio", ca.t.min_lr_ratio, "cosine floor as a fraction of --lr")
      ->capture_default_str();
  compile->add_option("--dropout", ca.dropout,
                      "training: the ratio of every dropout in the model (0 removes them; "
                      "default: the model's own, from `ptc model --dropout` or an export in "
                      "training mode)");
  compile->add_option("--accumulate", ca.t.accumulate, "micro-batches per optimizer update")
      ->capture_default_str();
  compile->add_option("--loss-scale", ca.loss_scale,
                      "training: none | dynamic | auto (dynamic with --precision fp16): skip "
                      "steps with inf/NaN gradients and halve the scale, double it after "
                      "--loss-scale-interval clean steps")
      ->capture_default_str();
  compile->add_option("--loss-scale-init", ca.t.loss_scale_init)->capture_default_str();
  compile->add_option("--loss-scale-interval", ca.t.loss_scale_interval)->capture_default_str();
  compile->footer(
      "Examples:\n"
      "  ptc compile gpt.onnx -o gpt.plan --dim batch=8 --dim seq=128\n"
      "  ptc compile gpt-loss.onnx -o train.plan --train --dim batch=8 --dim seq=128 \\\n"
      "      --optimizer adamw --lr 3e-4 --weight-decay 0.1 --no-decay 'ln|bias' --grad-clip 1 \\\n"
      "      --schedule cosine --warmup 50 --total-steps 1000\n"
      "  ptc compile gpt.onnx -o gpt.plan --passes fold-constants,dce --print-ir-after 'dce'\n"
      "  ptc compile gpt.onnx -o gpt-bf16.plan --target cuda --precision bf16 --dim batch=8 "
      "--dim seq=128\n"
      "  ptc compile gpt-loss.onnx -o train-fp16.plan --train --target cuda --precision fp16 "
      "--dim batch=8 --dim seq=1024   # dynamic loss scaling\n"
      "\n"
      "Models from PyTorch (ONNX opsets 13-28; torch.onnx's dynamo exporter, the default since\n"
      "torch 2.9, writes 18 and later): name the dims. For training, optimize=False keeps every\n"
      "weight an initializer; with the exporter's optimizer on, ptc restores the weights it\n"
      "folds into transposed constants from the export's metadata, and says so if it cannot:\n"
      "  from torch.export import Dim\n"
      "  bt = {0: Dim('batch'), 1: Dim('seq', max=1024)}\n"
      "  torch.onnx.export(model, (ids, labels), 'lm.onnx', dynamo=True, optimize=False,\n"
      "      dynamic_shapes={'input_ids': bt, 'labels': bt})   # names: forward's arguments\n"
      "  ptc compile lm.onnx -o train.plan --train --target cuda --precision bf16 "
      "--dim batch=16 --dim seq=1024\n");

  RunArgs ra;
  CLI::App* run = app.add_subcommand("run", "Run a compiled plan (inference)");
  run->add_option("plan", ra.plan, "plan file")->required()->check(CLI::ExistingFile);
  run->add_option("--input", ra.inputs, "NAME=FILE.pb: an ONNX TensorProto file (repeatable)");
  run->add_option("--output-dir", ra.output_dir, "write outputs as output_0.pb, output_1.pb, ...");
  run->add_flag("--profile", ra.profile, "per-op and per-node timings (training: per op, at the end)");
  run->add_flag("--random-inputs", ra.random_inputs,
                "fill inputs not given with random values (timing, smoke tests)");
  run->add_option("--repeat", ra.repeat, "run N times, report the median")->capture_default_str();
  run->add_option("--warmup", ra.warmup, "untimed runs first")->capture_default_str();
  run->add_option("--seed", ra.seed, "seed for --random-inputs")->capture_default_str();
  run->add_option("--json", ra.json, "write timings (and profile) as JSON to this file");
  // Training plans (compiled with --train):
  run->add_option("--steps", ra.train.steps, "training: total optimizer steps")
      ->capture_default_str();
  run->add_option("--data", ra.train.data,
                  "training: text file, folder of text files, or token file "
                  "(default: Debian's fortunes corpus)");
  run->add_option("--val-fraction", ra.train.val_fraction, "training: held-out tail of the data")
      ->capture_default_str();
  run->add_option("--eval-every", ra.train.eval_every, "training: validation every N steps")
      ->capture_default_str();
  run->add_option("--eval-batches", ra.train.eval_batches, "training: batches per validation")
      ->capture_default_str();
  run->add_option("--log-json", ra.train.log_json, "training: one JSON object per step");
  run->add_option("--checkpoint", ra.train.checkpoint_dir, "training: checkpoint folder");
  run->add_option("--checkpoint-every", ra.train.checkpoint_every, "training: steps between checkpoints")
      ->capture_default_str();
  run->add_flag("--resume", ra.train.resume, "training: continue from the latest checkpoint");
  run->add_option("--dump-gradients", ra.train.dump_gradients,
                  "training: write the first step's gradients (TensorProto per weight; the plan "
                  "must be compiled with --keep-gradients)");
  run->add_option("--labels-input", ra.train.labels_input,
                  "training: which data input takes the labels (the other takes the token ids)")
      ->capture_default_str();
  run->add_option("--progress", ra.progress, "auto | bar | lines | none")->capture_default_str();
  run->footer(
      "Examples:\n"
      "  ptc run gpt.plan --input input_ids=input_0.pb --output-dir out/\n"
      "  ptc run train.plan --steps 1000 --eval-every 100 --log-json log.jsonl \\\n"
      "      --checkpoint ckpt/ --checkpoint-every 200      # trains on the fortunes corpus\n"
      "  ptc run train.plan --steps 2000 --checkpoint ckpt/ --resume\n"
      "  ptc run gpt.plan --random-inputs --warmup 2 --repeat 20 --profile\n"
      "\n"
      "CUDA plans run in ptc-cuda. Its first run autotunes (cuBLASLt algorithms, attention\n"
      "kernels; choices kept in $PTC_CUDA_TUNE_FILE, default ~/.cache/ptc/cuda-autotune.tsv);\n"
      "--profile shows each op's ideal time on the GPU's roofline ($PTC_CUDA_ROOFLINE=TFLOPS,GBS).\n"
      "PTC_CUDA_OPTIONS=no_autotune,attention_simt,attention_cudnn,no_graphs,... switches parts\n"
      "(runtime/cuda/README.md); PTC_CUDA_EMULATE=1 runs the plan on the CPU emulation,\n"
      "PTC_CUDA_EMULATE=race on it with the shared-memory race checker.\n");

  DumpArgs da;
  CLI::App* dump = app.add_subcommand("dump", "Show a plan's or an ONNX model's graph");
  dump->add_option("input", da.input, "plan file or MODEL.onnx")->required()->check(CLI::ExistingFile);
  dump->add_option("--format", da.format,
                   "text | json | dot | onnx (the optimized graph as an ONNX model, to stdout)")
      ->capture_default_str();
  dump->add_option("--dim", da.dims, "bind a symbolic dim when dumping an ONNX model");
  dump->add_option("--function", da.function,
                   "with --format onnx: the function to export (default: main, a training "
                   "plan's step; `eval` its evaluation forward)");
  dump->add_flag("--kernels", da.kernels,
                 "the generated CUDA kernels of a cuda plan: name, arch, CUBIN bytes, registers, "
                 "spills, nodes (-v: and the source)");
  dump->add_flag("-v,--verbose", da.verbose, "with --kernels: print each kernel's CUDA source");
  dump->add_flag("--memory", da.memory,
                 "the memory plan: peak, lower bound, arena, phase peaks, top buffers, totals, "
                 "recomputed values (--format text | json | svg timeline | dot saved/recomputed)");
  dump->add_flag("--cost", da.cost,
                 "the step's FLOPs and bytes per op against a roofline: each node's ideal time "
                 "max(FLOPs / peak, bytes / bandwidth), the ideal step, MFU and tokens/s "
                 "(--format text | json)");
  dump->add_option("--peak-tflops", da.peak_tflops,
                   "with --cost: the machine's matmul rate (default: an H200's measured bf16 "
                   "GEMM rate)")
      ->capture_default_str();
  dump->add_option("--bandwidth-gbs", da.bandwidth_gbs,
                   "with --cost: the memory bandwidth in GB/s (default: H200 HBM3e)")
      ->capture_default_str();
  dump->footer(
      "Examples:\n"
      "  ptc dump gpt.plan                       # IR text (re-parses to the same text)\n"
      "  ptc dump train.plan --cost              # ideal per-op times on an H200's roofline\n"
      "  ptc dump gpt.plan --format json | jq '.memory.arena_bytes'\n"
      "  ptc dump gpt.onnx --dim batch=1 --dim seq=16 --format dot | dot -Tsvg > g.svg\n"
      "  ptc dump gpt.plan --format onnx > gpt-optimized.onnx   # open in Netron / ONNX Runtime\n"
      "  ptc dump train.plan --format onnx --function eval > eval.onnx\n"
      "  ptc dump gpu.plan --kernels -v              # generated CUDA kernels and their source\n");

  std::string ex_ckpt, ex_model, ex_out;
  CLI::App* exp = app.add_subcommand("export", "Write a checkpoint's trained weights into an ONNX model");
  exp->add_option("checkpoint", ex_ckpt, "checkpoint folder (a step-N folder or the root)")
      ->required()->check(CLI::ExistingDirectory);
  exp->add_option("--model", ex_model, "the ONNX model the plan was compiled from")
      ->required()->check(CLI::ExistingFile);
  exp->add_option("-o,--output", ex_out, "ONNX file to write")->required();
  exp->footer("Example:\n  ptc export ckpt/ --model tiny.onnx -o tiny-trained.onnx\n");

  std::string gen_plan;
  ptc::generate::GenerateOptions go;
  CLI::App* gen = app.add_subcommand("generate", "Sample text from a byte-level language-model plan");
  std::string gen_model;
  int64_t gen_seq = 128;
  gen->add_option("plan", gen_plan,
                  "inference plan (token ids i64[1, T] -> logits [1, T, V]), or a checkpoint "
                  "folder with --model")
      ->required()->check(CLI::ExistingPath);
  gen->add_option("--model", gen_model,
                  "with a checkpoint: the inference ONNX model it trained (built without --loss)")
      ->check(CLI::ExistingFile);
  gen->add_option("--seq", gen_seq, "with a checkpoint: the window T (KV-cache size)")
      ->capture_default_str();
  gen->add_option("--prompt", go.prompt, "text to continue");
  gen->add_option("--tokens", go.tokens, "bytes to generate")->capture_default_str();
  gen->add_option("--temperature", go.temperature, "0 = greedy")->capture_default_str();
  gen->add_option("--top-k", go.top_k, "sample among the k most likely (0 = all)")->capture_default_str();
  gen->add_option("--seed", go.seed)->capture_default_str();
  bool gen_no_cache = false;
  gen->add_flag("--no-kv-cache", gen_no_cache,
                "run the full window for every token instead of the KV-cache decoder");
  gen->footer(
      "The plan's graph is turned into a one-token decoder with a KV cache (passes/kv_cache.h):\n"
      "each token costs one position, not the whole window; T (--dim seq) is the cache size.\n"
      "A graph the transformation does not cover falls back to the full window, with a notice.\n"
      "A plan compiled with --target cuda generates on the GPU (ptc-cuda); tokens/s go to stderr.\n"
      "Examples:\n"
      "  ptc generate ckpt/ --model tiny.onnx --prompt 'The ' --tokens 300   # latest checkpoint\n"
      "  ptc export ckpt/ --model tiny.onnx -o trained.onnx                  # or: a plan\n"
      "  ptc compile trained.onnx -o gen.plan --dim batch=1 --dim seq=128\n"
      "  ptc generate gen.plan --prompt 'The ' --tokens 300\n"
      "  ptc compile trained.onnx -o gen-gpu.plan --target cuda --precision bf16 --dim batch=1 "
      "--dim seq=1024\n"
      "  ptc generate gen-gpu.plan --prompt 'The ' --tokens 300 --temperature 0\n"
      "  ptc generate gen.plan --prompt 'The ' --tokens 300 --temperature 0 --no-kv-cache\n");

  ModelArgs ma;
  CLI::App* model = app.add_subcommand("model", "Build a transformer as an ONNX model");
  model->add_option("family", ma.family, "gpt2 | seq2seq | llama")->required();
  model->add_option("--preset", ma.preset,
                    "gpt2: tiny small medium large xl; seq2seq: tiny base big; llama: tiny 1b 7b")
      ->capture_default_str();
  model->add_option("-o,--output", ma.output, "ONNX file to write (large weights go to FILE.data)")
      ->required();
  model->add_option("--set", ma.sets,
                    "override a config field: vocab, layers, dim, heads, seq, kv_heads, ffn, "
                    "src_vocab, tgt_vocab, encoder_layers, decoder_layers, seed, gelu, dropout, "
                    "attn_dropout (gpt2: on the attention probabilities, fused into the "
                    "attention; default: dropout's) (repeatable)");
  for (const char* key : {"vocab", "layers", "dim", "heads", "seq"}) {
    model->add_option_function<std::string>(
        absl::StrCat("--", key), [&ma, key](const std::string& v) { ma.overrides[key] = v; },
        absl::StrCat("same as --set ", key, "=N"));
  }
  model->add_option_function<std::string>(
      "--gelu", [&ma](const std::string& v) { ma.overrides["gelu"] = v; },
      "gpt2: GELU form: tanh (GPT-2's gelu_new, default) or erf (exact)");
  model->add_option_function<std::string>(
      "--dropout", [&ma](const std::string& v) { ma.overrides["dropout"] = v; },
      "gpt2 / seq2seq: dropout ratio (GPT-2 and nn.Transformer: 0.1; default 0) on the "
      "embeddings, each sublayer's output and the attention probabilities (seq2seq: also the "
      "FFN's hidden activation); applied by training steps, dropped by inference plans");
  model->add_flag("--loss", ma.loss, "end the graph in the loss (adds a `labels` input)");
  model->add_option("--external-data-threshold", ma.external_threshold,
                    "initializers of at least this many bytes go to FILE.data (-1: inline)")
      ->capture_default_str();
  model->footer(
      "Examples:\n"
      "  ptc model gpt2 --preset tiny --loss -o tiny.onnx\n"
      "  ptc model gpt2 --preset small -o gpt2-124m.onnx\n"
      "  ptc model gpt2 --preset small --dropout 0.1 --loss -o gpt2-124m-train.onnx\n"
      "  ptc model llama --preset tiny --layers 2 --dim 128 -o llama.onnx\n");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (*compile) return Compile(ca);
  if (*run) return Run(ra);
  if (*dump) return Dump(da);
  if (*model) return Model(ma);
  if (*gen) {
    const bool from_checkpoint = std::filesystem::is_directory(gen_plan);
    if (!from_checkpoint && !gen_model.empty()) {
      return Fail(absl::InvalidArgumentError(
          "--model goes with a checkpoint folder; " + gen_plan + " is a plan file"));
    }
    std::string note;
    auto plan = from_checkpoint ? PlanFromCheckpoint(gen_plan, gen_model, gen_seq, &note)
                                : ptc::plan::LoadPlan(gen_plan);
    if (!plan.ok()) return Fail(plan.status());
    if (absl::Status st = ptc::generate::CheckGenerationPlan(*plan); !st.ok()) return Fail(st);
    std::fputs(note.c_str(), stderr);
    if (plan->target == "cuda") {  // the decoder and the sampling loop run in ptc-cuda
      std::vector<std::string> args = {
          "--generate", "--prompt=" + go.prompt, absl::StrCat("--tokens=", go.tokens),
          absl::StrCat("--temperature=", go.temperature), absl::StrCat("--top-k=", go.top_k),
          absl::StrCat("--seed=", go.seed)};
      if (gen_no_cache) args.push_back("--no-kv-cache");
      return ExecPtcCuda(gen_plan, args);
    }
    absl::Status st = ptc::driver::GenerateToStdout(*plan, go, !gen_no_cache,
                                                    [] { return std::string("cpu"); });
    if (!st.ok()) return Fail(st);
    return 0;
  }
  if (*exp) {
    absl::Status s = ptc::checkpoint::ExportCheckpointToOnnx(ex_model, ex_ckpt, ex_out);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "wrote %s\n", ex_out.c_str());
    return 0;
  }
  return 0;
}
