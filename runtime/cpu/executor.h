// The CPU executor: runs a plan's main function. One arena sized by the memory plan is
// allocated at creation; kernels are created once; Run() allocates nothing but the returned
// output tensors.
#ifndef PTC_RUNTIME_CPU_EXECUTOR_H_
#define PTC_RUNTIME_CPU_EXECUTOR_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/plan/plan.h"

namespace ptc::cpu {

struct NodeProfile {
  std::string op;
  std::string name;  // first output value
  std::string loc;
  double seconds = 0;
  int64_t calls = 0;
};

class Executor {
 public:
  // The plan must outlive the executor (its module and weights are used in place).
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const plan::Plan& plan);
  virtual ~Executor() = default;
  // Inputs by parameter name (non-{param} parameters of main); each must match its type.
  // Outputs in the order of main's results.
  virtual absl::StatusOr<std::vector<ir::Tensor>> Run(
      const std::map<std::string, ir::Tensor>& inputs) = 0;
  virtual void EnableProfiling(bool on) = 0;
  virtual std::vector<NodeProfile> Profile() const = 0;  // per node, schedule order
  virtual int64_t arena_bytes() const = 0;
};

}  // namespace ptc::cpu

#endif  // PTC_RUNTIME_CPU_EXECUTOR_H_
