// Formatting shared by the CUDA runtime and its stub (no CUDA dependency).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/cuda/executor.h"

namespace ptc::cuda {
namespace {

std::string GiB(int64_t bytes) { return absl::StrFormat("%.2f GiB", bytes / 1073741824.0); }

}  // namespace

std::string DeviceInfo::ToString() const {
  return absl::StrCat(name, " (device ", ordinal, ", sm_", cc_major, cc_minor, ", ", sm_count,
                      " SMs, ", GiB(total_bytes), ", ", GiB(free_bytes), " free, driver ",
                      driver_version, ", runtime ", runtime_version, ")");
}

std::string MemoryReport::ToString() const {
  return absl::StrCat(total(), " bytes (", GiB(total()), "): arena ", arena_bytes, ", weights/state ",
                      state_bytes, ", constants ", constant_bytes, ", inputs ", io_bytes,
                      ", workspace ", workspace_bytes);
}

}  // namespace ptc::cuda
