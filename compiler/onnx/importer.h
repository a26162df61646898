// ONNX -> IR import.
//
// Parses the ModelProto with protobuf (external data confined to the model's folder), runs
// onnx::checker and ONNX shape inference, binds symbolic dims, and converts nodes to IR ops
// (ops.h) in topological order. Constant subgraphs (Shape/Gather/Concat/Unsqueeze chains,
// Range, ConstantOfShape, ...) are folded while importing with the CPU kernels, so shape
// operands become attributes. Initializers become weight parameters ({param}) whose data lives
// in Module::tensors(); graph inputs become ordinary parameters.
#ifndef PTC_COMPILER_ONNX_IMPORTER_H_
#define PTC_COMPILER_ONNX_IMPORTER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::onnx_import {

struct ImportOptions {
  // Values for symbolic dims ("batch" -> 8). An unbound symbolic dim is an error naming it and
  // suggesting --dim NAME=N.
  std::map<std::string, int64_t> dims;
  // Run onnx::checker (full check) before importing.
  bool run_checker = true;
  // Constants with more elements than this go to Module::tensors() (constant {ref=...}).
  int64_t inline_constant_limit = 16;
  // Known values for graph inputs (name -> tensor of the input's type). Such inputs stay
  // parameters, but their values may be folded into attributes, e.g. a Reshape `shape` or a
  // Slice `starts` fed as a graph input (the conformance runner passes its test data here).
  std::map<std::string, ir::Tensor> input_values;
};

// Errors say what and where: file, ONNX node name, op type, opset, shapes, and what to do.
absl::StatusOr<std::unique_ptr<ir::Module>> ImportOnnxFile(const std::string& path,
                                                           const ImportOptions& options = {});
// `base_dir` is the folder external data paths are resolved against ("" forbids external data).
absl::StatusOr<std::unique_ptr<ir::Module>> ImportOnnxBytes(const std::string& bytes,
                                                            const std::string& base_dir,
                                                            const std::string& source_name,
                                                            const ImportOptions& options = {});

// ONNX op types the importer supports (for docs, --help and the conformance runner).
std::vector<std::string> SupportedOnnxOps();

}  // namespace ptc::onnx_import

#endif  // PTC_COMPILER_ONNX_IMPORTER_H_
