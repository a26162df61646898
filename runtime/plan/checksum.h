// XXH64 (seed 0), the checksum of plan weights files: fast (several GB/s), streaming, and
// simple enough to re-implement in the corpus generator (tests/corpus/generate_corpus.py).
#ifndef PTC_RUNTIME_PLAN_CHECKSUM_H_
#define PTC_RUNTIME_PLAN_CHECKSUM_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ptc::plan {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void Update(const void* data, size_t size);
  uint64_t Digest() const;

 private:
  uint64_t v_[4];
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buf_size_ = 0;
  uint64_t seed_;
};

uint64_t Xxh64Hash(const void* data, size_t size, uint64_t seed = 0);
inline uint64_t Xxh64Hash(std::string_view s) { return Xxh64Hash(s.data(), s.size()); }

}  // namespace ptc::plan

#endif  // PTC_RUNTIME_PLAN_CHECKSUM_H_
