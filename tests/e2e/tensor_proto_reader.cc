#include "tests/e2e/tensor_proto_reader.h"

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "onnx/onnx_pb.h"

namespace ptc::e2e {
namespace {

absl::StatusOr<ir::DType> ToDType(int onnx_type, const std::string& path) {
  switch (onnx_type) {
    case onnx::TensorProto::FLOAT: return ir::DType::kF32;
    case onnx::TensorProto::DOUBLE: return ir::DType::kF64;
    case onnx::TensorProto::FLOAT16: return ir::DType::kF16;
    case onnx::TensorProto::BFLOAT16: return ir::DType::kBF16;
    case onnx::TensorProto::INT8: return ir::DType::kI8;
    case onnx::TensorProto::UINT8: return ir::DType::kU8;
    case onnx::TensorProto::INT32: return ir::DType::kI32;
    case onnx::TensorProto::INT64: return ir::DType::kI64;
    case onnx::TensorProto::BOOL: return ir::DType::kBool;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": TensorProto data_type ", onnx_type, " is not supported by the "
                       "e2e reader (float, double, float16, bfloat16, int8, uint8, int32, int64, "
                       "bool)"));
  }
}

// Narrows the int32_data field (which ONNX uses for every type of 4 bytes or less) to `T`.
template <typename T>
std::vector<T> Narrow(const google::protobuf::RepeatedField<int32_t>& field) {
  std::vector<T> out(field.size());
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<T>(field.Get(i));
  return out;
}

template <typename T, typename Field>
std::vector<T> Copy(const Field& field) {
  return std::vector<T>(field.begin(), field.end());
}

}  // namespace

absl::StatusOr<NamedTensor> ReadTensorProtoFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open tensor file"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string bytes = buffer.str();
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a serialized onnx.TensorProto (", bytes.size(), " bytes)"));
  }
  if (proto.has_data_location() && proto.data_location() == onnx::TensorProto::EXTERNAL) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": external tensor data not supported"));
  }
  auto dtype_or = ToDType(proto.data_type(), path);
  if (!dtype_or.ok()) return dtype_or.status();
  const ir::DType dtype = *dtype_or;
  ir::Shape shape(proto.dims().begin(), proto.dims().end());
  const int64_t count = ir::NumElements(shape);
  if (count < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": invalid dims ", ir::ShapeToString(shape)));
  }
  const size_t elem = ir::DTypeSize(dtype);
  const size_t nbytes = static_cast<size_t>(count) * elem;

  std::vector<uint8_t> data;
  auto take = [&](const void* p, size_t n) {
    data.resize(n);
    if (n > 0) std::memcpy(data.data(), p, n);
  };
  if (proto.has_raw_data()) {
    take(proto.raw_data().data(), proto.raw_data().size());
  } else {
    switch (dtype) {
      case ir::DType::kF32: {
        auto v = Copy<float>(proto.float_data());
        take(v.data(), v.size() * sizeof(float));
        break;
      }
      case ir::DType::kF64: {
        auto v = Copy<double>(proto.double_data());
        take(v.data(), v.size() * sizeof(double));
        break;
      }
      case ir::DType::kI64: {
        auto v = Copy<int64_t>(proto.int64_data());
        take(v.data(), v.size() * sizeof(int64_t));
        break;
      }
      case ir::DType::kI32: {
        auto v = Copy<int32_t>(proto.int32_data());
        take(v.data(), v.size() * sizeof(int32_t));
        break;
      }
      case ir::DType::kF16:
      case ir::DType::kBF16: {
        auto v = Narrow<uint16_t>(proto.int32_data());
        take(v.data(), v.size() * sizeof(uint16_t));
        break;
      }
      case ir::DType::kI8: {
        auto v = Narrow<int8_t>(proto.int32_data());
        take(v.data(), v.size());
        break;
      }
      case ir::DType::kU8:
      case ir::DType::kBool: {
        auto v = Narrow<uint8_t>(proto.int32_data());
        take(v.data(), v.size());
        break;
      }
    }
  }
  if (data.size() != nbytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": tensor ", proto.name(), " of type ",
                     ir::TensorType{dtype, shape}.ToString(), " needs ", nbytes, " bytes but the file holds ",
                     data.size()));
  }
  return NamedTensor{proto.name(), ir::Tensor::FromBytes(dtype, shape, data.data(), data.size())};
}

}  // namespace ptc::e2e
