// libFuzzer target: arbitrary bytes as (plan, weights) for LoadPlanFromBytes, and the same
// bytes as IR text for the parser (plan files embed IR text).
#include <string>
#include <string_view>

#include "compiler/ir/parser.h"
#include "compiler/ir/printer.h"
#include "compiler/ir/verifier.h"
#include "compiler/support/status.h"
#include "runtime/plan/plan.h"
#include "tests/fuzz/fuzz_targets.h"

namespace ptc::fuzz {

std::pair<std::string, std::string> SplitPlanInput(const uint8_t* data, size_t size) {
  if (size < 4) return {std::string(reinterpret_cast<const char*>(data), size), std::string()};
  uint32_t n = 0;
  for (int i = 0; i < 4; ++i) n |= static_cast<uint32_t>(data[i]) << (8 * i);
  const char* rest = reinterpret_cast<const char*>(data + 4);
  size_t rest_size = size - 4;
  size_t plan_size = n < rest_size ? n : rest_size;
  return {std::string(rest, plan_size), std::string(rest + plan_size, rest_size - plan_size)};
}

std::string JoinPlanInput(const std::string& plan, const std::string& weights) {
  std::string out(4, '\0');
  uint32_t n = static_cast<uint32_t>(plan.size());
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + plan + weights;
}

absl::Status FuzzPlanLoad(const uint8_t* data, size_t size) {
  auto [plan, weights] = SplitPlanInput(data, size);
  return plan::LoadPlanFromBytes(plan, weights).status();
}

absl::Status FuzzIrParse(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::unique_ptr<ir::Module>> module = ir::ParseModule(text);
  if (!module.ok()) return module.status();
  // A module that parses and verifies must print and re-parse to the same text.
  absl::Status verified = ir::Verify(**module);
  if (!verified.ok()) return verified;
  std::string printed = ir::PrintModule(**module);
  absl::StatusOr<std::unique_ptr<ir::Module>> again = ir::ParseModule(printed);
  PTC_CHECK(again.ok());
  PTC_CHECK(ir::PrintModule(**again) == printed);
  return absl::OkStatus();
}

}  // namespace ptc::fuzz

#ifndef PTC_CORPUS_REPLAY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)ptc::fuzz::FuzzPlanLoad(data, size);
  (void)ptc::fuzz::FuzzIrParse(data, size);
  return 0;
}
#endif
