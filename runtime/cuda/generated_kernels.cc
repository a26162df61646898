// See generated_kernels.h.
#include "runtime/cuda/generated_kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#if defined(PTC_CUDA_EMU)
#include "runtime/cuda/emu/emu.h"
#endif

namespace ptc::cuda {
namespace {

std::atomic<int64_t> g_generated_nodes{0};
std::atomic<int64_t> g_interpreted_nodes{0};
std::atomic<int64_t> g_compiled_at_load{0};
std::atomic<bool> g_reported{false};

// Prints the first reason a plan's generated kernels could not serve a fused_elementwise node.
void ReportInterpreted(const ir::Node& node, const std::string& why) {
  if (g_reported.exchange(true)) return;
  std::fprintf(stderr,
               "ptc-cuda: note: fused_elementwise runs on the interpreter for %s (%s); later "
               "such nodes are not reported\n",
               node.Describe().c_str(), why.c_str());
}

class GeneratedFusedKernel final : public DeviceKernel {
 public:
  GeneratedFusedKernel(std::shared_ptr<const GeneratedKernels> owner, cudaKernel_t kernel,
                       int num_operands, int64_t threads, std::vector<uint64_t> seeds)
      : owner_(std::move(owner)), kernel_(kernel), num_operands_(num_operands),
        threads_(threads), seeds_(std::move(seeds)) {}
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void*) override {
    if (static_cast<int>(in.size()) != num_operands_ || out.size() != 1) {
      return absl::InternalError("generated fused kernel: operand count changed since load");
    }
    // cudaLaunchKernel takes the address of each argument: the pointers themselves live in
    // `in` / `out`, which outlive the (synchronous) argument copy.
    void* args[kMaxArgs];
    for (int i = 0; i < num_operands_; ++i) args[i] = const_cast<const void**>(&in[i]);
    args[num_operands_] = const_cast<void**>(&out[0]);
    for (size_t k = 0; k < seeds_.size(); ++k) args[num_operands_ + 1 + k] = &seeds_[k];
    const int64_t blocks = std::min<int64_t>((threads_ + codegen::kGeneratedThreads - 1) /
                                                 codegen::kGeneratedThreads,
                                             int64_t{1} << 20);
    PTC_CUDA_RETURN_IF_ERROR(cudaLaunchKernel(reinterpret_cast<const void*>(kernel_),
                                              dim3(static_cast<unsigned>(blocks)),
                                              dim3(codegen::kGeneratedThreads), args,
                                              /*sharedMem=*/0, ctx.stream));
    return absl::OkStatus();
  }
  // 8-byte pointers within the classic 4 KiB kernel parameter limit.
  static constexpr int kMaxArgs = 512;

 private:
  std::shared_ptr<const GeneratedKernels> owner_;  // keeps the library loaded
  cudaKernel_t kernel_;
  int num_operands_;
  int64_t threads_;  // one per element, or per vector (FusedSource::vector)
  std::vector<uint64_t> seeds_;  // the dropouts' seed arguments (FusedSource::seeds)
};

// Loads kernel `name` of `source` from its CUBIN into *e; the CUDA CPU emulation, which runs no
// CUBIN, takes the source (compiled for the host, emu.h).
cudaError_t LoadEntry(const std::string& name, const std::string& source, const std::string& cubin,
                      cudaLibrary_t* library, cudaKernel_t* kernel) {
#if defined(PTC_CUDA_EMU)
  (void)cubin;
  cudaError_t err = emu::LoadGeneratedKernel(library, name, source);
#else
  (void)source;
  cudaError_t err =
      cudaLibraryLoadData(library, cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
#endif
  if (err == cudaSuccess) {
    err = cudaLibraryGetKernel(kernel, *library, name.c_str());
    if (err != cudaSuccess) cudaLibraryUnload(*library);
  }
  if (err != cudaSuccess) cudaGetLastError();  // not sticky; keep later calls clean
  return err;
}

}  // namespace

GeneratedKernels::~GeneratedKernels() {
  for (auto& [name, e] : kernels_) cudaLibraryUnload(e.library);
  for (auto& [name, e] : compiled_) cudaLibraryUnload(e.library);
}

cudaKernel_t GeneratedKernels::Find(const codegen::FusedSource& src) const {
  auto it = kernels_.find(src.name);
  if (it == kernels_.end() || it->second.source != src.source) return nullptr;
  return it->second.kernel;
}

cudaKernel_t GeneratedKernels::FindOrCompile(const codegen::FusedSource& src,
                                             std::string* why) const {
  if (cudaKernel_t k = Find(src); k != nullptr) return k;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = compiled_.find(src.name);
  if (it != compiled_.end() && it->second.source == src.source) return it->second.kernel;
  std::string error;
  const codegen::NvrtcInfo& nvrtc = codegen::GetNvrtc();
  if (!nvrtc.available) {
    error = absl::StrCat("NVRTC is not available to compile it at load: ", nvrtc.why);
  } else {
    absl::StatusOr<codegen::CompiledCubin> bin =
        codegen::CompileToCubin(src.name, src.source, arch_);
    Entry e;
    e.source = src.source;
    if (!bin.ok()) {
      error = absl::StrCat("compiling ", src.name, " at load failed: ", bin.status().message());
    } else if (const cudaError_t err =
                   LoadEntry(src.name, src.source, bin->cubin, &e.library, &e.kernel);
               err != cudaSuccess) {
      error = absl::StrCat("loading ", src.name, " compiled at load failed: ",
                           cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
    } else {
      if (compiled_.empty()) {
        std::string reason = note_.empty() ? "the plan has none for these nodes" : note_;
        if (reason.find("--cuda-arch") == std::string::npos) {
          absl::StrAppend(&reason, "; `ptc compile --target cuda --cuda-arch ", arch_,
                          "` stores them in the plan");
        }
        std::fprintf(stderr,
                     "ptc-cuda: note: compiling fused_elementwise kernels with NVRTC at load for "
                     "%s (%s)\n",
                     arch_.c_str(), reason.c_str());
      }
      cudaKernel_t k = e.kernel;
      compiled_[src.name] = std::move(e);
      ++g_compiled_at_load;
      return k;
    }
  }
  *why = note_.empty() ? error : absl::StrCat(note_, "; ", error);
  return nullptr;
}

std::string CudaArch(const DeviceInfo& d) {
  return absl::StrCat("sm_", d.cc_major * 10 + d.cc_minor);
}

absl::StatusOr<std::shared_ptr<const GeneratedKernels>> LoadGeneratedKernels(
    const std::vector<plan::CudaKernel>& kernels, const DeviceInfo& device) {
  std::shared_ptr<GeneratedKernels> g(new GeneratedKernels);
  g->arch_ = CudaArch(device);
  if (kernels.empty()) {
    g->note_ = "the plan carries no generated kernels: compiled with --no-cuda-codegen, where "
               "NVRTC was not available, or by an older ptc";
    return std::shared_ptr<const GeneratedKernels>(std::move(g));
  }
  const std::string arch = CudaArch(device);
  int other_arch = 0;
  std::string other_name, load_error;
  for (const plan::CudaKernel& k : kernels) {
    if (k.arch != arch && k.arch != arch + "a") {
      ++other_arch;
      other_name = k.arch;
      continue;
    }
    GeneratedKernels::Entry e;
    e.source = k.source;
    const cudaError_t err = LoadEntry(k.name, k.source, k.cubin, &e.library, &e.kernel);
    if (err != cudaSuccess) {
      if (load_error.empty()) {
        load_error = absl::StrCat("loading ", k.name, " failed: ", cudaGetErrorName(err), " (",
                                  cudaGetErrorString(err), ")");
      }
      continue;
    }
    g->kernels_[k.name] = std::move(e);
  }
  if (other_arch > 0) {
    absl::StrAppend(&g->note_, other_arch, " of the plan's ", kernels.size(),
                    " generated kernels are for ", other_name, ", not ", device.name, " (", arch,
                    "); recompile with --cuda-arch ", arch);
  }
  if (!load_error.empty()) {
    absl::StrAppend(&g->note_, g->note_.empty() ? "" : "; ", load_error);
  }
  return std::shared_ptr<const GeneratedKernels>(std::move(g));
}

GeneratedKernelStats GetGeneratedKernelStats() {
  GeneratedKernelStats s;
  s.generated_nodes = g_generated_nodes.load();
  s.interpreted_nodes = g_interpreted_nodes.load();
  s.compiled_at_load = g_compiled_at_load.load();
  return s;
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateGeneratedFusedKernel(
    const ir::Node& node, const KernelOptions& options) {
  auto interpreted = [&](const std::string& why) -> std::unique_ptr<DeviceKernel> {
    ++g_interpreted_nodes;
    if (!why.empty()) ReportInterpreted(node, why);
    return nullptr;
  };
  if (options.fused_interpreter || options.generated == nullptr) return interpreted("");
  if (node.num_outputs() == 1 && node.output()->type().num_elements() == 0) {
    return interpreted("");  // nothing to launch
  }
  absl::StatusOr<codegen::FusedSource> src = codegen::GenerateFusedElementwise(node);
  if (!src.ok()) return interpreted(std::string(src.status().message()));
  if (src->num_operands + 1 + static_cast<int>(src->seeds.size()) >
      GeneratedFusedKernel::kMaxArgs) {
    return interpreted("too many operands for one launch");
  }
  std::string why;
  cudaKernel_t k = options.generated->FindOrCompile(*src, &why);
  if (k == nullptr) {
    return interpreted(!why.empty() ? why
                                    : absl::StrCat("the plan has no kernel ", src->name,
                                                   " with this node's source"));
  }
  ++g_generated_nodes;
  return std::unique_ptr<DeviceKernel>(
      new GeneratedFusedKernel(options.generated, k, src->num_operands,
                               src->elements / src->vector, src->seeds));
}

}  // namespace ptc::cuda
