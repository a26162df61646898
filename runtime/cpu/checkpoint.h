// Training checkpoints: DIR/step-000123/ holding every "param" + "state" tensor of a training
// plan, the step, the data iterator state, the seed and the plan's hash.
//
// Layout of a checkpoint folder:
//   manifest.json  {"format": "ptc-checkpoint", "version": 1, "step", "plan_hash", "seed",
//                   "data": {"epoch", "position"}, "tensors": [{"name", "kind", "dtype",
//                   "shape", "offset", "bytes", "xxh64"}]}
//   tensors.bin    the tensors at 64-byte aligned offsets
// Writing is atomic: a temp folder DIR/.tmp-step-..., files fsync'd, the folder renamed to its
// final name, DIR fsync'd, then DIR/latest (the folder name) replaced by rename. A crash at any
// point leaves the previous checkpoint loadable. Loading treats every byte as untrusted (sizes,
// offsets, shapes, checksums).
#ifndef PTC_RUNTIME_CPU_CHECKPOINT_H_
#define PTC_RUNTIME_CPU_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "runtime/cpu/data.h"

namespace ptc::checkpoint {

struct Checkpoint {
  int64_t step = 0;  // optimizer steps completed
  std::string plan_hash;
  uint64_t seed = 0;
  data::IteratorState data;
  std::map<std::string, ir::Tensor> tensors;
  std::map<std::string, std::string> kinds;  // tensor name -> "param" | "state"
  std::string path;                          // the folder it was loaded from / written to
};

// Folder name of a step: "step-000123".
std::string StepDirName(int64_t step);

// Writes DIR/step-XXXXXX atomically and points DIR/latest at it; returns the folder path.
// Leftover temp folders of interrupted writes are removed first.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir, const Checkpoint& ckpt);

// Loads and validates one checkpoint folder.
absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& step_dir);

// The checkpoint DIR/latest names; when that is missing or damaged, the complete checkpoint of
// the highest step in DIR. NotFound when DIR holds none.
absl::StatusOr<Checkpoint> LoadLatestCheckpoint(const std::string& dir);

// Accepts a checkpoint folder or a checkpoint root (then its latest checkpoint).
absl::StatusOr<Checkpoint> LoadCheckpointOrLatest(const std::string& path);

// XXH64 of the plan's IR text, hex: resuming checks that the plan is the one that trained.
std::string HashModule(const ir::Module& module);

// Writes the "param" tensors of a checkpoint into a copy of an ONNX model: initializers are
// replaced by name (same dims and data type required; the new data is inline raw_data);
// every other byte of the model is kept. Errors when a checkpoint weight has no initializer.
absl::Status ExportCheckpointToOnnx(const std::string& original_onnx_path,
                                    const std::string& checkpoint_path,
                                    const std::string& out_path);

// ONNX TensorProto bytes for a tensor (name, dims, data_type, raw_data) and a file of it,
// written atomically: the ONNX test-data convention (as compiler/driver/tensor_io.h).
absl::StatusOr<std::string> SerializeTensorProto(const std::string& name,
                                                 const ir::Tensor& tensor);
absl::Status WriteTensorProtoFile(const std::string& path, const std::string& name,
                                  const ir::Tensor& tensor);

}  // namespace ptc::checkpoint

#endif  // PTC_RUNTIME_CPU_CHECKPOINT_H_
