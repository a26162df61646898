// Helpers shared by the ONNX importer and exporter: dtype mapping, TensorProto <-> ir::Tensor
// (typed fields, raw_data, external data confined to the model's folder).
#ifndef PTC_COMPILER_ONNX_ONNX_UTIL_H_
#define PTC_COMPILER_ONNX_ONNX_UTIL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "onnx/onnx_pb.h"

namespace ptc::onnx_import {

// ONNX TensorProto::DataType -> ir::DType; an error names the ONNX type for unsupported ones.
absl::StatusOr<ir::DType> DTypeFromOnnx(int32_t elem_type);
int32_t DTypeToOnnx(ir::DType dtype);
std::string OnnxDTypeName(int32_t elem_type);  // "FLOAT", "STRING", ... or "type 42"

// Checks a shape from an untrusted file: dims >= 0, element and byte counts fit int64.
absl::Status CheckShape(const ir::Shape& shape, ir::DType dtype);

// Reads external data (ONNX `location` / `offset` / `length`) from files under one folder.
// Paths must be relative, without `..`, and must not resolve (through symlinks) outside the
// folder. Files are mapped once (copy-on-write, so tensors stay writable) and shared.
class ExternalDataReader {
 public:
  // `base_dir` == "" forbids external data.
  explicit ExternalDataReader(std::string base_dir) : base_dir_(std::move(base_dir)) {}
  absl::StatusOr<ir::Tensor> Read(const onnx::TensorProto& proto, ir::DType dtype,
                                  const ir::Shape& shape);

 private:
  struct Mapping {
    std::shared_ptr<void> owner;  // munmap on release
    const char* data = nullptr;
    size_t size = 0;
  };
  absl::StatusOr<Mapping*> Map(const std::string& location);

  std::string base_dir_;
  std::string real_base_;
  std::map<std::string, Mapping> files_;
};

// TensorProto -> ir::Tensor. `external` may be null (external data is then an error). Every
// size is checked against the declared dims before anything is allocated.
absl::StatusOr<ir::Tensor> TensorFromProto(const onnx::TensorProto& proto,
                                           ExternalDataReader* external);

// ir::Tensor -> TensorProto (raw_data, little endian).
void TensorToProto(const ir::Tensor& tensor, const std::string& name, onnx::TensorProto* proto);

}  // namespace ptc::onnx_import

#endif  // PTC_COMPILER_ONNX_ONNX_UTIL_H_
