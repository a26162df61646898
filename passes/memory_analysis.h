// Memory analyses over a function's schedule: phases, a cost model and liveness.
//
// These are analyses, not passes: they never change the IR. plan-memory, schedule and remat use
// them to plan and to decide; the memory report (compiler/driver/memory_report.h) prints them.
//
//   Phase     forward (ancestors of the loss, result 0), optimizer (nodes that read optimizer
//             state or the optimizer's outputs: adamw_update, sgd_update, lr_schedule, ...),
//             backward (everything else). Inference functions are all forward.
//   OpCost    FLOPs and bytes moved of one node (matmul/gemm 2*M*N*K, elementwise one FLOP per
//             output element per op, softmax / layer_norm a few per element, shape ops 0 FLOPs).
//   Liveness  one buffer per value that owns bytes (reshape/identity outputs alias their input;
//             params and constants are not arena values), each with [first, last] schedule
//             indices; live bytes at every schedule point; the peak (the lower bound of any
//             arena over this schedule), per-phase peaks and the buffers live at the peak.
#ifndef PTC_PASSES_MEMORY_ANALYSIS_H_
#define PTC_PASSES_MEMORY_ANALYSIS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"

namespace ptc::passes {

enum class Phase { kForward = 0, kBackward = 1, kOptimizer = 2 };
std::string_view PhaseName(Phase phase);  // "forward" | "backward" | "optimizer"

// Pairs (output index, input index) of an optimizer update (adamw_update, sgd_update) whose
// output is the new value of that input (weight, moments); empty for other ops.
std::vector<std::pair<int, int>> UpdatePairs(const ir::Node& node);

using Uses = std::map<const ir::Value*, std::vector<std::pair<ir::Node*, int>>>;

// The parameter `value` is the next value of: value is read by nothing but
// `assign(parameter, value)` and is not a result (`uses`: Function::ComputeUses); else null.
// With every other reader of that parameter before value's producer, plan-memory writes value
// in place.
const ir::Value* AssignedBackTo(const ir::Function& function, const ir::Value* value,
                                const Uses& uses);

// Whether output `o` of an update is only the new value of its own input `in`.
bool IsAssignedBack(const ir::Function& function, const ir::Node& node, int o, int in,
                    const Uses& uses);

// Phase of every node (indexed like function.nodes()).
std::vector<Phase> ClassifyPhases(const ir::Function& function);

// What a buffer holds. Params and optimizer state live outside the arena (executor-owned);
// arena buffers are activations (forward values), gradients (backward values), optimizer
// outputs (new weights / moments before `assign`) and kernel workspaces.
enum class Category { kParam = 0, kOptimizerState, kActivation, kGradient, kOptimizer, kWorkspace };
std::string_view CategoryName(Category category);
inline constexpr int kNumCategories = 6;

struct OpCost {
  double flops = 0;
  int64_t bytes = 0;  // bytes read (each distinct operand once) + written; 0 for views
};
OpCost EstimateCost(const ir::Node& node);

// True for nodes made by remat (their outputs are named "<original>.remat...").
bool IsRecomputed(const ir::Node& node);

struct LiveBuffer {
  std::string name;                  // value name, or "ws@N" for node N's workspace
  const ir::Value* value = nullptr;  // nullptr for workspaces
  int64_t bytes = 0;                 // aligned
  int32_t first = 0;                 // producing schedule index
  int32_t last = 0;                  // last use (nodes.size() when live to the end)
  Category category = Category::kActivation;
  std::vector<const ir::Value*> aliases;  // reshape / identity outputs sharing the bytes
};

struct LivenessOptions {
  int64_t alignment = 64;
  bool alias_reshapes = true;
  // Workspace bytes a node's kernel needs (target specific); null means none.
  std::function<absl::StatusOr<int64_t>(const ir::Node&)> workspace_bytes;
  // Optimizer outputs that overwrite their own input (adamw_update's new param / m / v when the
  // update is the last reader of that input and the value is only assigned back to it), and
  // elementwise outputs only assigned back to a parameter nothing reads any more (gradient
  // accumulators), are planned in the parameter's storage instead of the arena. Needs runtime
  // support (the executor binds the output to the parameter and skips the assign copy); off by
  // default.
  bool inplace_updates = false;
  // An elementwise node's output (OpDef::elementwise; same dtype and shape as the input) takes
  // the buffer of an input that this node reads last, instead of a buffer of its own (the
  // kernel reads each element before writing it at the same index); so does an op's output
  // with its OpDef::inplace_input (gather_grad's base). Needs kernels that accept an output
  // aliasing an input; off by default.
  bool reuse_elementwise_inputs = false;
};

class LivenessAnalysis {
 public:
  static absl::StatusOr<LivenessAnalysis> Run(const ir::Function& function,
                                              const LivenessOptions& options = {});

  const std::vector<LiveBuffer>& buffers() const { return buffers_; }
  // Root buffer index of every arena value (aliases resolve to their root).
  const std::map<const ir::Value*, int>& buffer_of() const { return buffer_of_; }
  // live_bytes()[t]: bytes live while node t runs (t in [0, nodes]; the last entry is the end).
  const std::vector<int64_t>& live_bytes() const { return live_; }
  const std::vector<Phase>& phases() const { return phases_; }
  int64_t peak() const { return peak_; }
  int32_t peak_index() const { return peak_index_; }
  int64_t PhasePeak(Phase phase) const;
  // Buffers live at schedule point t, largest first (ties by name).
  std::vector<int> LiveAt(int32_t t) const;
  // Arena bytes live at the peak by category, and bytes of params / optimizer state (outside
  // the arena, constant over the step).
  std::map<Category, int64_t> BytesAtPeak() const;
  int64_t param_bytes() const { return param_bytes_; }
  int64_t state_bytes() const { return state_bytes_; }
  // Values written in place into a parameter (LivenessOptions::inplace_updates): value -> param.
  const std::map<const ir::Value*, const ir::Value*>& inplace() const { return inplace_; }

  // "peak 12.0 MiB at node 41 (matmul %h, backward); forward 8.0 MiB ..." and the top buffers.
  std::string ToString(int top = 8) const;

 private:
  const ir::Function* function_ = nullptr;
  std::vector<LiveBuffer> buffers_;
  std::map<const ir::Value*, int> buffer_of_;
  std::map<const ir::Value*, const ir::Value*> inplace_;
  std::vector<int64_t> live_;
  std::vector<Phase> phases_;
  int64_t peak_ = 0;
  int32_t peak_index_ = 0;
  int64_t param_bytes_ = 0;
  int64_t state_bytes_ = 0;
};

// "1.5 MiB", "512 B".
std::string FormatBytes(int64_t bytes);
// Parses "2GiB", "512MiB", "1.5GB", "4096" (bytes); error names the text.
absl::StatusOr<int64_t> ParseBytes(std::string_view text);

}  // namespace ptc::passes

#endif  // PTC_PASSES_MEMORY_ANALYSIS_H_
