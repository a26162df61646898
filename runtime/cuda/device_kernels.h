// Device kernels of the CUDA runtime: one DeviceKernel per IR node, created once (attributes
// validated, descriptors and cuBLASLt algorithms prepared) and launched many times on one
// stream with raw device pointers laid out as the node's value types (dense, row-major).
// Internal to runtime/cuda (uses CUDA types).
#ifndef PTC_RUNTIME_CUDA_DEVICE_KERNELS_H_
#define PTC_RUNTIME_CUDA_DEVICE_KERNELS_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "compiler/ir/ir.h"
#include "runtime/cuda/device.h"

namespace ptc::cuda {

// One cuBLASLt workspace per executor, shared by every GEMM (one stream: no overlap).
inline constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;

class Tuner;  // runtime/cuda/autotune.h

// Whether [p, p + p_bytes) and [q, q + q_bytes) share a byte (empty ranges share none).
inline bool BytesOverlap(const void* p, int64_t p_bytes, const void* q, int64_t q_bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p), b = reinterpret_cast<uintptr_t>(q);
  return p_bytes > 0 && q_bytes > 0 && a < b + static_cast<uintptr_t>(q_bytes) &&
         b < a + static_cast<uintptr_t>(p_bytes);
}

struct LaunchContext {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  void* lt_workspace = nullptr;
  size_t lt_workspace_bytes = 0;
  int* error_flag = nullptr;  // device int: kernels that detect bad data store error_code
  int error_code = 0;         // 1 + the node's schedule index
  // Set during an executor's first run with ExecutorOptions::autotune: kernels with several
  // implementations time them there and keep the fastest (runtime/cuda/autotune.h).
  Tuner* tuner = nullptr;
};

class DeviceKernel {
 public:
  virtual ~DeviceKernel() = default;
  // Device scratch bytes Launch needs in `workspace`.
  virtual size_t WorkspaceBytes() const { return 0; }
  // Device bytes held by the kernel itself (descriptors), allocated at creation.
  virtual size_t ResidentBytes() const { return 0; }
  virtual bool host_fallback() const { return false; }
  // Whether Launch only enqueues work on ctx.stream (no host synchronization, no allocation,
  // the same launches every time), so that a CUDA graph can capture and replay it.
  virtual bool capturable() const { return !host_fallback(); }
  virtual absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> inputs,
                              absl::Span<void* const> outputs, void* workspace) = 0;

  // Multi-tensor batching: nodes scheduled back to back whose kernels give the same non-empty
  // BatchKey (for their operand pointers) run as one LaunchBatch of the first kernel, which
  // receives every member (itself included) in schedule order. E.g. the adamw_update of every
  // parameter: a handful of launches instead of one per tensor.
  struct BatchItem {
    DeviceKernel* kernel = nullptr;
    absl::Span<const void* const> inputs;
    absl::Span<void* const> outputs;
  };
  virtual std::string BatchKey(absl::Span<const void* const> inputs) const {
    (void)inputs;
    return std::string();
  }
  virtual absl::Status LaunchBatch(const LaunchContext& ctx, const std::vector<BatchItem>& items) {
    (void)ctx;
    (void)items;
    return absl::UnimplementedError("this kernel does not batch");
  }
};

// Errors name the node (Describe()), the dtype or attribute that is unsupported. With
// options.host_fallback, ops without a CUDA kernel get a kernel that runs the CPU kernel on
// host copies (synchronizing the stream).
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateDeviceKernel(const ir::Node& node,
                                                                  const KernelOptions& options,
                                                                  cublasLtHandle_t lt);

// matmul / gemm through cuBLASLt (runtime/cuda/gemm.cc).
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateGemmKernel(const ir::Node& node,
                                                                const KernelOptions& options,
                                                                cublasLtHandle_t lt);

// Losses and training ops (runtime/cuda/train_kernels.cc): softmax_ce_loss, nll_loss, their
// gradients, layer_norm_grad, gelu_grad, gather_grad, slice_grad, lr_schedule, adamw_update,
// sgd_update.
bool HasTrainDeviceKernel(std::string_view op);
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateTrainDeviceKernel(const ir::Node& node);

// Synchronous device buffer (RAII) for load-time allocations and tests.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) { o.ptr_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  // `what` names the buffer in the error ("the plan's arena").
  absl::Status Allocate(size_t bytes, const char* what);
  char* get() const { return static_cast<char*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_DEVICE_KERNELS_H_
