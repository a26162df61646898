// Checks shared by the runtimes (CPU, CUDA) when binding a plan's inputs and state tensors.
#ifndef PTC_RUNTIME_PLAN_BINDING_H_
#define PTC_RUNTIME_PLAN_BINDING_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::plan {

// Every input parameter is given with its exact type, and no unknown name is given.
absl::Status CheckInputs(const std::vector<const ir::Value*>& input_params,
                         const std::map<std::string, ir::Tensor>& inputs);

// The "param"/"state" parameter named `name` of function `function`, if `t` has its type.
absl::StatusOr<const ir::Value*> FindStateParam(const std::vector<const ir::Value*>& state_params,
                                                const std::string& function,
                                                const std::string& name, const ir::Tensor& t);

}  // namespace ptc::plan

#endif  // PTC_RUNTIME_PLAN_BINDING_H_
