// Per-op profile of a training-step plan (`ptc run` has no --profile for training): loads PLAN,
// feeds a fixed random batch to every integer data input, runs warmup steps, then N steps with
// Executor::EnableProfiling and prints the time per op type and the slowest nodes.
//
//   train_profile PLAN [--steps N] [--warmup N] [--vocab V] [--top K] [--profile 0|1]
//
// --profile 0: no per-node timing; prints one line `RESULT {"times": [...], ...}` (seconds per
// step, RSS) for bench/train_bench.py (the executor alone: no corpus, no @eval).
//
// Not in bench/CMakeLists.txt (owned by the perf bench); build by hand against a build dir, e.g.
//   bench/train_profile_build.sh build-trainbench
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "compiler/driver/run_report.h"
#include "compiler/ir/ir.h"
#include "runtime/cpu/executor.h"
#include "runtime/plan/plan.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PLAN [--steps N] [--warmup N] [--vocab V] [--top K]\n",
                 argv[0]);
    return 2;
  }
  std::string path = argv[1];
  int steps = 5, warmup = 2, top = 25, profile = 1;
  int64_t vocab = 256;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (flag == "--steps") steps = static_cast<int>(v);
    else if (flag == "--warmup") warmup = static_cast<int>(v);
    else if (flag == "--vocab") vocab = v;
    else if (flag == "--top") top = static_cast<int>(v);
    else if (flag == "--profile") profile = static_cast<int>(v);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  auto plan = ptc::plan::LoadPlan(path);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", plan.status().ToString().c_str());
    return 1;
  }
  const int64_t rss_loaded = ptc::cpu::ProcessRssBytes();
  auto exec = ptc::cpu::Executor::Create(*plan);
  const int64_t rss_created = ptc::cpu::ProcessRssBytes();
  if (!exec.ok()) {
    std::fprintf(stderr, "%s\n", exec.status().ToString().c_str());
    return 1;
  }
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  std::map<std::string, ptc::ir::Tensor> batch;
  for (const ptc::ir::Value* p : plan->module->main()->params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    ptc::ir::Tensor t(p->type().dtype, p->type().shape);
    if (p->type().dtype != ptc::ir::DType::kI64) {
      std::fprintf(stderr, "input %s is not i64\n", p->name().c_str());
      return 1;
    }
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<int64_t>()[i] = token(rng);
    batch[p->name()] = std::move(t);
  }
  std::vector<int64_t> rss_steps;
  for (int s = 0; s < warmup; ++s) {
    auto r = (*exec)->Run(batch);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
      return 1;
    }
    rss_steps.push_back(ptc::cpu::ProcessRssBytes());
  }
  std::printf("RSS MiB: plan loaded %.1f, executor created %.1f, after each warmup step",
              rss_loaded / 1048576.0, rss_created / 1048576.0);
  for (int64_t r : rss_steps) std::printf(" %.1f", r / 1048576.0);
  std::printf("\n");
  if (!profile) {
    std::vector<double> times;
    for (int s = 0; s < steps; ++s) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = (*exec)->Run(batch);
      if (!r.ok()) {
        std::fprintf(stderr, "%s\n", r.status().ToString().c_str());
        return 1;
      }
      times.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("RESULT {\"times\": [");
    for (size_t i = 0; i < times.size(); ++i) std::printf("%s%.6f", i ? ", " : "", times[i]);
    std::printf("], \"arena_bytes\": %lld, \"state_bytes\": %lld, \"rss_end\": %lld}\n",
                static_cast<long long>((*exec)->arena_bytes()),
                static_cast<long long>((*exec)->state_bytes()),
                static_cast<long long>(ptc::cpu::ProcessRssBytes()));
    return 0;
  }
  (*exec)->EnableProfiling(true);
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) {
    auto r = (*exec)->Run(batch);
    if (!r.ok()) return 1;
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  const std::vector<ptc::cpu::NodeProfile> prof = (*exec)->Profile();
  std::vector<ptc::driver::NodeTime> nodes;
  double total = 0;
  for (const auto& n : prof) {
    nodes.push_back({n.op, n.name, n.loc, n.seconds});
    total += n.seconds;
  }
  total /= steps;
  std::printf("%s: %.1f ms/step wall, %.1f ms/step in nodes, %zu nodes, arena %.1f MiB, "
              "state %.1f MiB\n\n%s",
              path.c_str(), wall * 1e3, total * 1e3, prof.size(),
              (*exec)->arena_bytes() / 1048576.0, (*exec)->state_bytes() / 1048576.0,
              ptc::driver::FormatRunProfile(nodes, steps, top).c_str());
  return 0;
}
