#include "compiler/ir/dropout.h"

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"

namespace ptc::ir {
namespace {

// The definition spelled out once more, element by element (dropout.h's comment).
bool Reference(uint64_t key, uint64_t i, uint32_t threshold) {
  const uint64_t group = 4 * (i / 16) + (i / 2) % 4;
  const int field = static_cast<int>(2 * (i % 2) + (i / 8) % 2);
  return ((DropoutMix(key + group) >> (16 * field)) & 0xffff) >= threshold;
}

TEST(Dropout, GroupsAreTheFourElementsATensorCoreThreadHoldsOfARow) {
  // Group {2q, 2q + 1, 2q + 8, 2q + 9} of each 16-element block, fields 0..3 in that order.
  for (uint64_t block : {uint64_t{0}, uint64_t{5}, uint64_t{1} << 40}) {
    for (uint64_t q = 0; q < 4; ++q) {
      const uint64_t b = 16 * block;
      const uint64_t members[4] = {b + 2 * q, b + 8 + 2 * q, b + 2 * q + 1, b + 2 * q + 9};
      for (int f = 0; f < 4; ++f) {
        EXPECT_EQ(DropoutGroup(members[f]), 4 * block + q);
        EXPECT_EQ(DropoutField(members[f]), f) << members[f];
      }
    }
  }
}

TEST(Dropout, ThresholdsAndScales) {
  EXPECT_EQ(DropoutThreshold(0.0), 0u);
  EXPECT_EQ(DropoutThreshold(-1.0), 0u);
  EXPECT_EQ(DropoutThreshold(std::nan("")), 0u);
  EXPECT_EQ(DropoutThreshold(0.1), 6554u);  // 6553.6 rounded
  EXPECT_EQ(DropoutThreshold(0.5), 32768u);
  EXPECT_EQ(DropoutThreshold(1.0), kDropoutDropAll);
  EXPECT_EQ(DropoutThreshold(1.0 - 1e-9), kDropoutDropAll);
  EXPECT_EQ(DropoutThreshold(1e-6), 0u);  // below 2^-17: nothing dropped, so no scale either
  EXPECT_EQ(DropoutScale(1e-6), 1.0);
  EXPECT_DOUBLE_EQ(DropoutScale(0.1), 1.0 / 0.9);
  EXPECT_EQ(DropoutScale(1.0), 0.0);
  // Threshold 0 keeps everything, kDropoutDropAll drops everything.
  const uint64_t key = DropoutKey(3, 7);
  for (uint64_t i = 0; i < 4096; ++i) {
    ASSERT_TRUE(DropoutKeeps(key, i, 0));
    ASSERT_FALSE(DropoutKeeps(key, i, kDropoutDropAll));
  }
}

TEST(Dropout, RunsAndRangesDrawTheElementsMask) {
  const uint64_t key = DropoutKey(11, 4);
  const uint32_t threshold = DropoutThreshold(0.3);
  for (uint64_t i = 0; i < 2048; ++i) {
    ASSERT_EQ(DropoutKeeps(key, i, threshold), Reference(key, i, threshold)) << i;
  }
  auto run = [&](auto n, uint64_t i0) {
    constexpr int N = decltype(n)::value;
    const uint32_t bits = DropoutKeepRun<N>(key, i0, threshold);
    for (int j = 0; j < N; ++j) {
      EXPECT_EQ((bits >> j) & 1u, Reference(key, i0 + j, threshold) ? 1u : 0u)
          << "N " << N << " i0 " << i0 << " j " << j;
    }
    EXPECT_EQ(bits >> N, 0u);
  };
  for (uint64_t i0 = 0; i0 < 64; i0 += 16) {
    for (uint64_t k = 0; k < 16; ++k) run(std::integral_constant<int, 1>{}, i0 + k);
    for (uint64_t k = 0; k < 16; k += 2) run(std::integral_constant<int, 2>{}, i0 + k);
    for (uint64_t k = 0; k < 16; k += 4) run(std::integral_constant<int, 4>{}, i0 + k);
    for (uint64_t k = 0; k < 16; k += 8) run(std::integral_constant<int, 8>{}, i0 + k);
    run(std::integral_constant<int, 16>{}, i0);
  }
  EXPECT_EQ(DropoutKeepRun<8>(key, 8, 0), 0xffu);
  // Ranges at every alignment and length, across block boundaries.
  for (uint64_t start : {0, 1, 7, 8, 15, 16, 33}) {
    for (int64_t n : {0, 1, 5, 16, 17, 40}) {
      std::vector<int> seen;
      DropoutForEach(key, start, n, threshold, [&](int64_t j, bool keep) {
        seen.push_back(static_cast<int>(j));
        EXPECT_EQ(keep, Reference(key, start + j, threshold)) << start << " + " << j;
      });
      ASSERT_EQ(seen.size(), static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) EXPECT_EQ(seen[j], j);
    }
  }
}

// The statistics a dropout needs: the kept fraction, and no dependence between the elements of
// a group (one hash), between neighbouring groups, or between consecutive counters' masks.
TEST(Dropout, MaskStatistics) {
  for (double ratio : {0.1, 0.5, 0.9}) {
    const uint32_t threshold = DropoutThreshold(ratio);
    const double keep = 1.0 - ratio;
    const int64_t n = 1 << 20;
    const uint64_t a = DropoutKey(5, 100), b = DropoutKey(5, 101);
    int64_t kept = 0, both_in_group = 0, both_next_group = 0, both_steps = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool k = DropoutKeeps(a, i, threshold);
      kept += k;
      both_in_group += k && DropoutKeeps(a, i ^ 9, threshold);  // same group, another field
      both_next_group += k && DropoutKeeps(a, i ^ 2, threshold);  // the neighbouring group
      both_steps += k && DropoutKeeps(b, i, threshold);  // the next step's mask
    }
    // Binomial: 5 standard deviations of a fraction over n (or fewer) draws.
    auto near = [&](int64_t count, double p, const char* what) {
      const double sd = std::sqrt(p * (1 - p) / n);
      EXPECT_NEAR(static_cast<double>(count) / n, p, 5 * sd) << what << " ratio " << ratio;
    };
    near(kept, keep, "kept");
    near(both_in_group, keep * keep, "both kept, same group");
    near(both_next_group, keep * keep, "both kept, next group");
    near(both_steps, keep * keep, "kept at two counters");
  }
}

}  // namespace
}  // namespace ptc::ir
