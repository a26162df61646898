// Ops of KV-cache decoders, made by passes/kv_cache.cc. See ops_decode.h.
//
//   kv_cache_write(cache, update, pos) {axis}  -> type of cache
//       The cache with the slab at index `pos` along `axis` replaced by `update`:
//       out = cache; out[..., pos, ...] = update[..., 0, ...]. update has cache's type except
//       dim `axis` is 1; pos is i64[1] or i64[] (0 <= pos < cache.shape[axis], checked at run
//       time). Pure: the decoder assigns the result back into the cache (a "state" parameter),
//       and the decode plan writes it in place (CPU kernel codegen/cpu/decode_kernels.cc: when
//       the output buffer is the cache's, only the slab is written).
//   Example (GPT-2 keys, transposed for q @ k^T, cache of 128 positions):
//       %kc1 = kv_cache_write(%kc, %kt, %pos) {axis=3} : f32[1,4,64,128]
//            (%kc: f32[1,4,64,128] {state}, %kt: f32[1,4,64,1], %pos: i64[1])
#include "compiler/ir/ops_decode.h"

#include "absl/strings/str_cat.h"
#include "compiler/ir/op_util.h"
#include "compiler/support/status.h"

namespace ptc::ir {
namespace {

using Types = std::vector<TensorType>;

absl::StatusOr<Types> InferKvCacheWrite(const Types& in, const AttrMap& attrs, int num_outputs) {
  if (num_outputs != 1) return absl::InvalidArgumentError("kv_cache_write has one output");
  const TensorType& cache = in[0];
  const TensorType& update = in[1];
  const TensorType& pos = in[2];
  PTC_ASSIGN_OR_RETURN(int64_t axis, GetIntAttr(attrs, "axis"));
  PTC_RETURN_IF_ERROR(CheckAxis(axis, cache.rank(), "axis", cache));
  Shape want = cache.shape;
  want[axis] = 1;
  if (update.dtype != cache.dtype || update.shape != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "update ", update.ToString(), " must be ", TensorType{cache.dtype, want}.ToString(),
        " (the cache ", cache.ToString(), " with dim ", axis, " of 1)"));
  }
  if (pos.dtype != DType::kI64 || pos.num_elements() != 1 || pos.rank() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pos must be i64[1] or i64[], got ", pos.ToString()));
  }
  return Types{cache};
}

}  // namespace

const std::vector<OpDef>& DecodeOpDefs() {
  static const std::vector<OpDef>* defs = new std::vector<OpDef>{
      {.name = "kv_cache_write", .min_inputs = 3, .max_inputs = 3, .infer = InferKvCacheWrite},
  };
  return *defs;
}

}  // namespace ptc::ir
