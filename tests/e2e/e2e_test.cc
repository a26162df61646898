// End-to-end: every model under tests/data/e2e/ (PyTorch references, see make_references.py) is
// compiled with ptc's driver (the default pipeline and passes=none), run with the CPU executor
// and compared with the outputs PyTorch computed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/driver/driver.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/cpu/executor.h"
#include "tests/e2e/tensor_proto_reader.h"

namespace ptc::e2e {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string DataDir() {
  if (const char* env = std::getenv("PTC_E2E_DATA_DIR")) return env;
  return PTC_E2E_DATA_DIR;
}

// Case folders (those with a meta.json), sorted for a stable test order.
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

struct Case {
  json meta;
  std::vector<NamedTensor> inputs;
  std::vector<NamedTensor> outputs;
};

// Loads meta.json and every input_<i>.pb / output_<i>.pb (consecutive from 0).
absl::StatusOr<Case> LoadCase(const fs::path& dir) {
  Case c;
  std::ifstream meta_file(dir / "meta.json");
  if (!meta_file) return absl::NotFoundError(absl::StrCat((dir / "meta.json").string(), ": missing"));
  c.meta = json::parse(meta_file, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (c.meta.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat((dir / "meta.json").string(), ": bad JSON"));
  }
  for (auto [prefix, list] : {std::pair{"input_", &c.inputs}, std::pair{"output_", &c.outputs}}) {
    for (int i = 0;; ++i) {
      fs::path p = dir / absl::StrCat(prefix, i, ".pb");
      if (!fs::exists(p)) break;
      auto t = ReadTensorProtoFile(p.string());
      if (!t.ok()) return t.status();
      list->push_back(*std::move(t));
    }
  }
  if (c.inputs.empty() || c.outputs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dir.string(), ": no input_0.pb / output_0.pb"));
  }
  return c;
}

struct Comparison {
  std::string error;  // "" when close
  double max_abs = 0;
  double max_rel = 0;
};

// numpy.allclose semantics: |got - want| <= atol + rtol * |want|, NaN only where NaN is expected.
// On failure `error` describes the first and the worst elements.
Comparison Compare(const ir::Tensor& got, const ir::Tensor& want, double rtol, double atol) {
  if (got.dtype() != want.dtype() || got.shape() != want.shape()) {
    return {absl::StrCat("type mismatch: got ", got.type().ToString(), ", want ",
                         want.type().ToString())};
  }
  const bool exact = !ir::IsFloat(want.dtype());
  const int64_t n = want.num_elements();
  int64_t bad = 0, first_bad = -1, worst = -1;
  double max_abs = 0, max_rel = 0, worst_excess = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double g = got.GetDouble(i), w = want.GetDouble(i);
    bool ok;
    double abs_err;
    if (std::isnan(w) || std::isnan(g)) {
      ok = std::isnan(w) && std::isnan(g);
      abs_err = ok ? 0 : INFINITY;
    } else if (std::isinf(w) || std::isinf(g)) {
      ok = g == w;
      abs_err = ok ? 0 : INFINITY;
    } else {
      abs_err = std::fabs(g - w);
      ok = exact ? g == w : abs_err <= atol + rtol * std::fabs(w);
    }
    const double rel = abs_err / std::max(std::fabs(w), 1e-30);
    max_abs = std::max(max_abs, abs_err);
    max_rel = std::max(max_rel, rel);
    if (!ok) {
      ++bad;
      if (first_bad < 0) first_bad = i;
      const double excess = abs_err - (atol + rtol * std::fabs(w));
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return {"", max_abs, max_rel};
  return {absl::StrFormat(
      "%d of %d elements of %s differ (rtol %g, atol %g): max abs err %g, max rel err %g; "
      "first bad [%d] got %.9g want %.9g; worst [%d] got %.9g want %.9g",
      bad, n, want.type().ToString(), rtol, atol, max_abs, max_rel, first_bad,
      got.GetDouble(first_bad), want.GetDouble(first_bad), worst, got.GetDouble(worst),
      want.GetDouble(worst)), max_abs, max_rel};
}

TEST(E2eDataTest, ReferenceCasesArePresent) {
  const std::vector<std::string> names = CaseNames();
  // gpt, gpt_loss, seq2seq, llama and llama_loss at opset 14 and 17 (make_references.py).
  EXPECT_GE(names.size(), 10u) << "reference cases under " << DataDir();
  for (const std::string& name : names) {
    auto c = LoadCase(fs::path(DataDir()) / name);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->inputs.size(), c->meta["inputs"].size()) << name;
    EXPECT_EQ(c->outputs.size(), c->meta["outputs"].size()) << name;
    EXPECT_TRUE(fs::exists(fs::path(DataDir()) / name / c->meta.value("model", "model.onnx")))
        << name;
  }
}

TEST(E2eDataTest, ReaderRejectsGarbage) {
  const fs::path p = fs::temp_directory_path() / "ptc_e2e_garbage.pb";
  {
    std::ofstream f(p, std::ios::binary);
    f << "\x08\x02\x08\x03\x10\x01";  // dims [2, 3], FLOAT, but no data
  }
  auto t = ReadTensorProtoFile(p.string());
  EXPECT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("needs 24 bytes"), std::string::npos) << t.status();
  fs::remove(p);
}

class E2eModelTest : public testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(E2eModelTest, MatchesPyTorch) {
  const auto& [name, passes] = GetParam();
  const fs::path dir = fs::path(DataDir()) / name;
  auto loaded = LoadCase(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Case& c = *loaded;
  const double rtol = c.meta.value("rtol", 1e-4);
  const double atol = c.meta.value("atol", 1e-5);

  driver::CompileOptions options;
  options.passes = passes;
  for (const auto& [dim, value] : c.meta["dims"].items()) options.dims[dim] = value.get<int64_t>();
  const std::string model_path = (dir / c.meta.value("model", "model.onnx")).string();
  driver::CompileReport report;
  auto plan = driver::CompileOnnxFile(model_path, options, &report);
  ASSERT_TRUE(plan.ok()) << "compiling " << model_path << " (passes=" << passes
                         << "): " << plan.status();
  auto executor = cpu::Executor::Create(*plan);
  ASSERT_TRUE(executor.ok()) << executor.status();

  // Feed by graph input name; fall back to position among main's non-weight parameters.
  std::vector<const ir::Value*> data_params;
  for (const ir::Value* p : plan->module->main()->params()) {
    if (!p->is_param()) data_params.push_back(p);
  }
  ASSERT_EQ(data_params.size(), c.inputs.size()) << "data parameters of main vs input_*.pb";
  std::map<std::string, ir::Tensor> feeds;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const bool by_name = std::any_of(data_params.begin(), data_params.end(),
                                     [&](const ir::Value* p) { return p->name() == c.inputs[i].name; });
    feeds[by_name ? c.inputs[i].name : data_params[i]->name()] = c.inputs[i].tensor;
  }

  // Twice: the second run reuses the arena and must not see the first run's leftovers.
  for (int run = 0; run < 2; ++run) {
    auto outputs = (*executor)->Run(feeds);
    ASSERT_TRUE(outputs.ok()) << outputs.status();
    ASSERT_EQ(outputs->size(), c.outputs.size());
    for (size_t i = 0; i < c.outputs.size(); ++i) {
      const Comparison cmp = Compare((*outputs)[i], c.outputs[i].tensor, rtol, atol);
      EXPECT_TRUE(cmp.error.empty())
          << name << " passes=" << passes << " run " << run << " output " << i << " ("
          << c.outputs[i].name << "): " << cmp.error << "\n(nodes " << report.nodes_before
          << " -> " << report.nodes_after << ")";
      if (run == 0) {
        std::printf("%s passes=%s output %s: max abs err %.3g, max rel err %.3g (nodes %lld -> "
                    "%lld)\n",
                    name.c_str(), passes.c_str(), c.outputs[i].name.c_str(), cmp.max_abs,
                    cmp.max_rel, static_cast<long long>(report.nodes_before),
                    static_cast<long long>(report.nodes_after));
      }
    }
  }
}

std::string TestName(const testing::TestParamInfo<E2eModelTest::ParamType>& info) {
  std::string s = absl::StrCat(std::get<0>(info.param), "_passes_", std::get<1>(info.param));
  for (char& ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return s;
}

INSTANTIATE_TEST_SUITE_P(Cases, E2eModelTest,
                         testing::Combine(testing::ValuesIn(CaseNames()),
                                          testing::Values("default", "none")),
                         TestName);

}  // namespace
}  // namespace ptc::e2e
