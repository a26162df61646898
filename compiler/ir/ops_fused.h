// The second op table: ops made by fusion / training passes (fused_elementwise, ...).
//
// ops.cc's registry is its own explicit table followed by this one (no static registration).
// Add an entry to FusedOpDefs() in ops_fused.cc together with its type-inference function
// (helpers in op_util.h) and document the op in ops.h. Names must not repeat ops.cc's names
// (ptc_ir_tests checks this).
#ifndef PTC_COMPILER_IR_OPS_FUSED_H_
#define PTC_COMPILER_IR_OPS_FUSED_H_

#include <string_view>
#include <vector>

#include "compiler/ir/ops.h"

namespace ptc::ir {

const std::vector<OpDef>& FusedOpDefs();

// Stack pops of a fused_elementwise program token that names an op: 1 (unary), 2 (binary),
// -1 for anything else (operand / constant loads, unknown names).
int FusedTokenArity(std::string_view token);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OPS_FUSED_H_
