#include "runtime/cpu/executor.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "codegen/cpu/kernel.h"
#include "compiler/support/status.h"

namespace ptc::cpu {
namespace {

struct Step {
  const ir::Node* node = nullptr;
  std::unique_ptr<Kernel> kernel;  // null: nothing to run (constant, aliasing reshape)
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
  void* workspace = nullptr;
};

class CpuExecutor final : public Executor {
 public:
  absl::Status Init(const plan::Plan& plan) {
    const ir::Function* f = plan.module ? plan.module->main() : nullptr;
    if (f == nullptr) return absl::InvalidArgumentError("plan has no main function");
    function_ = f;
    const plan::MemoryPlan& mp = plan.memory;
    if (mp.arena_bytes < 0 || mp.arena_bytes > (int64_t{1} << 40)) {
      return absl::InvalidArgumentError(absl::StrCat("plan arena size ", mp.arena_bytes,
                                                     " bytes is out of range"));
    }
    arena_bytes_ = mp.arena_bytes;
    size_t alloc = static_cast<size_t>((arena_bytes_ + 63) / 64 * 64);
    if (alloc == 0) alloc = 64;
    arena_.reset(static_cast<char*>(std::aligned_alloc(64, alloc)));
    if (!arena_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate the plan's arena of ", arena_bytes_, " bytes"));
    }
    std::map<std::string, const plan::BufferAssignment*> assign;
    for (const auto& b : mp.buffers) {
      if (b.offset < 0 || b.bytes < 0 || b.offset + b.bytes > arena_bytes_) {
        return absl::InvalidArgumentError(
            absl::StrCat("memory plan buffer '", b.value, "' lies outside the arena"));
      }
      assign[b.value] = &b;
    }
    // Parameters: weights bind to the module's tensors; the others are inputs.
    for (const ir::Value* p : f->params()) {
      if (p->is_param()) {
        auto it = plan.module->tensors().find(p->name());
        if (it == plan.module->tensors().end()) {
          return absl::InvalidArgumentError(absl::StrCat("weight '", p->name(), "' has no data"));
        }
        if (it->second.type() != p->type()) {
          return absl::InvalidArgumentError(absl::StrCat("weight '", p->name(), "' is ",
                                                         it->second.type().ToString(),
                                                         " but the graph expects ",
                                                         p->type().ToString()));
        }
        ptr_[p] = const_cast<void*>(it->second.data());
      } else {
        input_params_.push_back(p);
      }
    }
    const auto& nodes = f->nodes();
    for (size_t i = 0; i < nodes.size(); ++i) {
      const ir::Node& n = *nodes[i];
      Step step;
      step.node = &n;
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
          aliases_.push_back({out, src});
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
    for (const ir::Value* r : f->results()) {
      if (!ptr_.count(r) && !r->is_param() && r->producer() != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("result %", r->name(), " has no buffer"));
      }
    }
    profile_.resize(steps_.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      const ir::Node* n = steps_[i].node;
      profile_[i].op = n->op();
      profile_[i].name = n->num_outputs() ? n->output()->name() : "";
      profile_[i].loc = n->loc();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ir::Tensor>> Run(
      const std::map<std::string, ir::Tensor>& inputs) override {
    for (const ir::Value* p : input_params_) {
      auto it = inputs.find(p->name());
      if (it == inputs.end()) {
        return absl::InvalidArgumentError(absl::StrCat("missing input '", p->name(), "' (",
                                                       p->type().ToString(), ")"));
      }
      if (it->second.type() != p->type()) {
        return absl::InvalidArgumentError(absl::StrCat("input '", p->name(), "' is ",
                                                       it->second.type().ToString(),
                                                       " but the plan expects ",
                                                       p->type().ToString()));
      }
      ptr_[p] = const_cast<void*>(it->second.data());
    }
    for (const auto& [name, t] : inputs) {
      bool known = false;
      for (const ir::Value* p : input_params_) known |= p->name() == name;
      if (!known) {
        return absl::InvalidArgumentError(absl::StrCat("the plan has no input named '", name, "'"));
      }
    }
    // Input pointers may have changed: refresh the steps' operand pointers.
    for (Step& s : steps_) {
      s.inputs.clear();
      s.outputs.clear();
      for (const ir::Value* v : s.node->inputs()) s.inputs.push_back(ptr_.at(v));
      for (const ir::Value* v : s.node->outputs()) s.outputs.push_back(ptr_.at(v));
    }
    for (size_t i = 0; i < steps_.size(); ++i) {
      Step& s = steps_[i];
      if (profiling_) {
        auto t0 = std::chrono::steady_clock::now();
        PTC_RETURN_IF_ERROR(s.kernel->Run(s.inputs, s.outputs, s.workspace));
        auto t1 = std::chrono::steady_clock::now();
        profile_[i].seconds += std::chrono::duration<double>(t1 - t0).count();
        profile_[i].calls += 1;
      } else {
        absl::Status st = s.kernel->Run(s.inputs, s.outputs, s.workspace);
        if (!st.ok()) {
          return absl::Status(st.code(), absl::StrCat(s.node->Describe(), ": ", st.message()));
        }
      }
    }
    std::vector<ir::Tensor> outs;
    for (const ir::Value* r : function_->results()) {
      ir::Tensor t(r->type().dtype, r->type().shape);
      if (t.nbytes()) std::memcpy(t.mutable_data(), ptr_.at(r), t.nbytes());
      outs.push_back(std::move(t));
    }
    return outs;
  }

  void EnableProfiling(bool on) override { profiling_ = on; }
  std::vector<NodeProfile> Profile() const override { return profile_; }
  int64_t arena_bytes() const override { return arena_bytes_; }

 private:
  struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
  };
  const ir::Function* function_ = nullptr;
  std::unique_ptr<char, FreeDeleter> arena_;
  int64_t arena_bytes_ = 0;
  std::map<const ir::Value*, void*> ptr_;
  std::vector<const ir::Value*> input_params_;
  std::vector<std::pair<const ir::Value*, const ir::Value*>> aliases_;
  std::vector<ir::Tensor> constants_;
  std::vector<Step> steps_;
  std::vector<NodeProfile> profile_;
  bool profiling_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan& plan) {
  auto ex = std::make_unique<CpuExecutor>();
  PTC_RETURN_IF_ERROR(ex->Init(plan));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace ptc::cpu
