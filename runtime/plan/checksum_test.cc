#include "runtime/plan/checksum.h"

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace ptc::plan {
namespace {

// Published XXH64 reference vectors (seed 0) of the xxHash specification.
TEST(Xxh64Test, MatchesReferenceVectors) {
  EXPECT_EQ(Xxh64Hash(""), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(Xxh64Hash("a"), 0xD24EC4F1A98C6E5BULL);
  EXPECT_EQ(Xxh64Hash("abc"), 0x44BC2CF5AD770999ULL);
  EXPECT_EQ(Xxh64Hash("Call me Ishmael."), 0x6D04390FC9D61A90ULL);
  // 39 bytes: exercises the 32-byte stripes and the 8/4/1-byte tails.
  EXPECT_EQ(Xxh64Hash("Nobody inspects the spammish repetition"), 0xFBCEA83C8A378BF1ULL);
}

// Streaming in uneven pieces gives the one-shot hash.
TEST(Xxh64Test, StreamingEqualsOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  for (size_t piece : {1, 3, 31, 32, 33, 100}) {
    Xxh64 h;
    for (size_t pos = 0; pos < data.size(); pos += piece) {
      h.Update(data.data() + pos, std::min(piece, data.size() - pos));
    }
    EXPECT_EQ(h.Digest(), Xxh64Hash(data)) << "piece " << piece;
  }
}

}  // namespace
}  // namespace ptc::plan
