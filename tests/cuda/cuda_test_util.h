// Shared by the CUDA tests: skip (never fail) when no GPU is usable.
#ifndef PTC_TESTS_CUDA_CUDA_TEST_UTIL_H_
#define PTC_TESTS_CUDA_CUDA_TEST_UTIL_H_

#include <string>

#include "gtest/gtest.h"
#include "runtime/cuda/device.h"

namespace ptc::cuda {

// "" when device 0 is usable; otherwise the line printed by the skip.
inline std::string NoDeviceReason() {
  auto device = GetDevice(0);
  if (device.ok()) return "";
  std::string msg(device.status().message());
  const std::string prefix = "no CUDA device: ";
  if (msg.rfind(prefix, 0) == 0) msg = msg.substr(prefix.size());
  return "SKIPPED: no CUDA device (" + msg + ")";
}

}  // namespace ptc::cuda

#define PTC_SKIP_WITHOUT_CUDA_DEVICE()                                   \
  do {                                                                   \
    const std::string ptc_no_device_ = ::ptc::cuda::NoDeviceReason();    \
    if (!ptc_no_device_.empty()) GTEST_SKIP() << ptc_no_device_;         \
  } while (0)

#endif  // PTC_TESTS_CUDA_CUDA_TEST_UTIL_H_
