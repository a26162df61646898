#include "runtime/cpu/executor.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/support/status.h"
#include "runtime/plan/binding.h"
#include "runtime/plan/local_plan.h"

namespace ptc::cpu {
namespace {

int64_t AlignUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

struct Step {
  const ir::Node* node = nullptr;
  int32_t index = 0;               // schedule index of node
  std::unique_ptr<Kernel> kernel;  // null: a staging copy of an assign's new value
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
  void* workspace = nullptr;
  int64_t stage_bytes = 0;  // staging copy: bytes from inputs[0] to outputs[0]
};

// An `assign(%target, %new_value)`: applied after every other node of the step.
struct Assign {
  const ir::Node* node = nullptr;
  void* target = nullptr;
  const ir::Value* source = nullptr;
  void* staging = nullptr;  // non-null: the new value was saved here at the assign's position
  int64_t bytes = 0;
};

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<char, FreeDeleter>;

AlignedBuffer AllocateAligned(int64_t bytes) {
  size_t alloc = static_cast<size_t>(AlignUp(std::max<int64_t>(bytes, 64), 64));
  AlignedBuffer b(static_cast<char*>(std::aligned_alloc(64, alloc)));
  if (b) std::memset(b.get(), 0, alloc);
  return b;
}

bool IsStateParam(const ir::Value* p) { return p->is_param() || p->flags().count("state") > 0; }

class CpuExecutor final : public Executor {
 public:
  absl::Status Init(const plan::Plan& plan, const ExecutorOptions& options) {
    if (!plan.module) return absl::InvalidArgumentError("plan has no module");
    const ir::Function* main = plan.module->main();
    const ir::Function* f = options.function == "main" ? main
                                                        : plan.module->FindFunction(options.function);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan has no function @", options.function));
    }
    function_ = f;
    plan::MemoryPlan local_plan;
    const plan::MemoryPlan* mpp = &plan.memory;
    if (f != main) {
      PTC_ASSIGN_OR_RETURN(local_plan,
                           plan::PlanFunctionLocally(*f, [](const ir::Node& n)
                                                             -> absl::StatusOr<int64_t> {
                             PTC_ASSIGN_OR_RETURN(auto kernel, CreateKernel(n));
                             return static_cast<int64_t>(kernel->WorkspaceBytes());
                           }));
      mpp = &local_plan;
    }
    const plan::MemoryPlan& mp = *mpp;
    if (mp.arena_bytes < 0 || mp.arena_bytes > (int64_t{1} << 40)) {
      return absl::InvalidArgumentError(absl::StrCat("plan arena size ", mp.arena_bytes,
                                                     " bytes is out of range"));
    }
    arena_bytes_ = mp.arena_bytes;
    arena_ = AllocateAligned(arena_bytes_);
    if (!arena_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate the plan's arena of ", arena_bytes_, " bytes"));
    }
    std::map<std::string, const plan::BufferAssignment*> assign;
    for (const auto& b : mp.buffers) {
      // In-place optimizer outputs (plan_memory.h inplace_updates): offset -1, alias of the
      // parameter whose storage they are written into; bound like any alias below.
      if (b.offset == -1 && !b.alias_of.empty() && b.bytes >= 0) {
        assign[b.value] = &b;
        continue;
      }
      if (b.offset < 0 || b.bytes < 0 || b.offset > arena_bytes_ ||
          b.bytes > arena_bytes_ - b.offset) {
        return absl::InvalidArgumentError(
            absl::StrCat("memory plan buffer '", b.value, "' lies outside the arena"));
      }
      assign[b.value] = &b;
    }
    for (const auto& n : f->nodes()) training_ |= n->op() == "assign";
    PTC_RETURN_IF_ERROR(BindParameters(plan, options));

    const auto& nodes = f->nodes();
    for (size_t i = 0; i < nodes.size(); ++i) {
      const ir::Node& n = *nodes[i];
      Step step;
      step.node = &n;
      step.index = static_cast<int32_t>(i);
      if (n.op() == "constant") {
        ir::Tensor t;
        if (n.has_attr("ref")) {
          PTC_ASSIGN_OR_RETURN(std::string ref, n.GetString("ref"));
          auto it = plan.module->tensors().find(ref);
          if (it == plan.module->tensors().end()) {
            return absl::InvalidArgumentError(
                absl::StrCat(n.Describe(), ": constant '", ref, "' has no data"));
          }
          t = it->second;
        } else {
          PTC_ASSIGN_OR_RETURN(t, n.GetTensor("value"));
        }
        if (t.type() != n.output()->type()) {
          return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": constant of type ",
                                                         t.type().ToString(), " declared as ",
                                                         n.output()->type().ToString()));
        }
        constants_.push_back(t);
        ptr_[n.output()] = const_cast<void*>(t.data());
        continue;  // no step
      }
      if (n.op() == "assign") {
        PTC_RETURN_IF_ERROR(AddAssign(n, static_cast<int32_t>(i), mp));
        continue;
      }
      for (const ir::Value* out : n.outputs()) {
        auto it = assign.find(out->name());
        if (it == assign.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              n.Describe(), ": output %", out->name(), " has no buffer in the memory plan"));
        }
        const plan::BufferAssignment& b = *it->second;
        if (b.bytes < out->type().byte_size()) {
          return absl::InvalidArgumentError(absl::StrCat("buffer of %", out->name(),
                                                         " is smaller than its type"));
        }
        if (!b.alias_of.empty()) {
          const ir::Value* src = f->FindValue(b.alias_of);
          if (src == nullptr || !ptr_.count(src)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "buffer of %", out->name(), " aliases unknown value '", b.alias_of, "'"));
          }
          if (b.offset == -1 && (src->producer() != nullptr || !writable_.count(src) ||
                                 src->type().byte_size() < out->type().byte_size())) {
            return absl::InvalidArgumentError(absl::StrCat(
                "in-place buffer of %", out->name(), " must alias a writable parameter of at ",
                "least its size, not '", b.alias_of, "'"));
          }
          ptr_[out] = ptr_[src];
        } else {
          ptr_[out] = arena_.get() + b.offset;
        }
      }
      bool all_alias = n.num_outputs() == 1 && n.num_inputs() == 1 &&
                       ptr_[n.output()] == ptr_[n.input(0)] && n.input(0)->producer() != nullptr;
      if (all_alias && (n.op() == "reshape" || n.op() == "identity")) continue;
      PTC_ASSIGN_OR_RETURN(step.kernel, CreateKernel(n));
      size_t ws = step.kernel->WorkspaceBytes();
      if (ws > 0) {
        auto it = assign.find(absl::StrCat("ws@", i));
        if (it == assign.end() || it->second->bytes < static_cast<int64_t>(ws)) {
          return absl::InvalidArgumentError(
              absl::StrCat(n.Describe(), ": the memory plan has no workspace of ", ws, " bytes"));
        }
        step.workspace = arena_.get() + it->second->offset;
      }
      steps_.push_back(std::move(step));
    }
    // Staging copies run right after the step that precedes the assign in the schedule.
    for (Assign& a : assigns_) {
      if (a.staging == nullptr) continue;
      int32_t pos = f->NodeIndex(a.node);
      auto it = std::find_if(steps_.begin(), steps_.end(),
                             [&](const Step& s) { return s.index > pos; });
      Step copy;
      copy.node = a.node;
      copy.index = pos;
      copy.stage_bytes = a.bytes;
      copy.outputs = {a.staging};
      steps_.insert(it, std::move(copy));
    }
    for (const ir::Value* r : f->results()) {
      if (!ptr_.count(r) && !IsStateParam(r) && r->producer() != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("result %", r->name(), " has no buffer"));
      }
    }
    PickDirectResults(mp);
    profile_.resize(steps_.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      const ir::Node* n = steps_[i].node;
      profile_[i].op = steps_[i].kernel ? n->op() : "assign-stage";
      profile_[i].name = n->num_outputs() ? n->output()->name() : "";
      profile_[i].loc = n->loc();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ir::Tensor>> Run(
      const std::map<std::string, ir::Tensor>& inputs) override {
    PTC_RETURN_IF_ERROR(plan::CheckInputs(input_params_, inputs));
    for (const ir::Value* p : input_params_) {
      ptr_[p] = const_cast<void*>(inputs.at(p->name()).data());
    }
    // Results written by their producing kernel straight into the returned tensor (no copy of
    // e.g. the 32 MiB logits out of the arena). The tensor is reused across runs when the caller
    // has released the previous one.
    const auto& results = function_->results();
    output_cache_.resize(results.size());
    for (size_t i = 0; i < results.size(); ++i) {
      if (!direct_result_[i]) continue;
      ir::Tensor& t = output_cache_[i];
      if (!t.sole_owner() || t.type() != results[i]->type()) {
        t = ir::Tensor::Uninitialized(results[i]->type().dtype, results[i]->type().shape);
      }
      ptr_[results[i]] = t.mutable_data();
    }
    // Input pointers may have changed: refresh the steps' operand pointers.
    for (Step& s : steps_) {
      if (!s.kernel) {  // staging copy of an assign's new value
        s.inputs = {ptr_.at(s.node->input(1))};
        continue;
      }
      s.inputs.clear();
      s.outputs.clear();
      for (const ir::Value* v : s.node->inputs()) s.inputs.push_back(ptr_.at(v));
      for (const ir::Value* v : s.node->outputs()) s.outputs.push_back(ptr_.at(v));
    }
    for (size_t i = 0; i < steps_.size(); ++i) {
      Step& s = steps_[i];
      if (!s.kernel) {
        std::memcpy(s.outputs[0], s.inputs[0], static_cast<size_t>(s.stage_bytes));
        continue;
      }
      auto t0 = profiling_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      absl::Status st = s.kernel->Run(s.inputs, s.outputs, s.workspace);
      if (!st.ok()) {
        // Kernels usually name their node already; add it where they did not.
        std::string where = s.node->Describe();
        if (absl::StrContains(st.message(), where)) return st;
        return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
      }
      if (profiling_) {
        profile_[i].seconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        profile_[i].calls += 1;
      }
    }
    // Results are read before the assigns: they are values of this step (old parameters).
    // Output tensors are reused across runs when the caller has released the previous ones
    // (a fresh 30 MiB logits buffer per run costs page faults and a zero-fill).
    std::vector<ir::Tensor> outs;
    for (size_t i = 0; i < results.size(); ++i) {
      const ir::Value* r = results[i];
      ir::Tensor& t = output_cache_[i];
      if (direct_result_[i]) {
        outs.push_back(t);
        continue;
      }
      if (!t.sole_owner() || t.type() != r->type()) {
        t = ir::Tensor::Uninitialized(r->type().dtype, r->type().shape);
      }
      if (t.nbytes()) std::memcpy(t.mutable_data(), ptr_.at(r), t.nbytes());
      outs.push_back(t);
    }
    for (const Assign& a : assigns_) {
      const void* src = a.staging != nullptr ? a.staging : ptr_.at(a.source);
      if (src != a.target) std::memmove(a.target, src, static_cast<size_t>(a.bytes));
    }
    return outs;
  }

  void EnableProfiling(bool on) override { profiling_ = on; }
  std::vector<NodeProfile> Profile() const override { return profile_; }
  int64_t arena_bytes() const override { return arena_bytes_; }
  int64_t state_bytes() const override { return state_bytes_ + staging_bytes_; }
  bool is_training() const override { return training_; }

  std::map<std::string, ir::Tensor> State() const override {
    std::map<std::string, ir::Tensor> out;
    for (const ir::Value* p : state_params_) {
      out[p->name()] = ir::Tensor::FromBytes(p->type().dtype, p->type().shape, ptr_.at(p),
                                             static_cast<size_t>(p->type().byte_size()));
    }
    return out;
  }

  std::map<std::string, ir::Tensor> LiveState() override {
    std::map<std::string, ir::Tensor> out;
    for (const ir::Value* p : state_params_) {
      out[p->name()] = ir::Tensor::Borrow(p->type().dtype, p->type().shape, ptr_.at(p), nullptr);
    }
    return out;
  }

  absl::Status SetState(const std::map<std::string, ir::Tensor>& state) override {
    for (const auto& [name, t] : state) {
      PTC_ASSIGN_OR_RETURN(const ir::Value* p,
                           plan::FindStateParam(state_params_, function_->name(), name, t));
      if (!writable_.count(p)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "parameter '", name, "' is bound to read-only plan weights (inference plan); create "
            "the executor with writable_params to change it"));
      }
    }
    for (const auto& [name, t] : state) {
      for (const ir::Value* q : state_params_) {
        if (q->name() == name && t.nbytes()) std::memcpy(ptr_.at(q), t.data(), t.nbytes());
      }
    }
    return absl::OkStatus();
  }

 private:
  // Weights and state bind to executor-owned copies (training), to shared storage, or to the
  // module's tensors in place (inference); every other parameter is an input of Run().
  absl::Status BindParameters(const plan::Plan& plan, const ExecutorOptions& options) {
    std::vector<const ir::Value*> owned;
    int64_t total = 0;
    for (const ir::Value* p : function_->params()) {
      if (!IsStateParam(p)) {
        input_params_.push_back(p);
        continue;
      }
      state_params_.push_back(p);
      int64_t bytes = p->type().byte_size();
      if (bytes < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", p->name(), "' has an overflowing size"));
      }
      auto shared = options.shared_state.find(p->name());
      if (shared != options.shared_state.end()) {
        if (shared->second.type() != p->type()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "shared state '", p->name(), "' is ", shared->second.type().ToString(), " but @",
              function_->name(), " expects ", p->type().ToString()));
        }
        ptr_[p] = const_cast<void*>(shared->second.data());
        writable_.insert(p);
        continue;
      }
      auto it = plan.module->tensors().find(p->name());
      bool is_state = p->flags().count("state") > 0;
      if (it == plan.module->tensors().end() && !is_state) {
        return absl::InvalidArgumentError(absl::StrCat("weight '", p->name(), "' has no data"));
      }
      if (it != plan.module->tensors().end() && it->second.type() != p->type()) {
        return absl::InvalidArgumentError(absl::StrCat("weight '", p->name(), "' is ",
                                                       it->second.type().ToString(),
                                                       " but the graph expects ",
                                                       p->type().ToString()));
      }
      if (training_ || options.writable_params || is_state) {
        owned.push_back(p);
        total += AlignUp(bytes, 64);
      } else {
        ptr_[p] = const_cast<void*>(it->second.data());
      }
    }
    if (owned.empty()) return absl::OkStatus();
    state_storage_ = AllocateAligned(total);
    if (!state_storage_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", total, " bytes for the weights and optimizer state"));
    }
    state_bytes_ = total;
    int64_t offset = 0;
    for (const ir::Value* p : owned) {
      char* dst = state_storage_.get() + offset;
      auto it = plan.module->tensors().find(p->name());
      if (it != plan.module->tensors().end() && it->second.nbytes()) {
        std::memcpy(dst, it->second.data(), it->second.nbytes());
      }  // state without an initial tensor starts at zero
      ptr_[p] = dst;
      writable_.insert(p);
      offset += AlignUp(p->type().byte_size(), 64);
    }
    return absl::OkStatus();
  }

  absl::Status AddAssign(const ir::Node& n, int32_t index, const plan::MemoryPlan& mp) {
    if (n.num_inputs() != 2 || n.num_outputs() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(n.Describe(), ": assign takes (target, new_value) and has no outputs"));
    }
    const ir::Value* target = n.input(0);
    const ir::Value* source = n.input(1);
    if (target->producer() != nullptr || !writable_.count(target)) {
      return absl::InvalidArgumentError(absl::StrCat(
          n.Describe(), ": the target %", target->name(),
          " must be a \"param\" or \"state\" parameter of the function"));
    }
    if (source->type() != target->type()) {
      return absl::InvalidArgumentError(absl::StrCat(n.Describe(), ": new value is ",
                                                     source->type().ToString(), " but %",
                                                     target->name(), " is ",
                                                     target->type().ToString()));
    }
    for (const Assign& a : assigns_) {
      if (a.target == ptr_.at(target)) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Describe(), ": %", target->name(), " is assigned twice in one step"));
      }
    }
    Assign a;
    a.node = &n;
    a.target = ptr_.at(target);
    a.source = source;
    a.bytes = target->type().byte_size();
    // The deferred copy reads the new value after the whole step: that is only safe if no later
    // node writes its bytes (the planner keeps it live to the end) and it is not itself a
    // parameter updated by another assign. Otherwise save it at the assign's position.
    bool stage = false;
    if (source->producer() == nullptr) {
      stage = writable_.count(source) > 0;
    } else if (source->producer()->op() != "constant") {
      const plan::BufferAssignment* sb = nullptr;
      for (const auto& b : mp.buffers) {
        if (b.value == source->name()) sb = &b;
      }
      if (sb == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            n.Describe(), ": new value %", source->name(), " has no buffer in the memory plan"));
      }
      for (const auto& b : mp.buffers) {
        if (sb->offset < 0) break;  // written in place into the target: nothing to stage
        if (!b.alias_of.empty() || b.first <= index || &b == sb) continue;
        if (b.offset < sb->offset + sb->bytes && sb->offset < b.offset + b.bytes) stage = true;
      }
    }
    if (stage) {
      staging_.push_back(AllocateAligned(a.bytes));
      if (!staging_.back()) return absl::ResourceExhaustedError("cannot allocate staging memory");
      a.staging = staging_.back().get();
      staging_bytes_ += AlignUp(a.bytes, 64);
    }
    assigns_.push_back(a);
    return absl::OkStatus();
  }

  // A result can be written by its producer directly into the caller's tensor when it has a
  // buffer of its own: produced by a kernel step, not an alias of another buffer (reshape view,
  // in-place update) nor aliased by one, not an assign's source, listed once among the results.
  void PickDirectResults(const plan::MemoryPlan& mp) {
    const auto& results = function_->results();
    direct_result_.assign(results.size(), false);
    std::set<std::string> aliased;
    for (const auto& b : mp.buffers) {
      if (!b.alias_of.empty()) aliased.insert(b.alias_of);
    }
    std::set<const ir::Value*> produced;
    for (const Step& s : steps_) {
      if (!s.kernel) continue;
      for (const ir::Value* v : s.node->outputs()) produced.insert(v);
    }
    for (size_t i = 0; i < results.size(); ++i) {
      const ir::Value* r = results[i];
      if (!produced.count(r) || aliased.count(r->name())) continue;
      if (std::count(results.begin(), results.end(), r) != 1) continue;
      bool ok = true;
      for (const auto& b : mp.buffers) {
        if (b.value == r->name() && !b.alias_of.empty()) ok = false;
      }
      for (const Assign& a : assigns_) ok &= a.source != r;
      direct_result_[i] = ok;
    }
  }

  const ir::Function* function_ = nullptr;
  std::vector<bool> direct_result_;
  AlignedBuffer arena_;
  int64_t arena_bytes_ = 0;
  AlignedBuffer state_storage_;
  int64_t state_bytes_ = 0;
  std::vector<AlignedBuffer> staging_;
  int64_t staging_bytes_ = 0;
  bool training_ = false;
  std::map<const ir::Value*, void*> ptr_;
  std::vector<const ir::Value*> input_params_;
  std::vector<const ir::Value*> state_params_;
  std::set<const ir::Value*> writable_;
  std::vector<ir::Tensor> constants_;
  std::vector<ir::Tensor> output_cache_;
  std::vector<Step> steps_;
  std::vector<Assign> assigns_;
  std::vector<NodeProfile> profile_;
  bool profiling_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan& plan) {
  return Create(plan, ExecutorOptions{});
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan& plan,
                                                           const ExecutorOptions& options) {
  auto ex = std::make_unique<CpuExecutor>();
  PTC_RETURN_IF_ERROR(ex->Init(plan, options));
  return std::unique_ptr<Executor>(std::move(ex));
}

int64_t ProcessRssBytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return -1;
  long long size = 0, resident = 0;
  int n = std::fscanf(f, "%lld %lld", &size, &resident);
  std::fclose(f);
  if (n != 2) return -1;
  return static_cast<int64_t>(resident) * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

}  // namespace ptc::cpu
