// The CUDA executor: runs one function of a plan on a GPU, with the interface of the CPU
// executor (runtime/cpu/executor.h). At creation, in this order: the device is checked (a
// clear "no CUDA device: ..." error otherwise), every node gets its device kernel (cuBLASLt
// algorithms are chosen here, once per GEMM shape), the device bytes needed are summed and
// compared with cudaMemGetInfo's free bytes (a ResourceExhausted error with both numbers), then
// the arena of the plan's memory plan, the weights, constants and input buffers are allocated
// once and the weights and constants uploaded once. Run() copies the inputs in, enqueues every
// node on one stream (or replays them as CUDA graphs: ExecutorOptions::cuda_graphs),
// synchronizes once and copies the results out; it allocates nothing on the device.
//
// Training plans: "param" / "state" parameters live in executor-owned device memory and
// `assign` nodes are applied after the step (as on the CPU). State() / SetState() copy them.
#ifndef PTC_RUNTIME_CUDA_EXECUTOR_H_
#define PTC_RUNTIME_CUDA_EXECUTOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/cuda/device.h"
#include "runtime/plan/plan.h"

namespace ptc::cuda {

struct ExecutorOptions {
  // main uses the plan's memory plan; another function (@eval) gets a liveness-based plan at
  // load (runtime/plan/local_plan.h).
  std::string function = "main";
  int device = 0;
  KernelOptions kernels;
  // Replay the step as CUDA graphs: the first Run() launches eagerly (lazy module loading,
  // cuBLASLt warm-up), the second captures the launches once (every pointer is fixed at
  // load) and every Run() from then on replays them. Off while profiling, and when a node
  // runs on the host (host_fallback) or the capture fails (then graph_status() says why).
  bool cuda_graphs = true;
  // Device buffers of another executor's "param" parameters, by name (Executor::DeviceParams):
  // parameters found here are read in place instead of being allocated and uploaded (@eval
  // reads the training step's weights; the owner must outlive this executor and not run at
  // the same time).
  const std::map<std::string, void*>* shared_params = nullptr;
  // Autotuning (runtime/cuda/autotune.h): the first Run() times the alternatives of each
  // distinct GEMM problem (cuBLASLt's heuristic candidates) and attention shape (ptc's kernels,
  // cuDNN's where it loads) on the real operands and keeps the fastest; later runs and the
  // CUDA graphs launch the choices. Choices are cached per process, so results repeat within a
  // process; off: cuBLASLt's first heuristic result and ptc's attention kernels, every time.
  bool autotune = true;
  // With autotune: a tuning file (autotune.h LoadTuneFile) whose choices for this device are
  // reused, and to which this executor's new choices are added after its first run; empty:
  // none (ptc-cuda uses $PTC_CUDA_TUNE_FILE, default ~/.cache/ptc/cuda-autotune.tsv).
  std::string tune_file;
};

// One problem the autotuner (runtime/cuda/autotune.h) chose for.
struct TuneRecord {
  std::string kind;                     // "gemm", "attention", "attention_grad"
  std::string key;                      // the problem
  std::string where;                    // the node that tuned it (Describe())
  std::vector<std::string> candidates;  // candidate 0 is the default
  std::vector<double> ms;               // best timed launch per candidate; < 0: it failed
  int chosen = 0;
  bool reused = false;    // taken from the process cache (tuned by an earlier executor)
  int64_t calls = 0;      // launches of this problem in the tuning run (every node using it)
  double tune_seconds = 0;
  // Device time saved per run against the defaults: calls x (ms[0] - ms[chosen]).
  double SavedMs() const {
    if (chosen <= 0 || chosen >= static_cast<int>(ms.size()) || ms[0] < 0) return 0;
    return static_cast<double>(calls) * (ms[0] - ms[chosen]);
  }
};

struct NodeProfile {
  std::string op;
  std::string name;  // first output value
  std::string loc;
  double seconds = 0;  // device time (events around the node's launches)
  int64_t calls = 0;
  bool host_fallback = false;
};

struct MemoryReport {
  int64_t arena_bytes = 0;      // the plan's arena
  int64_t state_bytes = 0;      // weights and optimizer state (+ assign staging)
  int64_t constant_bytes = 0;
  int64_t io_bytes = 0;         // device copies of the inputs
  int64_t workspace_bytes = 0;  // cuBLASLt workspace + kernel scratch
  int64_t total() const {
    return arena_bytes + state_bytes + constant_bytes + io_bytes + workspace_bytes;
  }
  std::string ToString() const;
};

class Executor {
 public:
  // The plan must outlive the executor.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const plan::Plan& plan);
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const plan::Plan& plan,
                                                          const ExecutorOptions& options);
  virtual ~Executor() = default;
  // Inputs by parameter name (host tensors); outputs (host tensors) in result order.
  absl::StatusOr<std::vector<ir::Tensor>> Run(const std::map<std::string, ir::Tensor>& inputs) {
    return Run(inputs, {});
  }
  // The same, copying back only the results whose `fetch` entry is true (empty: all); the
  // others come back as empty tensors (a training step's gradients stay on the device).
  virtual absl::StatusOr<std::vector<ir::Tensor>> Run(
      const std::map<std::string, ir::Tensor>& inputs, const std::vector<bool>& fetch) = 0;
  // "eager" / "eager (...why graphs are off...)" / "cuda graphs: N launches in 2 graphs".
  virtual std::string graph_status() const = 0;
  // What the first run's autotuning chose: one line (with `table`, then one line per problem).
  virtual std::string autotune_summary(bool table = false) const = 0;
  virtual std::vector<TuneRecord> autotune_records() const = 0;
  virtual void EnableProfiling(bool on) = 0;
  virtual std::vector<NodeProfile> Profile() const = 0;
  virtual MemoryReport memory() const = 0;
  virtual const DeviceInfo& device() const = 0;
  // Nodes run through the CPU kernels (KernelOptions::host_fallback), by Describe().
  virtual std::vector<std::string> host_fallback_nodes() const = 0;
  virtual bool is_training() const = 0;
  virtual absl::StatusOr<std::map<std::string, ir::Tensor>> State() const = 0;
  virtual absl::Status SetState(const std::map<std::string, ir::Tensor>& state) = 0;
  // Device pointers of the "param" parameters (the weights), by name, for
  // ExecutorOptions::shared_params.
  virtual std::map<std::string, void*> DeviceParams() const = 0;
};

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_EXECUTOR_H_
