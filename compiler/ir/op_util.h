// Helpers for writing op type-inference functions (ops.cc, ops_fused.cc) and for running type
// inference on existing nodes (verifier, passes).
//
// Attribute getters work on an AttrMap and produce messages that name the attribute and the
// kind of value expected ("attribute 'axis' must be an integer, got a string"); the caller
// adds where (node Describe()).
#ifndef PTC_COMPILER_IR_OP_UTIL_H_
#define PTC_COMPILER_IR_OP_UTIL_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::ir {

// "an integer", "a float", "a string", "a list of integers", ... for messages.
std::string_view AttrKindName(const AttrValue& value);

// Absent: `def` when given, else an error "attribute 'NAME' is required".
absl::StatusOr<int64_t> GetIntAttr(const AttrMap& attrs, std::string_view name,
                                   std::optional<int64_t> def = {});
// Integers are accepted where floats are expected.
absl::StatusOr<double> GetFloatAttr(const AttrMap& attrs, std::string_view name,
                                    std::optional<double> def = {});
absl::StatusOr<std::string> GetStringAttr(const AttrMap& attrs, std::string_view name,
                                          std::optional<std::string> def = {});
absl::StatusOr<std::vector<int64_t>> GetIntsAttr(const AttrMap& attrs, std::string_view name,
                                                 std::optional<std::vector<int64_t>> def = {});
absl::StatusOr<DType> GetDTypeAttr(const AttrMap& attrs, std::string_view name);
absl::StatusOr<Tensor> GetTensorAttr(const AttrMap& attrs, std::string_view name);

// Checks 0 <= axis < rank (IR axes are normalized); names the attribute in the error.
absl::Status CheckAxis(int64_t axis, int rank, std::string_view attr_name,
                       const TensorType& input);

// Input / output types of a node, in order.
std::vector<TensorType> InputTypes(const Node& node);
std::vector<TensorType> OutputTypes(const Node& node);

// The output types `node` must have. Same as InferTypes(node.op(), InputTypes(node),
// node.attrs(), node.num_outputs()) except for `constant {ref="NAME"}`, whose type is not in
// its attributes: it is the type of module->tensors()[NAME] (an error when absent). With
// module == nullptr, or a module that carries no tensors (IR parsed from text), a ref
// constant's declared output type is accepted as is.
absl::StatusOr<std::vector<TensorType>> InferNodeTypes(const Node& node,
                                                       const Module* module = nullptr);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OP_UTIL_H_
