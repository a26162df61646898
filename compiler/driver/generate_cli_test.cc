// `ptc generate` of a CUDA plan (GenerateToStdout): the KV-cache decoder is made at generation
// time, so its fused_elementwise nodes get their NVRTC kernels then (for the plan's
// architecture), not the interpreter. Runs without a GPU: the runner here only returns logits.
#include "compiler/driver/generate_cli.h"

#include <map>
#include <string>

#include "codegen/cuda/nvrtc_codegen.h"
#include "compiler/driver/driver.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"

namespace ptc::driver {
namespace {

TEST(GenerateCli, CudaDecoderGetsGeneratedKernels) {
  const auto nvrtc = cuda::codegen::GetNvrtc();
  if (!nvrtc.available) GTEST_SKIP() << "SKIPPED: NVRTC not available (" << nvrtc.why << ")";
  auto config = models::Gpt2Preset("tiny");
  ASSERT_TRUE(config.ok());
  config->vocab = 256;
  config->layers = 2;
  config->dim = 64;
  config->heads = 4;
  config->seq = 32;
  auto model = models::BuildGpt2(*config);
  ASSERT_TRUE(model.ok()) << model.status();
  onnx_import::ImportOptions io;
  io.dims = {{"batch", 1}, {"seq", 32}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt2-gen", io);
  ASSERT_TRUE(module.ok()) << module.status();
  CompileOptions o;
  o.target = "cuda";
  o.precision = "bf16";  // the residual adds of bf16 / f32 values are fused_elementwise nodes
  o.dims = io.dims;
  auto plan = CompileModule(*std::move(module), o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  size_t decoder_kernels = 0;
  int decoder_fused = 0, runs = 0;
  generate::GenerateOptions go;
  go.prompt = "ab";
  go.tokens = 3;
  go.temperature = 0;
  go.runner_factory = [&](const plan::Plan& p, bool decoder) -> absl::StatusOr<generate::Runner> {
    if (decoder) {
      decoder_kernels = p.cuda_kernels.size();
      for (const auto& n : p.module->main()->nodes()) decoder_fused += n->op() == "fused_elementwise";
    }
    return generate::Runner([&runs, decoder](const std::map<std::string, ir::Tensor>&)
                                -> absl::StatusOr<std::vector<ir::Tensor>> {
      ++runs;
      return std::vector<ir::Tensor>{ir::Tensor(ir::DType::kF32, {1, decoder ? 1 : 32, 256})};
    });
  };
  ASSERT_TRUE(GenerateToStdout(*plan, go, /*kv_cache=*/true, [] { return std::string("test"); }).ok());
  EXPECT_GT(runs, 0);
  ASSERT_GT(decoder_fused, 0);
  EXPECT_GT(decoder_kernels, 0u);
}

}  // namespace
}  // namespace ptc::driver
