// Runs ONNX's backend node tests for every op ptc claims and prints `N passed, N failed`.
//
// A test is selected when every op in its model is in the importer's supported list
// (onnx_import::SupportedOnnxOps). Each test_data_set_* is compiled with the default passes,
// run on the CPU executor, and compared with the test's outputs using ONNX's backend
// tolerances (rtol 1e-3, atol 1e-7). Tests listed in the exclusion file (one name per line,
// `name  # reason`) are skipped and reported; an exclusion without a reason is an error, and an
// excluded test that now passes is reported so the list can shrink.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "compiler/driver/driver.h"
#include "compiler/driver/tensor_io.h"
#include "compiler/onnx/importer.h"
#include "compiler/support/status.h"
#include "onnx/onnx_pb.h"
#include "runtime/cpu/executor.h"

namespace fs = std::filesystem;
using ptc::ir::Tensor;

namespace {

struct Args {
  std::string data = "/usr/share/libonnx-testdata/data/node";
  std::string exclude;
  std::string filter;  // substring of test names
  bool verbose = false;
};

absl::StatusOr<std::map<std::string, std::string>> ReadExclusions(const std::string& path) {
  std::map<std::string, std::string> out;
  if (path.empty()) return out;
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open exclusion list ", path));
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    absl::string_view s = absl::StripAsciiWhitespace(line);
    if (s.empty() || s[0] == '#') continue;
    size_t hash = s.find('#');
    if (hash == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", lineno, ": exclusion without a reason (`name  # reason`)"));
    }
    std::string name(absl::StripAsciiWhitespace(s.substr(0, hash)));
    out[name] = std::string(absl::StripAsciiWhitespace(s.substr(hash + 1)));
  }
  return out;
}

absl::StatusOr<onnx::ModelProto> ReadModel(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::ModelProto m;
  if (!in || !m.ParseFromIstream(&in)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot parse ", path));
  }
  return m;
}

bool Close(const Tensor& got, const Tensor& want, std::string* why) {
  if (got.type() != want.type()) {
    *why = absl::StrCat("type ", got.type().ToString(), " != expected ", want.type().ToString());
    return false;
  }
  int64_t n = got.num_elements();
  bool is_float = ptc::ir::IsFloat(got.dtype());
  for (int64_t i = 0; i < n; ++i) {
    double g = got.GetDouble(i), w = want.GetDouble(i);
    if (is_float) {
      if (std::isnan(w) && std::isnan(g)) continue;
      if (std::isinf(w) && g == w) continue;
      if (!(std::fabs(g - w) <= 1e-7 + 1e-3 * std::fabs(w))) {
        *why = absl::StrCat("element ", i, ": got ", g, ", expected ", w);
        return false;
      }
    } else if (got.GetInt(i) != want.GetInt(i)) {
      *why = absl::StrCat("element ", i, ": got ", got.GetInt(i), ", expected ", want.GetInt(i));
      return false;
    }
  }
  return true;
}

// Compiles the test's model and runs one data set. When the model computes shapes from
// graph inputs (Reshape's shape, Slice's starts, Range's bounds), ptc needs them constant: the
// first attempt binds nothing; if import fails, the integer inputs of the data set (then, if
// still needed, all of them) are bound as values (ImportOptions::input_values) and the model
// is recompiled for that data set.
absl::Status RunDataSet(const fs::path& dir, const fs::path& set,
                        const std::vector<std::string>& input_names) {
  std::map<std::string, Tensor> inputs;
  for (size_t i = 0; i < input_names.size(); ++i) {
    fs::path p = set / absl::StrCat("input_", i, ".pb");
    if (!fs::exists(p)) continue;  // optional input left out
    PTC_ASSIGN_OR_RETURN(auto t, ptc::driver::ReadTensorFile(p.string()));
    inputs[input_names[i]] = std::move(t.tensor);
  }
  std::string model_path = (dir / "model.onnx").string();
  ptc::driver::CompileOptions opts;
  absl::StatusOr<ptc::plan::Plan> plan = ptc::driver::CompileOnnxFile(model_path, opts);
  if (!plan.ok()) {
    ptc::onnx_import::ImportOptions iopts;
    // Integer inputs first (shapes, axes, indices); then everything (Range over floats).
    for (const auto& [name, t] : inputs) {
      if (!ptc::ir::IsFloat(t.dtype())) iopts.input_values[name] = t;
    }
    if (!ptc::onnx_import::ImportOnnxFile(model_path, iopts).ok()) {
      for (const auto& [name, t] : inputs) iopts.input_values[name] = t;
    }
    if (iopts.input_values.empty()) return plan.status();
    auto module = ptc::onnx_import::ImportOnnxFile(model_path, iopts);
    if (!module.ok()) return module.status();
    plan = ptc::driver::CompileModule(std::move(*module), opts);
    if (!plan.ok()) return plan.status();
  }
  PTC_ASSIGN_OR_RETURN(auto exec, ptc::cpu::Executor::Create(*plan));
  // Inputs the compiled function no longer takes (bound as values) are dropped.
  std::map<std::string, Tensor> feed;
  for (const ptc::ir::Value* p : plan->module->main()->params()) {
    auto it = inputs.find(p->name());
    if (it != inputs.end()) feed[p->name()] = it->second;
  }
  PTC_ASSIGN_OR_RETURN(auto outs, exec->Run(feed));
  for (size_t i = 0; i < outs.size(); ++i) {
    fs::path p = set / absl::StrCat("output_", i, ".pb");
    PTC_ASSIGN_OR_RETURN(auto want, ptc::driver::ReadTensorFile(p.string()));
    std::string why;
    if (!Close(outs[i], want.tensor, &why)) {
      return absl::InternalError(absl::StrCat(set.filename().string(), " output ", i, ": ", why));
    }
  }
  return absl::OkStatus();
}

absl::Status RunTest(const fs::path& dir, const onnx::ModelProto& model) {
  std::set<std::string> initializers;
  for (const auto& init : model.graph().initializer()) initializers.insert(init.name());
  std::vector<std::string> input_names;
  for (const auto& in : model.graph().input()) {
    if (!initializers.count(in.name())) input_names.push_back(in.name());
  }
  std::vector<fs::path> sets;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) {
      sets.push_back(e.path());
    }
  }
  std::sort(sets.begin(), sets.end());
  for (const fs::path& set : sets) PTC_RETURN_IF_ERROR(RunDataSet(dir, set, input_names));
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--data") args.data = next();
    else if (a == "--exclude") args.exclude = next();
    else if (a == "--filter") args.filter = next();
    else if (a == "-v" || a == "--verbose") args.verbose = true;
    else if (a == "--help" || a == "-h") {
      std::printf("usage: ptc_conformance [--data DIR] [--exclude FILE] [--filter SUBSTR] [-v]\n");
      return 0;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  auto excluded = ReadExclusions(args.exclude);
  if (!excluded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(excluded.status().message()).c_str());
    return 2;
  }
  if (!fs::exists(args.data)) {
    std::fprintf(stderr, "error: %s not found: install Debian's libonnx-testdata\n", args.data.c_str());
    return 2;
  }
  std::set<std::string> supported;
  for (const auto& op : ptc::onnx_import::SupportedOnnxOps()) supported.insert(op);
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(args.data)) {
    if (e.is_directory()) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  int passed = 0, failed = 0, skipped = 0, unexpected_pass = 0;
  for (const fs::path& dir : dirs) {
    std::string name = dir.filename().string();
    if (!args.filter.empty() && name.find(args.filter) == std::string::npos) continue;
    auto model = ReadModel((dir / "model.onnx").string());
    if (!model.ok()) continue;
    bool claimed = model->graph().node_size() > 0;
    std::set<std::string> ops;
    for (const auto& n : model->graph().node()) {
      ops.insert(n.op_type());
      if (!n.domain().empty() && n.domain() != "ai.onnx") claimed = false;
      if (!supported.count(n.op_type())) claimed = false;
    }
    if (!claimed) continue;
    std::string op = *ops.begin();
    absl::Status st = RunTest(dir, *model);
    auto ex = excluded->find(name);
    if (ex != excluded->end()) {
      ++skipped;
      if (st.ok()) {
        ++unexpected_pass;
        std::printf("UNEXPECTED PASS %s (excluded: %s)\n", name.c_str(), ex->second.c_str());
      } else if (args.verbose) {
        std::printf("excluded %s: %s\n", name.c_str(), ex->second.c_str());
      }
      continue;
    }
    if (st.ok()) {
      ++passed;
      if (args.verbose) std::printf("ok   %s\n", name.c_str());
    } else {
      ++failed;
      std::string msg(st.message());
      std::replace(msg.begin(), msg.end(), '\n', ' ');
      if (msg.size() > 300) msg = msg.substr(0, 300) + "...";
      std::printf("FAIL %s: %s\n", name.c_str(), msg.c_str());
    }
  }
  std::printf("excluded (with reasons in the list): %d\n", skipped);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 && unexpected_pass == 0 ? 0 : 1;
}
