// ptc-cuda: runs CUDA plans for `ptc run` (which execs it), so that the CPU commands of ptc
// never load the CUDA libraries. Usage: ptc-cuda PLAN [--input=NAME=FILE.pb ...]
// [--output-dir=DIR] [--warmup=N] [--repeat=N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compiler/driver/tensor_io.h"
#include "runtime/cuda/executor.h"
#include "runtime/plan/plan.h"

namespace {

int Fail(const absl::Status& status) {
  std::string msg(status.message());
  std::replace(msg.begin(), msg.end(), '\n', ' ');
  std::fprintf(stderr, "ptc: error: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ptc-cuda PLAN [--input=NAME=FILE.pb ...] [--output-dir=DIR] "
                         "[--warmup=N] [--repeat=N]  (normally started by `ptc run`)\n");
    return 2;
  }
  std::string plan_path = argv[1], output_dir;
  int warmup = 0, repeat = 1;
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
    } else if (kv[0] == "--output-dir") {
      output_dir = kv[1];
    } else if (kv[0] == "--warmup" && absl::SimpleAtoi(kv[1], &warmup)) {
    } else if (kv[0] == "--repeat" && absl::SimpleAtoi(kv[1], &repeat)) {
    } else {
      return Fail(absl::InvalidArgumentError(absl::StrCat("bad flag ", a)));
    }
  }
  auto plan = ptc::plan::LoadPlan(plan_path);
  if (!plan.ok()) return Fail(plan.status());
  auto exec = ptc::cuda::Executor::Create(*plan);
  if (!exec.ok()) return Fail(exec.status());
  std::vector<double> times;
  absl::StatusOr<std::vector<ptc::ir::Tensor>> outputs;
  for (int i = 0; i < std::max(1, warmup + repeat); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    outputs = (*exec)->Run(inputs);
    if (!outputs.ok()) return Fail(outputs.status());
    if (i >= warmup) {
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  std::sort(times.begin(), times.end());
  std::fprintf(stderr, "ran %s on cuda (%s): median %.3f ms; device memory %s\n",
               plan_path.c_str(), (*exec)->device().name.c_str(),
               times.empty() ? 0.0 : times[times.size() / 2] * 1e3,
               (*exec)->memory().ToString().c_str());
  if (!output_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(output_dir, ec);
    const ptc::ir::Function* main = plan->module->main();
    for (size_t i = 0; i < outputs->size(); ++i) {
      absl::Status s = ptc::driver::WriteTensorFile(absl::StrCat(output_dir, "/output_", i, ".pb"),
                                                    main->results()[i]->name(), (*outputs)[i]);
      if (!s.ok()) return Fail(s);
    }
  }
  return 0;
}
