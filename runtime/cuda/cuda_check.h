// Turning CUDA and cuBLASLt return codes into absl::Status. Every CUDA API call and every
// kernel launch in runtime/cuda goes through one of these macros.
#ifndef PTC_RUNTIME_CUDA_CUDA_CHECK_H_
#define PTC_RUNTIME_CUDA_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "absl/status/status.h"

namespace ptc::cuda {

// "CUDA error cudaErrorMemoryAllocation (out of memory) in cudaMalloc(...) at file:line".
// Allocation failures are ResourceExhausted, a missing device or driver FailedPrecondition,
// anything else Internal.
absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line);
absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line);

}  // namespace ptc::cuda

#define PTC_CUDA_RETURN_IF_ERROR(expr)                                                    \
  do {                                                                                    \
    const cudaError_t ptc_cuda_error_ = (expr);                                           \
    if (ptc_cuda_error_ != cudaSuccess) {                                                 \
      return ::ptc::cuda::CudaStatus(ptc_cuda_error_, #expr, __FILE__, __LINE__);         \
    }                                                                                     \
  } while (0)

#define PTC_CUBLAS_RETURN_IF_ERROR(expr)                                                  \
  do {                                                                                    \
    const cublasStatus_t ptc_cublas_status_ = (expr);                                     \
    if (ptc_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                    \
      return ::ptc::cuda::CublasStatus(ptc_cublas_status_, #expr, __FILE__, __LINE__);    \
    }                                                                                     \
  } while (0)

#endif  // PTC_RUNTIME_CUDA_CUDA_CHECK_H_
