// libFuzzer target: arbitrary bytes as an ONNX model (no external data allowed).
#include <string>

#include "compiler/onnx/importer.h"
#include "tests/fuzz/fuzz_targets.h"

namespace ptc::fuzz {

absl::Status FuzzOnnxImport(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  onnx_import::ImportOptions options;
  // Bind the usual symbolic dim names so that the fuzzer gets past shape binding.
  options.dims = {{"batch", 2}, {"seq", 4}, {"sequence", 4}, {"N", 2}};
  return onnx_import::ImportOnnxBytes(bytes, /*base_dir=*/"", /*source_name=*/"fuzz.onnx", options)
      .status();
}

}  // namespace ptc::fuzz

#ifndef PTC_CORPUS_REPLAY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)ptc::fuzz::FuzzOnnxImport(data, size);
  return 0;
}
#endif
