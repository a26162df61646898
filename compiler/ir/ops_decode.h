// The fourth op table: ops of KV-cache decoders (passes/kv_cache.h). Same rules as
// ops_train.h: explicit table in ops_decode.cc, documented in ops.h and at the top of the .cc.
#ifndef PTC_COMPILER_IR_OPS_DECODE_H_
#define PTC_COMPILER_IR_OPS_DECODE_H_

#include <vector>

#include "compiler/ir/ops.h"

namespace ptc::ir {

const std::vector<OpDef>& DecodeOpDefs();

}  // namespace ptc::ir

#endif  // PTC_COMPILER_IR_OPS_DECODE_H_
