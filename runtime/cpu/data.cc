#include "runtime/cpu/data.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "runtime/cpu/file_util.h"

namespace ptc::data {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

Tokens Tokens::FromBytes(std::string text) {
  auto owned = std::make_shared<std::string>(std::move(text));
  Tokens t;
  t.data_ = owned->data();
  t.count_ = static_cast<int64_t>(owned->size());
  t.width_ = 1;
  t.owner_ = owned;
  return t;
}

Tokens Tokens::FromVector(std::vector<uint32_t> ids) {
  auto owned = std::make_shared<std::vector<uint32_t>>(std::move(ids));
  Tokens t;
  t.data_ = owned->data();
  t.count_ = static_cast<int64_t>(owned->size());
  t.width_ = 4;
  t.owner_ = owned;
  return t;
}

uint32_t Tokens::MaxId() const {
  if (max_id_ < 0) {
    uint32_t m = 0;
    for (int64_t i = 0; i < count_; ++i) m = std::max(m, (*this)[i]);
    max_id_ = m;
  }
  return static_cast<uint32_t>(max_id_);
}

Tokens Tokens::Slice(int64_t begin, int64_t count) const {
  PTC_CHECK(begin >= 0 && count >= 0 && begin + count <= count_);
  Tokens t = *this;
  t.data_ = static_cast<const char*>(data_) + begin * width_;
  t.count_ = count;
  t.max_id_ = -1;
  return t;
}

Tokens TokenizeBytes(std::string_view text) { return Tokens::FromBytes(std::string(text)); }

std::string DetokenizeBytes(const std::vector<uint32_t>& ids) {
  std::string s;
  s.reserve(ids.size());
  for (uint32_t id : ids) s.push_back(id < 256 ? static_cast<char>(id) : '?');
  return s;
}

absl::Status WriteTokenFile(const std::string& path, const std::vector<uint32_t>& ids,
                            int width) {
  if (width != 2 && width != 4) {
    return absl::InvalidArgumentError(absl::StrCat("token width must be 2 or 4, not ", width));
  }
  std::string bytes(kTokenFileMagic, sizeof(kTokenFileMagic));
  auto put32 = [&](uint32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  put32(static_cast<uint32_t>(width));
  put32(0);
  uint64_t count = ids.size();
  bytes.append(reinterpret_cast<const char*>(&count), 8);
  for (uint32_t id : ids) {
    if (width == 2) {
      if (id > 0xffff) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", id, " does not fit a u16 token file; use width 4"));
      }
      uint16_t v = static_cast<uint16_t>(id);
      bytes.append(reinterpret_cast<const char*>(&v), 2);
    } else {
      put32(id);
    }
  }
  return fileutil::WriteFileAtomic(path, bytes);
}

absl::StatusOr<Tokens> ReadTokenFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrCat("cannot open token file ", path, ": ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  char header[kTokenFileHeaderBytes];
  if (size < kTokenFileHeaderBytes ||
      ::pread(fd, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header))) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is truncated: ", size, " bytes, the header alone is ",
                     kTokenFileHeaderBytes));
  }
  if (std::memcmp(header, kTokenFileMagic, sizeof(kTokenFileMagic)) != 0) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a token file (no PTCTOK01 magic)"));
  }
  uint32_t width, reserved;
  uint64_t count;
  std::memcpy(&width, header + 8, 4);
  std::memcpy(&reserved, header + 12, 4);
  std::memcpy(&count, header + 16, 8);
  if ((width != 2 && width != 4) || reserved != 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        "token file ", path, ": token width ", width, " (reserved ", reserved,
        ") is not supported; expected 2 (u16) or 4 (u32) and 0"));
  }
  const uint64_t payload = size - kTokenFileHeaderBytes;
  if (count > payload / width || count * width != payload) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(
        "token file ", path, " declares ", count, " tokens of ", width, " bytes but holds ",
        payload, " bytes of tokens"));
  }
  Tokens t;
  t.width_ = static_cast<int>(width);
  t.count_ = static_cast<int64_t>(count);
  t.source_ = path;
  if (count > 0) {
    void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat("cannot mmap ", path, ": ", std::strerror(errno)));
    }
    t.owner_ = std::shared_ptr<void>(map, [size](void* p) { ::munmap(p, size); });
    t.data_ = static_cast<const char*>(map) + kTokenFileHeaderBytes;
  }
  ::close(fd);
  return t;
}

namespace {

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool StartsWithMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char m[8] = {};
  in.read(m, 8);
  return in.gcount() == 8 && std::memcmp(m, kTokenFileMagic, 8) == 0;
}

}  // namespace

absl::StatusOr<Tokens> LoadCorpus(const std::string& path_in) {
  const std::string path = path_in.empty() ? kDefaultCorpus : path_in;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "training data ", path, " does not exist",
        path_in.empty() ? " (the default corpus: install Debian's `fortunes` package or pass "
                          "--data FILE)"
                        : ""));
  }
  if (S_ISREG(st.st_mode)) {
    if (StartsWithMagic(path)) return ReadTokenFile(path);
    PTC_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
    Tokens t = Tokens::FromBytes(std::move(text));
    t.set_source(path);
    return t;
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is neither a file nor a folder"));
  }
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("cannot list ", path, ": ",
                                                    std::strerror(errno)));
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    if (absl::EndsWith(name, ".dat") || absl::EndsWith(name, ".u8")) continue;
    struct stat fst;
    std::string full = absl::StrCat(path, "/", name);
    if (::lstat(full.c_str(), &fst) != 0 || !S_ISREG(fst.st_mode)) continue;  // links, folders
    names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  std::string text;
  for (const std::string& name : names) {
    PTC_ASSIGN_OR_RETURN(std::string part, ReadWholeFile(absl::StrCat(path, "/", name)));
    text += part;
  }
  if (text.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no text in ", path, " (", names.size(), " files after skipping *.dat, "
                     "*.u8, links and folders)"));
  }
  Tokens t = Tokens::FromBytes(std::move(text));
  t.set_source(absl::StrCat(path, " (", names.size(), " files)"));
  return t;
}

absl::StatusOr<Split> SplitTrainVal(const Tokens& tokens, double val_fraction,
                                    int64_t min_tokens) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("validation fraction ", val_fraction, " must be in [0, 1)"));
  }
  const int64_t n = tokens.size();
  int64_t nval = static_cast<int64_t>(static_cast<double>(n) * val_fraction);
  if (val_fraction > 0) nval = std::max(nval, min_tokens);
  if (n - nval < min_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the data (", tokens.source(), ") has ", n, " tokens: too few for a training split of ",
        min_tokens, " tokens plus ", nval, " validation tokens; use more data or a smaller "
        "batch / sequence"));
  }
  Split s;
  s.train = tokens.Slice(0, n - nval);
  s.val = tokens.Slice(n - nval, nval);
  return s;
}

absl::StatusOr<BatchIterator> BatchIterator::Create(Tokens tokens, int64_t batch, int64_t seq,
                                                    uint64_t seed, bool shuffle,
                                                    ir::DType dtype) {
  if (batch <= 0 || seq <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch ", batch, " and sequence ", seq, " must be positive"));
  }
  if (dtype != ir::DType::kI64 && dtype != ir::DType::kI32) {
    return absl::InvalidArgumentError(absl::StrCat("token ids must be i64 or i32, not ", std::string(
                                                   ir::DTypeName(dtype))));
  }
  BatchIterator it;
  it.num_windows_ = tokens.size() > seq ? (tokens.size() - 1) / seq : 0;
  if (it.num_windows_ < batch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the data (", tokens.source(), ") has ", tokens.size(), " tokens: ", it.num_windows_,
        " windows of ", seq + 1, " tokens, fewer than one batch of ", batch, "; need at least ",
        batch * seq + 1, " tokens"));
  }
  it.tokens_ = std::move(tokens);
  it.batch_ = batch;
  it.seq_ = seq;
  it.seed_ = seed;
  it.shuffle_ = shuffle;
  it.dtype_ = dtype;
  return it;
}

void BatchIterator::MakePermutation() {
  if (perm_epoch_ == state_.epoch) return;
  perm_.resize(num_windows_);
  for (int64_t i = 0; i < num_windows_; ++i) perm_[i] = i;
  if (shuffle_) {
    // Fisher-Yates from a counter-based stream: draw k of epoch e is SplitMix64(key + k).
    const uint64_t key = SplitMix64(seed_ ^ SplitMix64(static_cast<uint64_t>(state_.epoch)));
    for (int64_t i = num_windows_ - 1; i > 0; --i) {
      uint64_t r = SplitMix64(key + static_cast<uint64_t>(i));
      int64_t j = static_cast<int64_t>(r % static_cast<uint64_t>(i + 1));
      std::swap(perm_[i], perm_[j]);
    }
  }
  perm_epoch_ = state_.epoch;
}

Batch BatchIterator::Next() {
  if (state_.position + batch_ > num_windows_) {
    state_.epoch += 1;
    state_.position = 0;
  }
  MakePermutation();
  Batch b{ir::Tensor(dtype_, {batch_, seq_}), ir::Tensor(dtype_, {batch_, seq_})};
  for (int64_t r = 0; r < batch_; ++r) {
    const int64_t start = perm_[state_.position + r] * seq_;
    for (int64_t t = 0; t < seq_; ++t) {
      const int64_t i = r * seq_ + t;
      const uint32_t x = tokens_[start + t], y = tokens_[start + t + 1];
      if (dtype_ == ir::DType::kI64) {
        b.input_ids.mutable_data_as<int64_t>()[i] = x;
        b.labels.mutable_data_as<int64_t>()[i] = y;
      } else {
        b.input_ids.mutable_data_as<int32_t>()[i] = static_cast<int32_t>(x);
        b.labels.mutable_data_as<int32_t>()[i] = static_cast<int32_t>(y);
      }
    }
  }
  state_.position += batch_;
  return b;
}

absl::Status BatchIterator::SetState(const IteratorState& state) {
  if (state.epoch < 0 || state.position < 0 || state.position > num_windows_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data iterator state (epoch ", state.epoch, ", position ", state.position,
        ") does not fit this data (", num_windows_, " windows per epoch): was the checkpoint "
        "written with other data or another batch / sequence length?"));
  }
  state_ = state;
  return absl::OkStatus();
}

}  // namespace ptc::data
