// kv-cache: builds a one-token decoder with a KV cache (@decode) from a causal language model's
// full-window inference function (@main: token ids [B, T] -> logits [B, T, V]; the input may
// also be [B, T, ...], e.g. embeddings). See
// kv_cache.cc for the transformation, its rules and what it rejects.
#ifndef PTC_PASSES_KV_CACHE_H_
#define PTC_PASSES_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "compiler/ir/ir.h"
#include "passes/pass.h"
#include "runtime/plan/plan.h"

namespace ptc::passes {

struct KvCacheOptions {
  std::string source = "main";    // the full-window function
  std::string decode = "decode";  // the function to add
};

struct KvDecoderInfo {
  int64_t max_positions = 0;         // T of the source: the cache holds positions 0..T-1
  std::string ids_input;             // the token-id parameter, [B, 1] in the decoder
  std::string pos_input;             // the position parameter, i64[1]
  std::vector<std::string> caches;   // "state" parameters of the decoder
  int64_t cache_bytes = 0;
};

// Adds the decoder function to `module`. Inputs: the ids parameter (seq dim 1) and `pos`
// i64[1] (the ids' position, 0 <= pos < T); one "state" parameter per cached key / value
// tensor, updated by `assign`; results: the source's results at position pos. An error that
// starts with "cannot build a KV-cache decoder: " names the node the rules do not cover.
absl::StatusOr<KvDecoderInfo> BuildKvDecoder(ir::Module& module,
                                             const KvCacheOptions& options = {});

// The pass form (ptc-opt --passes=kv-cache): BuildKvDecoder with default options.
std::unique_ptr<Pass> CreateKvCachePass();

// A plan that runs the decoder of `full` (an inference plan): its module holds only the
// decoder (weights shared with `full`, which must outlive it), memory-planned with CPU
// workspaces, and every cache written in place (the kv_cache_write output bound to the cache
// parameter: the assign copies nothing). `info` (optional) receives the decoder's facts.
absl::StatusOr<plan::Plan> MakeDecodePlan(const plan::Plan& full, KvDecoderInfo* info = nullptr);

}  // namespace ptc::passes

#endif  // PTC_PASSES_KV_CACHE_H_
