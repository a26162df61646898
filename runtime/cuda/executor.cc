#include "runtime/cuda/executor.h"

#include <cstdio>
#include <algorithm>
#include <cstring>
#include <numeric>
#include <set>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/autotune.h"
#include "runtime/cuda/device_kernels.h"
#include "runtime/plan/local_plan.h"
#include "runtime/plan/binding.h"

namespace ptc::cuda {
namespace {

constexpr int64_t kAlign = 256;  // cudaMalloc alignment; keeps every buffer 16-byte loadable
int64_t AlignUp(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

bool IsStateParam(const ir::Value* p) { return p->is_param() || p->flags().count("state") > 0; }

// Where a value lives before the device memory exists: a region and an offset in it.
enum class Region { kArena, kState, kConstant, kInput, kStaging, kShared };
struct Loc {
  Region region = Region::kArena;
  int64_t offset = 0;  // kShared: from `shared`, another executor's buffer
  char* shared = nullptr;
};

struct Step {
  const ir::Node* node = nullptr;
  int32_t index = 0;
  std::unique_ptr<DeviceKernel> kernel;  // null: staging copy of an assign's new value
  std::vector<const void*> inputs;
  std::vector<void*> outputs;
  int64_t stage_bytes = 0;
  const void* stage_src = nullptr;
  void* stage_dst = nullptr;
  // Multi-tensor batching (DeviceKernel::BatchKey): the first step of a run launches every
  // member's work; the others are `batched` (launched there, skipped here).
  std::vector<DeviceKernel::BatchItem> batch;
  bool batched = false;
};

struct Assign {
  const ir::Node* node = nullptr;
  const ir::Value* target = nullptr;
  const ir::Value* source = nullptr;
  int64_t staging_offset = -1;  // >= 0: saved in the staging region at the assign's position
  int64_t bytes = 0;
};

class CudaExecutor final : public Executor {
 public:
  ~CudaExecutor() override {
    if (compute_graph_ != nullptr) cudaGraphExecDestroy(compute_graph_);
    if (assign_graph_ != nullptr) cudaGraphExecDestroy(assign_graph_);
    tuner_.reset();
    steps_.clear();  // kernels free their descriptors before the context goes
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (lt_ != nullptr) cublasLtDestroy(lt_);
  }

  absl::Status Init(const plan::Plan& plan, const ExecutorOptions& options) {
    if (!plan.module) return absl::InvalidArgumentError("plan has no module");
    PTC_ASSIGN_OR_RETURN(device_, GetDevice(options.device));
    PTC_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&lt_));
    PTC_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));

    const ir::Function* main = plan.module->main();
    const ir::Function* f = options.function == "main"
                                ? main
                                : plan.module->FindFunction(options.function);
    if (f == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("plan has no function @", options.function));
    }
    function_ = f;
    plan::MemoryPlan local_plan;
    const plan::MemoryPlan* mpp = &plan.memory;
    if (f != main) {
      // Liveness-based reuse (the CPU executor's planner); kernel scratch is the executor's own.
      PTC_ASSIGN_OR_RETURN(local_plan,
                           plan::PlanFunctionLocally(
                               *f, [](const ir::Node&) -> absl::StatusOr<int64_t> { return 0; },
                               kAlign));
      mpp = &local_plan;
    }
    const plan::MemoryPlan& mp = *mpp;
    if (mp.arena_bytes < 0 || mp.arena_bytes > (int64_t{1} << 42)) {
      return absl::InvalidArgumentError(
          absl::StrCat("plan arena size ", mp.arena_bytes, " bytes is out of range"));
    }
    mem_.arena_bytes = mp.arena_bytes;
    std::map<std::string, const plan::BufferAssignment*> assignment;
    for (const auto& b : mp.buffers) {
      // An alias takes its source's place (a reshape's input, or a decoder's cache parameter
      // written in place: offset -1), checked when it is laid out below.
      if (b.alias_of.empty() && (b.offset < 0 || b.bytes < 0 || b.offset > mp.arena_bytes ||
                                 b.bytes > mp.arena_bytes - b.offset)) {
        return absl::InvalidArgumentError(
            absl::StrCat("memory plan buffer '", b.value, "' lies outside the arena"));
      }
      assignment[b.value] = &b;
    }
    for (const auto& n : f->nodes()) training_ |= n->op() == "assign";
    PTC_RETURN_IF_ERROR(LayOutParameters(plan, options.shared_params));

    size_t resident = 0, scratch = 0;
    // fused_elementwise through the plan's generated kernels where they fit this device.
    KernelOptions kernel_options = options.kernels;
    kernel_options.autotune = options.autotune;
    if (options.autotune) {
      tuner_ = std::make_unique<Tuner>(options.device);
      tune_file_ = options.tune_file;
      if (!tune_file_.empty()) {
        tune_tag_ = DeviceTuneTag(device_);
        PTC_RETURN_IF_ERROR(LoadTuneFile(tune_file_, options.device, tune_tag_));
      }
    }
    for (const auto& b : mp.buffers) {
      if (b.alias_of.empty()) {
        kernel_options.buffer_align = std::gcd(kernel_options.buffer_align, b.offset);
      }
    }
    if (!kernel_options.fused_interpreter && kernel_options.generated == nullptr) {
      PTC_ASSIGN_OR_RETURN(kernel_options.generated,
                           LoadGeneratedKernels(plan.cuda_kernels, device_));
    }
    const auto& nodes = f->nodes();
    for (size_t i = 0; i < nodes.size(); ++i) {
      const ir::Node& n = *nodes[i];
      if (n.op() == "constant") {
        PTC_RETURN_IF_ERROR(AddConstant(plan, n));
        continue;
      }
      if (n.op() == "assign") {
        PTC_RETURN_IF_ERROR(AddAssign(n, static_cast<int32_t>(i), mp));
        continue;
      }
      for (const ir::Value* out : n.outputs()) {
        auto it = assignment.find(out->name());
        if (it == assignment.end()) {
          return absl::InvalidArgumentError(absl::StrCat(
              n.Describe(), ": output %", out->name(), " has no buffer in the memory plan"));
        }
        const plan::BufferAssignment& b = *it->second;
        if (b.bytes < out->type().byte_size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("buffer of %", out->name(), " is smaller than its type"));
        }
        if (!b.alias_of.empty()) {
          const ir::Value* src = f->FindValue(b.alias_of);
          if (src == nullptr || !loc_.count(src)) {
            return absl::InvalidArgumentError(absl::StrCat(
                "buffer of %", out->name(), " aliases unknown value '", b.alias_of, "'"));
          }
          loc_[out] = loc_[src];
        } else {
          loc_[out] = {Region::kArena, b.offset};
        }
      }
      Step step;
      step.node = &n;
      step.index = static_cast<int32_t>(i);
      auto kernel = CreateDeviceKernel(n, kernel_options, lt_);
      if (!kernel.ok()) return kernel.status();
      step.kernel = *std::move(kernel);
      if (step.kernel->host_fallback()) fallback_.push_back(n.Describe());
      resident += step.kernel->ResidentBytes();
      scratch = std::max(scratch, step.kernel->WorkspaceBytes());
      steps_.push_back(std::move(step));
    }
    for (const ir::Value* r : f->results()) {
      if (!loc_.count(r)) {
        return absl::InvalidArgumentError(absl::StrCat("result %", r->name(), " has no buffer"));
      }
    }

    // Everything the plan needs on the device, checked against what is free before allocating.
    mem_.state_bytes = state_bytes_ + staging_bytes_;
    mem_.constant_bytes = constant_bytes_;
    mem_.io_bytes = input_bytes_;
    mem_.workspace_bytes = static_cast<int64_t>(kLtWorkspaceBytes + scratch + resident) + kAlign;
    size_t free_bytes = 0, total_bytes = 0;
    PTC_CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_bytes, &total_bytes));
    if (mem_.total() > static_cast<int64_t>(free_bytes)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the plan needs ", mem_.total(), " bytes of device memory but ", device_.name,
          " (device ", device_.ordinal, ") has ", free_bytes, " of ", total_bytes,
          " bytes free; needed: ", mem_.ToString(),
          ". Use a smaller batch or sequence, a plan with a memory budget (ptc compile "
          "--memory-budget), or a GPU with more memory"));
    }
    PTC_RETURN_IF_ERROR(arena_.Allocate(static_cast<size_t>(mp.arena_bytes), "the plan's arena"));
    PTC_RETURN_IF_ERROR(state_.Allocate(static_cast<size_t>(state_bytes_), "the weights"));
    PTC_RETURN_IF_ERROR(constants_.Allocate(static_cast<size_t>(constant_bytes_), "constants"));
    PTC_RETURN_IF_ERROR(inputs_.Allocate(static_cast<size_t>(input_bytes_), "the inputs"));
    PTC_RETURN_IF_ERROR(staging_.Allocate(static_cast<size_t>(staging_bytes_), "assign staging"));
    PTC_RETURN_IF_ERROR(scratch_.Allocate(scratch, "kernel scratch"));
    PTC_RETURN_IF_ERROR(lt_workspace_.Allocate(kLtWorkspaceBytes, "the cuBLASLt workspace"));
    PTC_RETURN_IF_ERROR(flag_.Allocate(sizeof(int), "the error flag"));

    // Weights, optimizer state and constants: uploaded once.
    for (const auto& [value, tensor] : uploads_) {
      if (tensor.nbytes() == 0) continue;
      PTC_CUDA_RETURN_IF_ERROR(cudaMemcpy(Ptr(value), tensor.data(), tensor.nbytes(),
                                          cudaMemcpyHostToDevice));
    }
    if (state_bytes_ > 0) {
      // State without an initial tensor (optimizer moments) starts at zero.
      for (const ir::Value* p : state_params_) {
        if (!uploaded_.count(p)) {
          PTC_CUDA_RETURN_IF_ERROR(
              cudaMemset(Ptr(p), 0, static_cast<size_t>(p->type().byte_size())));
        }
      }
    }
    uploads_.clear();  // the plan keeps the host copies; nothing to hold here

    // Operand pointers are final: the arena and every buffer stay where they are.
    for (Step& s : steps_) {
      for (const ir::Value* v : s.node->inputs()) s.inputs.push_back(Ptr(v));
      for (const ir::Value* v : s.node->outputs()) s.outputs.push_back(Ptr(v));
    }
    for (Assign& a : assigns_) {
      if (a.staging_offset < 0) continue;
      const int32_t pos = f->NodeIndex(a.node);
      auto it = std::find_if(steps_.begin(), steps_.end(),
                             [&](const Step& s) { return s.index > pos; });
      Step copy;
      copy.node = a.node;
      copy.index = pos;
      copy.stage_bytes = a.bytes;
      copy.stage_src = Ptr(a.source);
      copy.stage_dst = staging_.get() + a.staging_offset;
      steps_.insert(it, std::move(copy));
    }
    // Back-to-back steps with one batch key launch together (e.g. every adamw_update), as long
    // as running them at once cannot change what they read: the memory plan assumed schedule
    // order, so a member may not write bytes an earlier member reads or writes, nor read bytes
    // an earlier member writes.
    using Range = std::pair<uintptr_t, uintptr_t>;
    auto ranges = [](const auto& values, const auto& ptrs) {
      std::vector<Range> r;
      for (size_t k = 0; k < values.size(); ++k) {
        const auto b = reinterpret_cast<uintptr_t>(ptrs[k]);
        r.push_back({b, b + static_cast<uintptr_t>(values[k]->type().byte_size())});
      }
      return r;
    };
    auto overlap = [](const std::vector<Range>& a, const std::vector<Range>& b) {
      for (const Range& x : a) {
        for (const Range& y : b) {
          if (x.first < y.second && y.first < x.second) return true;
        }
      }
      return false;
    };
    for (size_t i = 0; i < steps_.size();) {
      Step& lead = steps_[i];
      const std::string key = lead.kernel ? lead.kernel->BatchKey(lead.inputs) : std::string();
      std::vector<Range> reads, writes;
      if (!key.empty()) {
        reads = ranges(lead.node->inputs(), lead.inputs);
        writes = ranges(lead.node->outputs(), lead.outputs);
      }
      size_t j = i + 1;
      while (!key.empty() && j < steps_.size() && steps_[j].kernel &&
             steps_[j].kernel->BatchKey(steps_[j].inputs) == key) {
        std::vector<Range> r = ranges(steps_[j].node->inputs(), steps_[j].inputs);
        std::vector<Range> w = ranges(steps_[j].node->outputs(), steps_[j].outputs);
        // Shared scalars (lr, step) are read by all: only reads against writes matter.
        if (overlap(w, reads) || overlap(w, writes) || overlap(r, writes)) break;
        reads.insert(reads.end(), r.begin(), r.end());
        writes.insert(writes.end(), w.begin(), w.end());
        ++j;
      }
      if (j - i > 1) {
        for (size_t m = i; m < j; ++m) {
          lead.batch.push_back({steps_[m].kernel.get(), steps_[m].inputs, steps_[m].outputs});
          steps_[m].batched = m > i;
        }
        batched_launches_ += static_cast<int64_t>(j - i - 1);
      }
      i = j;
    }
    profile_.resize(steps_.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      const ir::Node* n = steps_[i].node;
      profile_[i].op = steps_[i].kernel ? n->op() : "assign-stage";
      profile_[i].name = n->num_outputs() ? n->output()->name() : "";
      profile_[i].loc = n->loc();
      profile_[i].host_fallback = steps_[i].kernel && steps_[i].kernel->host_fallback();
    }
    use_graphs_ = options.cuda_graphs;
    graph_note_ = options.cuda_graphs ? "eager (graphs are captured at the second run)"
                                      : "eager (cuda_graphs off)";
    for (const Step& s : steps_) {
      if (use_graphs_ && s.kernel && !s.kernel->capturable()) {
        use_graphs_ = false;
        graph_note_ = absl::StrCat("eager (", s.node->Describe(),
                                   s.kernel->host_fallback() ? " runs on the host" :
                                   " cannot be captured", ")");
      }
    }
    PTC_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return absl::OkStatus();
  }

  using Executor::Run;
  absl::StatusOr<std::vector<ir::Tensor>> Run(const std::map<std::string, ir::Tensor>& inputs,
                                              const std::vector<bool>& fetch) override {
    PTC_RETURN_IF_ERROR(plan::CheckInputs(input_params_, inputs));
    const auto& results = function_->results();
    if (!fetch.empty() && fetch.size() != results.size()) {
      return absl::InvalidArgumentError(absl::StrCat("fetch has ", fetch.size(),
                                                     " entries for ", results.size(), " results"));
    }
    for (const ir::Value* p : input_params_) {
      const ir::Tensor& t = inputs.at(p->name());
      if (t.nbytes() == 0) continue;
      PTC_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(Ptr(p), t.data(), t.nbytes(), cudaMemcpyHostToDevice, stream_));
    }
    if (profiling_ && events_.size() < 2 * steps_.size()) {
      while (events_.size() < 2 * steps_.size()) {
        cudaEvent_t e;
        PTC_CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
        events_.push_back(e);
      }
    }
    // Graphs are captured at the second run (the first one loads modules and warms cuBLASLt
    // up eagerly) and replayed from then on; profiling runs eagerly (events per node).
    if (use_graphs_ && !profiling_ && runs_ >= 1 && compute_graph_ == nullptr) {
      absl::Status st = CaptureGraphs();
      if (!st.ok()) {
        use_graphs_ = false;
        graph_note_ = absl::StrCat("eager (the CUDA graph capture failed: ", st.message(), ")");
      }
    }
    const bool replay = compute_graph_ != nullptr && !profiling_;
    if (replay) {
      PTC_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(compute_graph_, stream_));
    } else {
      PTC_RETURN_IF_ERROR(EnqueueCompute(profiling_));
    }
    // Results are read before the assigns: they are values of this step (old parameters).
    std::vector<ir::Tensor> outs;
    for (size_t i = 0; i < results.size(); ++i) {
      const ir::Value* r = results[i];
      if (!fetch.empty() && !fetch[i]) {
        outs.emplace_back();
        continue;
      }
      ir::Tensor t(r->type().dtype, r->type().shape);
      if (t.nbytes()) {
        PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(t.mutable_data(), Ptr(r), t.nbytes(),
                                                 cudaMemcpyDeviceToHost, stream_));
      }
      outs.push_back(std::move(t));
    }
    if (replay && assign_graph_ != nullptr) {
      PTC_CUDA_RETURN_IF_ERROR(cudaGraphLaunch(assign_graph_, stream_));
    } else if (!replay) {
      PTC_RETURN_IF_ERROR(EnqueueAssigns());
    }
    int code = 0;
    PTC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(&code, flag_.get(), sizeof(int), cudaMemcpyDeviceToHost, stream_));
    const cudaError_t sync = cudaStreamSynchronize(stream_);
    if (sync != cudaSuccess) {
      absl::Status st = CudaStatus(sync, "cudaStreamSynchronize", __FILE__, __LINE__);
      return absl::Status(st.code(), absl::StrCat("running @", function_->name(), " on ",
                                                  device_.name, ": ", st.message(),
                                                  " (rerun under compute-sanitizer to find the "
                                                  "kernel)"));
    }
    ++runs_;
    if (runs_ == 1 && tuner_ && !tune_file_.empty()) SaveChoices();
    if (code > 0 && code <= static_cast<int>(steps_.size())) {
      return absl::OutOfRangeError(absl::StrCat(steps_[code - 1].node->Describe(),
                                                ": an index is out of range of its data"));
    }
    if (profiling_) {
      for (size_t i = 0; i < steps_.size(); ++i) {
        float ms = 0;
        PTC_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events_[2 * i], events_[2 * i + 1]));
        profile_[i].seconds += ms * 1e-3;
        profile_[i].calls += 1;
      }
    }
    return outs;
  }

  std::string graph_status() const override {
    if (compute_graph_ != nullptr) {
      return absl::StrCat("cuda graphs: ", steps_.size() - batched_launches_, " launches (",
                          batched_launches_, " saved by multi-tensor batching) and ",
                          graph_assigns_, " assign copies replayed per run");
    }
    return batched_launches_ > 0
               ? absl::StrCat(graph_note_, "; ", batched_launches_,
                              " launches saved by multi-tensor batching")
               : graph_note_;
  }

  std::string autotune_summary(bool table) const override {
    if (!tuner_) return "autotune: off";
    return table ? absl::StrCat(tuner_->Summary(), "\n", tuner_->Table()) : tuner_->Summary();
  }
  std::vector<TuneRecord> autotune_records() const override {
    return tuner_ ? tuner_->records() : std::vector<TuneRecord>{};
  }

  void EnableProfiling(bool on) override { profiling_ = on; }
  std::vector<NodeProfile> Profile() const override { return profile_; }
  MemoryReport memory() const override { return mem_; }
  const DeviceInfo& device() const override { return device_; }
  std::vector<std::string> host_fallback_nodes() const override { return fallback_; }
  bool is_training() const override { return training_; }

  std::map<std::string, void*> DeviceParams() const override {
    std::map<std::string, void*> out;
    for (const ir::Value* p : state_params_) {
      if (p->is_param()) out[p->name()] = Ptr(p);
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, ir::Tensor>> State() const override {
    std::map<std::string, ir::Tensor> out;
    for (const ir::Value* p : state_params_) {
      ir::Tensor t(p->type().dtype, p->type().shape);
      if (t.nbytes()) {
        PTC_CUDA_RETURN_IF_ERROR(
            cudaMemcpy(t.mutable_data(), Ptr(p), t.nbytes(), cudaMemcpyDeviceToHost));
      }
      out[p->name()] = std::move(t);
    }
    return out;
  }

  absl::Status SetState(const std::map<std::string, ir::Tensor>& state) override {
    for (const auto& [name, t] : state) {
      PTC_ASSIGN_OR_RETURN(const ir::Value* p,
                           plan::FindStateParam(state_params_, function_->name(), name, t));
      (void)p;
    }
    for (const auto& [name, t] : state) {
      for (const ir::Value* q : state_params_) {
        if (q->name() == name && t.nbytes()) {
          PTC_CUDA_RETURN_IF_ERROR(cudaMemcpy(Ptr(q), t.data(), t.nbytes(), cudaMemcpyHostToDevice));
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  // The step's device work: the error flag cleared, then every node (and assign staging copy)
  // in schedule order; with `profile`, events around each.
  absl::Status EnqueueCompute(bool profile) {
    PTC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(flag_.get(), 0, sizeof(int), stream_));
    LaunchContext ctx;
    ctx.stream = stream_;
    ctx.lt = lt_;
    ctx.lt_workspace = lt_workspace_.get();
    ctx.lt_workspace_bytes = kLtWorkspaceBytes;
    ctx.error_flag = reinterpret_cast<int*>(flag_.get());
    // The first run is eager: kernels with alternatives time them there (autotune.h).
    ctx.tuner = runs_ == 0 ? tuner_.get() : nullptr;
    for (size_t i = 0; i < steps_.size(); ++i) {
      Step& s = steps_[i];
      if (profile) PTC_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[2 * i], stream_));
      if (!s.kernel) {
        PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(s.stage_dst, s.stage_src,
                                                 static_cast<size_t>(s.stage_bytes),
                                                 cudaMemcpyDeviceToDevice, stream_));
      } else if (s.batched) {
        // launched with its batch's first step
      } else if (!s.batch.empty()) {
        ctx.error_code = static_cast<int>(i) + 1;
        absl::Status st = s.kernel->LaunchBatch(ctx, s.batch);
        if (!st.ok()) {
          return absl::Status(st.code(), absl::StrCat(s.node->Describe(), " (and the ",
                                                      s.batch.size() - 1, " batched with it): ",
                                                      st.message()));
        }
      } else {
        ctx.error_code = static_cast<int>(i) + 1;
        absl::Status st = s.kernel->Launch(ctx, s.inputs, s.outputs, scratch_.get());
        if (!st.ok()) {
          return absl::Status(st.code(), absl::StrCat(s.node->Describe(), ": ", st.message()));
        }
      }
      if (profile) PTC_CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[2 * i + 1], stream_));
    }
    return absl::OkStatus();
  }

  // The first run's new choices into the tuning file (a failure is a note, not an error).
  void SaveChoices() {
    std::vector<TuneRecord> fresh;
    for (const TuneRecord& r : tuner_->records()) {
      if (!r.reused) fresh.push_back(r);
    }
    if (fresh.empty()) return;
    absl::Status st = SaveTuneFile(tune_file_, tune_tag_, fresh);
    if (!st.ok()) {
      std::fprintf(stderr, "ptc-cuda: note: autotuning choices not saved: %s\n",
                   std::string(st.message()).c_str());
    }
  }

  // Where an assign's new value is read: its staging copy, or the value itself.
  const void* AssignSource(const Assign& a) const {
    return a.staging_offset >= 0 ? staging_.get() + a.staging_offset : Ptr(a.source);
  }

  // The parameters' new values copied in (after the results were read).
  absl::Status EnqueueAssigns() {
    for (const Assign& a : assigns_) {
      const void* src = AssignSource(a);
      void* dst = Ptr(a.target);
      if (src != dst) {
        PTC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, static_cast<size_t>(a.bytes),
                                                 cudaMemcpyDeviceToDevice, stream_));
      }
    }
    return absl::OkStatus();
  }

  // Captures `enqueue`'s stream work into an executable graph (null when it enqueued nothing).
  template <typename F>
  absl::Status Capture(F enqueue, cudaGraphExec_t* out) {
    PTC_CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    absl::Status st = enqueue();
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream_, &graph);
    auto check = [](cudaError_t e, const char* what) {
      return e == cudaSuccess ? absl::OkStatus() : CudaStatus(e, what, __FILE__, __LINE__);
    };
    if (st.ok()) st = check(end, "cudaStreamEndCapture");
    if (st.ok() && graph != nullptr) {
      size_t nodes = 0;
      st = check(cudaGraphGetNodes(graph, nullptr, &nodes), "cudaGraphGetNodes");
      if (st.ok() && nodes > 0) st = check(cudaGraphInstantiate(out, graph, 0), "cudaGraphInstantiate");
    }
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (!st.ok()) {
      (void)cudaGetLastError();  // capture errors are not sticky: clear the last error
      *out = nullptr;
    }
    return st;
  }

  absl::Status CaptureGraphs() {
    PTC_RETURN_IF_ERROR(Capture([&] { return EnqueueCompute(false); }, &compute_graph_));
    absl::Status st = Capture([&] { return EnqueueAssigns(); }, &assign_graph_);
    if (!st.ok()) {
      cudaGraphExecDestroy(compute_graph_);
      compute_graph_ = nullptr;
      return st;
    }
    graph_assigns_ = 0;
    for (const Assign& a : assigns_) graph_assigns_ += AssignSource(a) != Ptr(a.target) ? 1 : 0;
    return absl::OkStatus();
  }

  void* Ptr(const ir::Value* v) const {
    const Loc& l = loc_.at(v);
    char* base = nullptr;
    switch (l.region) {
      case Region::kArena: base = arena_.get(); break;
      case Region::kState: base = state_.get(); break;
      case Region::kConstant: base = constants_.get(); break;
      case Region::kInput: base = inputs_.get(); break;
      case Region::kStaging: base = staging_.get(); break;
      case Region::kShared: base = l.shared; break;
    }
    return base + l.offset;
  }

  // Every "param" / "state" parameter gets device storage (weights are uploaded once); every
  // other parameter an input buffer that Run() fills.
  absl::Status LayOutParameters(const plan::Plan& plan,
                                const std::map<std::string, void*>* shared) {
    for (const ir::Value* p : function_->params()) {
      const int64_t bytes = p->type().byte_size();
      if (bytes < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("parameter '", p->name(), "' has an overflowing size"));
      }
      if (shared != nullptr && p->is_param() && shared->count(p->name())) {
        if (training_) {
          return absl::InvalidArgumentError(absl::StrCat(
              "@", function_->name(), " updates parameters: it cannot share '", p->name(),
              "' with another executor"));
        }
        loc_[p] = {Region::kShared, 0, static_cast<char*>(shared->at(p->name()))};
        shared_params_.push_back(p);
        continue;
      }
      if (!IsStateParam(p)) {
        input_params_.push_back(p);
        loc_[p] = {Region::kInput, input_bytes_};
        input_bytes_ += AlignUp(bytes, kAlign);
        continue;
      }
      state_params_.push_back(p);
      auto it = plan.module->tensors().find(p->name());
      const bool is_state = p->flags().count("state") > 0;
      if (it == plan.module->tensors().end() && !is_state) {
        return absl::InvalidArgumentError(absl::StrCat("weight '", p->name(), "' has no data"));
      }
      if (it != plan.module->tensors().end()) {
        if (it->second.type() != p->type()) {
          return absl::InvalidArgumentError(absl::StrCat("weight '", p->name(), "' is ",
                                                         it->second.type().ToString(),
                                                         " but the graph expects ",
                                                         p->type().ToString()));
        }
        uploads_.push_back({p, it->second});
        uploaded_.insert(p);
      }
      loc_[p] = {Region::kState, state_bytes_};
      state_bytes_ += AlignUp(bytes, kAlign);
    }
    return absl::OkStatus();
  }

  absl::Status AddConstant(const plan::Plan& plan, const ir::Node& n) {
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
    loc_[n.output()] = {Region::kConstant, constant_bytes_};
    constant_bytes_ += AlignUp(static_cast<int64_t>(t.nbytes()), kAlign);
    uploads_.push_back({n.output(), t});
    return absl::OkStatus();
  }

  absl::Status AddAssign(const ir::Node& n, int32_t index, const plan::MemoryPlan& mp) {
    if (n.num_inputs() != 2 || n.num_outputs() != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(n.Describe(), ": assign takes (target, new_value) and has no outputs"));
    }
    const ir::Value* target = n.input(0);
    const ir::Value* source = n.input(1);
    if (target->producer() != nullptr || !IsStateParam(target)) {
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
      if (a.target == target) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Describe(), ": %", target->name(), " is assigned twice in one step"));
      }
    }
    Assign a;
    a.node = &n;
    a.target = target;
    a.source = source;
    a.bytes = target->type().byte_size();
    // As on the CPU: the deferred copy is safe only if no later node overwrites the new value's
    // bytes and it is not a parameter updated by another assign; otherwise stage it.
    bool stage = false;
    if (source->producer() == nullptr) {
      stage = IsStateParam(source);
    } else if (source->producer()->op() != "constant") {
      const plan::BufferAssignment* sb = nullptr;
      for (const auto& b : mp.buffers) {
        if (b.value == source->name()) sb = &b;
      }
      if (sb == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            n.Describe(), ": new value %", source->name(), " has no buffer in the memory plan"));
      }
      // Written in place into the target (a decoder's kv_cache_write): nothing to copy.
      const bool in_place = sb->alias_of == target->name();
      for (const auto& b : mp.buffers) {
        if (in_place || !b.alias_of.empty() || b.first <= index || &b == sb) continue;
        if (b.offset < sb->offset + sb->bytes && sb->offset < b.offset + b.bytes) stage = true;
      }
    }
    if (stage) {
      a.staging_offset = staging_bytes_;
      staging_bytes_ += AlignUp(a.bytes, kAlign);
    }
    assigns_.push_back(a);
    return absl::OkStatus();
  }

  DeviceInfo device_;
  cublasLtHandle_t lt_ = nullptr;
  cudaStream_t stream_ = nullptr;
  const ir::Function* function_ = nullptr;
  std::map<const ir::Value*, Loc> loc_;
  std::vector<std::pair<const ir::Value*, ir::Tensor>> uploads_;
  std::set<const ir::Value*> uploaded_;
  std::vector<const ir::Value*> input_params_;
  std::vector<const ir::Value*> state_params_;
  std::vector<const ir::Value*> shared_params_;  // read from another executor's buffers
  int64_t state_bytes_ = 0, constant_bytes_ = 0, input_bytes_ = 0, staging_bytes_ = 0;
  DeviceBuffer arena_, state_, constants_, inputs_, staging_, scratch_, lt_workspace_, flag_;
  std::vector<Step> steps_;
  std::vector<Assign> assigns_;
  std::vector<std::string> fallback_;
  std::vector<NodeProfile> profile_;
  std::vector<cudaEvent_t> events_;
  MemoryReport mem_;
  bool training_ = false;
  bool profiling_ = false;
  bool use_graphs_ = false;
  std::string graph_note_ = "eager";
  cudaGraphExec_t compute_graph_ = nullptr, assign_graph_ = nullptr;
  int64_t graph_assigns_ = 0;
  int64_t batched_launches_ = 0;  // launches saved by multi-tensor batching
  int64_t runs_ = 0;
  std::unique_ptr<Tuner> tuner_;  // null without ExecutorOptions::autotune
  std::string tune_file_, tune_tag_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan& plan) {
  return Create(plan, ExecutorOptions{});
}

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const plan::Plan& plan,
                                                           const ExecutorOptions& options) {
  auto ex = std::make_unique<CudaExecutor>();
  PTC_RETURN_IF_ERROR(ex->Init(plan, options));
  return std::unique_ptr<Executor>(std::move(ex));
}

}  // namespace ptc::cuda
