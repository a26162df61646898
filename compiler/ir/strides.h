// Element strides of dense row-major tensors and broadcasts, and the dimension merging that
// the elementwise and copy kernels index through (runtime/cuda/device_kernels.cc, the NVRTC
// generator codegen/cuda/nvrtc_codegen.cc).
#ifndef PTC_COMPILER_IR_STRIDES_H_
#define PTC_COMPILER_IR_STRIDES_H_

#include <cstdint>
#include <vector>

#include "compiler/ir/ir.h"

namespace ptc::ir {

// Row-major element strides of `shape` ([2, 3, 4] -> [12, 4, 1]).
std::vector<int64_t> ContiguousStrides(const Shape& shape);

// Strides that read a dense `in` broadcast (numpy rules, aligned at the last dim) to `out`:
// 0 on the dims `in` lacks or has as 1. `in` must broadcast to `out`.
std::vector<int64_t> BroadcastStrides(const Shape& in, const Shape& out);

// Drops size-1 dims and merges adjacent dims that every stride list walks contiguously
// (stride[d] == stride[d + 1] * shape[d + 1] in all of them), rewriting `shape` and each list
// in place: [4, 5, 6] with strides [30, 6, 1] and [0, 6, 1] -> [4, 30] with [30, 1], [0, 1].
void MergeDims(Shape& shape, const std::vector<std::vector<int64_t>*>& strides);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_STRIDES_H_
