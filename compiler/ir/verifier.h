// IR verifier: SSA (each value defined once, before use, in schedule order), known ops,
// operand/result counts, attribute types, and output types equal to InferTypes(); constant
// refs exist in Module::tensors() with matching types; params with {param} have tensors.
#ifndef PTC_COMPILER_IR_VERIFIER_H_
#define PTC_COMPILER_IR_VERIFIER_H_

#include "absl/status/status.h"
#include "compiler/ir/ir.h"

namespace ptc::ir {

absl::Status Verify(const Module& module);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_VERIFIER_H_
