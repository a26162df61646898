// MakeDecodePlan: the decoder of an inference plan as a plan of its own (see kv_cache.h).
//
// The caches are written in place: plan_memory's in-place updates cover optimizer outputs
// whose only use is the assign (memory_analysis.cc UpdatePairs), while a kv_cache_write output
// is also read by the attention that follows it. It is still safe to bind it to the cache's
// storage because the decoder reads the cache parameter only through that write (checked
// below): the kernel then writes one row, later nodes read the updated cache, and the assign
// finds source == target and copies nothing. Those buffers leave the arena, which is
// re-packed (AssignOffsets) without them.
#include <functional>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/verifier.h"
#include "compiler/support/status.h"
#include "passes/kv_cache.h"
#include "passes/passes.h"
#include "passes/plan_memory.h"

namespace ptc::passes {
namespace {

absl::StatusOr<int64_t> CpuWorkspaceBytes(const ir::Node& node) {
  if (node.op() == "constant" || node.op() == "assign") return 0;
  PTC_ASSIGN_OR_RETURN(auto kernel, cpu::CreateKernel(node));
  return static_cast<int64_t>(kernel->WorkspaceBytes());
}

// Binds kv_cache_write outputs to their cache parameter and re-packs the arena.
void WriteCachesInPlace(const ir::Function& f, plan::MemoryPlan& mp) {
  auto uses = f.ComputeUses();
  std::map<std::string, std::string> inplace;  // value -> cache parameter
  for (const auto& n : f.nodes()) {
    if (n->op() != "kv_cache_write") continue;
    const ir::Value* cache = n->input(0);
    bool ok = cache->producer() == nullptr;
    for (const auto& [user, idx] : uses[cache]) {
      ok &= user == n.get() || (user->op() == "assign" && idx == 0 && user->input(1) == n->output());
    }
    if (ok) inplace[n->output()->name()] = cache->name();
  }
  for (const auto& b : mp.buffers) {
    if (inplace.count(b.alias_of)) return;  // a reshape of the written cache: keep the copy
  }
  std::vector<size_t> arena;
  std::vector<Interval> iv;
  for (size_t i = 0; i < mp.buffers.size(); ++i) {
    plan::BufferAssignment& b = mp.buffers[i];
    if (auto it = inplace.find(b.value); it != inplace.end()) {
      b.offset = -1;
      b.alias_of = it->second;
      continue;
    }
    if (b.alias_of.empty() && b.offset >= 0) {
      arena.push_back(i);
      iv.push_back({b.bytes, b.first, b.last, -1});
    }
  }
  mp.arena_bytes = AssignOffsets(iv);
  std::map<std::string, int64_t> offset_of;
  for (size_t i = 0; i < arena.size(); ++i) {
    mp.buffers[arena[i]].offset = iv[i].offset;
    offset_of[mp.buffers[arena[i]].value] = iv[i].offset;
  }
  // Aliases (reshape outputs) follow their root, possibly through other aliases.
  std::map<std::string, std::string> alias;
  for (const auto& b : mp.buffers) {
    if (!b.alias_of.empty() && b.offset >= 0) alias[b.value] = b.alias_of;
  }
  for (auto& b : mp.buffers) {
    if (b.alias_of.empty() || b.offset < 0) continue;
    std::string root = b.alias_of;
    for (int hops = 0; alias.count(root) && hops < 1000; ++hops) root = alias[root];
    if (auto it = offset_of.find(root); it != offset_of.end()) b.offset = it->second;
  }
}

}  // namespace

absl::StatusOr<plan::Plan> MakeDecodePlan(const plan::Plan& full, KvDecoderInfo* info) {
  if (!full.module || full.module->main() == nullptr) {
    return absl::InvalidArgumentError("cannot build a KV-cache decoder: the plan has no function");
  }
  std::unique_ptr<ir::Module> scratch = full.module->Clone();
  KvCacheOptions options;
  options.source = full.module->main()->name();
  options.decode = "kv_decode";
  // CUDA inference plans read q, k, v packed (pack-qkv); the decoder's rules take them split.
  PTC_RETURN_IF_ERROR(UnpackQkv(*scratch->FindFunction(options.source)).status());
  PTC_ASSIGN_OR_RETURN(KvDecoderInfo facts, BuildKvDecoder(*scratch, options));
  plan::Plan p;
  p.module = std::make_unique<ir::Module>();
  ir::Function* f = p.module->CopyFunction(*scratch->FindFunction(options.decode), "decode");
  p.module->tensors() = full.module->tensors();  // buffers shared, not copied
  p.module->metadata() = full.module->metadata();
  p.target = full.target;
  p.options = full.options;
  PTC_RETURN_IF_ERROR(ir::Verify(*p.module));
  PlanMemoryOptions mo;
  // CPU kernels size their workspaces in the plan; the CUDA executor has its own scratch.
  if (full.target == "cpu") {
    mo.workspace_bytes = CpuWorkspaceBytes;
  } else {
    mo.workspace_bytes = [](const ir::Node&) -> absl::StatusOr<int64_t> { return 0; };
  }
  PTC_ASSIGN_OR_RETURN(p.memory, PlanMemory(*f, mo));
  WriteCachesInPlace(*f, p.memory);
  if (info) *info = std::move(facts);
  return p;
}

}  // namespace ptc::passes
