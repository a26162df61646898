// The third op table: ops of training graphs (gradient ops, optimizer updates, assign).
// Same rules as ops_fused.h: explicit table in ops_train.cc, documented in ops.h.
#ifndef PTC_COMPILER_IR_OPS_TRAIN_H_
#define PTC_COMPILER_IR_OPS_TRAIN_H_

#include <vector>

#include "compiler/ir/ops.h"

namespace ptc::ir {

const std::vector<OpDef>& TrainOpDefs();

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OPS_TRAIN_H_
