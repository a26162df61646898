#include "compiler/ir/strides.h"

#include "gtest/gtest.h"

namespace ptc::ir {
namespace {

TEST(Strides, ContiguousAndBroadcast) {
  EXPECT_EQ(ContiguousStrides({2, 3, 4}), (std::vector<int64_t>{12, 4, 1}));
  EXPECT_EQ(ContiguousStrides({}), (std::vector<int64_t>{}));
  EXPECT_EQ(BroadcastStrides({3, 1}, {2, 3, 4}), (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(BroadcastStrides({4}, {2, 3, 4}), (std::vector<int64_t>{0, 0, 1}));
}

TEST(Strides, MergeDimsMergesWhatEveryListWalksContiguously) {
  // A suffix broadcast ([6] against [4, 5, 6]) keeps its dim apart; the output's merge.
  Shape shape = {4, 5, 6};
  std::vector<int64_t> out = ContiguousStrides(shape), bias = BroadcastStrides({6}, shape);
  MergeDims(shape, {&out, &bias});
  EXPECT_EQ(shape, (Shape{20, 6}));
  EXPECT_EQ(out, (std::vector<int64_t>{6, 1}));
  EXPECT_EQ(bias, (std::vector<int64_t>{0, 1}));
  // Same-shape operands collapse to one dim; size-1 dims go.
  shape = {2, 1, 3, 4};
  out = ContiguousStrides(shape);
  std::vector<int64_t> same = out;
  MergeDims(shape, {&out, &same});
  EXPECT_EQ(shape, (Shape{24}));
  EXPECT_EQ(out, (std::vector<int64_t>{1}));
  // A middle broadcast ([4, 1, 6] against [4, 5, 6]) cannot merge.
  shape = {4, 5, 6};
  out = ContiguousStrides(shape);
  std::vector<int64_t> mid = BroadcastStrides({4, 1, 6}, shape);
  MergeDims(shape, {&out, &mid});
  EXPECT_EQ(shape, (Shape{4, 5, 6}));
  EXPECT_EQ(mid, (std::vector<int64_t>{6, 0, 1}));
}

}  // namespace
}  // namespace ptc::ir
