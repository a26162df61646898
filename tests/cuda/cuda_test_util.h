// Shared by the CUDA tests: skip (never fail) when no GPU is usable; the case tables' error
// bounds, casts and comparison (kernels_test.cc, generated_kernels_test.cc).
#ifndef PTC_TESTS_CUDA_CUDA_TEST_UTIL_H_
#define PTC_TESTS_CUDA_CUDA_TEST_UTIL_H_

#include <cmath>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ir.h"
#include "compiler/support/status.h"
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

// Tests that only a GPU can answer in reasonable time (hundreds of training steps) skip under
// the CUDA CPU emulation (runtime/cuda/emu, ptc_cuda_emu_tests), saying why.
#if PTC_CUDA_EMU
#define PTC_SKIP_UNDER_EMULATION(why) \
  GTEST_SKIP() << "SKIPPED under the CUDA CPU emulation: " << (why)
#else
#define PTC_SKIP_UNDER_EMULATION(why) \
  do {                                \
  } while (0)
#endif

// Per-dtype bounds of the case tables: |got - want| <= atol + rtol |want| ({rtol, atol});
// integers and bool exact.
inline std::pair<double, double> Bounds(ir::DType d) {
  switch (d) {
    case ir::DType::kF32: return {2e-5, 2e-5};
    case ir::DType::kF64: return {1e-12, 1e-12};
    case ir::DType::kF16: return {2e-3, 2e-3};
    case ir::DType::kBF16: return {1.6e-2, 1.6e-2};
    default: return {0, 0};
  }
}

// `t` converted to `to` by the CPU cast kernel.
inline ir::Tensor CastTo(const ir::Tensor& t, ir::DType to) {
  if (t.dtype() == to) return t;
  ir::Function fn("cast");
  ir::Node* cast = fn.AddNode("cast", {fn.AddParam("x", t.type())},
                              {ir::TensorType{to, t.type().shape}}, {{"to", to}});
  auto out = cpu::EvaluateNode(*cast, {t});
  PTC_CHECK(out.ok());
  return (*out)[0];
}

// "" when `got` is within Bounds(want's dtype) x scale of `want` (NaN matches NaN, infinities
// match exactly); otherwise the count and the worst element.
inline std::string Compare(const ir::Tensor& got, const ir::Tensor& want, double scale = 1) {
  if (got.type() != want.type()) {
    return absl::StrCat("type ", got.type().ToString(), " vs ", want.type().ToString());
  }
  auto [rtol, atol] = Bounds(want.dtype());
  rtol *= scale;
  atol *= scale;
  int64_t bad = 0, worst = -1;
  double worst_excess = -1;
  for (int64_t i = 0; i < want.num_elements(); ++i) {
    const double g = got.GetDouble(i), w = want.GetDouble(i);
    double excess;
    if (std::isnan(w) || std::isnan(g)) {
      excess = std::isnan(w) && std::isnan(g) ? 0 : INFINITY;
    } else if (std::isinf(w) || std::isinf(g)) {
      excess = g == w ? 0 : INFINITY;
    } else {
      excess = std::fabs(g - w) - (atol + rtol * std::fabs(w));
    }
    if (excess > 0) {
      ++bad;
      if (excess > worst_excess) worst_excess = excess, worst = i;
    }
  }
  if (bad == 0) return "";
  return absl::StrFormat("%d of %d elements differ (rtol %g, atol %g); worst [%d] got %.9g want %.9g",
                         bad, want.num_elements(), rtol, atol, worst, got.GetDouble(worst),
                         want.GetDouble(worst));
}

}  // namespace ptc::cuda

#define PTC_SKIP_WITHOUT_CUDA_DEVICE()                                   \
  do {                                                                   \
    const std::string ptc_no_device_ = ::ptc::cuda::NoDeviceReason();    \
    if (!ptc_no_device_.empty()) GTEST_SKIP() << ptc_no_device_;         \
  } while (0)

#endif  // PTC_TESTS_CUDA_CUDA_TEST_UTIL_H_
