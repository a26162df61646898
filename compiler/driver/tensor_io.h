// ONNX TensorProto files (the ONNX test-data convention: input_0.pb, output_0.pb) <-> ir::Tensor.
#ifndef PTC_COMPILER_DRIVER_TENSOR_IO_H_
#define PTC_COMPILER_DRIVER_TENSOR_IO_H_

#include <random>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::driver {

struct NamedTensor {
  std::string name;  // TensorProto.name ("" when unnamed)
  ir::Tensor tensor;
};

// Reads a serialized TensorProto (raw_data or typed fields). Untrusted: sizes are checked.
absl::StatusOr<NamedTensor> ReadTensorFile(const std::string& path);
absl::StatusOr<NamedTensor> ParseTensorProto(const std::string& bytes, const std::string& where);
// `ptc run --random-inputs` (and ptc-cuda): floats uniform in [-1, 1), integer inputs 0 or 1
// (small non-negative token ids fit any vocabulary), other dtypes zeros.
ir::Tensor RandomTensor(const ir::TensorType& type, std::mt19937_64& rng);
// Writes atomically (temp file + rename).
absl::Status WriteTensorFile(const std::string& path, const std::string& name,
                             const ir::Tensor& tensor);

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_TENSOR_IO_H_
