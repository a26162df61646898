// Shared by models/*_test.cc: ONNX checks, initializer access, and running a built model with
// ptc (import -> driver -> CPU executor).
#ifndef PTC_MODELS_MODEL_TEST_UTIL_H_
#define PTC_MODELS_MODEL_TEST_UTIL_H_

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compiler/driver/driver.h"
#include "compiler/onnx/importer.h"
#include "onnx/checker.h"
#include "onnx/onnx_pb.h"
#include "onnx/shape_inference/implementation.h"
#include "runtime/cpu/executor.h"

namespace ptc::models::testing {

// onnx::checker plus strict ONNX shape inference (type checks, node errors thrown). Returns ""
// when clean, else the error. `inferred` (optional) receives the model with inferred shapes.
inline std::string CheckOnnx(const onnx::ModelProto& model, onnx::ModelProto* inferred = nullptr) {
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto copy = model;
    onnx::ShapeInferenceOptions options(/*check_type_val=*/true, /*strict_mode_val=*/1,
                                        /*data_prop_val=*/true);
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(), options);
    if (inferred) *inferred = std::move(copy);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline int64_t Elements(const onnx::TensorProto& t) {
  int64_t n = 1;
  for (int64_t d : t.dims()) n *= d;
  return n;
}

inline int64_t InitializerElements(const onnx::ModelProto& model) {
  int64_t n = 0;
  for (const auto& t : model.graph().initializer()) n += Elements(t);
  return n;
}

// f32 initializers (raw_data) by name, widened to double for references.
inline std::map<std::string, std::vector<double>> Weights(const onnx::ModelProto& model) {
  std::map<std::string, std::vector<double>> out;
  for (const auto& t : model.graph().initializer()) {
    std::vector<double>& w = out[t.name()];
    const int64_t n = Elements(t);
    w.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      float f;
      std::memcpy(&f, t.raw_data().data() + i * sizeof(float), sizeof(float));
      w[i] = f;
    }
  }
  return out;
}

// Bias and norm initializers start at 0 / 1, which would hide a dropped bias or scale: replace
// them (names ending in "bias" or containing "norm" / "ln_") with deterministic values around
// 0 and 1.
inline void PerturbBiasesAndNorms(onnx::ModelProto* model) {
  uint64_t state = 12345;
  auto next = [&] {  // LCG in [-0.5, 0.5)
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<double>(state >> 11) * 0x1.0p-53 - 0.5;
  };
  for (auto& t : *model->mutable_graph()->mutable_initializer()) {
    const bool bias = absl::EndsWith(t.name(), "bias");
    const bool norm = absl::StrContains(t.name(), "norm") || absl::StrContains(t.name(), "ln_");
    if (!bias && !norm) continue;
    float* p = reinterpret_cast<float*>(t.mutable_raw_data()->data());
    for (int64_t i = 0; i < Elements(t); ++i) {
      p[i] = static_cast<float>(bias ? 0.2 * next() : 1.0 + 0.4 * next());
    }
  }
}

inline ir::Tensor I64Tensor(const std::vector<int64_t>& values, ir::Shape shape) {
  return ir::Tensor::FromVector(ir::DType::kI64, std::move(shape), values);
}

// Imports (binding `dims`), compiles with the default pipeline and runs on the CPU.
inline absl::StatusOr<std::vector<ir::Tensor>> RunWithPtc(
    const onnx::ModelProto& model, const std::map<std::string, int64_t>& dims,
    const std::map<std::string, ir::Tensor>& inputs, const std::string& passes = "default") {
  onnx_import::ImportOptions import_options;
  import_options.dims = dims;
  auto module =
      onnx_import::ImportOnnxBytes(model.SerializeAsString(), "", "models_test", import_options);
  if (!module.ok()) return module.status();
  driver::CompileOptions options;
  options.dims = dims;
  options.passes = passes;
  auto plan = driver::CompileModule(*std::move(module), options);
  if (!plan.ok()) return plan.status();
  auto executor = cpu::Executor::Create(*plan);
  if (!executor.ok()) return executor.status();
  return (*executor)->Run(inputs);
}

// |got - want| <= rtol * (|want| + max|want|): relative to each element, with a floor scaled
// to the tensor so that near-zero elements are judged against the tensor's magnitude.
inline std::string CompareToReference(const ir::Tensor& got, const std::vector<double>& want,
                                      double rtol) {
  if (got.num_elements() != static_cast<int64_t>(want.size())) {
    return absl::StrCat("got ", got.num_elements(), " elements, want ", want.size());
  }
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  double worst = 0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < got.num_elements(); ++i) {
    const double g = got.GetDouble(i);
    const double err = std::fabs(g - want[i]) / (std::fabs(want[i]) + scale);
    if (!(err <= worst)) {  // also catches NaN
      worst = std::isnan(err) ? INFINITY : err;
      worst_i = i;
    }
  }
  if (worst <= rtol) return "";
  return absl::StrCat("max relative error ", worst, " > ", rtol, " at [", worst_i, "]: got ",
                      got.GetDouble(worst_i), ", want ", want[worst_i], " (max |want| ", scale,
                      ")");
}

}  // namespace ptc::models::testing

#endif  // PTC_MODELS_MODEL_TEST_UTIL_H_
