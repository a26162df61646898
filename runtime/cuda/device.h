// CUDA device discovery and single-node evaluation. Built in every configuration: without nvcc
// (runtime/cuda/cuda_stub.cc) each function returns an error saying ptc was built without CUDA,
// so callers and tests need no #ifdef.
#ifndef PTC_RUNTIME_CUDA_DEVICE_H_
#define PTC_RUNTIME_CUDA_DEVICE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::cuda {

struct DeviceInfo {
  int ordinal = 0;
  std::string name;        // "NVIDIA H100 80GB HBM3"
  int cc_major = 0;        // compute capability
  int cc_minor = 0;
  int sm_count = 0;
  int64_t total_bytes = 0;
  int64_t free_bytes = 0;  // cudaMemGetInfo at the time of the call
  int driver_version = 0;  // cudaDriverGetVersion (e.g. 13000)
  int runtime_version = 0;
  std::string ToString() const;  // "NVIDIA H200 (sm_90, 132 SMs, 139.8 GiB, 139.2 GiB free)"
};

// Whether this ptc was compiled with the CUDA toolkit (PTC_HAVE_CUDA).
bool BuiltWithCuda();

// The device `ordinal`, made current for this thread. Errors: "this ptc was built without
// CUDA ..." (stub build), "no CUDA device: ..." (no driver, no GPU, or ordinal out of range).
absl::StatusOr<DeviceInfo> GetDevice(int ordinal = 0);

struct KernelOptions {
  bool allow_tf32 = false;    // fp32 GEMMs on tensor cores (10-bit mantissa products)
  bool host_fallback = false;  // run ops without a CUDA kernel through the CPU kernels
  // attention through two cuBLASLt GEMMs + a T x T scratch instead of the flash kernel (f32
  // only; for comparisons).
  bool attention_two_gemm = false;
};

// Whether `op` has a CUDA kernel (some dtypes may still be unsupported; CreateDeviceKernel says).
bool HasDeviceKernel(std::string_view op);

// Runs `node` once on the device on host tensors (uploaded, run, synchronized, downloaded):
// the CUDA counterpart of cpu::EvaluateNode, for the kernel case table and debugging.
absl::StatusOr<std::vector<ir::Tensor>> EvaluateNodeOnDevice(const ir::Node& node,
                                                             const std::vector<ir::Tensor>& inputs,
                                                             const KernelOptions& options = {});

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_DEVICE_H_
