// The CUDA runtime of a ptc built without nvcc (cmake/cuda.cmake): every entry point returns
// the same error, so that `ptc run` of a CUDA plan and the GPU tests fail or skip cleanly.
#include <string>

#include "absl/status/status.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/executor.h"

namespace ptc::cuda {
namespace {

absl::Status NoCuda() {
  return absl::FailedPreconditionError(
      "this ptc was built without CUDA (no nvcc found at configure time); rebuild with the CUDA "
      "toolkit (-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc) or use --target cpu");
}

}  // namespace

bool BuiltWithCuda() { return false; }
absl::StatusOr<DeviceInfo> GetDevice(int) { return NoCuda(); }
bool HasDeviceKernel(std::string_view) { return false; }
absl::StatusOr<std::vector<ir::Tensor>> EvaluateNodeOnDevice(const ir::Node&,
                                                             const std::vector<ir::Tensor>&,
                                                             const KernelOptions&, Tuner*) {
  return NoCuda();
}
absl::StatusOr<std::shared_ptr<const GeneratedKernels>> LoadGeneratedKernels(
    const std::vector<plan::CudaKernel>&, const DeviceInfo&) {
  return NoCuda();
}
std::string CudaArch(const DeviceInfo& d) { return "sm_" + std::to_string(d.cc_major * 10 + d.cc_minor); }
GeneratedKernelStats GetGeneratedKernelStats() { return {}; }
absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan&) { return NoCuda(); }
absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan&,
                                                           const ExecutorOptions&) {
  return NoCuda();
}

}  // namespace ptc::cuda
