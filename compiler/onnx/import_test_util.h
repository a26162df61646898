// Helpers of the importer's tests (importer_test.cc, opset_adapter_test.cc): import a
// ModelBuilder's model and verify it, find nodes, read folded results.
#ifndef PTC_COMPILER_ONNX_IMPORT_TEST_UTIL_H_
#define PTC_COMPILER_ONNX_IMPORT_TEST_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/ir/verifier.h"
#include "compiler/onnx/importer.h"
#include "compiler/onnx/onnx_test_util.h"
#include "gtest/gtest.h"

namespace ptc::onnx_import::testing {

constexpr int F32 = onnx::TensorProto::FLOAT;
constexpr int I64 = onnx::TensorProto::INT64;
constexpr int BOOL = onnx::TensorProto::BOOL;

// ImportOnnxBytes under the name "test.onnx", then ir::Verify.
inline absl::StatusOr<std::unique_ptr<ir::Module>> Import(const ModelBuilder& b,
                                                          const ImportOptions& options = {}) {
  auto m = ImportOnnxBytes(b.Bytes(), "", "test.onnx", options);
  if (m.ok()) {
    absl::Status v = ir::Verify(**m);
    if (!v.ok()) return absl::InternalError(absl::StrCat("verifier: ", v.message()));
  }
  return m;
}

// The nodes of @main with op `op` (all when "").
inline std::vector<const ir::Node*> Nodes(const ir::Module& m, const std::string& op = "") {
  std::vector<const ir::Node*> out;
  for (const auto& n : m.main()->nodes()) {
    if (op.empty() || n->op() == op) out.push_back(n.get());
  }
  return out;
}

inline ir::TensorType T(ir::DType d, ir::Shape s) { return ir::TensorType{d, std::move(s)}; }

// The constant value of result `i` (an inline constant node: the result folded).
inline std::vector<double> ResultConstant(const ir::Module& m, int i) {
  const ir::Value* r = m.main()->results()[i];
  EXPECT_NE(r->producer(), nullptr);
  if (r->producer() == nullptr) return {};
  EXPECT_EQ(r->producer()->op(), "constant");
  auto t = r->producer()->GetTensor("value");
  EXPECT_TRUE(t.ok()) << t.status();
  if (!t.ok()) return {};
  std::vector<double> v;
  for (int64_t k = 0; k < t->num_elements(); ++k) v.push_back(t->GetDouble(k));
  return v;
}

// The message of the import's error; a failure when it imports.
inline std::string ImportError(const ModelBuilder& b) {
  auto m = Import(b);
  EXPECT_FALSE(m.ok()) << "imported, expected an error";
  return m.ok() ? std::string() : std::string(m.status().message());
}

}  // namespace ptc::onnx_import::testing

#endif  // PTC_COMPILER_ONNX_IMPORT_TEST_UTIL_H_
