// The CPU executor: runs one function of a plan (main by default). One arena sized by the memory
// plan is allocated at creation; kernels are created once; Run() allocates nothing but the
// returned output tensors.
//
// Training plans (compiler/autodiff/training.h): every "param" / "state" parameter is copied
// into writable memory owned by the executor (the plan's weights are an mmap'd file and stay
// untouched), and `assign(%target, %new_value)` nodes are run by the executor itself: after every
// other node of the step has run, new_value is copied into the target's storage, so every read
// in the step sees the old value. State() / SetState() read and write those tensors
// (checkpoints, export). Inference plans (no assign, no "state") bind weights in place.
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

struct ExecutorOptions {
  // The function to run. The plan's memory plan is made for main; any other function (e.g. the
  // optional @eval of a training plan) gets a simple liveness-based arena planned at creation.
  std::string function = "main";
  // Storage to use for "param" / "state" parameters, by name, instead of the module's tensors
  // (the buffers are used in place and must outlive the executor): lets an @eval executor read
  // the live weights of a training executor (Executor::LiveState()).
  std::map<std::string, ir::Tensor> shared_state;
  // Force writable executor-owned copies of "param" tensors even without assign nodes.
  bool writable_params = false;
};

class Executor {
 public:
  // The plan must outlive the executor (its module and weights are used in place).
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const plan::Plan& plan);
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const plan::Plan& plan,
                                                          const ExecutorOptions& options);
  virtual ~Executor() = default;
  // Inputs by parameter name (the parameters that are neither "param" nor "state"); each must
  // match its type. Outputs in the order of the function's results.
  virtual absl::StatusOr<std::vector<ir::Tensor>> Run(
      const std::map<std::string, ir::Tensor>& inputs) = 0;
  virtual void EnableProfiling(bool on) = 0;
  virtual std::vector<NodeProfile> Profile() const = 0;  // per node, schedule order
  virtual int64_t arena_bytes() const = 0;
  // Bytes of executor-owned "param" / "state" storage (0 for inference plans).
  virtual int64_t state_bytes() const = 0;
  // Whether the function updates its parameters (has assign nodes).
  virtual bool is_training() const = 0;

  // Deep copies of every "param" / "state" parameter, by name.
  virtual std::map<std::string, ir::Tensor> State() const = 0;
  // Tensors sharing the executor's live parameter storage (valid while the executor lives).
  virtual std::map<std::string, ir::Tensor> LiveState() = 0;
  // Copies the given tensors into the parameters' storage. Each name must be a "param" /
  // "state" parameter of the same type; parameters not named keep their values. Only for
  // executors that own their parameter storage (training plans or writable_params).
  virtual absl::Status SetState(const std::map<std::string, ir::Tensor>& state) = 0;
};

// Resident set size of this process in bytes (from /proc/self/statm); -1 if unavailable.
int64_t ProcessRssBytes();

}  // namespace ptc::cpu

#endif  // PTC_RUNTIME_CPU_EXECUTOR_H_
