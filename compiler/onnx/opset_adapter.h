// Models of ONNX opsets newer than 17, brought to their opset-17 form.
//
// ptc checks and shape-infers models with the ONNX library of its build machines, whose
// schemas end at opset 17; torch.onnx's dynamo exporter (the default since torch 2.9) writes
// opset 18 and later. Most operator versions since 17 widen type constraints only; the rest
// move an attribute to an input (the Reduce* axes), add attributes or inputs, or are new
// operators. AdaptToOpset17 rewrites every default-domain node (If branches included) by the
// generated table opset_changes.inc:
// - type-only changes: kept (tensor types ptc does not have are rejected by the importer);
// - Reduce* (18): with an `axes` input, the node moves to kNewerOnnxDomain (the importer reads
//   the axes, constant or folded from constants); noop_with_empty_axes without axes becomes
//   Identity;
// - Split (18): num_outputs is dropped when it equals the node's outputs (the equal split);
// - other added attributes and inputs: dropped when the node leaves them at their defaults or
//   absent, else an Unimplemented error naming them;
// - Cast / CastLike's saturate and round_mode (float8 / float4 targets only) are dropped;
// - new operators the importer converts itself (ConvertedNewerOps) move to the domain
//   kNewerOnnxDomain, which the checker and shape inference skip; other new operators are an
//   Unimplemented error.
// The default domain's opset_import becomes 17, and the IR version at most the library's.
#ifndef PTC_COMPILER_ONNX_OPSET_ADAPTER_H_
#define PTC_COMPILER_ONNX_OPSET_ADAPTER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "onnx/onnx_pb.h"

namespace ptc::onnx_import {

// The opset the checker's schemas end at, and the newest opset the table knows.
constexpr int kCheckerOpset = 17;
int NewestAdaptableOpset();

// The operators added after opset 17 that the importer converts (Attention, Gelu,
// RMSNormalization, RotaryEmbedding, Swish).
const std::vector<std::string>& ConvertedNewerOps();

// Domain of the new operators the importer converts itself (their ONNX semantics, opset
// `opset` of the model).
constexpr char kNewerOnnxDomain[] = "ai.ptc.onnx_newer";

// `opset` is the model's default-domain opset (18..NewestAdaptableOpset()); `source` names the
// model in errors.
absl::Status AdaptToOpset17(onnx::ModelProto* model, int opset, absl::string_view source);

}  // namespace ptc::onnx_import

#endif  // PTC_COMPILER_ONNX_OPSET_ADAPTER_H_
