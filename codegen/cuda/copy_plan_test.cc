// copy_plan.h without a GPU: the widened descriptor moves exactly the bytes of the element
// descriptor. Both are executed on the host by the kernel's own index walk (ApplyCopy mirrors
// StridedCopyKernel in copy.cu), on the copies the runtime makes (split / concat of the QKV
// projection, transposes, slices with negative steps, expands) and on random ones.
#include "codegen/cuda/copy_plan.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

namespace ptc::cuda::kernels {
namespace {

// StridedCopyKernel's walk on the host, in units of `unit` bytes; `in` / `out` point at the
// descriptors' origin (offsets may be negative only through negative strides, never here).
void ApplyCopy(const CopyDesc& d, int unit, const uint8_t* in, uint8_t* out) {
  for (int64_t i = 0; i < d.n; ++i) {
    int64_t src = d.in_offset, dst = d.out_offset, r = i;
    for (int k = d.rank - 1; k >= 0; --k) {
      const int64_t c = r % d.shape[k];
      r /= d.shape[k];
      src += c * d.in_strides[k];
      dst += c * d.out_strides[k];
    }
    std::memcpy(out + dst * unit, in + src * unit, unit);
  }
}

CopyDesc Desc(std::vector<int64_t> shape, std::vector<int64_t> in_strides,
              std::vector<int64_t> out_strides, int64_t in_offset, int64_t out_offset) {
  CopyDesc d;
  d.rank = static_cast<int32_t>(shape.size());
  d.n = 1;
  for (size_t k = 0; k < shape.size(); ++k) {
    d.shape[k] = shape[k];
    d.in_strides[k] = in_strides[k];
    d.out_strides[k] = out_strides[k];
    d.n *= shape[k];
  }
  d.in_offset = in_offset;
  d.out_offset = out_offset;
  return d;
}

// Bytes [lo, hi) each side of the descriptor touches, in elements.
void Extent(const CopyDesc& d, bool in_side, int64_t* lo, int64_t* hi) {
  *lo = *hi = in_side ? d.in_offset : d.out_offset;
  for (int k = 0; k < d.rank; ++k) {
    const int64_t s = (d.shape[k] - 1) * (in_side ? d.in_strides[k] : d.out_strides[k]);
    (s < 0 ? *lo : *hi) += s;
  }
  *hi += 1;
}

// Runs the element and the widened descriptor on the same random input; expects the same
// output bytes (untouched bytes included) and returns the unit WidenCopy chose.
int ExpectSameBytes(const CopyDesc& d, int elem_bytes) {
  int64_t in_lo, in_hi, out_lo, out_hi;
  Extent(d, true, &in_lo, &in_hi);
  Extent(d, false, &out_lo, &out_hi);
  EXPECT_GE(in_lo, 0);
  EXPECT_GE(out_lo, 0);
  std::vector<uint8_t> in(in_hi * elem_bytes);
  std::mt19937 rng(7);
  for (uint8_t& b : in) b = static_cast<uint8_t>(rng());
  std::vector<uint8_t> want(out_hi * elem_bytes, 0xAB), got(want);
  ApplyCopy(d, elem_bytes, in.data(), want.data());
  const WideCopy w = WidenCopy(d, elem_bytes);
  EXPECT_EQ(w.unit_bytes % elem_bytes, 0);
  EXPECT_EQ(w.desc.n * w.unit_bytes, d.n * elem_bytes);
  ApplyCopy(w.desc, w.unit_bytes, in.data(), got.data());
  EXPECT_EQ(got, want) << "unit " << w.unit_bytes;
  return w.unit_bytes;
}

TEST(CopyPlan, SplitAndConcatOfQkvMove16ByteUnits) {
  // split {axis=2} of bf16 [16,1024,2304] into three [16,1024,768] (merged: [16384, 768]),
  // here with 64 rows; the third piece starts 1536 elements in.
  for (int64_t piece = 0; piece < 3; ++piece) {
    const CopyDesc split = Desc({64, 768}, {2304, 1}, {768, 1}, piece * 768, 0);
    EXPECT_EQ(ExpectSameBytes(split, 2), 16);
    const CopyDesc concat = Desc({64, 768}, {768, 1}, {2304, 1}, 0, piece * 768);
    EXPECT_EQ(ExpectSameBytes(concat, 2), 16);
  }
  // f32: 4 floats a unit.
  EXPECT_EQ(ExpectSameBytes(Desc({8, 96}, {288, 1}, {96, 1}, 96, 0), 4), 16);
}

TEST(CopyPlan, NarrowerUnitsWhereRowsOrOffsetsAreOdd) {
  EXPECT_EQ(ExpectSameBytes(Desc({5, 12}, {36, 1}, {12, 1}, 12, 0), 2), 8);   // rows of 24 B
  EXPECT_EQ(ExpectSameBytes(Desc({5, 6}, {18, 1}, {6, 1}, 6, 0), 2), 4);     // 12 B
  EXPECT_EQ(ExpectSameBytes(Desc({5, 7}, {21, 1}, {7, 1}, 7, 0), 2), 2);     // odd length
  EXPECT_EQ(ExpectSameBytes(Desc({4, 16}, {33, 1}, {16, 1}, 0, 0), 2), 2);   // odd stride
  EXPECT_EQ(ExpectSameBytes(Desc({4, 16}, {32, 1}, {16, 1}, 3, 0), 2), 2);   // odd offset
  EXPECT_EQ(ExpectSameBytes(Desc({3, 5}, {10, 1}, {5, 1}, 0, 0), 1), 1);     // bytes, length 5
  EXPECT_EQ(ExpectSameBytes(Desc({3, 32}, {64, 1}, {32, 1}, 16, 0), 1), 16);  // bool rows
  EXPECT_EQ(ExpectSameBytes(Desc({4, 6}, {6, 1}, {6, 1}, 0, 0), 8), 16);     // f64 / i64
  EXPECT_EQ(ExpectSameBytes(Desc({4, 3}, {3, 1}, {3, 1}, 0, 0), 8), 8);      // odd i64 rows
}

TEST(CopyPlan, TransposesAndNegativeStridesStayElementwise) {
  // [4, 6] -> [6, 4]: the innermost dim is strided on the input side.
  EXPECT_EQ(ExpectSameBytes(Desc({6, 4}, {1, 6}, {4, 1}, 0, 0), 2), 2);
  // a reversed slice (step -1) of 16 elements.
  EXPECT_EQ(ExpectSameBytes(Desc({16}, {-1}, {1}, 15, 0), 2), 2);
  // rows reversed, each row contiguous: widens (the row stride is negative but a multiple).
  EXPECT_EQ(ExpectSameBytes(Desc({4, 8}, {-8, 1}, {8, 1}, 24, 0), 2), 16);
  // expand of a row over 5 rows (input stride 0).
  EXPECT_EQ(ExpectSameBytes(Desc({5, 8}, {0, 1}, {8, 1}, 0, 0), 4), 16);
}

TEST(CopyPlan, RandomDescriptorsMoveTheSameBytes) {
  std::mt19937 rng(3);
  const int elem_sizes[] = {1, 2, 4, 8};
  int widened = 0;
  for (int trial = 0; trial < 300; ++trial) {
    const int eb = elem_sizes[rng() % 4];
    const int rank = 1 + static_cast<int>(rng() % 3);
    std::vector<int64_t> shape(rank), in_st(rank), out_st(rank);
    int64_t in_stride = 1 + static_cast<int64_t>(rng() % 3) * (rng() % 2 ? 8 : 1);
    int64_t out_stride = 1;
    for (int k = rank - 1; k >= 0; --k) {
      shape[k] = 1 + static_cast<int64_t>(rng() % 9) * (k == rank - 1 && rng() % 2 ? 8 : 1);
      in_st[k] = k == rank - 1 && rng() % 4 != 0 ? 1 : in_stride;
      out_st[k] = out_stride;
      in_stride = in_st[k] * shape[k] + static_cast<int64_t>(rng() % 3) * 8;
      out_stride *= shape[k];
    }
    const int64_t in_off = static_cast<int64_t>(rng() % 3) * 8 + (rng() % 4 == 0 ? 1 : 0);
    const int unit = ExpectSameBytes(Desc(shape, in_st, out_st, in_off, 0), eb);
    widened += unit > eb;
    if (HasFailure()) break;
  }
  EXPECT_GT(widened, 30);  // the random cases exercise the wide path, not only the fallback
}

TEST(CopyPlan, AlignmentAndInt32Checks) {
  alignas(16) uint8_t buf[64];
  EXPECT_TRUE(CopyUnitFits(buf, buf + 16, 16));
  EXPECT_FALSE(CopyUnitFits(buf, buf + 8, 16));
  EXPECT_TRUE(CopyUnitFits(buf + 2, buf + 6, 2));
  EXPECT_TRUE(CopyFitsInt32(Desc({16384, 768}, {2304, 1}, {768, 1}, 1536, 0)));
  EXPECT_FALSE(CopyFitsInt32(Desc({1 << 20, 4096}, {4096, 1}, {4096, 1}, 0, 0)));  // n >= 2^31
  // few elements but an offset past 2^31 (a slice deep into a large tensor).
  EXPECT_FALSE(CopyFitsInt32(Desc({4}, {1}, {1}, int64_t{3} << 30, 0)));
  EXPECT_TRUE(CopyFitsInt32(Desc({4, 8}, {-8, 1}, {8, 1}, 24, 0)));
}

}  // namespace
}  // namespace ptc::cuda::kernels
