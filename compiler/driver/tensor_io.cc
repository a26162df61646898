#include "compiler/driver/tensor_io.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "onnx/onnx_pb.h"

namespace ptc::driver {
namespace {

absl::StatusOr<ir::DType> FromOnnxType(int t, const std::string& where) {
  switch (t) {
    case onnx::TensorProto::FLOAT: return ir::DType::kF32;
    case onnx::TensorProto::FLOAT16: return ir::DType::kF16;
    case onnx::TensorProto::BFLOAT16: return ir::DType::kBF16;
    case onnx::TensorProto::DOUBLE: return ir::DType::kF64;
    case onnx::TensorProto::INT8: return ir::DType::kI8;
    case onnx::TensorProto::UINT8: return ir::DType::kU8;
    case onnx::TensorProto::INT32: return ir::DType::kI32;
    case onnx::TensorProto::INT64: return ir::DType::kI64;
    case onnx::TensorProto::BOOL: return ir::DType::kBool;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": tensor data type ", t, " is not supported by ptc"));
  }
}

int ToOnnxType(ir::DType d) {
  switch (d) {
    case ir::DType::kF32: return onnx::TensorProto::FLOAT;
    case ir::DType::kF16: return onnx::TensorProto::FLOAT16;
    case ir::DType::kBF16: return onnx::TensorProto::BFLOAT16;
    case ir::DType::kF64: return onnx::TensorProto::DOUBLE;
    case ir::DType::kI8: return onnx::TensorProto::INT8;
    case ir::DType::kU8: return onnx::TensorProto::UINT8;
    case ir::DType::kI32: return onnx::TensorProto::INT32;
    case ir::DType::kI64: return onnx::TensorProto::INT64;
    case ir::DType::kBool: return onnx::TensorProto::BOOL;
  }
  return onnx::TensorProto::UNDEFINED;
}

}  // namespace

absl::StatusOr<NamedTensor> ParseTensorProto(const std::string& bytes, const std::string& where) {
  onnx::TensorProto tp;
  if (!tp.ParseFromString(bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a serialized ONNX TensorProto"));
  }
  PTC_ASSIGN_OR_RETURN(ir::DType dtype, FromOnnxType(tp.data_type(), where));
  ir::Shape shape(tp.dims().begin(), tp.dims().end());
  ir::TensorType type{dtype, shape};
  int64_t nbytes = type.byte_size();
  if (nbytes < 0 || nbytes > (int64_t{1} << 36)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": declared shape ", type.ToString(), " is invalid or too large"));
  }
  if (tp.has_data_location() && tp.data_location() == onnx::TensorProto::EXTERNAL) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": external data is not supported here"));
  }
  int64_t n = type.num_elements();
  ir::Tensor t;
  if (tp.has_raw_data()) {
    if (static_cast<int64_t>(tp.raw_data().size()) != nbytes) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": raw_data has ", tp.raw_data().size(),
                                                     " bytes but ", type.ToString(), " needs ",
                                                     nbytes));
    }
    t = ir::Tensor::FromBytes(dtype, shape, tp.raw_data().data(), nbytes);
  } else {
    t = ir::Tensor(dtype, shape);
    auto mismatch = [&](int64_t have) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor has ", have,
                                                     " values but ", type.ToString(), " needs ", n));
    };
    switch (dtype) {
      case ir::DType::kF32:
        if (tp.float_data_size() != n) return mismatch(tp.float_data_size());
        std::memcpy(t.mutable_data(), tp.float_data().data(), nbytes);
        break;
      case ir::DType::kF64:
        if (tp.double_data_size() != n) return mismatch(tp.double_data_size());
        std::memcpy(t.mutable_data(), tp.double_data().data(), nbytes);
        break;
      case ir::DType::kI64:
        if (tp.int64_data_size() != n) return mismatch(tp.int64_data_size());
        std::memcpy(t.mutable_data(), tp.int64_data().data(), nbytes);
        break;
      default: {  // int32_data carries i32, i8, u8, bool, f16 and bf16 bits
        if (tp.int32_data_size() != n) return mismatch(tp.int32_data_size());
        for (int64_t i = 0; i < n; ++i) {
          int32_t v = tp.int32_data(i);
          char* p = static_cast<char*>(t.mutable_data());
          switch (dtype) {
            case ir::DType::kI32: reinterpret_cast<int32_t*>(p)[i] = v; break;
            case ir::DType::kF16:
            case ir::DType::kBF16: reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(v); break;
            case ir::DType::kBool: reinterpret_cast<uint8_t*>(p)[i] = v != 0; break;
            default: reinterpret_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); break;
          }
        }
      }
    }
  }
  return NamedTensor{tp.name(), std::move(t)};
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
  tp.set_name(name);
  tp.set_data_type(ToOnnxType(tensor.dtype()));
  for (int64_t d : tensor.shape()) tp.add_dims(d);
  tp.set_raw_data(std::string(static_cast<const char*>(tensor.data()), tensor.nbytes()));
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

}  // namespace ptc::driver
