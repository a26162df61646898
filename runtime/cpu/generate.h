// Text generation with a byte-level language-model plan (input ids i64[1, T] -> logits
// [1, T, V]). The model is causal, so the window is padded after the last token and the logits
// at the last real position are sampled (temperature, top-k). No KV cache yet: each new token
// runs the full window (O(T^2) per token; fine for the demo models).
#ifndef PTC_RUNTIME_CPU_GENERATE_H_
#define PTC_RUNTIME_CPU_GENERATE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/plan/plan.h"

namespace ptc::generate {

struct GenerateOptions {
  std::string prompt;
  int64_t tokens = 200;
  double temperature = 0.8;  // 0: greedy
  int64_t top_k = 40;        // 0: the whole vocabulary
  uint64_t seed = 1;
  // Called with each new token's bytes as soon as it is sampled (streaming output).
  std::function<void(const std::string&)> on_token;
};

// Returns the generated continuation (without the prompt).
absl::StatusOr<std::string> Generate(const plan::Plan& plan, const GenerateOptions& options);

}  // namespace ptc::generate

#endif  // PTC_RUNTIME_CPU_GENERATE_H_
