// WriteModel: ONNX serialization with external data for large initializers.
//
// The model is never copied whole (GPT-2 XL is 6 GB of weights): the header and graph minus its
// initializers are copied with a FieldMask built from the proto descriptors (so fields added to
// onnx.proto later are kept), then each initializer is either copied (small) or copied without
// its raw_data, whose bytes are appended to the data file.
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/field_mask.pb.h"
#include "google/protobuf/util/field_mask_util.h"
#include "models/models.h"

namespace ptc::models {
namespace {

namespace fs = std::filesystem;
using google::protobuf::FieldMask;
using google::protobuf::util::FieldMaskUtil;

constexpr int64_t kExternalAlignment = 64;

// Every top-level field of `descriptor` except `skip`, each prefixed with `prefix`.
void AddFieldsExcept(const google::protobuf::Descriptor* descriptor, const std::string& skip,
                     const std::string& prefix, FieldMask* mask) {
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const std::string& name = descriptor->field(i)->name();
    if (name != skip) mask->add_paths(prefix + name);
  }
}

absl::Status IoError(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat("cannot ", what, " ", path, ": ", std::strerror(errno)));
}

absl::Status RenameInto(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", from, " to ", to, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteModel(const onnx::ModelProto& model, const std::string& path,
                        int64_t external_data_threshold) {
  const fs::path model_path(path);
  if (model_path.filename().empty()) {
    return absl::InvalidArgumentError(absl::StrCat("WriteModel: '", path, "' names no file"));
  }
  const std::string data_name = model_path.filename().string() + ".data";
  const std::string data_path = (model_path.parent_path() / data_name).string();
  const std::string data_tmp = data_path + ".tmp";
  const std::string model_tmp = path + ".tmp";

  auto goes_external = [&](const onnx::TensorProto& t) {
    return external_data_threshold >= 0 && t.has_raw_data() &&
           static_cast<int64_t>(t.raw_data().size()) >= external_data_threshold &&
           t.data_location() != onnx::TensorProto::EXTERNAL;
  };
  // Size check before anything is copied or written (an XL model inline is 6 GB).
  size_t external_bytes = 0;
  for (const onnx::TensorProto& t : model.graph().initializer()) {
    if (goes_external(t)) external_bytes += t.raw_data().size();
  }
  const size_t inline_bytes = model.ByteSizeLong() - external_bytes;
  if (inline_bytes > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WriteModel ", path, ": the model is ", inline_bytes,
        " bytes with its inline initializers, over protobuf's 2 GiB limit; write the weights as "
        "external data (a threshold >= 0, e.g. ",
        kDefaultExternalDataThreshold, ")"));
  }
  if (external_bytes == 0) {
    std::ofstream f(model_tmp, std::ios::binary | std::ios::trunc);
    if (!f) return IoError("create", model_tmp);
    if (!model.SerializeToOstream(&f)) return IoError("write", model_tmp);
    f.close();
    if (!f) return IoError("write", model_tmp);
    return RenameInto(model_tmp, path);
  }

  onnx::ModelProto out;
  {
    FieldMask mask;
    AddFieldsExcept(onnx::ModelProto::descriptor(), "graph", "", &mask);
    if (model.has_graph()) {
      AddFieldsExcept(onnx::GraphProto::descriptor(), "initializer", "graph.", &mask);
      out.mutable_graph();
    }
    FieldMaskUtil::MergeMessageTo(model, mask, FieldMaskUtil::MergeOptions(), &out);
  }
  FieldMask tensor_mask;
  AddFieldsExcept(onnx::TensorProto::descriptor(), "raw_data", "", &tensor_mask);

  std::ofstream data;
  int64_t offset = 0;
  for (const onnx::TensorProto& t : model.graph().initializer()) {
    onnx::TensorProto* o = out.mutable_graph()->add_initializer();
    if (!goes_external(t)) {
      *o = t;
      continue;
    }
    if (!data.is_open()) {
      data.open(data_tmp, std::ios::binary | std::ios::trunc);
      if (!data) return IoError("create", data_tmp);
    }
    FieldMaskUtil::MergeMessageTo(t, tensor_mask, FieldMaskUtil::MergeOptions(), o);
    const int64_t pad = (kExternalAlignment - offset % kExternalAlignment) % kExternalAlignment;
    static const char kZeros[kExternalAlignment] = {};
    data.write(kZeros, pad);
    offset += pad;
    data.write(t.raw_data().data(), static_cast<std::streamsize>(t.raw_data().size()));
    if (!data) return IoError("write", data_tmp);
    o->set_data_location(onnx::TensorProto::EXTERNAL);
    auto add_entry = [&](const std::string& key, const std::string& value) {
      auto* e = o->add_external_data();
      e->set_key(key);
      e->set_value(value);
    };
    add_entry("location", data_name);
    add_entry("offset", absl::StrCat(offset));
    add_entry("length", absl::StrCat(t.raw_data().size()));
    offset += static_cast<int64_t>(t.raw_data().size());
  }

  if (data.is_open()) {
    data.close();
    if (!data) return IoError("write", data_tmp);
  }
  {
    std::ofstream f(model_tmp, std::ios::binary | std::ios::trunc);
    if (!f) return IoError("create", model_tmp);
    if (!out.SerializeToOstream(&f)) return IoError("write", model_tmp);
    f.close();
    if (!f) return IoError("write", model_tmp);
  }
  // The data first: a model file never names data that is not there.
  if (absl::Status s = RenameInto(data_tmp, data_path); !s.ok()) return s;
  return RenameInto(model_tmp, path);
}

}  // namespace ptc::models
