// Reads ONNX TensorProto files (the ONNX test-data convention: input_0.pb, output_0.pb) into
// ir::Tensor, for the end-to-end tests. Deliberately independent of ptc's own importer and
// tensor I/O, so that a bug there cannot hide in the reference side of the comparison.
#ifndef PTC_TESTS_E2E_TENSOR_PROTO_READER_H_
#define PTC_TESTS_E2E_TENSOR_PROTO_READER_H_

#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::e2e {

struct NamedTensor {
  std::string name;  // TensorProto.name
  ir::Tensor tensor;
};

// Supports float, double, float16, int8/uint8/int32/int64 and bool, stored as raw_data or in
// the typed repeated fields. Errors name the file and the problem.
absl::StatusOr<NamedTensor> ReadTensorProtoFile(const std::string& path);

}  // namespace ptc::e2e

#endif  // PTC_TESTS_E2E_TENSOR_PROTO_READER_H_
