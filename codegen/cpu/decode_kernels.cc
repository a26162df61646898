// CPU kernels of KV-cache decoder ops (compiler/ir/ops_decode.cc).
//
// kv_cache_write: when the output buffer is the cache's own (the decode plan writes the cache
// in place, passes/kv_cache.cc MakeDecodePlan), only the new slab is written: O(row) per token.
// Otherwise the cache is copied first (correct for any memory plan, O(cache) per token).
#include "codegen/cpu/decode_kernels.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel_util.h"

namespace ptc::cpu {
namespace {

class KvCacheWriteKernel final : public Kernel {
 public:
  static internal::KernelOr Make(const ir::Node& node) {
    if (node.num_inputs() != 3 || node.num_outputs() != 1) {
      return internal::Invalid(node, "kv_cache_write takes (cache, update, pos) and has one output");
    }
    const ir::TensorType& cache = node.input(0)->type();
    const ir::TensorType& update = node.input(1)->type();
    const ir::TensorType& pos = node.input(2)->type();
    auto axis = node.GetInt("axis");
    if (!axis.ok()) return internal::Invalid(node, axis.status().message());
    if (*axis < 0 || *axis >= cache.rank() || update.dtype != cache.dtype ||
        update.rank() != cache.rank() || update.shape[*axis] != 1 ||
        node.output()->type() != cache || pos.dtype != ir::DType::kI64 ||
        pos.num_elements() != 1) {
      return internal::Invalid(node, absl::StrCat("bad types: cache ", cache.ToString(),
                                                  ", update ", update.ToString(), ", pos ",
                                                  pos.ToString(), ", axis ", *axis));
    }
    auto k = std::make_unique<KvCacheWriteKernel>();
    k->node_ = &node;
    k->bytes_ = static_cast<size_t>(cache.byte_size());
    k->rows_ = cache.shape[*axis];
    k->outer_ = 1;
    for (int64_t i = 0; i < *axis; ++i) k->outer_ *= cache.shape[i];
    k->inner_bytes_ = ir::DTypeSize(cache.dtype);
    for (int64_t i = *axis + 1; i < cache.rank(); ++i) k->inner_bytes_ *= cache.shape[i];
    return internal::KernelPtr(std::move(k));
  }

  absl::Status Run(absl::Span<const void* const> inputs, absl::Span<void* const> outputs,
                   void*) override {
    const int64_t pos = *static_cast<const int64_t*>(inputs[2]);
    if (pos < 0 || pos >= rows_) {
      return internal::Invalid(*node_, absl::StrCat("pos ", pos, " is outside the cache of ",
                                                    rows_, " positions"));
    }
    char* out = static_cast<char*>(outputs[0]);
    if (out != inputs[0]) std::memcpy(out, inputs[0], bytes_);
    const char* upd = static_cast<const char*>(inputs[1]);
    for (int64_t o = 0; o < outer_; ++o) {
      std::memcpy(out + (o * rows_ + pos) * inner_bytes_, upd + o * inner_bytes_, inner_bytes_);
    }
    return absl::OkStatus();
  }

 private:
  const ir::Node* node_ = nullptr;
  size_t bytes_ = 0;
  int64_t rows_ = 0;
  int64_t outer_ = 1;
  size_t inner_bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateDecodeKernel(const ir::Node& node) {
  if (node.op() == "kv_cache_write") return KvCacheWriteKernel::Make(node);
  return std::unique_ptr<Kernel>();
}

bool HasDecodeKernel(std::string_view op) { return op == "kv_cache_write"; }

}  // namespace ptc::cpu
