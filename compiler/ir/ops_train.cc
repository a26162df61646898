// Ops of training graphs. See ops_train.h.
#include "compiler/ir/ops_train.h"

namespace ptc::ir {

const std::vector<OpDef>& TrainOpDefs() {
  static const auto* defs = new std::vector<OpDef>{};
  return *defs;
}

}  // namespace ptc::ir
