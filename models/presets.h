// Internal helpers of the model builders: preset tables and config checks.
#ifndef PTC_MODELS_PRESETS_H_
#define PTC_MODELS_PRESETS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ptc::models::internal {

template <typename Config>
std::vector<std::string> PresetNames(const std::vector<std::pair<std::string, Config>>& presets) {
  std::vector<std::string> names;
  for (const auto& [name, config] : presets) names.push_back(name);
  return names;
}

template <typename Config>
absl::StatusOr<Config> FindPreset(const std::vector<std::pair<std::string, Config>>& presets,
                                  const char* family, std::string_view name) {
  for (const auto& [n, config] : presets) {
    if (n == name) return config;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown ", family, " preset '", std::string(name),
                   "'; presets: ", absl::StrJoin(PresetNames(presets), ", ")));
}

// Upper bounds keep every size product (parameter counts, byte sizes) far from int64 overflow
// and the causal-mask Constant (seq^2 bytes) well under protobuf's 2 GiB.
inline constexpr int64_t kMaxVocab = int64_t{1} << 24;
inline constexpr int64_t kMaxLayers = int64_t{1} << 12;
inline constexpr int64_t kMaxDim = int64_t{1} << 16;
inline constexpr int64_t kMaxSeq = int64_t{1} << 15;

struct Field {
  const char* name;
  int64_t value;
  int64_t max;
};

inline absl::Status CheckFields(const char* family, const std::vector<Field>& fields) {
  for (const Field& f : fields) {
    if (f.value <= 0 || f.value > f.max) {
      return absl::InvalidArgumentError(absl::StrCat(family, " config: ", f.name, " = ", f.value,
                                                     " is out of range; use 1..", f.max));
    }
  }
  return absl::OkStatus();
}

inline absl::Status CheckHeads(const char* family, int64_t dim, int64_t heads) {
  if (dim % heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(family, " config: dim = ", dim, " is not divisible by heads = ", heads,
                     "; pick heads that divide dim (head size = dim / heads)"));
  }
  return absl::OkStatus();
}

inline absl::Status CheckStd(const char* family, double init_std) {
  if (!(init_std > 0) || init_std > 1e3) {
    return absl::InvalidArgumentError(
        absl::StrCat(family, " config: init_std = ", init_std, " must be in (0, 1000]"));
  }
  return absl::OkStatus();
}

inline absl::Status CheckDropout(const char* family, double dropout) {
  if (!(dropout >= 0.0 && dropout < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(family, " config: dropout = ", dropout, " must be in [0, 1)"));
  }
  return absl::OkStatus();
}

}  // namespace ptc::models::internal

#endif  // PTC_MODELS_PRESETS_H_
