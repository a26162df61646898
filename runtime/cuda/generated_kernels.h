// The plan's generated fused_elementwise kernels on the device (codegen/cuda/nvrtc_codegen.h
// makes them at `ptc compile --target cuda`). Each CUBIN built for the device's architecture
// is loaded with the CUDA runtime's library API (cudaLibraryLoadData / cudaLibraryGetKernel;
// no link against libcuda, so ptc-cuda still starts without a driver) and launched with
// cudaLaunchKernel. A node uses a kernel only if the source it regenerates now is the stored
// text byte for byte: a stale or edited plan can never launch a kernel with other parameters
// than the node's. A node the plan has no kernel for on this device (a plan compiled for
// another architecture, without NVRTC, or with --no-cuda-codegen) gets one compiled at load
// with NVRTC for the device's architecture where NVRTC loads (a note on stderr says so, once);
// everything else runs on the interpreter (codegen/cuda/elementwise.cu).
// Internal to runtime/cuda.
#ifndef PTC_RUNTIME_CUDA_GENERATED_KERNELS_H_
#define PTC_RUNTIME_CUDA_GENERATED_KERNELS_H_

#include <cuda_runtime_api.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "codegen/cuda/nvrtc_codegen.h"
#include "compiler/ir/ir.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/device_kernels.h"

namespace ptc::cuda {

class GeneratedKernels {
 public:
  ~GeneratedKernels();
  GeneratedKernels(const GeneratedKernels&) = delete;
  GeneratedKernels& operator=(const GeneratedKernels&) = delete;

  // The kernel named `src.name` whose stored source is `src.source`, or null.
  cudaKernel_t Find(const codegen::FusedSource& src) const;
  // Find, else `src` compiled now with NVRTC for the device and loaded (kept for later nodes of
  // the same source); null with the reason in *why where that cannot be done.
  cudaKernel_t FindOrCompile(const codegen::FusedSource& src, std::string* why) const;
  // Why kernels of the plan were not loaded ("" when all were, or the plan had none).
  const std::string& note() const { return note_; }
  int loaded() const { return static_cast<int>(kernels_.size()); }

 private:
  friend absl::StatusOr<std::shared_ptr<const GeneratedKernels>> LoadGeneratedKernels(
      const std::vector<plan::CudaKernel>& kernels, const DeviceInfo& device);
  GeneratedKernels() = default;
  struct Entry {
    std::string source;
    cudaLibrary_t library = nullptr;
    cudaKernel_t kernel = nullptr;
  };
  std::map<std::string, Entry> kernels_;
  std::string note_;
  std::string arch_;  // the device's, sm_XY
  mutable std::mutex mu_;
  mutable std::map<std::string, Entry> compiled_;  // FindOrCompile's, by name
};

// fused_elementwise through its generated kernel in options.generated; null (not an error)
// when there is none for the node or options.fused_interpreter is set: the caller then makes
// the interpreter's kernel. Counts GeneratedKernelStats and, the first time a plan's kernels
// cannot serve a node, prints why on stderr (once per process).
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateGeneratedFusedKernel(
    const ir::Node& node, const KernelOptions& options);

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_GENERATED_KERNELS_H_
