// CPU kernels: one Kernel object per IR node, created once (attributes validated, strides and
// loop bounds precomputed) and run many times on raw buffers whose types are the node's value
// types. The same kernels evaluate constants during import and folding (EvaluateNode).
#ifndef PTC_CODEGEN_CPU_KERNEL_H_
#define PTC_CODEGEN_CPU_KERNEL_H_

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compiler/ir/ir.h"

namespace ptc::cpu {

class Kernel {
 public:
  virtual ~Kernel() = default;
  // Scratch bytes Run needs in `workspace` (planned into the arena by the memory planner).
  virtual size_t WorkspaceBytes() const { return 0; }
  // inputs[i] / outputs[i] point to dense row-major buffers of the node's i-th input / output
  // type. Outputs never alias inputs unless the planner proved it safe for this op.
  virtual absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                           void* workspace) = 0;
};

// Creates the kernel for `node`; an error names the node (Describe()) and what is unsupported.
absl::StatusOr<std::unique_ptr<Kernel>> CreateKernel(const ir::Node& node);

// Whether CreateKernel supports this op (any dtype); used by the importer's op list.
bool HasKernel(std::string_view op);

// Runs `node` on concrete tensors (allocating outputs of the node's output types). For
// constant folding, references in tests, and the conformance runner.
absl::StatusOr<std::vector<ir::Tensor>> EvaluateNode(const ir::Node& node,
                                                     const std::vector<ir::Tensor>& inputs);

}  // namespace ptc::cpu

#endif  // PTC_CODEGEN_CPU_KERNEL_H_
