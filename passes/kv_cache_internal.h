// Internals of passes/kv_cache.cc shared with kv_cache_rules.cc and kv_cache_plan.cc.
#ifndef PTC_PASSES_KV_CACHE_INTERNAL_H_
#define PTC_PASSES_KV_CACHE_INTERNAL_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "passes/kv_cache.h"

namespace ptc::passes::internal {

// What is known about the keys after the current position in a K value (see kv_cache.cc).
enum class Mask { kNone, kNegInf, kZero };

// s: the sequence (query) axis, k: the key axis; both -1 for position-independent values.
struct Info {
  int s = -1;
  int k = -1;
  Mask mask = Mask::kNone;
  bool positional() const { return s >= 0 || k >= 0; }
};

// masked(t[..., i (axis a), ..., j (axis b), ...]) for every j > i.
bool MasksFuture(const ir::Tensor& t, int a, int b, const std::function<bool(double)>& masked);

// The axis of `to` that holds axis `a` of `from` whole when `from` is reshaped to `to` (same
// element count): the dims before and after it have equal products. -1 if none.
int ReshapeAxis(const ir::Shape& from, int a, const ir::Shape& to);

class DecoderBuilder {
 public:
  DecoderBuilder(ir::Module& module, const ir::Function& src, ir::Function& dst)
      : module_(module), src_(src), dst_(dst) {}
  absl::StatusOr<KvDecoderInfo> Build();

 private:
  absl::Status Error(const ir::Node* n, const std::string& why) const;
  absl::Status MapParams();
  ir::TensorType DecodeType(const ir::Value* v) const;
  ir::Value* AtPos(const ir::Value* v, int axis);
  ir::Value* Cached(const ir::Value* v);
  absl::StatusOr<ir::Tensor> Eval(const ir::Value* v);
  absl::StatusOr<bool> IsCausal(const ir::Value* m, int out_rank, int qa, int ka,
                                const std::function<bool(double)>& masked);
  bool Positional(const ir::Node& n, size_t from) const;
  const Info& InfoOf(const ir::Value* v) const { return info_.at(v); }
  std::vector<ir::Value*> MappedInputs(const ir::Node& n) const;
  absl::Status Copy(const ir::Node& n);
  absl::Status Emit(const ir::Node& n, std::vector<ir::Value*> inputs, const ir::AttrMap& attrs,
                    Info out);
  void EraseDead();

  // Rules (kv_cache_rules.cc).
  absl::Status MapNode(const ir::Node& n);
  absl::Status Elementwise(const ir::Node& n);
  absl::Status MatMul(const ir::Node& n);
  absl::Status FusedMatMul(const ir::Node& n);
  absl::Status Attention(const ir::Node& n);
  absl::Status LayerNorm(const ir::Node& n);
  absl::Status Softmax(const ir::Node& n);
  absl::Status Reduce(const ir::Node& n);
  absl::Status Reshape(const ir::Node& n);
  absl::Status Transpose(const ir::Node& n);
  absl::Status SplitSlice(const ir::Node& n);
  absl::Status Concat(const ir::Node& n);
  absl::Status Gather(const ir::Node& n);

  ir::Module& module_;
  const ir::Function& src_;
  ir::Function& dst_;
  int64_t T_ = 0;
  ir::Value* pos_ = nullptr;
  std::map<const ir::Value*, ir::Value*> map_;
  std::map<const ir::Value*, Info> info_;
  std::map<std::pair<const ir::Value*, int>, ir::Value*> at_pos_;
  std::map<const ir::Value*, ir::Value*> cached_;
  std::map<const ir::Value*, ir::Tensor> evaluated_;
  std::vector<std::pair<ir::Value*, ir::Value*>> writes_;
  KvDecoderInfo info_out_;
};

}  // namespace ptc::passes::internal

#endif  // PTC_PASSES_KV_CACHE_INTERNAL_H_
