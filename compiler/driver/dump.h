// Renderings of a module (and its memory plan) for `ptc dump`: JSON for scripts, Graphviz DOT.
#ifndef PTC_COMPILER_DRIVER_DUMP_H_
#define PTC_COMPILER_DRIVER_DUMP_H_

#include <string>

#include "compiler/ir/ir.h"
#include "runtime/plan/memory_plan.h"

namespace ptc::driver {

// {"metadata":{..},"functions":[{"name","params":[..],"nodes":[{"op","inputs","outputs",
//  "attrs","loc"}],"results":[..]}],"memory":{...}} ; memory is omitted when null.
std::string DumpJson(const ir::Module& module, const plan::MemoryPlan* memory);
// One box per node (op, output types), edges labelled by value; params as ellipses.
std::string DumpDot(const ir::Module& module);

}  // namespace ptc::driver

#endif  // PTC_COMPILER_DRIVER_DUMP_H_
