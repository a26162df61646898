// End to end on the GPU: the PyTorch references of tests/data/e2e/ compiled with ptc's driver
// and run by the CUDA executor; plus the executor's load-time errors (no device, short memory).
// Without a GPU the device tests skip with "SKIPPED: no CUDA device"; the no-device error test
// runs everywhere.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/driver/driver.h"
#include "gtest/gtest.h"
#include "tests/cuda/cuda_test_util.h"
#include "nlohmann/json.hpp"
#include "runtime/cuda/executor.h"
#include "tests/e2e/tensor_proto_reader.h"

namespace ptc::cuda {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string DataDir() {
  if (const char* env = std::getenv("PTC_E2E_DATA_DIR")) return env;
  return PTC_E2E_DATA_DIR;
}

struct Case {
  json meta;
  std::vector<e2e::NamedTensor> inputs;
  std::vector<e2e::NamedTensor> outputs;
};

absl::StatusOr<Case> LoadCase(const fs::path& dir) {
  Case c;
  std::ifstream meta_file(dir / "meta.json");
  if (!meta_file) return absl::NotFoundError(absl::StrCat((dir / "meta.json").string(), ": missing"));
  c.meta = json::parse(meta_file, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (c.meta.is_discarded()) return absl::InvalidArgumentError("bad meta.json");
  for (auto [prefix, list] : {std::pair{"input_", &c.inputs}, std::pair{"output_", &c.outputs}}) {
    for (int i = 0;; ++i) {
      fs::path p = dir / absl::StrCat(prefix, i, ".pb");
      if (!fs::exists(p)) break;
      auto t = e2e::ReadTensorProtoFile(p.string());
      if (!t.ok()) return t.status();
      list->push_back(*std::move(t));
    }
  }
  return c;
}

// numpy.allclose; "" when close.
std::string Compare(const ir::Tensor& got, const ir::Tensor& want, double rtol, double atol) {
  if (got.type() != want.type()) {
    return absl::StrCat("type ", got.type().ToString(), " vs ", want.type().ToString());
  }
  int64_t bad = 0, worst = -1;
  double worst_excess = -1, max_abs = 0;
  for (int64_t i = 0; i < want.num_elements(); ++i) {
    const double g = got.GetDouble(i), w = want.GetDouble(i);
    const double err = std::isnan(g) || std::isnan(w) ? INFINITY : std::fabs(g - w);
    const double excess = err - (atol + rtol * std::fabs(w));
    max_abs = std::max(max_abs, err);
    if (excess > 0) {
      ++bad;
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return "";
  return absl::StrFormat("%d of %d elements differ (rtol %g, atol %g), max abs err %g; worst [%d] "
                         "got %.9g want %.9g",
                         bad, want.num_elements(), rtol, atol, max_abs, worst,
                         got.GetDouble(worst), want.GetDouble(worst));
}

struct Run {
  plan::Plan plan;
  std::map<std::string, ir::Tensor> feeds;
  Case c;
};

absl::StatusOr<Run> Prepare(const std::string& name, const std::string& passes) {
  Run r;
  const fs::path dir = fs::path(DataDir()) / name;
  auto c = LoadCase(dir);
  if (!c.ok()) return c.status();
  r.c = *std::move(c);
  driver::CompileOptions options;
  options.passes = passes;
  for (const auto& [dim, value] : r.c.meta["dims"].items()) options.dims[dim] = value.get<int64_t>();
  auto plan = driver::CompileOnnxFile((dir / r.c.meta.value("model", "model.onnx")).string(), options);
  if (!plan.ok()) return plan.status();
  r.plan = *std::move(plan);
  std::vector<const ir::Value*> data_params;
  for (const ir::Value* p : r.plan.module->main()->params()) {
    if (!p->is_param()) data_params.push_back(p);
  }
  if (data_params.size() != r.c.inputs.size()) {
    return absl::InvalidArgumentError("data parameters of main vs input_*.pb");
  }
  for (size_t i = 0; i < r.c.inputs.size(); ++i) {
    const bool by_name = std::any_of(data_params.begin(), data_params.end(), [&](const ir::Value* p) {
      return p->name() == r.c.inputs[i].name;
    });
    r.feeds[by_name ? r.c.inputs[i].name : data_params[i]->name()] = r.c.inputs[i].tensor;
  }
  return r;
}

class CudaE2eTest : public testing::TestWithParam<std::string> {};

// Runs everywhere: every node of the GPT plans has a CUDA kernel (or is a constant, which the
// executor uploads), so the GPU run below needs no host fallback.
TEST(CudaE2e, GptPlanHasCudaKernelForEveryNode) {
  if (!BuiltWithCuda()) GTEST_SKIP() << "SKIPPED: no CUDA device (built without CUDA)";
  for (const char* passes : {"default", "none"}) {
    auto r = Prepare("gpt_opset17", passes);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const auto& n : r->plan.module->main()->nodes()) {
      EXPECT_TRUE(n->op() == "constant" || HasDeviceKernel(n->op()))
          << "passes=" << passes << ": " << n->Describe();
    }
  }
}

// The GPT forward (the end-to-end case) with the host fallback off: every node of the
// optimized plan runs on a CUDA kernel. Twice: the second run reuses the arena.
TEST(CudaE2e, GptOpset17AllOnDevice) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  for (const char* passes : {"default", "none"}) {
    auto r = Prepare("gpt_opset17", passes);
    ASSERT_TRUE(r.ok()) << r.status();
    auto ex = Executor::Create(r->plan);
    ASSERT_TRUE(ex.ok()) << ex.status();
    EXPECT_TRUE((*ex)->host_fallback_nodes().empty());
    const double rtol = r->c.meta.value("rtol", 1e-4), atol = r->c.meta.value("atol", 1e-5);
    for (int run = 0; run < 2; ++run) {
      auto out = (*ex)->Run(r->feeds);
      ASSERT_TRUE(out.ok()) << out.status();
      ASSERT_EQ(out->size(), r->c.outputs.size());
      for (size_t i = 0; i < out->size(); ++i) {
        EXPECT_EQ(Compare((*out)[i], r->c.outputs[i].tensor, rtol, atol), "")
            << "passes=" << passes << " run " << run << " output " << i;
      }
    }
    std::printf("gpt_opset17 passes=%s on %s: %s\n", passes, (*ex)->device().name.c_str(),
                (*ex)->memory().ToString().c_str());
  }
}

// Every reference case, with the host fallback for ops that have no CUDA kernel yet (losses).
TEST_P(CudaE2eTest, MatchesPyTorchWithFallback) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  auto r = Prepare(GetParam(), "default");
  ASSERT_TRUE(r.ok()) << r.status();
  ExecutorOptions options;
  options.kernels.host_fallback = true;
  auto ex = Executor::Create(r->plan, options);
  ASSERT_TRUE(ex.ok()) << ex.status();
  (*ex)->EnableProfiling(true);
  auto out = (*ex)->Run(r->feeds);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), r->c.outputs.size());
  const double rtol = r->c.meta.value("rtol", 1e-4), atol = r->c.meta.value("atol", 1e-5);
  for (size_t i = 0; i < out->size(); ++i) {
    EXPECT_EQ(Compare((*out)[i], r->c.outputs[i].tensor, rtol, atol), "") << "output " << i;
  }
  double total = 0;
  for (const NodeProfile& p : (*ex)->Profile()) total += p.seconds;
  EXPECT_GT(total, 0.0);
  std::printf("%s: %zu host-fallback nodes, %.3f ms device time\n", GetParam().c_str(),
              (*ex)->host_fallback_nodes().size(), total * 1e3);
}

std::vector<std::string> CaseNames() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(DataDir(), ec)) {
    if (entry.is_directory() && fs::exists(entry.path() / "meta.json")) {
      names.push_back(entry.path().filename().string());
    }
  }
  std::sort(names.begin(), names.end());
  return names;
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaE2eTest, testing::ValuesIn(CaseNames()));

// A tiny plan: y = x + x, f32[4].
plan::Plan TinyPlan(int64_t arena_bytes) {
  plan::Plan p;
  p.module = std::make_unique<ir::Module>();
  ir::Function* f = p.module->AddFunction("main");
  ir::Value* x = f->AddParam("x", {ir::DType::kF32, {4}});
  ir::Node* n = f->AddNode("add", {x, x}, {{ir::DType::kF32, {4}}}, {}, "", {"y"});
  f->set_results({n->output()});
  p.target = "cuda";
  p.memory.arena_bytes = arena_bytes;
  p.memory.buffers.push_back({"y", 0, 64, 0, 1, ""});
  return p;
}

// Runs everywhere: without a device (or without CUDA) creation fails with a one-line reason.
TEST(CudaExecutor, ClearErrorWithoutDevice) {
  plan::Plan p = TinyPlan(64);
  auto device = GetDevice(0);
  auto ex = Executor::Create(p);
  if (device.ok()) {
    ASSERT_TRUE(ex.ok()) << ex.status();
    auto out = (*ex)->Run({{"x", ir::Tensor::FromVector<float>(ir::DType::kF32, {4},
                                                               {1, 2, 3, -4})}});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ((*out)[0].data_as<float>()[3], -8.0f);
    std::printf("device: %s\n", device->ToString().c_str());
    return;
  }
  ASSERT_FALSE(ex.ok());
  const std::string msg(ex.status().message());
  EXPECT_TRUE(msg.rfind("no CUDA device: ", 0) == 0 ||
              msg.rfind("this ptc was built without CUDA", 0) == 0)
      << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  EXPECT_EQ(BuiltWithCuda(), msg.rfind("no CUDA device: ", 0) == 0) << msg;
}

TEST(CudaExecutor, OutOfMemoryAtLoadSaysRequiredAndFree) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  plan::Plan p = TinyPlan(int64_t{1} << 41);  // 2 TiB
  auto ex = Executor::Create(p);
  ASSERT_FALSE(ex.ok());
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kResourceExhausted) << ex.status();
  EXPECT_NE(ex.status().message().find("bytes free"), std::string::npos) << ex.status();
  EXPECT_NE(ex.status().message().find(absl::StrCat(int64_t{1} << 41)), std::string::npos)
      << ex.status();
}

TEST(CudaExecutor, RejectsWrongInputs) {
  PTC_SKIP_WITHOUT_CUDA_DEVICE();
  plan::Plan p = TinyPlan(64);
  auto ex = Executor::Create(p);
  ASSERT_TRUE(ex.ok()) << ex.status();
  auto out = (*ex)->Run({{"x", ir::Tensor(ir::DType::kF32, {5})}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("f32[4]"), std::string::npos) << out.status();
  out = (*ex)->Run({});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("missing input 'x'"), std::string::npos) << out.status();
}

}  // namespace
}  // namespace ptc::cuda
