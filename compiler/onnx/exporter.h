// IR -> ONNX export: any IR module (imported, optimized, later training graphs) becomes a
// checker-clean ONNX model (opset 17) that Netron and ONNX Runtime can open. Attribute
// operands go back to ONNX inputs (initializers), fused ops expand to ONNX subgraphs or, where
// no ONNX form exists, use the "ai.ptc" domain.
#ifndef PTC_COMPILER_ONNX_EXPORTER_H_
#define PTC_COMPILER_ONNX_EXPORTER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::onnx_import {

absl::StatusOr<std::string> ExportOnnxBytes(const ir::Module& module);
absl::Status ExportOnnxFile(const ir::Module& module, const std::string& path);

}  // namespace ptc::onnx_import

#endif  // PTC_COMPILER_ONNX_EXPORTER_H_
