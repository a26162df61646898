// Host-side planning of the strided copy (codegen/cuda/copy.cu): which unit it moves and how it
// indexes. Plain C++ (no CUDA syntax) so that the planning is unit-tested on machines without
// a GPU (codegen/cuda/copy_plan_test.cc), and included by copy.cu's launcher.
//
// The runtime describes every copy in elements (kernels.h, CopyDesc) with contiguous dims
// already merged: split / concat of the GPT's QKV projection is [B*T, 768] rows read at a
// stride of 2304, a transpose is up to 4-D. Moving 2-byte elements one per thread, with a
// 64-bit division per dim and element, ran split / concat at about 6% of an H200's bandwidth
// (2.9 ms each per GPT-2 small step, bench/README.md). WidenCopy regroups the innermost run
// into units of up to 16 bytes when every row start and offset allows it (8 bf16 values per
// load / store), and CopyFitsInt32 lets the kernel index in 32 bits.
#ifndef PTC_CODEGEN_CUDA_COPY_PLAN_H_
#define PTC_CODEGEN_CUDA_COPY_PLAN_H_

#include <cstdint>

#include "codegen/cuda/kernels.h"

namespace ptc::cuda::kernels {

struct WideCopy {
  CopyDesc desc;  // in units of unit_bytes
  int unit_bytes = 0;
};

// The same copy in the widest unit (16, 8, 4 or 2 bytes, at least elem_bytes) that the
// descriptor allows: the innermost dim is contiguous on both sides (stride 1), its length and
// every other stride and both offsets are multiples of the unit. Base-pointer alignment is the
// caller's to check (CopyUnitFits). The unchanged descriptor when nothing wider fits.
inline WideCopy WidenCopy(const CopyDesc& d, int elem_bytes) {
  WideCopy w{d, elem_bytes};
  if (d.rank < 1 || elem_bytes <= 0 || d.n == 0) return w;
  const int last = d.rank - 1;
  if (d.in_strides[last] != 1 || d.out_strides[last] != 1) return w;
  for (int unit = 16; unit > elem_bytes; unit /= 2) {
    if (unit % elem_bytes != 0) continue;
    const int64_t f = unit / elem_bytes;
    bool ok = d.shape[last] % f == 0 && d.in_offset % f == 0 && d.out_offset % f == 0;
    for (int k = 0; ok && k < last; ++k) {
      ok = d.in_strides[k] % f == 0 && d.out_strides[k] % f == 0;
    }
    if (!ok) continue;
    w.unit_bytes = unit;
    w.desc.shape[last] = d.shape[last] / f;
    w.desc.n = d.n / f;
    w.desc.in_offset = d.in_offset / f;
    w.desc.out_offset = d.out_offset / f;
    for (int k = 0; k < last; ++k) {
      w.desc.in_strides[k] = d.in_strides[k] / f;
      w.desc.out_strides[k] = d.out_strides[k] / f;
    }
    return w;
  }
  return w;
}

// Whether both base pointers are aligned to `unit` bytes (arena buffers are; a view into the
// middle of one need not be).
inline bool CopyUnitFits(const void* in, const void* out, int unit) {
  const auto a = reinterpret_cast<uintptr_t>(in) | reinterpret_cast<uintptr_t>(out);
  return a % static_cast<uintptr_t>(unit) == 0;
}

// Whether every index the copy computes (the element count and each side's offsets, strides
// of either sign included) stays within int32, so that the kernel can divide in 32 bits.
inline bool CopyFitsInt32(const CopyDesc& d) {
  constexpr int64_t kMax = (int64_t{1} << 31) - 1;
  if (d.n > kMax) return false;
  int64_t in_lo = d.in_offset, in_hi = d.in_offset, out_lo = d.out_offset, out_hi = d.out_offset;
  for (int k = 0; k < d.rank; ++k) {
    if (d.shape[k] <= 0) return true;  // nothing is copied
    const int64_t span_in = (d.shape[k] - 1) * d.in_strides[k];
    const int64_t span_out = (d.shape[k] - 1) * d.out_strides[k];
    (span_in < 0 ? in_lo : in_hi) += span_in;
    (span_out < 0 ? out_lo : out_hi) += span_out;
  }
  return in_lo >= -kMax && in_hi <= kMax && out_lo >= -kMax && out_hi <= kMax;
}

}  // namespace ptc::cuda::kernels

#endif  // PTC_CODEGEN_CUDA_COPY_PLAN_H_
