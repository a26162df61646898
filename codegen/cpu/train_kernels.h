// CPU kernels for training ops (compiler/ir/ops_train.h). CreateKernel (kernel.cc) forwards
// every op it does not know to CreateTrainKernel.
#ifndef PTC_CODEGEN_CPU_TRAIN_KERNELS_H_
#define PTC_CODEGEN_CPU_TRAIN_KERNELS_H_

#include <memory>
#include <string_view>

#include "absl/status/statusor.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ir.h"

namespace ptc::cpu {

// The kernel for a training op; nullptr (not an error) when `node`'s op is not one.
absl::StatusOr<std::unique_ptr<Kernel>> CreateTrainKernel(const ir::Node& node);
bool HasTrainKernel(std::string_view op);

}  // namespace ptc::cpu

#endif  // PTC_CODEGEN_CPU_TRAIN_KERNELS_H_
