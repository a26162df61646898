#include "compiler/driver/tensor_io.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "compiler/onnx/onnx_util.h"
#include "compiler/support/status.h"
#include "onnx/onnx_pb.h"

namespace ptc::driver {

absl::StatusOr<NamedTensor> ParseTensorProto(const std::string& bytes, const std::string& where) {
  onnx::TensorProto tp;
  if (!tp.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a serialized ONNX TensorProto"));
  }
  // The importer's conversion: every size checked against the dims before allocating; no
  // external data in a standalone tensor file.
  absl::StatusOr<ir::Tensor> t = onnx_import::TensorFromProto(tp, /*external=*/nullptr);
  if (!t.ok()) {
    return absl::Status(t.status().code(), absl::StrCat(where, ": ", t.status().message()));
  }
  return NamedTensor{tp.name(), std::move(*t)};
}

absl::StatusOr<NamedTensor> ReadTensorFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tensor file '", path, "'"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseTensorProto(ss.str(), path);
}

absl::Status WriteTensorFile(const std::string& path, const std::string& name,
                             const ir::Tensor& tensor) {
  onnx::TensorProto tp;
  onnx_import::TensorToProto(tensor, name, &tp);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out || !tp.SerializeToOstream(&out)) {
      return absl::PermissionDeniedError(absl::StrCat("cannot write '", tmp, "'"));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("cannot rename '", tmp, "' to '", path, "'"));
  }
  return absl::OkStatus();
}

ir::Tensor RandomTensor(const ir::TensorType& type, std::mt19937_64& rng) {
  ir::Tensor t(type.dtype, type.shape);
  const int64_t n = t.num_elements();
  std::uniform_real_distribution<float> uf(-1.f, 1.f);
  switch (type.dtype) {
    case ir::DType::kF32:
      for (int64_t i = 0; i < n; ++i) t.mutable_data_as<float>()[i] = uf(rng);
      break;
    case ir::DType::kF64:
      for (int64_t i = 0; i < n; ++i) t.mutable_data_as<double>()[i] = uf(rng);
      break;
    case ir::DType::kI64:
      for (int64_t i = 0; i < n; ++i) t.mutable_data_as<int64_t>()[i] = static_cast<int64_t>(rng() % 2);
      break;
    case ir::DType::kI32:
      for (int64_t i = 0; i < n; ++i) t.mutable_data_as<int32_t>()[i] = static_cast<int32_t>(rng() % 2);
      break;
    default:
      break;  // zeros
  }
  return t;
}

}  // namespace ptc::driver
