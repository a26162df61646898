// `ptc generate`'s front end, shared by ptc (CPU plans) and ptc-cuda (CUDA plans): the
// KV-cache decoder made from the plan (passes::MakeDecodePlan; a note and the full window when
// the graph is not covered), the prompt and each sampled token streamed to stdout, and a
// tokens/s summary on stderr naming `where` ("cpu", "cuda (NVIDIA H200)").
#ifndef PTC_COMPILER_DRIVER_GENERATE_CLI_H_
#define PTC_COMPILER_DRIVER_GENERATE_CLI_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "runtime/cpu/generate.h"
#include "runtime/plan/plan.h"

namespace ptc::driver {

// `go.runner_factory` picks the executor (empty: CPU); `where` is called after generation (the
// factory may learn the device name while running).
absl::Status GenerateToStdout(const plan::Plan& plan, generate::GenerateOptions go,
                              bool kv_cache, const std::function<std::string()>& where);

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_GENERATE_CLI_H_
