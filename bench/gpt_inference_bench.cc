// GPT inference throughput: compiles an ONNX GPT with ptc's driver once, then times
// cpu::Executor::Run on a fixed batch of random token ids. Reports tokens/s as a counter.
//
//   ptc_gpt_inference_bench [--model=bench/models/gpt_bench_opset17.onnx] [--dim=batch=8]
//                           [--dim=seq=128] [--passes=default] [--vocab=8192] [--iterations=K]
//                           [google benchmark flags, e.g. --benchmark_format=json]
//
// Defaults for dims and vocab come from the model's sidecar MODEL.json written by
// bench/make_bench_models.py. Threads: OMP_NUM_THREADS / OPENBLAS_NUM_THREADS (the comparison
// script sets 2 for every runtime).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "compiler/driver/driver.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/executor.h"

namespace {

namespace fs = std::filesystem;

struct BenchConfig {
  std::string model = std::string(PTC_BENCH_MODELS_DIR) + "/gpt_bench_opset17.onnx";
  std::map<std::string, int64_t> dims;
  std::string passes = "default";
  int64_t vocab = 0;
  int64_t iterations = 0;  // 0: Google Benchmark picks; 1 with repetitions: one run per sample
};

struct Prepared {
  ptc::plan::Plan plan;
  std::unique_ptr<ptc::cpu::Executor> executor;
  std::map<std::string, ptc::ir::Tensor> feeds;
  int64_t tokens_per_run = 0;
  double compile_seconds = 0;
};

bool ParseFlags(int argc, char** argv, BenchConfig* config) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const std::string& flag) -> const char* {
      return arg.rfind(flag + "=", 0) == 0 ? argv[i] + flag.size() + 1 : nullptr;
    };
    if (const char* v = value("--model")) {
      config->model = v;
    } else if (const char* v = value("--passes")) {
      config->passes = v;
    } else if (const char* v = value("--iterations")) {
      config->iterations = std::atoll(v);
    } else if (const char* v = value("--vocab")) {
      config->vocab = std::atoll(v);
    } else if (const char* v = value("--dim")) {
      std::string s = v;
      size_t eq = s.find('=');
      if (eq == std::string::npos) {
        std::fprintf(stderr, "error: --dim expects NAME=N, got '%s'\n", v);
        return false;
      }
      config->dims[s.substr(0, eq)] = std::atoll(s.c_str() + eq + 1);
    } else {
      std::fprintf(stderr,
                   "error: unknown flag '%s' (expected --model=, --dim=NAME=N, --passes=, "
                   "--vocab=, --iterations= or a --benchmark_* flag)\n",
                   argv[i]);
      return false;
    }
  }
  // Sidecar written by make_bench_models.py: {"vocab": 8192, "dims": {"batch": 8, ...}}.
  fs::path sidecar = fs::path(config->model).replace_extension(".json");
  if (std::ifstream in(sidecar); in) {
    nlohmann::json meta = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!meta.is_discarded()) {
      if (config->vocab == 0) config->vocab = meta.value("vocab", int64_t{0});
      if (meta.contains("dims")) {
        for (const auto& [k, v] : meta["dims"].items()) {
          config->dims.emplace(k, v.get<int64_t>());  // command-line --dim wins
        }
      }
    }
  }
  if (config->vocab == 0) config->vocab = 8192;
  config->dims.emplace("batch", 8);
  config->dims.emplace("seq", 128);
  return true;
}

// Random token ids in [0, vocab) for integer inputs, N(0, 1) for float inputs (fixed seed).
absl::StatusOr<std::unique_ptr<Prepared>> Prepare(const BenchConfig& config) {
  auto prepared = std::make_unique<Prepared>();
  ptc::driver::CompileOptions options;
  options.dims = config.dims;
  options.passes = config.passes;
  ptc::driver::CompileReport report;
  auto start = std::chrono::steady_clock::now();
  auto plan = ptc::driver::CompileOnnxFile(config.model, options, &report);
  if (!plan.ok()) return plan.status();
  prepared->compile_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  prepared->plan = *std::move(plan);
  auto executor = ptc::cpu::Executor::Create(prepared->plan);
  if (!executor.ok()) return executor.status();
  prepared->executor = *std::move(executor);

  std::mt19937_64 rng(/*seed=*/1234);
  for (const ptc::ir::Value* p : prepared->plan.module->main()->params()) {
    if (p->is_param()) continue;
    ptc::ir::Tensor t(p->type().dtype, p->type().shape);
    const int64_t n = t.num_elements();
    switch (t.dtype()) {
      case ptc::ir::DType::kI64: {
        std::uniform_int_distribution<int64_t> dist(0, config.vocab - 1);
        for (int64_t i = 0; i < n; ++i) t.mutable_data_as<int64_t>()[i] = dist(rng);
        prepared->tokens_per_run = std::max(prepared->tokens_per_run, n);
        break;
      }
      case ptc::ir::DType::kI32: {
        std::uniform_int_distribution<int32_t> dist(0, static_cast<int32_t>(config.vocab - 1));
        for (int64_t i = 0; i < n; ++i) t.mutable_data_as<int32_t>()[i] = dist(rng);
        prepared->tokens_per_run = std::max(prepared->tokens_per_run, n);
        break;
      }
      case ptc::ir::DType::kF32: {
        std::normal_distribution<float> dist(0.0f, 1.0f);
        for (int64_t i = 0; i < n; ++i) t.mutable_data_as<float>()[i] = dist(rng);
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "input ", p->name(), " has type ", p->type().ToString(),
            ": the GPT bench feeds only i64/i32 token ids and f32 inputs"));
    }
    prepared->feeds[p->name()] = std::move(t);
  }
  return prepared;
}

void RunGpt(benchmark::State& state, Prepared* prepared) {
  for (auto _ : state) {
    auto outputs = prepared->executor->Run(prepared->feeds);
    if (!outputs.ok()) {
      state.SkipWithError(std::string(outputs.status().message()).c_str());
      break;
    }
    benchmark::DoNotOptimize(outputs->data());
  }
  state.counters["tokens_per_second"] = benchmark::Counter(
      static_cast<double>(prepared->tokens_per_run), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["arena_MiB"] =
      static_cast<double>(prepared->executor->arena_bytes()) / (1024.0 * 1024.0);
  state.counters["compile_s"] = prepared->compile_seconds;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);  // removes the --benchmark_* flags
  BenchConfig config;
  if (!ParseFlags(argc, argv, &config)) return 2;
  if (!fs::exists(config.model)) {
    std::fprintf(stderr,
                 "error: model %s not found; generate it with\n"
                 "  /usr/bin/python3 bench/make_bench_models.py\n",
                 config.model.c_str());
    return 1;
  }
  auto prepared = Prepare(config);
  if (!prepared.ok()) {
    std::fprintf(stderr, "error: %s: %s\n", config.model.c_str(),
                 std::string(prepared.status().message()).c_str());
    return 1;
  }
  std::string name = absl::StrCat("gpt_inference/", fs::path(config.model).stem().string(),
                                  "/passes:", config.passes);
  for (const auto& [dim, value] : config.dims) absl::StrAppend(&name, "/", dim, ":", value);
  auto* bench = benchmark::RegisterBenchmark(name.c_str(), RunGpt, prepared->get())
                    ->Unit(benchmark::kMillisecond)
                    ->UseRealTime();
  if (config.iterations > 0) bench->Iterations(config.iterations);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
