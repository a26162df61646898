// The training loop over a training-step plan (compiler/autodiff/training.h): next batch ->
// Executor::Run -> loss, with progress, JSON logs, evaluation, checkpoints and resume.
//
// Plan requirements (errors say which is missing):
//   - @main has assign nodes (a training step) and exactly two integer data inputs of the same
//     shape [batch, seq]: the labels (named TrainerOptions::labels_input) and the token ids;
//   - results: loss f32[], then optionally grad_norm f32[] and lr f32[], then "grad.<weight>"
//     values when compiled with --keep-gradients (needed only for dump_gradients).
//   - optional @eval: the same "param" / "state" parameter names and data inputs, first result
//     the loss, no assign nodes: run on the validation split every eval_every steps. Without
//     @eval no validation loss is reported (running @main would update the weights).
// Determinism: the batch order is a function of (seed, epoch, position) and everything else is
// in the plan's state, so N steps straight equal N/2 steps + checkpoint + resume + N/2 steps
// bit for bit.
#ifndef PTC_RUNTIME_CPU_TRAINER_H_
#define PTC_RUNTIME_CPU_TRAINER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/cpu/data.h"
#include "runtime/plan/plan.h"

namespace ptc::train {

enum class ProgressStyle {
  kAuto,   // a redrawn bar when the progress stream is std::cerr on a TTY, else plain lines
  kBar,    // one line redrawn with \r
  kLines,  // a plain line every `log_every` steps
  kNone,
};

struct TrainerOptions {
  int64_t steps = 100;     // total optimizer steps (a resumed run continues up to this)
  std::string data;        // corpus file / folder / token file; "" = Debian's fortunes
  double val_fraction = 0.05;
  int64_t eval_every = 0;  // 0 = only at the end (when the plan has @eval)
  int64_t eval_batches = 4;
  std::string log_json;    // one JSON object per step (and per evaluation)
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;  // 0 = only at the end (when checkpoint_dir is set)
  bool resume = false;     // continue from checkpoint_dir's latest checkpoint (if any)
  std::string dump_gradients;  // folder: grad.<weight> results of the first step run
  uint64_t seed = 0;
  std::string labels_input = "labels";
  int64_t vocab_size = 0;  // > 0: reject data with larger token ids
  ProgressStyle progress_style = ProgressStyle::kAuto;
  int64_t log_every = 0;   // plain-line interval; 0 = about 20 lines per run
  // Tests: stop (as if killed) after this many steps of this run; 0 = off.
  int64_t stop_after = 0;
  // Per-op timing of the steps (Backend::EnableProfiling), printed at the end of RunTraining.
  bool profile = false;
};

struct TrainResult {
  int64_t first_step = 0;  // steps already done when this run started (resume)
  int64_t last_step = 0;
  std::vector<double> losses;  // per step run
  // Steps under --profile: all but the first of a run of two or more (its one-time costs, the
  // CUDA executor's autotuning among them, would swamp the per-step times).
  int64_t profiled_steps = 0;
  double val_loss = -1;        // last evaluation; -1 when none
  int64_t arena_bytes = 0;
  int64_t state_bytes = 0;
  int64_t output_bytes = 0;  // result tensors of @main and @eval (loss, gradients if kept)
  int64_t rss_before = 0, rss_after = 0;
  std::map<std::string, ir::Tensor> final_state;
  std::string last_checkpoint;
  bool host_memory = true;  // the planned bytes are host memory (Backend::host_memory)
  std::string backend;      // Backend::name()
};

// What the training loop needs from an executor. CreateCpuBackend() wraps cpu::Executor (the
// @eval executor reads the step's live weights in place); ptc-cuda wraps cuda::Executor
// (tools/ptc_cuda/main.cc), so `ptc run` trains CUDA plans with the same loop, data, logs and
// checkpoints.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;  // "cpu", "cuda (NVIDIA H200)"
  virtual bool is_training() const = 0;  // @main has assign nodes
  // One training step (@main): inputs by name, outputs in result order (host tensors).
  // `fetch` (empty: all) says which results the caller reads: a backend whose results live
  // elsewhere (device memory) may leave the others as empty tensors instead of copying them
  // (a --keep-gradients step returns every gradient, which only --dump-gradients reads).
  virtual absl::StatusOr<std::vector<ir::Tensor>> Step(
      const std::map<std::string, ir::Tensor>& inputs, const std::vector<bool>& fetch) = 0;
  virtual bool has_eval() const = 0;
  // @eval on the current weights.
  virtual absl::StatusOr<std::vector<ir::Tensor>> Eval(
      const std::map<std::string, ir::Tensor>& inputs) = 0;
  // Every "param" / "state" parameter of @main (host copies) / overwrite some of them.
  virtual absl::StatusOr<std::map<std::string, ir::Tensor>> State() = 0;
  virtual absl::Status SetState(const std::map<std::string, ir::Tensor>& state) = 0;
  virtual int64_t arena_bytes() const = 0;  // the step's arena + @eval's
  virtual int64_t state_bytes() const = 0;  // weights and optimizer state
  // Whether the planned bytes are host memory (then the RSS growth is compared with them).
  virtual bool host_memory() const = 0;
  // Per-node timing of Step(): on / off, and the accumulated times (op, seconds, calls).
  struct OpTime {
    std::string op;
    double seconds = 0;
    int64_t calls = 0;
  };
  virtual void EnableProfiling(bool on) { (void)on; }
  virtual std::vector<OpTime> Profile() const { return {}; }
  // Per op, the step's ideal time on the device's roofline (ms; driver/cost_report.h), shown
  // beside the profile; empty where there is no roofline to speak of (the CPU).
  virtual std::map<std::string, double> IdealMs() const { return {}; }
  // The step's model FLOPs and the device's peak rate (TFLOP/s) for the MFU shown in the
  // progress line and the JSON log; zeros where there is no peak to speak of (the CPU).
  struct Roofline {
    double step_flops = 0;
    double peak_tflops = 0;
  };
  virtual Roofline GetRoofline() const { return {}; }
};

// The profile tables' "ideal ms, x ideal" columns (the trainer's and driver::FormatRunProfile's):
// the header cells, and op's cells for its measured `ms` against `ideal` (dashes without one).
std::string IdealColumnsHeader();
std::string IdealColumns(const std::map<std::string, double>& ideal, const std::string& op,
                         double ms);

absl::StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(const plan::Plan& plan);

absl::StatusOr<TrainResult> Train(const plan::Plan& plan, const TrainerOptions& options,
                                  std::ostream& progress);
absl::StatusOr<TrainResult> Train(const plan::Plan& plan, Backend& backend,
                                  const TrainerOptions& options, std::ostream& progress);

// The CLI entry point: Train() with the result summarized on `progress`.
absl::Status RunTraining(const plan::Plan& plan, const TrainerOptions& options,
                         std::ostream& progress);
absl::Status RunTraining(const plan::Plan& plan, Backend& backend, const TrainerOptions& options,
                         std::ostream& progress);

// TrainerOptions as "--name=value" flags and back: `ptc run` hands a CUDA training plan to
// ptc-cuda with these. Round-trips every field; unknown or malformed flags are errors.
std::vector<std::string> TrainerOptionsToFlags(const TrainerOptions& options);
absl::StatusOr<TrainerOptions> TrainerOptionsFromFlags(const std::vector<std::string>& flags);

// Same training data as Train() uses for a plan with inputs [batch, seq] (exposed for tests).
absl::StatusOr<data::Split> LoadTrainingData(const TrainerOptions& options, int64_t batch,
                                             int64_t seq);

}  // namespace ptc::train

#endif  // PTC_RUNTIME_CPU_TRAINER_H_
