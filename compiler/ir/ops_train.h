// The third op table: ops of training graphs (gradient ops, optimizer updates, assign).
// Same rules as ops_fused.h: explicit table in ops_train.cc, documented in ops.h.
#ifndef PTC_COMPILER_IR_OPS_TRAIN_H_
#define PTC_COMPILER_IR_OPS_TRAIN_H_

#include <vector>

#include "compiler/ir/ops.h"

namespace ptc::ir {

const std::vector<OpDef>& TrainOpDefs();

// layer_norm_grad's optional operands after (dy, x, scale, mean, inv_std_dev): the addend
// (x's type) and the counter of dx_low's dropout (an integer scalar, last); nullptr when absent.
Value* LayerNormGradAddend(const Node& node);
Value* LayerNormGradCounter(const Node& node);

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OPS_TRAIN_H_
