// Kernels for ops made by passes/ fusions (names starting with "fused_"). CreateKernel
// (kernel.cc) forwards every op whose name starts with "fused_" to CreateFusedKernel.
#ifndef PTC_CODEGEN_CPU_FUSED_KERNELS_H_
#define PTC_CODEGEN_CPU_FUSED_KERNELS_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ir.h"

namespace ptc::cpu {

// The kernel for a fused op; an Unimplemented error (naming the node) for other ops.
absl::StatusOr<std::unique_ptr<Kernel>> CreateFusedKernel(const ir::Node& node);

// Whether CreateFusedKernel supports `op`.
bool HasFusedKernel(std::string_view op);

}  // namespace ptc::cpu

#endif  // PTC_CODEGEN_CPU_FUSED_KERNELS_H_
