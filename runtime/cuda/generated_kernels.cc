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

}  // namespace

GeneratedKernels::~GeneratedKernels() {
  for (auto& [name, e] : kernels_) cudaLibraryUnload(e.library);
}

cudaKernel_t GeneratedKernels::Find(const codegen::FusedSource& src) const {
  auto it = kernels_.find(src.name);
  if (it == kernels_.end() || it->second.source != src.source) return nullptr;
  return it->second.kernel;
}

std::string CudaArch(const DeviceInfo& d) {
  return absl::StrCat("sm_", d.cc_major * 10 + d.cc_minor);
}

absl::StatusOr<std::shared_ptr<const GeneratedKernels>> LoadGeneratedKernels(
    const std::vector<plan::CudaKernel>& kernels, const DeviceInfo& device) {
  std::shared_ptr<GeneratedKernels> g(new GeneratedKernels);
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
#if defined(PTC_CUDA_EMU)
    // The CUDA CPU emulation runs the kernel's source, compiled for the host (emu.h).
    cudaError_t err = emu::LoadGeneratedKernel(&e.library, k.name, k.source);
#else
    cudaError_t err = cudaLibraryLoadData(&e.library, k.cubin.data(), nullptr, nullptr, 0,
                                          nullptr, nullptr, 0);
#endif
    if (err == cudaSuccess) {
      err = cudaLibraryGetKernel(&e.kernel, e.library, k.name.c_str());
      if (err != cudaSuccess) cudaLibraryUnload(e.library);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();  // not sticky; keep later calls clean
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
  cudaKernel_t k = options.generated->Find(*src);
  if (k == nullptr) {
    const std::string& note = options.generated->note();
    return interpreted(!note.empty() ? note
                                     : absl::StrCat("the plan has no kernel ", src->name,
                                                    " with this node's source"));
  }
  ++g_generated_nodes;
  return std::unique_ptr<DeviceKernel>(
      new GeneratedFusedKernel(options.generated, k, src->num_operands,
                               src->elements / src->vector, src->seeds));
}

}  // namespace ptc::cuda
