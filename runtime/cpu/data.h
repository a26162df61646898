// Training data: tokens, corpus loading, fixed-length packing, deterministic shuffling.
//
// Tokenizer: byte level by default (vocabulary 256, token id = byte value). Pre-tokenized data
// uses the token file format (little-endian, mmap'd, validated on load):
//   "PTCTOK01" | u32 token width in bytes (2 = u16, 4 = u32) | u32 0 | u64 count | tokens
// Packing: the token stream is cut into windows of seq+1 tokens with stride seq (window k is
// tokens [k*seq, k*seq+seq+1)); a batch is `batch` windows: input_ids = w[:, :-1],
// labels = w[:, 1:]. The last `val_fraction` of the stream is the validation split.
// Shuffling: every epoch visits the training windows in a permutation drawn by a Fisher-Yates
// shuffle seeded from (seed, epoch) with splitmix64, so (seed, epoch, position) fully
// determines the next batch and the iterator state is two integers (checkpointable).
#ifndef PTC_RUNTIME_CPU_DATA_H_
#define PTC_RUNTIME_CPU_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::data {

inline constexpr char kTokenFileMagic[8] = {'P', 'T', 'C', 'T', 'O', 'K', '0', '1'};
inline constexpr size_t kTokenFileHeaderBytes = 24;
inline constexpr char kDefaultCorpus[] = "/usr/share/games/fortunes";
inline constexpr int64_t kByteVocabSize = 256;

// A read-only token stream: bytes of a text (width 1) or an mmap'd token file (width 2 or 4).
class Tokens {
 public:
  Tokens() = default;
  static Tokens FromBytes(std::string text);             // byte-level tokenizer
  static Tokens FromVector(std::vector<uint32_t> ids);   // width 4
  int64_t size() const { return count_; }
  int width() const { return width_; }
  uint32_t operator[](int64_t i) const {
    switch (width_) {
      case 1: return static_cast<const uint8_t*>(data_)[i];
      case 2: return static_cast<const uint16_t*>(data_)[i];
      default: return static_cast<const uint32_t*>(data_)[i];
    }
  }
  // The largest token id (scans the stream once; cached).
  uint32_t MaxId() const;
  // Tokens [begin, begin+count) as a view sharing the storage.
  Tokens Slice(int64_t begin, int64_t count) const;
  // Where it came from, for messages ("/usr/share/games/fortunes (43 files)").
  const std::string& source() const { return source_; }
  void set_source(std::string s) { source_ = std::move(s); }

 private:
  friend absl::StatusOr<Tokens> ReadTokenFile(const std::string& path);
  std::shared_ptr<void> owner_;
  const void* data_ = nullptr;
  int64_t count_ = 0;
  int width_ = 1;
  mutable int64_t max_id_ = -1;
  std::string source_;
};

// Byte-level tokenizer.
Tokens TokenizeBytes(std::string_view text);
std::string DetokenizeBytes(const std::vector<uint32_t>& ids);  // ids >= 256 become '?'

// Token files (see the layout above). Writing is atomic (temp file, fsync, rename).
absl::Status WriteTokenFile(const std::string& path, const std::vector<uint32_t>& ids,
                            int width = 2);
absl::StatusOr<Tokens> ReadTokenFile(const std::string& path);

// A corpus: a token file (starts with the magic), a text file (byte tokens), or a folder whose
// regular files (not symlinks, not sub-folders, not *.dat / *.u8: the fortune index files) are
// text files concatenated in name order. "" means kDefaultCorpus (Debian's `fortunes`).
absl::StatusOr<Tokens> LoadCorpus(const std::string& path);

// Position of a batch iterator: everything needed to continue exactly (with the seed).
struct IteratorState {
  int64_t epoch = 0;
  int64_t position = 0;  // windows consumed in this epoch
  bool operator==(const IteratorState& o) const {
    return epoch == o.epoch && position == o.position;
  }
};

struct Batch {
  ir::Tensor input_ids;  // [batch, seq] of the requested dtype (i64 or i32)
  ir::Tensor labels;     // [batch, seq]
};

class BatchIterator {
 public:
  // Errors when the split has fewer than `batch` windows (says how many tokens are needed).
  static absl::StatusOr<BatchIterator> Create(Tokens tokens, int64_t batch, int64_t seq,
                                              uint64_t seed, bool shuffle,
                                              ir::DType dtype = ir::DType::kI64);
  // The next batch; starts a new epoch (new permutation) when fewer than `batch` windows are
  // left in this one (the remainder is dropped).
  Batch Next();
  IteratorState state() const { return state_; }
  absl::Status SetState(const IteratorState& state);
  int64_t num_windows() const { return num_windows_; }
  int64_t batches_per_epoch() const { return num_windows_ / batch_; }
  const Tokens& tokens() const { return tokens_; }

 private:
  void MakePermutation();
  Tokens tokens_;
  int64_t batch_ = 0, seq_ = 0, num_windows_ = 0;
  uint64_t seed_ = 0;
  bool shuffle_ = true;
  ir::DType dtype_ = ir::DType::kI64;
  IteratorState state_;
  int64_t perm_epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Splits a stream: the last `val_fraction` (at least one window of seq+1 tokens when the
// fraction is > 0) is validation. Errors when either part is too small for one batch.
struct Split {
  Tokens train;
  Tokens val;
};
absl::StatusOr<Split> SplitTrainVal(const Tokens& tokens, double val_fraction, int64_t min_tokens);

// splitmix64: the counter-based generator of the shuffles.
uint64_t SplitMix64(uint64_t x);

}  // namespace ptc::data

#endif  // PTC_RUNTIME_CPU_DATA_H_
