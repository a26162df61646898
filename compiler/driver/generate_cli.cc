#include "compiler/driver/generate_cli.h"

#include <chrono>
#include <cstdio>

#include "codegen/cuda/nvrtc_codegen.h"
#include "passes/kv_cache.h"

namespace ptc::driver {

absl::Status GenerateToStdout(const plan::Plan& plan, generate::GenerateOptions go,
                              bool kv_cache, const std::function<std::string()>& where) {
  plan::Plan decode_plan;
  if (kv_cache) {
    auto dp = passes::MakeDecodePlan(plan);
    if (dp.ok()) {
      decode_plan = *std::move(dp);
      go.decode_plan = &decode_plan;
      // The decoder is made here, after compilation: a CUDA plan's generated kernels do not
      // cover its fused_elementwise nodes (one-token shapes), so NVRTC compiles them now (for
      // the plan's architecture); without NVRTC they run on the interpreter, as before.
      if (plan.target == "cuda" && plan.options.count("cuda_arch")) {
        cuda::codegen::GenerateOptions gopts;
        gopts.arch = plan.options.at("cuda_arch");
        auto kernels = cuda::codegen::GenerateCudaKernels(*decode_plan.module, gopts);
        if (kernels.ok()) {
          decode_plan.cuda_kernels = *std::move(kernels);
        } else {
          std::fprintf(stderr, "ptc: note: the KV-cache decoder's fused kernels run on the "
                       "interpreter: %s\n", std::string(kernels.status().message()).c_str());
        }
      }
    } else {
      std::fprintf(stderr, "ptc: note: no KV cache, running the full window per token: %s\n",
                   std::string(dp.status().message()).c_str());
    }
  }
  std::fputs(go.prompt.c_str(), stdout);
  go.on_token = [](const std::string& piece) {
    std::fputs(piece.c_str(), stdout);
    std::fflush(stdout);
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto text = generate::Generate(plan, go);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fputs("\n", stdout);
  if (!text.ok()) return text.status();
  std::fprintf(stderr, "generated %zu tokens in %.2f s (%.1f tokens/s, %s, prompt and executor "
               "creation included) on %s\n", text->size(), secs,
               secs > 0 ? static_cast<double>(text->size()) / secs : 0.0,
               go.decode_plan ? "KV cache" : "full window", where().c_str());
  return absl::OkStatus();
}

}  // namespace ptc::driver
