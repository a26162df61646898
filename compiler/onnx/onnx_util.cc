#include "compiler/onnx/onnx_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "compiler/support/status.h"

namespace ptc::onnx_import {

absl::StatusOr<ir::DType> DTypeFromOnnx(int32_t elem_type) {
  switch (elem_type) {
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
      return absl::UnimplementedError(absl::StrCat(
          "ONNX element type ", OnnxDTypeName(elem_type),
          " is not supported by ptc (supported: FLOAT, FLOAT16, BFLOAT16, DOUBLE, INT8, UINT8, "
          "INT32, INT64, BOOL)"));
  }
}

int32_t DTypeToOnnx(ir::DType dtype) {
  switch (dtype) {
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

std::string OnnxDTypeName(int32_t elem_type) {
  if (onnx::TensorProto_DataType_IsValid(elem_type)) {
    return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(elem_type));
  }
  return absl::StrCat("type ", elem_type);
}

absl::Status CheckShape(const ir::Shape& shape, ir::DType dtype) {
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("negative dimension ", d, " in shape ", ir::ShapeToString(shape)));
    }
  }
  ir::TensorType t{dtype, shape};
  if (t.num_elements() < 0 || t.byte_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape ", ir::ShapeToString(shape), " has too many elements"));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// External data

namespace {

std::string JoinPath(const std::string& dir, const std::string& rel) {
  if (dir.empty()) return rel;
  if (dir.back() == '/') return dir + rel;
  return dir + "/" + rel;
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (r == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot resolve '", path, "': ", std::strerror(errno)));
  }
  std::string s(r);
  std::free(r);
  return s;
}

}  // namespace

absl::StatusOr<ExternalDataReader::Mapping*> ExternalDataReader::Map(const std::string& location) {
  auto it = files_.find(location);
  if (it != files_.end()) return &it->second;
  if (real_base_.empty()) {
    PTC_ASSIGN_OR_RETURN(real_base_, RealPath(base_dir_));
  }
  std::string path = JoinPath(base_dir_, location);
  PTC_ASSIGN_OR_RETURN(std::string real, RealPath(path));
  std::string prefix = real_base_ == "/" ? "/" : real_base_ + "/";
  if (real.compare(0, prefix.size(), prefix) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "external data file '", location, "' resolves to '", real,
        "', outside the model's folder '", real_base_,
        "' (symlink escape); keep external data files in the model's folder"));
  }
  int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open external data file '", path, "': ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("external data '", path, "' is not a regular file"));
  }
  Mapping m;
  m.size = static_cast<size_t>(st.st_size);
  if (m.size > 0) {
    // Private, writable mapping: tensors borrowed from it can be updated in place (training)
    // without touching the file.
    void* p = ::mmap(nullptr, m.size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("cannot map external data file '", path, "': ", std::strerror(errno)));
    }
    size_t size = m.size;
    m.owner = std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
    m.data = static_cast<const char*>(p);
  }
  ::close(fd);
  return &files_.emplace(location, std::move(m)).first->second;
}

absl::StatusOr<ir::Tensor> ExternalDataReader::Read(const onnx::TensorProto& proto,
                                                    ir::DType dtype, const ir::Shape& shape) {
  const std::string& name = proto.name();
  auto fail = [&](absl::string_view msg) {
    return absl::InvalidArgumentError(
        absl::StrCat("initializer '", name, "': external data: ", msg));
  };
  if (base_dir_.empty()) {
    return fail("external data is not allowed here (the model was given as bytes without a "
                "folder); load the model from its file");
  }
  std::string location;
  int64_t offset = 0, length = -1;
  bool has_location = false;
  for (const auto& entry : proto.external_data()) {
    if (entry.key() == "location") {
      location = entry.value();
      has_location = true;
    } else if (entry.key() == "offset" || entry.key() == "length") {
      int64_t v;
      if (!absl::SimpleAtoi(entry.value(), &v) || v < 0) {
        return fail(absl::StrCat("bad ", entry.key(), " '", entry.value(), "'"));
      }
      (entry.key() == "offset" ? offset : length) = v;
    }
  }
  if (!has_location || location.empty()) return fail("missing 'location'");
  if (location.front() == '/' || location.front() == '\\') {
    return fail(absl::StrCat("absolute path '", location,
                             "' is not allowed; external data must be relative to the model's "
                             "folder"));
  }
  for (absl::string_view part : absl::StrSplit(location, absl::ByAnyChar("/\\"))) {
    if (part == "..") {
      return fail(absl::StrCat("path '", location,
                               "' contains '..'; external data must stay in the model's folder"));
    }
  }
  ir::TensorType type{dtype, shape};
  int64_t expected = type.byte_size();
  if (expected < 0) return fail("declared shape is too large");
  auto mapped = Map(location);
  if (!mapped.ok()) {
    return absl::Status(mapped.status().code(),
                        absl::StrCat("initializer '", name, "': ", mapped.status().message()));
  }
  Mapping* m = *mapped;
  if (static_cast<uint64_t>(offset) > m->size) {
    return fail(absl::StrCat("offset ", offset, " is past the end of '", location, "' (",
                             m->size, " bytes)"));
  }
  uint64_t avail = m->size - static_cast<uint64_t>(offset);
  if (length < 0) length = static_cast<int64_t>(avail);
  if (static_cast<uint64_t>(length) > avail) {
    return fail(absl::StrCat("offset ", offset, " + length ", length, " exceeds the size of '",
                             location, "' (", m->size, " bytes); the file is truncated"));
  }
  if (length != expected) {
    return fail(absl::StrCat("length ", length, " bytes does not match the declared ",
                             type.ToString(), " (", expected, " bytes)"));
  }
  if (expected == 0) return ir::Tensor(dtype, shape);
  const char* src = m->data + offset;
  if (offset % 64 == 0) {
    return ir::Tensor::Borrow(dtype, shape, const_cast<char*>(src), m->owner);
  }
  return ir::Tensor::FromBytes(dtype, shape, src, static_cast<size_t>(expected));
}

// ---------------------------------------------------------------------------------------------
// TensorProto <-> Tensor

namespace {

template <typename Dst, typename Field>
ir::Tensor FromField(ir::DType dtype, const ir::Shape& shape, const Field& field) {
  ir::Tensor t(dtype, shape);
  Dst* out = t.mutable_data_as<Dst>();
  for (int i = 0; i < field.size(); ++i) out[i] = static_cast<Dst>(field.Get(i));
  return t;
}

}  // namespace

absl::StatusOr<ir::Tensor> TensorFromProto(const onnx::TensorProto& proto,
                                           ExternalDataReader* external) {
  const std::string& name = proto.name();
  auto fail = [&](absl::string_view msg) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "': ", msg));
  };
  if (proto.has_segment()) return fail("segmented tensors are not supported");
  auto dtype_or = DTypeFromOnnx(proto.data_type());
  if (!dtype_or.ok()) return fail(dtype_or.status().message());
  ir::DType dtype = *dtype_or;
  ir::Shape shape(proto.dims().begin(), proto.dims().end());
  if (absl::Status s = CheckShape(shape, dtype); !s.ok()) return fail(s.message());
  ir::TensorType type{dtype, shape};
  int64_t n = type.num_elements();
  int64_t nbytes = type.byte_size();

  if (proto.data_location() == onnx::TensorProto::EXTERNAL) {
    if (external == nullptr) return fail("external data is not allowed here");
    return external->Read(proto, dtype, shape);
  }

  int fields = (proto.has_raw_data() ? 1 : 0) + (proto.float_data_size() > 0) +
               (proto.int32_data_size() > 0) + (proto.int64_data_size() > 0) +
               (proto.double_data_size() > 0) + (proto.uint64_data_size() > 0) +
               (proto.string_data_size() > 0);
  if (fields > 1) return fail("has more than one data field");
  if (proto.has_raw_data()) {
    if (static_cast<int64_t>(proto.raw_data().size()) != nbytes) {
      return fail(absl::StrCat("raw_data has ", proto.raw_data().size(), " bytes but ",
                               type.ToString(), " needs ", nbytes));
    }
    return ir::Tensor::FromBytes(dtype, shape, proto.raw_data().data(),
                                 static_cast<size_t>(nbytes));
  }
  auto check_count = [&](int64_t count, absl::string_view field) -> absl::Status {
    if (count != n) {
      return fail(absl::StrCat(field, " has ", count, " values but ", type.ToString(),
                               " needs ", n));
    }
    return absl::OkStatus();
  };
  switch (dtype) {
    case ir::DType::kF32:
      PTC_RETURN_IF_ERROR(check_count(proto.float_data_size(), "float_data"));
      return FromField<float>(dtype, shape, proto.float_data());
    case ir::DType::kF64:
      PTC_RETURN_IF_ERROR(check_count(proto.double_data_size(), "double_data"));
      return FromField<double>(dtype, shape, proto.double_data());
    case ir::DType::kI64:
      PTC_RETURN_IF_ERROR(check_count(proto.int64_data_size(), "int64_data"));
      return FromField<int64_t>(dtype, shape, proto.int64_data());
    case ir::DType::kI32:
      PTC_RETURN_IF_ERROR(check_count(proto.int32_data_size(), "int32_data"));
      return FromField<int32_t>(dtype, shape, proto.int32_data());
    case ir::DType::kI8:
      PTC_RETURN_IF_ERROR(check_count(proto.int32_data_size(), "int32_data"));
      return FromField<int8_t>(dtype, shape, proto.int32_data());
    case ir::DType::kU8:
      PTC_RETURN_IF_ERROR(check_count(proto.int32_data_size(), "int32_data"));
      return FromField<uint8_t>(dtype, shape, proto.int32_data());
    case ir::DType::kBool: {
      PTC_RETURN_IF_ERROR(check_count(proto.int32_data_size(), "int32_data"));
      ir::Tensor t(dtype, shape);
      uint8_t* out = t.mutable_data_as<uint8_t>();
      for (int i = 0; i < proto.int32_data_size(); ++i) out[i] = proto.int32_data(i) != 0;
      return t;
    }
    case ir::DType::kF16:
    case ir::DType::kBF16:
      // ONNX stores 16-bit floats as their bit patterns in int32_data.
      PTC_RETURN_IF_ERROR(check_count(proto.int32_data_size(), "int32_data"));
      return FromField<uint16_t>(dtype, shape, proto.int32_data());
  }
  return fail("unsupported data type");
}

void TensorToProto(const ir::Tensor& tensor, const std::string& name, onnx::TensorProto* proto) {
  proto->set_name(name);
  proto->set_data_type(DTypeToOnnx(tensor.dtype()));
  for (int64_t d : tensor.shape()) proto->add_dims(d);
  if (tensor.nbytes() > 0) {
    proto->set_raw_data(std::string(static_cast<const char*>(tensor.data()), tensor.nbytes()));
  } else {
    proto->set_raw_data(std::string());
  }
}

}  // namespace ptc::onnx_import
