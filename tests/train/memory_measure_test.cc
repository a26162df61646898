// Measured vs planned memory of a training step (issue 4): the process's resident memory grows,
// from its base (libraries, thread pools and OpenBLAS buffers initialized, model compiled), by
// what the plan says the executor needs: the arena, the writable weights + optimizer state, and
// the output tensors. The plan is an upper bound (measured <= planned + 5%) and close to it
// (measured >= 95% of planned): on GPT tiny, batch 16 x 128, measured/planned = 1.004. The base
// is taken after malloc_trim(0): heap memory freed by compilation stays resident otherwise, the
// executor's allocations reuse it, and the growth looked 5% smaller than the plan (0.948).
// The end is measured after malloc_trim(0) too: oneDNN's GEMMs malloc a packing buffer per call
// and free it on return, and malloc keeps up to a few MiB of such freed memory per thread
// (seen: 3-12 MiB before the trim, 0.4 after, on 190 MiB); the test prints both.
// Every arena page is touched in a step (checked with mincore). One test per process (ctest
// runs each test alone).
#include <cstdint>
#include <cstdio>
#include <map>

#include <malloc.h>

#include "compiler/driver/driver.h"
#include "compiler/onnx/importer.h"
#include "gtest/gtest.h"
#include "models/models.h"
#include "runtime/cpu/executor.h"

namespace ptc {
namespace {

absl::StatusOr<plan::Plan> CompileGpt(int64_t batch, bool train) {
  std::map<std::string, std::string> overrides = {{"layers", "4"}, {"dim", "256"}};
  if (train) overrides["loss"] = "true";
  auto model = models::BuildModel("gpt2", "tiny", overrides);
  if (!model.ok()) return model.status();
  onnx_import::ImportOptions io;
  io.dims = {{"batch", batch}, {"seq", 128}};
  auto module = onnx_import::ImportOnnxBytes(model->SerializeAsString(), "", "gpt", io);
  if (!module.ok()) return module.status();
  driver::CompileOptions co;
  co.dims = io.dims;
  co.train = train;
  return driver::CompileModule(std::move(*module), co);
}

std::map<std::string, ir::Tensor> Batch(const ir::Function& f) {
  std::map<std::string, ir::Tensor> in;
  for (const ir::Value* p : f.params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    ir::Tensor t(p->type().dtype, p->type().shape);
    for (int64_t i = 0; i < t.num_elements(); ++i) t.mutable_data_as<int64_t>()[i] = (i * 7) % 256;
    in[p->name()] = t;
  }
  return in;
}

TEST(MemoryMeasure, TrainingStepResidentMemoryMatchesPlan) {
  // Warm-up in the same process: a small training step initializes the kernel thread pool and
  // the GEMM libraries (OpenBLAS's static buffers, oneDNN's generated kernels for every
  // transpose case), part of the process base, not of any plan.
  auto warm = CompileGpt(/*batch=*/2, /*train=*/true);
  ASSERT_TRUE(warm.ok()) << warm.status();
  {
    auto ex = cpu::Executor::Create(*warm);
    ASSERT_TRUE(ex.ok()) << ex.status();
    ASSERT_TRUE((*ex)->Run(Batch(*warm->module->main())).ok());
  }
  auto plan = CompileGpt(/*batch=*/16, /*train=*/true);
  ASSERT_TRUE(plan.ok()) << plan.status();
  std::map<std::string, ir::Tensor> batch = Batch(*plan->module->main());
  malloc_trim(0);
  const int64_t base = cpu::ProcessRssBytes();

  auto ex = cpu::Executor::Create(*plan);
  ASSERT_TRUE(ex.ok()) << ex.status();
  int64_t output_bytes = 0;
  for (int step = 0; step < 2; ++step) {
    auto out = (*ex)->Run(batch);
    ASSERT_TRUE(out.ok()) << out.status();
    output_bytes = 0;
    for (const ir::Tensor& t : *out) output_bytes += static_cast<int64_t>(t.nbytes());
  }
  // Free memory malloc keeps cached (the GEMM library's per-call packing buffers, freed when
  // each call returns) goes back to the OS here as it did before `base`: what stays resident
  // is memory in use.
  const int64_t before_trim = cpu::ProcessRssBytes() - base;
  malloc_trim(0);
  const int64_t measured = cpu::ProcessRssBytes() - base;
  std::printf("resident growth %.1f MiB before malloc_trim, %.1f MiB after\n",
              before_trim / 1048576.0, measured / 1048576.0);
  const int64_t planned = (*ex)->arena_bytes() + (*ex)->state_bytes() + output_bytes;
  std::printf("planned %.1f MiB (arena %.1f + state %.1f + outputs %.1f), measured %.1f MiB, "
              "ratio %.3f\n", planned / 1048576.0, (*ex)->arena_bytes() / 1048576.0,
              (*ex)->state_bytes() / 1048576.0, output_bytes / 1048576.0, measured / 1048576.0,
              static_cast<double>(measured) / planned);
  EXPECT_GT(planned, int64_t{100} << 20);  // large enough for the 5% to mean something
  EXPECT_LE(static_cast<double>(measured), 1.05 * planned);
  EXPECT_GE(static_cast<double>(measured), 0.95 * planned);
}

}  // namespace
}  // namespace ptc
