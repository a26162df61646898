// Autotuning of the CUDA executor's kernel choices, measured on the device at the first run.
//
// Where a node has several correct implementations (the cuBLASLt algorithms its heuristic
// returns for a GEMM, the tensor-core / SIMT / cuDNN attention kernels), the first Run() of an
// executor launches each candidate on the node's real operands, times it with CUDA events and
// keeps the fastest; every later run (and the CUDA graph captured at the second run) launches
// the chosen one. Choices are cached per process and device by problem (a GEMM's types, shapes,
// leading dimensions, transposes, epilogue, scaling and alignment; an attention's descriptor),
// so the 12 layers of a GPT tune each distinct problem once, and a second executor of the same
// plan (@eval, a later run in the same process) reuses them. A candidate replaces the default
// (candidate 0: cuBLASLt's first heuristic result, the executor's previous kernel) only when it
// is at least 2% faster, so noise does not flip choices.
//
// Launching a candidate several times must not change the result: the kernels only tune when
// their outputs do not overlap their inputs, and a GEMM that accumulates into its output
// (beta != 0 with C in place) snapshots the output first and restores it before every launch
// (`prepare`). Numbers differ between candidates only by rounding (different summation orders),
// as between two runs of cuBLASLt's heuristic on two GPUs: results are repeatable within a
// process (one choice per problem), and across processes that share a tuning file (below);
// ExecutorOptions::autotune = false (PTC_CUDA_OPTIONS=no_autotune) keeps the defaults.
// Internal to runtime/cuda.
#ifndef PTC_RUNTIME_CUDA_AUTOTUNE_H_
#define PTC_RUNTIME_CUDA_AUTOTUNE_H_

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/cuda/device.h"
#include "runtime/cuda/executor.h"

namespace ptc::cuda {

class DeviceKernel;  // runtime/cuda/device_kernels.h


class Tuner {
 public:
  explicit Tuner(int device, int reps = 3) : device_(device), reps_(reps) {}
  virtual ~Tuner();
  Tuner(const Tuner&) = delete;
  Tuner& operator=(const Tuner&) = delete;

  // The candidate to use for `key`: the process cache's choice, or measured now. Measuring
  // launches candidate i (`launch(i)`, enqueued on `stream`) once to warm up and `reps` times
  // timed, calling `prepare` (when set) before every launch and once more at the end, so the
  // caller's own launch starts from the operands' original state. A candidate whose launch
  // fails is left out; an error only when all fail (the default's error).
  absl::StatusOr<int> Choose(std::string_view kind, const std::string& key,
                             std::string_view where, const std::vector<std::string>& candidates,
                             cudaStream_t stream, const std::function<absl::Status(int)>& launch,
                             const std::function<absl::Status()>& prepare = {});
  // One more launch of a problem already chosen (the report's calls per run).
  void Count(const std::string& key);

  // The problems this tuner chose for, in first-use order.
  const std::vector<TuneRecord>& records() const { return records_; }
  // "autotune: 9 problems (7 gemm, 2 attention) in 0.41 s, 3 changed from the defaults,
  // ~1.8 ms per run saved" (or "autotune: nothing to tune").
  std::string Summary() const;
  // One line per problem: kind, where, candidates' times, choice.
  std::string Table() const;

 protected:
  // Device milliseconds of `launch`, one timed launch of candidate `candidate` of `key` (CUDA
  // events around it on `stream`). Tests override it.
  virtual absl::StatusOr<double> TimeLaunch(const std::string& key, int candidate,
                                            cudaStream_t stream,
                                            const std::function<absl::Status()>& launch);

 private:
  TuneRecord* Find(const std::string& key);

  int device_;
  int reps_;
  std::vector<TuneRecord> records_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

// A kernel for `node` that launches one of `candidates`, each a complete implementation of
// the node (the first is the default). The first launch with a tuner chooses among them
// (Tuner::Choose; the problem is the node's op, operand types and attributes); without one it
// is the default. Not tuned (the default stays) when an output overlaps an input. Workspace:
// the largest candidate's; capturable when every candidate is.
std::unique_ptr<DeviceKernel> MakeTunedChoice(
    const ir::Node& node, std::vector<std::pair<std::string, std::unique_ptr<DeviceKernel>>> candidates);

// Empties the process cache of choices and forgets the tuning files read (tests that tune the
// same problem twice, or stand for a new process).
void ClearTuneCache();

// The tuning file: choices kept across processes (ExecutorOptions::tune_file), one line per
// problem: device tag, kind, key, candidates, choice, times (tab-separated). A choice read
// from it is used as one tuned in this process (for device `device`) when the tag (the
// device's name and architecture, cuBLASLt's version) and the candidates match: runs repeat
// their algorithms across processes and skip the timing. A file is read once per process
// (tag and device); loading a missing file is no error;
// a malformed line is skipped. Saving merges this tuner's records into the file (other tags'
// and problems' lines kept) and replaces it atomically.
std::string DeviceTuneTag(const DeviceInfo& device);
absl::Status LoadTuneFile(const std::string& path, int device, const std::string& tag);
absl::Status SaveTuneFile(const std::string& path, const std::string& tag,
                          const std::vector<TuneRecord>& records);

}  // namespace ptc::cuda

#endif  // PTC_RUNTIME_CUDA_AUTOTUNE_H_
