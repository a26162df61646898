// Device discovery, CUDA error conversion, device buffers and single-node evaluation.
#include "runtime/cuda/device.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/device_kernels.h"

namespace ptc::cuda {

absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line) {
  std::string msg = absl::StrCat("CUDA error ", cudaGetErrorName(error), " (",
                                 cudaGetErrorString(error), ") in ", expr, " at ", file, ":",
                                 line);
  switch (error) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(msg);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::InternalError(msg);
  }
}

namespace {

// cublasGetStatusName lives in libcublas, which ptc does not link (cuBLASLt only).
const char* CublasStatusName(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
  }
}

}  // namespace

absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line) {
  std::string msg = absl::StrCat("cuBLAS error ", CublasStatusName(status), " (", int(status),
                                 ") in ", expr, " at ", file, ":", line);
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(msg);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return absl::UnimplementedError(msg);
  return absl::InternalError(msg);
}

bool BuiltWithCuda() { return true; }

absl::StatusOr<DeviceInfo> GetDevice(int ordinal) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // not sticky: clear it so later calls start clean
    return absl::FailedPreconditionError(absl::StrCat(
        "no CUDA device: ",
        e != cudaSuccess ? absl::StrCat("cudaGetDeviceCount failed with ", cudaGetErrorName(e),
                                        " (", cudaGetErrorString(e), ")")
                         : std::string("cudaGetDeviceCount found 0 devices"),
        "; run on a machine with an NVIDIA GPU and driver, or use --target cpu"));
  }
  if (ordinal < 0 || ordinal >= count) {
    return absl::FailedPreconditionError(absl::StrCat("no CUDA device: device ", ordinal,
                                                      " was asked for but ", count,
                                                      " device(s) are present"));
  }
  PTC_CUDA_RETURN_IF_ERROR(cudaSetDevice(ordinal));
  cudaDeviceProp prop;
  PTC_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, ordinal));
  DeviceInfo info;
  info.ordinal = ordinal;
  info.name = prop.name;
  info.cc_major = prop.major;
  info.cc_minor = prop.minor;
  info.sm_count = prop.multiProcessorCount;
  size_t free_bytes = 0, total_bytes = 0;
  PTC_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
  info.free_bytes = static_cast<int64_t>(free_bytes);
  info.total_bytes = static_cast<int64_t>(total_bytes);
  PTC_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&info.driver_version));
  PTC_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&info.runtime_version));
  return info;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = o.ptr_;
    bytes_ = o.bytes_;
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

absl::Status DeviceBuffer::Allocate(size_t bytes, const char* what) {
  if (ptr_ != nullptr) {
    cudaFree(ptr_);
    ptr_ = nullptr;
  }
  bytes_ = bytes;
  if (bytes == 0) return absl::OkStatus();
  const cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e != cudaSuccess) {
    ptr_ = nullptr;
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot allocate ", bytes, " bytes of device memory for ", what, ": ",
        cudaGetErrorString(e), " (", free_bytes, " of ", total_bytes, " bytes free)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ir::Tensor>> EvaluateNodeOnDevice(const ir::Node& node,
                                                             const std::vector<ir::Tensor>& inputs,
                                                             const KernelOptions& options,
                                                             Tuner* tuner) {
  PTC_ASSIGN_OR_RETURN(DeviceInfo info, GetDevice(0));
  (void)info;
  if (inputs.size() != node.num_inputs()) {
    return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": expects ",
                                                   node.num_inputs(), " inputs, got ",
                                                   inputs.size()));
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].type() != node.input(i)->type()) {
      return absl::InvalidArgumentError(absl::StrCat(node.Describe(), ": input ", i, " is ",
                                                     inputs[i].type().ToString(), ", expected ",
                                                     node.input(i)->type().ToString()));
    }
  }
  cublasLtHandle_t lt = nullptr;
  PTC_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&lt));
  struct LtGuard {
    cublasLtHandle_t h;
    ~LtGuard() { cublasLtDestroy(h); }
  } lt_guard{lt};
  cudaStream_t stream = nullptr;
  PTC_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { cudaStreamDestroy(s); }
  } stream_guard{stream};

  PTC_ASSIGN_OR_RETURN(std::unique_ptr<DeviceKernel> kernel,
                       CreateDeviceKernel(node, options, lt));
  std::vector<DeviceBuffer> in_bufs(inputs.size()), out_bufs(node.num_outputs());
  std::vector<const void*> in_ptrs;
  std::vector<void*> out_ptrs;
  for (size_t i = 0; i < inputs.size(); ++i) {
    PTC_RETURN_IF_ERROR(in_bufs[i].Allocate(inputs[i].nbytes() ? inputs[i].nbytes() : 1, "an input"));
    if (inputs[i].nbytes()) {
      PTC_CUDA_RETURN_IF_ERROR(cudaMemcpy(in_bufs[i].get(), inputs[i].data(), inputs[i].nbytes(),
                                          cudaMemcpyHostToDevice));
    }
    in_ptrs.push_back(in_bufs[i].get());
  }
  std::vector<ir::Tensor> outs;
  for (size_t i = 0; i < node.num_outputs(); ++i) {
    outs.emplace_back(node.output(i)->type().dtype, node.output(i)->type().shape);
    const size_t bytes = outs.back().nbytes();
    PTC_RETURN_IF_ERROR(out_bufs[i].Allocate(bytes ? bytes : 1, "an output"));
    // Poison: a kernel that leaves an element unwritten shows up as NaN / 0xff bytes.
    PTC_CUDA_RETURN_IF_ERROR(cudaMemset(out_bufs[i].get(), 0xff, bytes ? bytes : 1));
    out_ptrs.push_back(out_bufs[i].get());
  }
  DeviceBuffer workspace, lt_workspace, flag;
  PTC_RETURN_IF_ERROR(workspace.Allocate(kernel->WorkspaceBytes(), "kernel scratch"));
  PTC_RETURN_IF_ERROR(lt_workspace.Allocate(kLtWorkspaceBytes, "the cuBLASLt workspace"));
  PTC_RETURN_IF_ERROR(flag.Allocate(sizeof(int), "the error flag"));
  PTC_CUDA_RETURN_IF_ERROR(cudaMemset(flag.get(), 0, sizeof(int)));
  LaunchContext ctx;
  ctx.stream = stream;
  ctx.lt = lt;
  ctx.lt_workspace = lt_workspace.get();
  ctx.lt_workspace_bytes = kLtWorkspaceBytes;
  ctx.error_flag = reinterpret_cast<int*>(flag.get());
  ctx.error_code = 1;
  ctx.tuner = tuner;
  PTC_RETURN_IF_ERROR(kernel->Launch(ctx, in_ptrs, out_ptrs, workspace.get()));
  PTC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  int code = 0;
  PTC_CUDA_RETURN_IF_ERROR(cudaMemcpy(&code, flag.get(), sizeof(int), cudaMemcpyDeviceToHost));
  if (code != 0) {
    return absl::OutOfRangeError(absl::StrCat(node.Describe(), ": an index is out of range"));
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    if (outs[i].nbytes()) {
      PTC_CUDA_RETURN_IF_ERROR(cudaMemcpy(outs[i].mutable_data(), out_bufs[i].get(),
                                          outs[i].nbytes(), cudaMemcpyDeviceToHost));
    }
  }
  return outs;
}

}  // namespace ptc::cuda
