// Optional cuDNN fused attention (SDPA, flash) for the CUDA backend's attention and
// attention_grad nodes, selected by KernelOptions::attention_cudnn (PTC_CUDA_OPTIONS=
// attention_cudnn). Internal to runtime/cuda; the cuDNN frontend (third_party/cudnn_frontend,
// header-only and template-heavy) is included by cudnn_attention.cc alone.
//
// cuDNN is loaded at run time (dlopen of libcudnn.so.9, or $PTC_CUDNN_LIBRARY, through the
// frontend's dynamic-loading shim): ptc-cuda never links it, and a machine without it runs the
// hand-written flash kernels. Built only with the vendored frontend headers and cudnn.h
// (PTC_HAVE_CUDNN, CMake option PTC_CUDNN); otherwise every Create returns kUnimplemented.
//
// The Create functions DECLINE (kUnimplemented, the reason in the message; the caller then
// uses the existing kernels) for: f32 or other dtypes, head dims cuDNN does not take (multiples
// of 8 up to 256), any mask except the causal triangle that the compiler marked with the node
// attribute causal=1 (key j masked iff j > i + Tk - Tq, with Tq <= Tk), causal=1 without a
// mask input, and whenever cuDNN is unusable (library missing, handle or graph build fails).
// Other errors (malformed nodes) are InvalidArgument like the rest of runtime/cuda.
#ifndef PTC_RUNTIME_CUDA_CUDNN_ATTENTION_H_
#define PTC_RUNTIME_CUDA_CUDNN_ATTENTION_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::cuda {

class DeviceKernel;  // runtime/cuda/device_kernels.h

// Whether this ptc was compiled with the cuDNN frontend (PTC_HAVE_CUDNN).
bool BuiltWithCudnn();

// OK when libcudnn loads and a cuDNN handle can be created on the current device; otherwise
// FailedPrecondition / Unimplemented with the reason (tests print it when they skip).
absl::Status CudnnAttentionAvailable();

// attention(q, k, v [, mask]) -> o through cuDNN's SDPA forward.
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateCudnnAttention(const ir::Node& node);

// attention_grad(dy, q, k, v [, mask]) -> dq, dk, dv: the SDPA forward again (O and the
// softmax statistics into the workspace), then the SDPA backward.
absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateCudnnAttentionGrad(const ir::Node& node);

// Process-wide counts of cuDNN attention kernels made and of nodes declined (tests, logs).
struct CudnnAttentionStats {
  int64_t forward_kernels = 0;
  int64_t backward_kernels = 0;
  int64_t declined = 0;
};
CudnnAttentionStats GetCudnnAttentionStats();

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_CUDNN_ATTENTION_H_
