// Text generation with a byte-level language-model plan (input ids i64[1, T] -> logits
// [1, T, V]), sampled with temperature and top-k.
//
// With a KV-cache decoder (GenerateOptions::decode_plan, made by passes::MakeDecodePlan) each
// token runs one position: ids [1, 1] and pos -> logits [1, 1, V], keys and values of earlier
// positions read from the cache. The prompt is fed one token at a time (prefill). When the
// cache's T positions are full, the cache restarts with the last T/2 tokens re-fed (the
// full-window path instead slides its window by one token: the two agree for the first T
// tokens of prompt + output).
//
// Without one (the full-window path) each new token runs the whole window, padded after the
// last token, and the logits at the last real position are sampled: O(T^2) per token.
#ifndef PTC_RUNTIME_CPU_GENERATE_H_
#define PTC_RUNTIME_CPU_GENERATE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/plan/plan.h"

namespace ptc::generate {

// Runs one function of a plan: inputs by name -> results in order.
using Runner = std::function<absl::StatusOr<std::vector<ir::Tensor>>(
    const std::map<std::string, ir::Tensor>&)>;
// Makes the Runner of `plan`'s main function on some executor. `decoder`: the plan is a
// KV-cache decoder whose cache parameters are updated by its assigns (its weights can be read
// in place from the plan). The default (an empty factory) is the CPU executor; ptc-cuda passes
// one on the CUDA executor.
using RunnerFactory =
    std::function<absl::StatusOr<Runner>(const plan::Plan& plan, bool decoder)>;
absl::StatusOr<Runner> CpuRunner(const plan::Plan& plan, bool decoder);

struct GenerateOptions {
  std::string prompt;
  int64_t tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: the whole vocabulary
  uint64_t seed = 1;
  // Called with each new token's bytes as soon as it is sampled (streaming output).
  std::function<void(const std::string&)> on_token;
  // The KV-cache decoder of the plan (passes::MakeDecodePlan); null: the full-window path.
  // Must outlive the call, like the plan (it shares the plan's weights).
  const plan::Plan* decode_plan = nullptr;
  // Where the plans run (empty: CpuRunner).
  RunnerFactory runner_factory;
};

// Whether `plan` suits generation (one input ids i64[1, T], f32 logits [1, T, V >= 256]); the
// error says what to compile instead.
absl::Status CheckGenerationPlan(const plan::Plan& plan);

// Returns the generated continuation (without the prompt).
absl::StatusOr<std::string> Generate(const plan::Plan& plan, const GenerateOptions& options);

}  // namespace ptc::generate

#endif  // PTC_RUNTIME_CPU_GENERATE_H_
