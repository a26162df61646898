#include "runtime/cpu/checkpoint.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "compiler/ir/printer.h"
#include "compiler/support/status.h"
#include "runtime/cpu/file_util.h"
#include "runtime/plan/checksum.h"

namespace ptc::checkpoint {
namespace {

constexpr int kVersion = 1;
constexpr int64_t kAlign = 64;
constexpr char kTmpPrefix[] = ".tmp-";
constexpr int64_t kMaxManifestBytes = int64_t{64} << 20;

int64_t AlignUp(int64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

absl::Status Errno(const std::string& what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string s;
  char buf[65536];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    s.append(buf, static_cast<size_t>(in.gcount()));
    if (static_cast<int64_t>(s.size()) > limit) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is larger than ", limit, " bytes"));
    }
  }
  return s;
}

std::string Hex(uint64_t v) { return absl::StrFormat("%016x", v); }

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("cannot write", path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Removes temp folders left by interrupted writes (any process: a checkpoint DIR has one writer).
void RemoveStaleTemps(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* e = ::readdir(d)) {
    if (absl::StartsWith(e->d_name, kTmpPrefix)) stale.push_back(e->d_name);
  }
  ::closedir(d);
  for (const std::string& s : stale) (void)fileutil::RemoveTree(absl::StrCat(dir, "/", s));
}

}  // namespace

std::string StepDirName(int64_t step) { return absl::StrFormat("step-%06d", step); }

std::string HashModule(const ir::Module& module) {
  return Hex(plan::Xxh64Hash(ir::PrintModule(module)));
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir, const Checkpoint& ckpt) {
  PTC_RETURN_IF_ERROR(fileutil::MakeDirs(dir));
  RemoveStaleTemps(dir);
  const std::string name = StepDirName(ckpt.step);
  const std::string tmp = absl::StrCat(dir, "/", kTmpPrefix, name, "-", ::getpid());
  const std::string final_dir = absl::StrCat(dir, "/", name);
  if (::mkdir(tmp.c_str(), 0755) != 0) return Errno("cannot create", tmp);

  nlohmann::json manifest;
  manifest["format"] = "ptc-checkpoint";
  manifest["version"] = kVersion;
  manifest["step"] = ckpt.step;
  manifest["plan_hash"] = ckpt.plan_hash;
  manifest["seed"] = ckpt.seed;
  manifest["data"] = {{"epoch", ckpt.data.epoch}, {"position", ckpt.data.position}};
  nlohmann::json tensors = nlohmann::json::array();

  const std::string bin = absl::StrCat(tmp, "/tensors.bin");
  int fd = ::open(bin.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Errno("cannot create", bin);
  int64_t offset = 0;
  static const char kZeros[kAlign] = {};
  absl::Status st;
  for (const auto& [tname, t] : ckpt.tensors) {
    int64_t aligned = AlignUp(offset);
    st = WriteAll(fd, kZeros, static_cast<size_t>(aligned - offset), bin);
    if (!st.ok()) break;
    offset = aligned;
    st = WriteAll(fd, t.data(), t.nbytes(), bin);
    if (!st.ok()) break;
    auto kind = ckpt.kinds.find(tname);
    tensors.push_back({{"name", tname},
                       {"kind", kind == ckpt.kinds.end() ? "param" : kind->second},
                       {"dtype", std::string(ir::DTypeName(t.dtype()))},
                       {"shape", t.shape()},
                       {"offset", offset},
                       {"bytes", t.nbytes()},
                       {"xxh64", Hex(plan::Xxh64Hash(t.data(), t.nbytes()))}});
    offset += static_cast<int64_t>(t.nbytes());
  }
  if (st.ok() && ::fsync(fd) != 0) st = Errno("cannot fsync", bin);
  if (::close(fd) != 0 && st.ok()) st = Errno("cannot close", bin);
  manifest["tensors"] = std::move(tensors);
  if (st.ok()) {
    st = fileutil::WriteFileSynced(absl::StrCat(tmp, "/manifest.json"), manifest.dump(1) + "\n");
  }
  if (st.ok()) st = fileutil::FsyncPath(tmp);
  if (st.ok()) {
    // A checkpoint of the same step (a re-run after resume) is replaced.
    (void)fileutil::RemoveTree(final_dir);
    if (::rename(tmp.c_str(), final_dir.c_str()) != 0) st = Errno("cannot rename to", final_dir);
  }
  if (st.ok()) st = fileutil::FsyncPath(dir);
  if (st.ok()) st = fileutil::WriteFileAtomic(absl::StrCat(dir, "/latest"), name + "\n");
  if (!st.ok()) {
    (void)fileutil::RemoveTree(tmp);
    return absl::Status(st.code(), absl::StrCat("writing checkpoint ", final_dir, ": ",
                                                st.message()));
  }
  return final_dir;
}

absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& step_dir) {
  const std::string mpath = absl::StrCat(step_dir, "/manifest.json");
  PTC_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(mpath, kMaxManifestBytes));
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint ", step_dir, ": ", why));
  };
  nlohmann::json m = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) return bad("manifest.json is not valid JSON");
  Checkpoint c;
  c.path = step_dir;
  const std::string bin = absl::StrCat(step_dir, "/tensors.bin");
  int fd = -1;
  try {
    if (m.value("format", "") != "ptc-checkpoint") return bad("not a ptc checkpoint manifest");
    if (m.value("version", 0) != kVersion) {
      return bad(absl::StrCat("format version ", m.value("version", 0), " (this ptc reads ",
                              kVersion, ")"));
    }
    c.step = m.at("step").get<int64_t>();
    c.plan_hash = m.at("plan_hash").get<std::string>();
    c.seed = m.at("seed").get<uint64_t>();
    c.data.epoch = m.at("data").at("epoch").get<int64_t>();
    c.data.position = m.at("data").at("position").get<int64_t>();
    if (c.step < 0 || c.data.epoch < 0 || c.data.position < 0) return bad("negative counters");
    fd = ::open(bin.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return bad(absl::StrCat("cannot open tensors.bin: ", std::strerror(errno)));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return bad("cannot stat tensors.bin");
    }
    const int64_t file_size = st.st_size;
    for (const auto& e : m.at("tensors")) {
      std::string name = e.at("name").get<std::string>();
      std::string kind = e.value("kind", "param");
      auto dtype = ir::ParseDType(e.at("dtype").get<std::string>());
      if (!dtype.ok()) {
        ::close(fd);
        return bad(absl::StrCat("tensor '", name, "': ", dtype.status().message()));
      }
      ir::Shape shape = e.at("shape").get<ir::Shape>();
      int64_t offset = e.at("offset").get<int64_t>();
      int64_t bytes = e.at("bytes").get<int64_t>();
      ir::TensorType type{*dtype, shape};
      if (type.byte_size() < 0 || type.byte_size() != bytes || offset < 0 ||
          offset > file_size || bytes > file_size - offset) {
        ::close(fd);
        return bad(absl::StrCat("tensor '", name, "' (", type.ToString(), ", ", bytes,
                                " bytes at ", offset, ") does not fit tensors.bin of ",
                                file_size, " bytes"));
      }
      if (c.tensors.count(name)) {
        ::close(fd);
        return bad(absl::StrCat("tensor '", name, "' appears twice"));
      }
      ir::Tensor t(*dtype, shape);
      size_t done = 0;
      while (done < t.nbytes()) {
        ssize_t n = ::pread(fd, static_cast<char*>(t.mutable_data()) + done, t.nbytes() - done,
                            offset + static_cast<int64_t>(done));
        if (n <= 0) {
          ::close(fd);
          return bad(absl::StrCat("cannot read tensor '", name, "'"));
        }
        done += static_cast<size_t>(n);
      }
      if (Hex(plan::Xxh64Hash(t.data(), t.nbytes())) != e.at("xxh64").get<std::string>()) {
        ::close(fd);
        return bad(absl::StrCat("tensor '", name, "' fails its checksum (damaged file)"));
      }
      c.kinds[name] = kind;
      c.tensors[name] = std::move(t);
    }
  } catch (const nlohmann::json::exception& e) {
    if (fd >= 0) ::close(fd);
    return bad(absl::StrCat("malformed manifest.json: ", e.what()));
  }
  ::close(fd);
  return c;
}

absl::StatusOr<Checkpoint> LoadLatestCheckpoint(const std::string& dir) {
  absl::Status first_error = absl::OkStatus();
  auto latest = ReadSmallFile(absl::StrCat(dir, "/latest"), 4096);
  if (latest.ok()) {
    std::string name = *latest;
    while (!name.empty() && (name.back() == '\n' || name.back() == '\r')) name.pop_back();
    if (absl::StartsWith(name, "step-") && name.find('/') == std::string::npos) {
      auto c = LoadCheckpoint(absl::StrCat(dir, "/", name));
      if (c.ok()) return c;
      first_error = c.status();
    }
  }
  // Fallback: the complete checkpoint with the highest step.
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat("no checkpoint folder ", dir));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (absl::StartsWith(e->d_name, "step-")) names.push_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.rbegin(), names.rend());
  for (const std::string& n : names) {
    auto c = LoadCheckpoint(absl::StrCat(dir, "/", n));
    if (c.ok()) return c;
    if (first_error.ok()) first_error = c.status();
  }
  return absl::NotFoundError(absl::StrCat(
      "no complete checkpoint in ", dir,
      first_error.ok() ? "" : absl::StrCat(" (", first_error.message(), ")")));
}

absl::StatusOr<Checkpoint> LoadCheckpointOrLatest(const std::string& path) {
  struct stat st;
  if (::stat(absl::StrCat(path, "/manifest.json").c_str(), &st) == 0) return LoadCheckpoint(path);
  return LoadLatestCheckpoint(path);
}

// ---------------------------------------------------------------------------------------------
// ONNX, at the protobuf wire level (the runtime does not link the ONNX library): ModelProto.graph
// = 7, GraphProto.initializer = 5, TensorProto {dims = 1, data_type = 2, name = 8, raw_data = 9,
// external_data = 13, data_location = 14}.

namespace {

using google::protobuf::internal::WireFormatLite;

int OnnxDataType(ir::DType d) {
  switch (d) {
    case ir::DType::kF32: return 1;
    case ir::DType::kU8: return 2;
    case ir::DType::kI8: return 3;
    case ir::DType::kI32: return 6;
    case ir::DType::kI64: return 7;
    case ir::DType::kBool: return 9;
    case ir::DType::kF16: return 10;
    case ir::DType::kF64: return 11;
    case ir::DType::kBF16: return 16;
  }
  return 0;
}

struct Field {
  uint32_t tag = 0;
  std::string raw;       // the whole field (tag + payload) as read
  std::string payload;   // length-delimited payload
  uint64_t varint = 0;
};

// Splits a message into its fields, keeping each one's exact bytes.
absl::StatusOr<std::vector<Field>> SplitFields(const std::string& bytes, const std::string& what) {
  std::vector<Field> fields;
  google::protobuf::io::ArrayInputStream ais(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream in(&ais);
  in.SetTotalBytesLimit(INT32_MAX);
  while (true) {
    int start = in.CurrentPosition();
    uint32_t tag = in.ReadTag();
    if (tag == 0) break;
    Field f;
    f.tag = tag;
    switch (WireFormatLite::GetTagWireType(tag)) {
      case WireFormatLite::WIRETYPE_VARINT:
        if (!in.ReadVarint64(&f.varint)) return absl::InvalidArgumentError("bad varint in " + what);
        break;
      case WireFormatLite::WIRETYPE_LENGTH_DELIMITED: {
        uint32_t len;
        if (!in.ReadVarint32(&len) || !in.ReadString(&f.payload, static_cast<int>(len))) {
          return absl::InvalidArgumentError("truncated field in " + what);
        }
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED32: {
        uint32_t v;
        if (!in.ReadLittleEndian32(&v)) return absl::InvalidArgumentError("truncated " + what);
        break;
      }
      case WireFormatLite::WIRETYPE_FIXED64: {
        uint64_t v;
        if (!in.ReadLittleEndian64(&v)) return absl::InvalidArgumentError("truncated " + what);
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat("unsupported wire type in ", what));
    }
    int end = in.CurrentPosition();
    f.raw = bytes.substr(static_cast<size_t>(start), static_cast<size_t>(end - start));
    fields.push_back(std::move(f));
  }
  if (!in.ConsumedEntireMessage() && in.CurrentPosition() != static_cast<int>(bytes.size())) {
    return absl::InvalidArgumentError("trailing bytes in " + what);
  }
  return fields;
}

std::string LengthDelimited(int field, const std::string& payload) {
  std::string out;
  google::protobuf::io::StringOutputStream sos(&out);
  {
    google::protobuf::io::CodedOutputStream os(&sos);
    os.WriteTag(WireFormatLite::MakeTag(field, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
    os.WriteVarint32(static_cast<uint32_t>(payload.size()));
    os.WriteString(payload);
  }
  return out;
}

struct InitializerInfo {
  std::string name;
  std::vector<int64_t> dims;
  int64_t data_type = 0;
  bool external = false;
};

absl::StatusOr<InitializerInfo> ParseInitializer(const std::string& bytes) {
  PTC_ASSIGN_OR_RETURN(auto fields, SplitFields(bytes, "an initializer"));
  InitializerInfo info;
  for (const Field& f : fields) {
    int num = WireFormatLite::GetTagFieldNumber(f.tag);
    auto wt = WireFormatLite::GetTagWireType(f.tag);
    if (num == 1 && wt == WireFormatLite::WIRETYPE_VARINT) {
      info.dims.push_back(static_cast<int64_t>(f.varint));
    } else if (num == 1 && wt == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {  // packed
      google::protobuf::io::CodedInputStream in(
          reinterpret_cast<const uint8_t*>(f.payload.data()), static_cast<int>(f.payload.size()));
      uint64_t v;
      while (in.CurrentPosition() < static_cast<int>(f.payload.size()) && in.ReadVarint64(&v)) {
        info.dims.push_back(static_cast<int64_t>(v));
      }
    } else if (num == 2) {
      info.data_type = static_cast<int64_t>(f.varint);
    } else if (num == 8) {
      info.name = f.payload;
    } else if (num == 14) {
      info.external = f.varint == 1;
    }
  }
  return info;
}

}  // namespace

absl::StatusOr<std::string> SerializeTensorProto(const std::string& name,
                                                 const ir::Tensor& tensor) {
  int dt = OnnxDataType(tensor.dtype());
  if (dt == 0) return absl::InvalidArgumentError("tensor dtype has no ONNX equivalent");
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream os(&sos);
    for (int64_t d : tensor.shape()) {
      os.WriteTag(WireFormatLite::MakeTag(1, WireFormatLite::WIRETYPE_VARINT));
      os.WriteVarint64(static_cast<uint64_t>(d));
    }
    os.WriteTag(WireFormatLite::MakeTag(2, WireFormatLite::WIRETYPE_VARINT));
    os.WriteVarint32(static_cast<uint32_t>(dt));
    if (!name.empty()) {
      os.WriteTag(WireFormatLite::MakeTag(8, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
      os.WriteVarint32(static_cast<uint32_t>(name.size()));
      os.WriteString(name);
    }
    os.WriteTag(WireFormatLite::MakeTag(9, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
    os.WriteVarint32(static_cast<uint32_t>(tensor.nbytes()));
    os.WriteRaw(tensor.data(), static_cast<int>(tensor.nbytes()));
  }
  return out;
}

absl::Status WriteTensorProtoFile(const std::string& path, const std::string& name,
                                  const ir::Tensor& tensor) {
  if (tensor.nbytes() > (size_t{1} << 31) - 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' is too large for a TensorProto file (2 GB limit)"));
  }
  PTC_ASSIGN_OR_RETURN(std::string bytes, SerializeTensorProto(name, tensor));
  return fileutil::WriteFileAtomic(path, bytes);
}

absl::Status ExportCheckpointToOnnx(const std::string& original_onnx_path,
                                    const std::string& checkpoint_path,
                                    const std::string& out_path) {
  PTC_ASSIGN_OR_RETURN(Checkpoint ckpt, LoadCheckpointOrLatest(checkpoint_path));
  PTC_ASSIGN_OR_RETURN(std::string model,
                       ReadSmallFile(original_onnx_path, int64_t{2} << 30));
  const std::string where = absl::StrCat("ONNX model ", original_onnx_path);
  PTC_ASSIGN_OR_RETURN(auto model_fields, SplitFields(model, where));
  std::map<std::string, bool> used;
  for (const auto& [name, kind] : ckpt.kinds) {
    if (kind == "param") used[name] = false;
  }
  const bool same_folder = fileutil::Dirname(original_onnx_path) == fileutil::Dirname(out_path);
  std::string out_model;
  int graphs = 0;
  for (const Field& mf : model_fields) {
    if (WireFormatLite::GetTagFieldNumber(mf.tag) != 7 ||
        WireFormatLite::GetTagWireType(mf.tag) != WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      out_model += mf.raw;
      continue;
    }
    ++graphs;
    PTC_ASSIGN_OR_RETURN(auto graph_fields, SplitFields(mf.payload, where + " graph"));
    std::string out_graph;
    for (const Field& gf : graph_fields) {
      if (WireFormatLite::GetTagFieldNumber(gf.tag) != 5) {
        out_graph += gf.raw;
        continue;
      }
      PTC_ASSIGN_OR_RETURN(InitializerInfo info, ParseInitializer(gf.payload));
      auto it = used.find(info.name);
      if (it == used.end()) {
        if (info.external && !same_folder) {
          return absl::UnimplementedError(absl::StrCat(
              "initializer '", info.name, "' of ", original_onnx_path,
              " uses external data and is not in the checkpoint: write the exported model into "
              "the original model's folder so that its external data path stays valid"));
        }
        out_graph += gf.raw;
        continue;
      }
      const ir::Tensor& t = ckpt.tensors.at(info.name);
      if (info.dims != t.shape() || info.data_type != OnnxDataType(t.dtype())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "checkpoint weight '", info.name, "' is ", t.type().ToString(),
            " but the ONNX initializer has dims ", ir::ShapeToString(info.dims),
            " and data type ", info.data_type, " (", original_onnx_path,
            "): was the plan compiled from this model?"));
      }
      it->second = true;
      PTC_ASSIGN_OR_RETURN(std::string tp, SerializeTensorProto(info.name, t));
      out_graph += LengthDelimited(5, tp);
    }
    out_model += LengthDelimited(7, out_graph);
  }
  if (graphs != 1) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has ", graphs, " graphs, expected 1"));
  }
  std::vector<std::string> missing;
  for (const auto& [name, found] : used) {
    if (!found) missing.push_back(name);
  }
  if (!missing.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "checkpoint ", ckpt.path, " has ", missing.size(), " weights with no initializer of the "
        "same name in ", original_onnx_path, " (first: '", missing[0],
        "'): export needs the ONNX model the plan was compiled from"));
  }
  if (out_model.size() > (size_t{2} << 30) - 1) {
    return absl::InvalidArgumentError("the exported model exceeds protobuf's 2 GB limit");
  }
  return fileutil::WriteFileAtomic(out_path, out_model);
}

}  // namespace ptc::checkpoint
