// The fuzz entry points, shared by the libFuzzer binaries (PTC_FUZZ=ON) and by the corpus
// replay test (ptc_corpus_tests), which runs them over every file under tests/corpus/.
// Each returns the status of the library call: any status is fine, a crash, a sanitizer report
// or a hang is a bug.
#ifndef PTC_TESTS_FUZZ_FUZZ_TARGETS_H_
#define PTC_TESTS_FUZZ_FUZZ_TARGETS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"

namespace ptc::fuzz {

// bytes -> onnx_import::ImportOnnxBytes(bytes, base_dir="", ...).
absl::Status FuzzOnnxImport(const uint8_t* data, size_t size);

// Splits the input into (plan bytes, weights bytes): the first 4 bytes, little-endian, are the
// plan length (clamped to what follows); the rest after the plan is the weights file.
std::pair<std::string, std::string> SplitPlanInput(const uint8_t* data, size_t size);
// The reverse, for writing corpus files.
std::string JoinPlanInput(const std::string& plan, const std::string& weights);
// bytes -> plan::LoadPlanFromBytes(SplitPlanInput(bytes)).
absl::Status FuzzPlanLoad(const uint8_t* data, size_t size);
// bytes -> ir::ParseModule(bytes) -> ir::Verify; the parse or verify error, else OK after
// checking that print(parse(print(module))) == print(module) (aborts when not).
absl::Status FuzzIrParse(const uint8_t* data, size_t size);

}  // namespace ptc::fuzz

#endif  // PTC_TESTS_FUZZ_FUZZ_TARGETS_H_
