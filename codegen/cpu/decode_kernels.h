// CPU kernels for KV-cache decoder ops (compiler/ir/ops_decode.h). CreateKernel (kernel.cc)
// forwards the ops it does not know to CreateDecodeKernel.
#ifndef PTC_CODEGEN_CPU_DECODE_KERNELS_H_
#define PTC_CODEGEN_CPU_DECODE_KERNELS_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ir.h"

namespace ptc::cpu {

// The kernel for a decoder op; nullptr (not an error) when `node`'s op is not one.
absl::StatusOr<std::unique_ptr<Kernel>> CreateDecodeKernel(const ir::Node& node);
bool HasDecodeKernel(std::string_view op);

}  // namespace ptc::cpu

#endif  // PTC_CODEGEN_CPU_DECODE_KERNELS_H_
