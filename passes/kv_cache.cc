// kv-cache: a one-token decoder with a KV cache, built from the full-window function.
//
// Why a function builder over the whole graph (and not a pattern on the `attention` op): the
// graphs ptc compiles reach attention in several forms (the fused `attention` op, or
// matmul / where / softmax / matmul when fuse-attention declines, as for the models of
// `ptc model`), and the positional parts around it differ per model (learned position
// embeddings gathered by a folded constant, rotary cos/sin tables, masks computed from a
// buffer). One dataflow rule set covers all of them: a "sequence axis" is propagated from the
// token ids through the graph, and every value is classified as
//   S  per-position (has the sequence axis s, of extent T): row-wise ops keep it and in the
//      decoder its extent becomes 1 (the row of position pos);
//   K  attention scores (query axis s and key axis k, both T in @main): in the decoder the key
//      axis keeps extent T and indexes the cache; rows > pos hold garbage (zeros or stale
//      values), so K values carry a proof that those keys are masked: "neg-inf" after a causal
//      where/additive mask (checked on the evaluated constant), "zero" after the softmax over
//      keys; a matmul that contracts keys needs "zero";
//   C  position-independent (computed from constants and weights only): copied as is; where a
//      C value meets an S value along the sequence axis with extent T (position-embedding
//      slices, rotary tables, causal masks) it is indexed at pos: gather(c, pos) {axis}.
// The cache is created where an S value meets another S value's positions: in
// matmul(q-rows, k^T-columns) (keys) and matmul(probabilities, v-rows) (values), and for
// the k / v operands of `attention` (whose mask must be causal). The new row is written into
// a "state" parameter of @main's full shape with kv_cache_write at pos, the written cache is
// what the attention reads, and `assign(cache, written)` keeps it for the next token
// (MakeDecodePlan binds the written value to the cache's storage: no copy). Anything the
// rules do not cover (a reduction or a split over the sequence, an op without a rule on S
// values, a non-causal mask, an attention without a mask, more than one input) is an error
// naming the node; `ptc generate` then falls back to the full window.
//
// Preconditions: @main is an optimized inference function (no assign), one non-weight input
// of shape [B, T] (token ids, T >= 2). Run after the default pipeline. @main is not changed.
//
//   before: func @main(%ids: i64[1,4], %wte: f32[16,8] {param}, %wpe: f32[4,8] {param}) {
//             %x = gather(%wte, %ids) {axis=0} : f32[1,4,8]
//             %y = add(%x, %wpe) : f32[1,4,8]   ...
//   after (added): func @decode(%ids: i64[1,1], %pos: i64[1], %wte ..., %wpe ...,
//                               %kv_cache.0: f32[1,2,4,4] {state}, ...) {
//             %x = gather(%wte, %ids) {axis=0} : f32[1,1,8]
//             %wpe.at_pos = gather(%wpe, %pos) {axis=0} : f32[1,8]
//             %y = add(%x, %wpe.at_pos) : f32[1,1,8]   ...
//             %k.cache = kv_cache_write(%kv_cache.0, %k, %pos) {axis=2} : f32[1,2,4,4]
//             ... attention over %k.cache ...
//             assign(%kv_cache.0, %k.cache)
#include "passes/kv_cache.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/ir/ops.h"
#include "compiler/ir/verifier.h"
#include "compiler/support/status.h"
#include "passes/kv_cache_internal.h"

namespace ptc::passes {
namespace internal {

absl::StatusOr<KvDecoderInfo> DecoderBuilder::Build() {
  PTC_RETURN_IF_ERROR(MapParams());
  for (const auto& n : src_.nodes()) PTC_RETURN_IF_ERROR(MapNode(*n));
  std::vector<ir::Value*> results;
  for (const ir::Value* r : src_.results()) {
    if (info_[r].k >= 0) return Error(r->producer(), "returns attention scores over all positions");
    results.push_back(map_.at(r));
  }
  dst_.set_results(results);
  for (const auto& [cache, written] : writes_) {
    dst_.AddNode("assign", {cache, written}, {}, {}, "kv-cache");
  }
  EraseDead();
  return info_out_;
}

absl::Status DecoderBuilder::Error(const ir::Node* n, const std::string& why) const {
  return absl::InvalidArgumentError(absl::StrCat("cannot build a KV-cache decoder: ",
                                                 n ? n->Describe() : "the function", " ", why,
                                                 " (rules: passes/kv_cache.cc)"));
}

absl::Status DecoderBuilder::MapParams() {
  const ir::Value* ids = nullptr;
  for (const ir::Value* p : src_.params()) {
    if (p->is_param() || p->flags().count("state")) continue;
    if (ids != nullptr) {
      return Error(nullptr, absl::StrCat("has more than one input (%", ids->name(), ", %",
                                         p->name(), "); a decoder takes the token ids only"));
    }
    ids = p;
  }
  if (ids == nullptr || ids->type().rank() < 2 || ids->type().shape[1] < 2) {
    return Error(nullptr, absl::StrCat("needs one input [B, T, ...] (token ids) with T >= 2, got ",
                                       ids ? ids->type().ToString() : "none"));
  }
  for (const auto& n : src_.nodes()) {
    if (n->op() == "assign") return Error(n.get(), "is a training step, not inference");
  }
  T_ = ids->type().shape[1];
  ir::TensorType ids_type = ids->type();
  ids_type.shape[1] = 1;
  map_[ids] = dst_.AddParam(ids->name(), ids_type, ids->flags());
  info_[ids] = Info{.s = 1};
  std::string pos_name = src_.FindValue("pos") ? "kv_pos" : "pos";
  pos_ = dst_.AddParam(pos_name, {ir::DType::kI64, {1}});
  for (const ir::Value* p : src_.params()) {
    if (p == ids) continue;
    map_[p] = dst_.AddParam(p->name(), p->type(), p->flags());
    info_[p] = Info{};
  }
  info_out_.max_positions = T_;
  info_out_.ids_input = ids->name();
  info_out_.pos_input = pos_name;
  return absl::OkStatus();
}

ir::TensorType DecoderBuilder::DecodeType(const ir::Value* v) const {
  ir::TensorType t = v->type();
  int s = info_.at(v).s;
  if (s >= 0) t.shape[s] = 1;
  return t;
}

ir::Value* DecoderBuilder::AtPos(const ir::Value* v, int axis) {
  auto key = std::make_pair(v, axis);
  if (auto it = at_pos_.find(key); it != at_pos_.end()) return it->second;
  ir::TensorType t = v->type();
  t.shape[axis] = 1;
  ir::Node* g = dst_.AddNode("gather", {map_.at(v), pos_}, {t}, {{"axis", int64_t{axis}}},
                             "kv-cache", {v->name() + ".at_pos"});
  return at_pos_[key] = g->output();
}

ir::Value* DecoderBuilder::Cached(const ir::Value* v) {
  if (auto it = cached_.find(v); it != cached_.end()) return it->second;
  const int axis = info_.at(v).s;
  std::string name = absl::StrCat("kv_cache.", info_out_.caches.size());
  ir::Value* cache = dst_.AddParam(name, v->type(), {"state"});
  ir::Node* w = dst_.AddNode("kv_cache_write", {cache, map_.at(v), pos_}, {v->type()},
                             {{"axis", int64_t{axis}}}, "kv-cache", {v->name() + ".cache"});
  info_out_.caches.push_back(name);
  info_out_.cache_bytes += v->type().byte_size();
  writes_.push_back({cache, w->output()});
  return cached_[v] = w->output();
}

absl::StatusOr<ir::Tensor> DecoderBuilder::Eval(const ir::Value* v) {
  if (auto it = evaluated_.find(v); it != evaluated_.end()) return it->second;
  ir::Tensor t;
  const ir::Node* n = v->producer();
  if (n == nullptr || (n->op() == "constant" && n->has_attr("ref"))) {
    std::string name = v->name();
    if (n != nullptr) {
      PTC_ASSIGN_OR_RETURN(name, n->GetString("ref"));
    }
    auto it = module_.tensors().find(name);
    if (it == module_.tensors().end()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has no data"));
    }
    t = it->second;
  } else {
    std::vector<ir::Tensor> in;
    for (const ir::Value* x : n->inputs()) {
      PTC_ASSIGN_OR_RETURN(ir::Tensor xt, Eval(x));
      in.push_back(std::move(xt));
    }
    PTC_ASSIGN_OR_RETURN(std::vector<ir::Tensor> out, cpu::EvaluateNode(*n, in));
    t = out[v->output_index()];
  }
  return evaluated_[v] = t;
}

absl::StatusOr<bool> DecoderBuilder::IsCausal(const ir::Value* m, int out_rank, int qa, int ka,
                                              const std::function<bool(double)>& masked) {
  const int off = out_rank - m->type().rank();
  const int a = qa - off, b = ka - off;
  if (a < 0 || b < 0 || m->type().shape[a] != T_ || m->type().shape[b] != T_) return false;
  PTC_ASSIGN_OR_RETURN(ir::Tensor t, Eval(m));
  return MasksFuture(t, a, b, masked);
}

bool DecoderBuilder::Positional(const ir::Node& n, size_t from) const {
  for (size_t i = from; i < n.num_inputs(); ++i) {
    if (info_.at(n.input(i)).positional()) return true;
  }
  return false;
}

std::vector<ir::Value*> DecoderBuilder::MappedInputs(const ir::Node& n) const {
  std::vector<ir::Value*> in;
  for (const ir::Value* v : n.inputs()) in.push_back(map_.at(v));
  return in;
}

absl::Status DecoderBuilder::Copy(const ir::Node& n) {
  std::vector<ir::TensorType> types;
  std::vector<std::string> names;
  for (const ir::Value* o : n.outputs()) {
    types.push_back(o->type());
    names.push_back(o->name());
  }
  ir::Node* c = dst_.AddNode(n.op(), MappedInputs(n), types, n.attrs(), n.loc(), names);
  for (size_t i = 0; i < n.num_outputs(); ++i) {
    map_[n.output(i)] = c->output(i);
    info_[n.output(i)] = Info{};
  }
  return absl::OkStatus();
}

absl::Status DecoderBuilder::Emit(const ir::Node& n, std::vector<ir::Value*> inputs,
                                  const ir::AttrMap& attrs, Info out) {
  std::vector<ir::TensorType> in_types;
  for (const ir::Value* v : inputs) in_types.push_back(v->type());
  auto inferred = ir::InferTypes(n.op(), in_types, attrs, static_cast<int>(n.num_outputs()));
  if (!inferred.ok()) {
    return Error(&n, absl::StrCat("has no consistent one-position form: ",
                                  inferred.status().message()));
  }
  std::vector<std::string> names;
  for (size_t i = 0; i < n.num_outputs(); ++i) {
    info_[n.output(i)] = out;
    names.push_back(n.output(i)->name());
    if ((*inferred)[i] != DecodeType(n.output(i))) {
      return Error(&n, absl::StrCat("gives ", (*inferred)[i].ToString(), " for one position, ",
                                    "expected ", DecodeType(n.output(i)).ToString(), " (",
                                    n.output(i)->type().ToString(), " with the sequence axis ",
                                    out.s, " of 1)"));
    }
  }
  ir::Node* d = dst_.AddNode(n.op(), std::move(inputs), *inferred, attrs, n.loc(), names);
  for (size_t i = 0; i < n.num_outputs(); ++i) map_[n.output(i)] = d->output(i);
  return absl::OkStatus();
}

void DecoderBuilder::EraseDead() {
  std::set<const ir::Value*> live(dst_.results().begin(), dst_.results().end());
  std::set<const ir::Node*> dead;
  const auto& nodes = dst_.nodes();
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) {
    const ir::Node& n = **it;
    bool used = n.op() == "assign";
    for (const ir::Value* o : n.outputs()) used |= live.count(o) > 0;
    if (!used) {
      dead.insert(&n);
      continue;
    }
    for (const ir::Value* in : n.inputs()) live.insert(in);
  }
  dst_.EraseNodesIf([&](const ir::Node& n) { return dead.count(&n) > 0; });
}

}  // namespace internal

namespace {

class KvCachePass : public Pass {
 public:
  std::string_view name() const override { return "kv-cache"; }
  absl::StatusOr<bool> Run(ir::Module& module) override {
    PTC_ASSIGN_OR_RETURN(KvDecoderInfo info, BuildKvDecoder(module));
    Count("caches", static_cast<int64_t>(info.caches.size()));
    return true;
  }
};

}  // namespace

absl::StatusOr<KvDecoderInfo> BuildKvDecoder(ir::Module& module, const KvCacheOptions& options) {
  const ir::Function* src = module.FindFunction(options.source);
  if (src == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot build a KV-cache decoder: no function @", options.source));
  }
  if (module.FindFunction(options.decode) != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot build a KV-cache decoder: @",
                                                   options.decode, " already exists"));
  }
  // Built in a scratch module so that a failure leaves `module` unchanged.
  ir::Module scratch;
  ir::Function* dst = scratch.AddFunction(options.decode);
  internal::DecoderBuilder builder(module, *src, *dst);
  PTC_ASSIGN_OR_RETURN(KvDecoderInfo info, builder.Build());
  module.CopyFunction(*dst, options.decode);
  return info;
}

std::unique_ptr<Pass> CreateKvCachePass() { return std::make_unique<KvCachePass>(); }

}  // namespace ptc::passes
