// cuDNN fused attention (runtime/cuda/cudnn_attention.h): attention / attention_grad nodes as
// cuDNN frontend SDPA graphs. The only translation unit that includes the frontend (thousands of
// header lines of templates: keep it that way, CI has 2 cores).
//
// Loading: the frontend's dynamic-loading shim (NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING) calls
// cuDNN through dlsym on `cudnn_frontend::cudnn_dlhandle`, which LoadCudnn sets from
// dlopen("libcudnn.so.9") (or $PTC_CUDNN_LIBRARY) at the first Create. Nothing links libcudnn.
// The shim also resolves a few CUDA runtime entry points by dlopen; CUDNN_FRONTEND_CUDART_LIB_NAME
// is pointed at the libcudart this ptc links (unless the user set it), so that one runtime
// serves both.
//
// Graphs: built at kernel creation (their workspace size is needed for WorkspaceBytes), cached
// process-wide per (device, dtype, layout, shape, scale, causal, kind) so the identical layers
// of a model build once, and executed on one cuDNN handle per device whose stream is set at
// each Launch (under a mutex: the handle is shared). Launch only enqueues work: no allocation,
// no synchronization, safe inside the executor's CUDA graph capture.
//
// Tensors: q / k / v / o / dy and the gradients are described as [b, h, t, d] with strides:
// bhtd {H*T*D, T*D, D, 1}, bthd {T*H*D, D, H*D, 1} (memory [B, T, H, D]). The softmax
// statistics are the natural-log log-sum-exp of the scaled, masked scores (f32 [b, h, tq, 1]):
// exactly attention's second output in ptc (save-attention-stats), which the flash kernels may
// have written for a cuDNN backward or read from a cuDNN forward, and which the tests compare
// with the CPU's. So the graphs never set set_stats_use_log2.
//
// Masks: the compiler marks a node whose mask is exactly the causal triangle with causal=1 (key
// j masked iff j > i + Tk - Tq, bottom-right aligned). That maps to cuDNN's causal mask
// (top-left when Tq == Tk, where the two coincide; bottom-right otherwise); the mask tensor is
// then not read. Any other mask is declined. Tq > Tk with causal (rows with every key masked,
// NaN in the reference) is declined too.
#include "runtime/cuda/cudnn_attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "compiler/ir/ops_fused.h"
#include "compiler/support/status.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/device_kernels.h"

#if PTC_HAVE_CUDNN
#include <dlfcn.h>

#include <exception>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#define NV_CUDNN_FRONTEND_USE_DYNAMIC_LOADING 1
#define CUDNN_FRONTEND_SKIP_JSON_LIB 1
#include <cudnn_frontend.h>

namespace cudnn_frontend {
// The shim's handle to libcudnn (cudnn_frontend_shim.h): set by LoadCudnn below.
void* cudnn_dlhandle = nullptr;
}  // namespace cudnn_frontend
#endif

namespace ptc::cuda {
namespace {

std::atomic<int64_t> g_forward_kernels{0}, g_backward_kernels{0}, g_declined{0};

absl::Status Decline(const ir::Node& node, absl::string_view why) {
  g_declined.fetch_add(1, std::memory_order_relaxed);
  return absl::UnimplementedError(
      absl::StrCat(node.Describe(), ": cuDNN attention declined: ", why));
}

}  // namespace

CudnnAttentionStats GetCudnnAttentionStats() {
  CudnnAttentionStats s;
  s.forward_kernels = g_forward_kernels.load(std::memory_order_relaxed);
  s.backward_kernels = g_backward_kernels.load(std::memory_order_relaxed);
  s.declined = g_declined.load(std::memory_order_relaxed);
  return s;
}

#if !PTC_HAVE_CUDNN

bool BuiltWithCudnn() { return false; }

absl::Status CudnnAttentionAvailable() {
  return absl::UnimplementedError(
      "this ptc was built without cuDNN (the vendored frontend headers or cudnn.h were not "
      "found, or -DPTC_CUDNN=OFF)");
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateCudnnAttention(const ir::Node& node) {
  return Decline(node, "this ptc was built without cuDNN");
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateCudnnAttentionGrad(const ir::Node& node) {
  return Decline(node, "this ptc was built without cuDNN");
}

#else  // PTC_HAVE_CUDNN

namespace fe = cudnn_frontend;

namespace {

// Tensor uids of the variant packs.
enum : int64_t { kQ = 1, kK, kV, kO, kStats, kDo, kDq, kDk, kDv };

constexpr size_t kAlign = 256;
size_t AlignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// Once per process: whether libcudnn loaded (and which version), for the error messages.
const absl::Status& LoadCudnn() {
  static const absl::Status* status = new absl::Status([]() -> absl::Status {
    // The shim dlopens libcudart.so.12 / .13 itself; make it take the one linked here.
    const std::string cudart = absl::StrCat("libcudart.so.", CUDART_VERSION / 1000);
    setenv("CUDNN_FRONTEND_CUDART_LIB_NAME", cudart.c_str(), /*overwrite=*/0);
    const char* env = std::getenv("PTC_CUDNN_LIBRARY");
    const char* name = env != nullptr && env[0] != '\0' ? env : "libcudnn.so.9";
    dlerror();
    void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* err = dlerror();
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load ", name, " (", err != nullptr ? err : "unknown error",
                       "): put cuDNN 9's lib folder on LD_LIBRARY_PATH or set PTC_CUDNN_LIBRARY"));
    }
    if (dlsym(h, "cudnnGetVersion") == nullptr ||
        dlsym(h, "cudnnBackendCreateDescriptor") == nullptr) {
      dlclose(h);
      return absl::FailedPreconditionError(
          absl::StrCat(name, " lacks cudnnGetVersion / the backend API: not cuDNN 9"));
    }
    fe::cudnn_dlhandle = h;
    size_t version = 0;
    try {
      version = fe::detail::get_backend_version();
    } catch (const std::exception& e) {
      return absl::FailedPreconditionError(absl::StrCat(name, ": ", e.what()));
    }
    if (version < 90000) {
      return absl::FailedPreconditionError(
          absl::StrCat(name, " is cuDNN ", version, "; the fused attention needs cuDNN 9"));
    }
    return absl::OkStatus();
  }());
  return *status;
}

// One cuDNN handle per device, shared by every kernel on it (never destroyed: cudnnDestroy at
// process exit can run after the CUDA runtime is gone). `mu` guards the stream setting plus
// execution, and the graph cache.
struct DeviceHandle {
  cudnnHandle_t handle = nullptr;
  std::mutex mu;
};

std::mutex& GlobalMutex() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

absl::StatusOr<std::pair<int, DeviceHandle*>> HandleForCurrentDevice() {
  PTC_RETURN_IF_ERROR(LoadCudnn());
  int device = 0;
  PTC_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(GlobalMutex());
  static auto* handles = new std::map<int, DeviceHandle*>;
  static auto* failures = new std::map<int, absl::Status>;
  if (auto it = handles->find(device); it != handles->end())
    return std::make_pair(device, it->second);
  if (auto it = failures->find(device); it != failures->end()) return it->second;
  cudnnHandle_t h = nullptr;
  cudnnStatus_t st;
  try {
    st = fe::detail::create_handle(&h);
  } catch (const std::exception& e) {
    (*failures)[device] = absl::FailedPreconditionError(absl::StrCat("cudnnCreate: ", e.what()));
    return (*failures)[device];
  }
  if (st != CUDNN_STATUS_SUCCESS) {
    std::string msg =
        absl::StrCat("cudnnCreate failed on device ", device, ": status ", static_cast<int>(st));
    try {
      msg = absl::StrCat(msg, " (", fe::detail::get_error_string(st), ")");
    } catch (const std::exception&) {
    }
    (*failures)[device] = absl::FailedPreconditionError(msg);
    return (*failures)[device];
  }
  auto* dh = new DeviceHandle;
  dh->handle = h;
  (*handles)[device] = dh;
  return std::make_pair(device, dh);
}

// Once per process on stderr: whether the cuDNN path is in use (the GPU sessions' logs show
// which attention ran), never per node.
void NoteOnce(const absl::Status& unavailable) {
  static std::atomic<bool> said{false};
  if (said.exchange(true)) return;
  if (unavailable.ok()) {
    size_t v = 0;
    try {
      v = fe::detail::get_backend_version();
    } catch (const std::exception&) {
    }
    std::fprintf(stderr, "ptc-cuda: attention through cuDNN %zu (frontend %d)\n", v,
                 CUDNN_FRONTEND_VERSION);
  } else {
    std::string msg(unavailable.message());
    std::fprintf(stderr, "ptc-cuda: cuDNN attention unavailable (%s): using the flash kernels\n",
                 msg.c_str());
  }
}

// The problem of one attention / attention_grad node.
struct Problem {
  int64_t b = 0, h = 0, tq = 0, tk = 0, d = 0, dv = 0;
  bool bthd = false;
  bool packed = false;  // layout bt3hd: q, k, v (and dq, dk, dv) are slots of packed rows
  bool causal = false;
  bool f16 = false;  // else bf16
  float scale = 1;

  // Strides of a [b, h, t, hd] tensor in the node's layout; `slot`: one of q, k, v (or their
  // gradients), whose rows hold all three slots when packed.
  std::vector<int64_t> Strides(int64_t t, int64_t hd, bool slot = false) const {
    const int64_t rows = packed && slot ? 3 : 1;
    if (bthd) return {t * rows * h * hd, hd, rows * h * hd, 1};
    return {h * t * hd, t * hd, hd, 1};
  }
  // Bytes between the q, k and v slots of a packed row (0 unpacked).
  size_t SlotBytes() const { return packed ? static_cast<size_t>(h * d) * 2 : 0; }
  std::string Key(int device, absl::string_view kind) const {
    uint32_t scale_bits;
    static_assert(sizeof(scale_bits) == sizeof(scale));
    std::memcpy(&scale_bits, &scale, sizeof(scale));
    return absl::StrCat(kind, "/", device, "/", f16 ? "f16" : "bf16", "/",
                        packed ? "bt3hd" : bthd ? "bthd" : "bhtd",
                        "/", b, ",", h, ",", tq, ",", tk, ",", d, ",", dv, "/", scale_bits, "/",
                        causal ? 1 : 0);
  }
};

// The problem of attention's operands q, k, v[, mask] at inputs first.. of `node` (attention: 0;
// attention_grad: 1, after dy; `trailing` inputs after the mask: attention_grad
// {saved_stats=1}'s O and statistics), or a decline.
absl::StatusOr<Problem> Describe(const ir::Node& node, int first, int trailing = 0) {
  absl::StatusOr<ir::AttentionProblem> a =
      ir::DescribeAttention(ir::AttentionOperandTypes(node, first, trailing), node.attrs());
  if (!a.ok()) return Decline(node, a.status().message());
  if (a->dtype != ir::DType::kBF16 && a->dtype != ir::DType::kF16) {
    return Decline(node, absl::StrCat("cuDNN attention takes bf16 / f16, not ",
                                      node.input(first)->type().ToString()));
  }
  Problem p;
  p.bthd = a->bthd;
  p.packed = a->packed;
  p.f16 = a->dtype == ir::DType::kF16;
  p.b = a->b;
  p.h = a->h;
  p.tq = a->tq;
  p.tk = a->tk;
  p.d = a->d;
  p.dv = a->dv;
  if (p.b <= 0 || p.h <= 0 || p.tq <= 0 || p.tk <= 0) return Decline(node, "empty tensors");
  // cuDNN's SDPA takes h_k = h_v < h_q, but the graphs here describe k / v with q's heads and
  // that has not been run on a GPU yet: grouped-query nodes go to the flash kernels.
  if (a->hkv != a->h) {
    return Decline(node, absl::StrCat("grouped-query attention (", a->hkv, " kv heads for ",
                                      a->h, " query heads)"));
  }
  if (p.d % 8 != 0 || p.dv % 8 != 0 || p.d > 256 || p.dv > 256) {
    return Decline(node, absl::StrCat("head dims ", p.d, " / ", p.dv,
                                      " (cuDNN takes multiples of 8 up to 256)"));
  }
  if (!std::isfinite(a->scale)) return Decline(node, "bad scale attribute");
  // Score capping would be a cuDNN score modifier (not wired): ptc's kernels cap.
  if (a->softcap != 0) return Decline(node, "softcap (tanh capping of the scores)");
  // cuDNN's dropout draws its own (Philox) mask, not ptc's (compiler/ir/dropout.h), which the
  // backward and the unfused graph must reproduce: ptc's kernels drop.
  if (a->dropout > 0) return Decline(node, "attention dropout (ptc's counter-based mask)");
  p.scale = static_cast<float>(a->scale);
  const bool has_mask = a->mask_kind != 0;
  if (a->causal) {
    if (!has_mask) return Decline(node, "causal=1 without a mask input");
    const ir::Shape& m = a->mask_shape;
    if (m.size() < 2 || m[m.size() - 2] != p.tq || m[m.size() - 1] != p.tk) {
      return Decline(node, absl::StrCat("causal=1 with a mask of shape ", ir::ShapeToString(m),
                                        " that is not [.., Tq, Tk]"));
    }
    if (p.tq > p.tk) {
      return Decline(node, "causal with Tq > Tk (rows with every key masked)");
    }
    p.causal = true;
  } else if (has_mask) {
    return Decline(node, "a mask other than the causal triangle (no causal=1 attribute)");
  }
  return p;
}

absl::Status FeStatus(fe::error_t e, absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", e.get_message()));
}

#define PTC_FE_RETURN_IF_ERROR(expr)                                   \
  do {                                                                 \
    fe::error_t ptc_fe_error_ = (expr);                                \
    if (ptc_fe_error_.is_bad()) return FeStatus(ptc_fe_error_, #expr); \
  } while (0)

struct BuiltGraph {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
};

std::shared_ptr<fe::graph::Graph> NewGraph(const Problem& p) {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(p.f16 ? fe::DataType_t::HALF : fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

std::shared_ptr<fe::graph::Tensor_attributes> Operand(fe::graph::Graph& g, const Problem& p,
                                                      const char* name, int64_t uid, int64_t t,
                                                      int64_t hd, bool slot = false) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim({p.b, p.h, t, hd})
                      .set_stride(p.Strides(t, hd, slot)));
}

std::vector<int64_t> StatsDim(const Problem& p) { return {p.b, p.h, p.tq, 1}; }
std::vector<int64_t> StatsStride(const Problem& p) { return {p.h * p.tq, p.tq, 1, 1}; }

template <typename Attributes>
void SetCausal(const Problem& p, Attributes& a) {
  if (!p.causal) return;
  if (p.tq == p.tk) {
    a.set_causal_mask(true);
  } else {
    a.set_causal_mask_bottom_right(true);
  }
}

absl::Status Finish(fe::graph::Graph& g, cudnnHandle_t handle, BuiltGraph& out) {
  // The steps of Graph::build (slated for removal in the frontend), each named when it fails.
  PTC_FE_RETURN_IF_ERROR(g.validate());
  PTC_FE_RETURN_IF_ERROR(g.build_operation_graph(handle));
  PTC_FE_RETURN_IF_ERROR(g.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK}));
  PTC_FE_RETURN_IF_ERROR(g.check_support());
  PTC_FE_RETURN_IF_ERROR(g.build_plans());
  int64_t ws = 0;
  PTC_FE_RETURN_IF_ERROR(g.get_workspace_size(ws));
  if (ws < 0) return absl::InternalError("negative cuDNN workspace size");
  out.workspace = ws;
  return absl::OkStatus();
}

// The SDPA forward: O (uid kO) and, with `stats`, the f32 statistics (uid kStats).
absl::StatusOr<BuiltGraph> BuildForward(const Problem& p, bool stats, cudnnHandle_t handle) {
  BuiltGraph out;
  out.graph = NewGraph(p);
  fe::graph::Graph& g = *out.graph;
  auto q = Operand(g, p, "q", kQ, p.tq, p.d, true);
  auto k = Operand(g, p, "k", kK, p.tk, p.d, true);
  auto v = Operand(g, p, "v", kV, p.tk, p.dv, true);
  auto attrs = fe::graph::SDPA_attributes()
                   .set_name("ptc_sdpa")
                   .set_generate_stats(stats)
                   .set_attn_scale(p.scale);
  SetCausal(p, attrs);
  auto [o, st] = g.sdpa(q, k, v, attrs);
  o->set_output(true).set_uid(kO).set_dim({p.b, p.h, p.tq, p.dv}).set_stride(p.Strides(p.tq, p.dv));
  if (stats) {
    if (st == nullptr) return absl::InternalError("cuDNN SDPA returned no stats tensor");
    st->set_output(true)
        .set_uid(kStats)
        .set_data_type(fe::DataType_t::FLOAT)
        .set_dim(StatsDim(p))
        .set_stride(StatsStride(p));
  }
  PTC_RETURN_IF_ERROR(Finish(g, handle, out));
  return out;
}

// The SDPA backward: dq, dk, dv from q, k, v, o, do and the forward's statistics.
absl::StatusOr<BuiltGraph> BuildBackward(const Problem& p, cudnnHandle_t handle) {
  BuiltGraph out;
  out.graph = NewGraph(p);
  fe::graph::Graph& g = *out.graph;
  auto q = Operand(g, p, "q", kQ, p.tq, p.d, true);
  auto k = Operand(g, p, "k", kK, p.tk, p.d, true);
  auto v = Operand(g, p, "v", kV, p.tk, p.dv, true);
  auto o = Operand(g, p, "o", kO, p.tq, p.dv);
  auto dy = Operand(g, p, "do", kDo, p.tq, p.dv);
  auto stats = g.tensor(fe::graph::Tensor_attributes()
                            .set_name("stats")
                            .set_uid(kStats)
                            .set_dim(StatsDim(p))
                            .set_stride(StatsStride(p))
                            .set_data_type(fe::DataType_t::FLOAT));
  auto attrs =
      fe::graph::SDPA_backward_attributes().set_name("ptc_sdpa_backward").set_attn_scale(p.scale);
  SetCausal(p, attrs);
  auto [dq, dk, dv] = g.sdpa_backward(q, k, v, o, dy, stats, attrs);
  dq->set_output(true)
      .set_uid(kDq)
      .set_dim({p.b, p.h, p.tq, p.d})
      .set_stride(p.Strides(p.tq, p.d, true));
  dk->set_output(true)
      .set_uid(kDk)
      .set_dim({p.b, p.h, p.tk, p.d})
      .set_stride(p.Strides(p.tk, p.d, true));
  dv->set_output(true)
      .set_uid(kDv)
      .set_dim({p.b, p.h, p.tk, p.dv})
      .set_stride(p.Strides(p.tk, p.dv, true));
  PTC_RETURN_IF_ERROR(Finish(g, handle, out));
  return out;
}

// The cached graph for `key`, built by `build` on a miss (failures are cached too: a shape
// cuDNN rejects is not retried for every layer).
template <typename Build>
absl::StatusOr<BuiltGraph> CachedGraph(const std::string& key, Build build) {
  std::lock_guard<std::mutex> lock(GlobalMutex());
  static auto* cache = new std::map<std::string, absl::StatusOr<BuiltGraph>>;
  auto it = cache->find(key);
  if (it != cache->end()) return it->second;
  absl::StatusOr<BuiltGraph> built;
  try {
    built = build();
  } catch (const std::exception& e) {
    built = absl::InternalError(absl::StrCat("cuDNN frontend exception: ", e.what()));
  }
  cache->emplace(key, built);
  return built;
}

// Sets the handle's stream and executes `g` (the caller holds the handle's mutex).
absl::Status Execute(DeviceHandle& dh, cudaStream_t stream, const fe::graph::Graph& g,
                     std::unordered_map<int64_t, void*>& pack, void* workspace, const char* what) {
  try {
    const cudnnStatus_t st = fe::detail::set_stream(dh.handle, stream);
    if (st != CUDNN_STATUS_SUCCESS) {
      return absl::InternalError(absl::StrCat("cudnnSetStream: status ", static_cast<int>(st)));
    }
    fe::error_t e = g.execute(dh.handle, pack, workspace);
    if (e.is_bad()) return FeStatus(e, what);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": cuDNN frontend exception: ", e.what()));
  }
  return absl::OkStatus();
}

// Slot i (q 0, k 1, v 2) of a packed bt3hd operand `slot` bytes apart; p itself unpacked.
void* SlotOf(const void* p, int i, size_t slot) {
  return static_cast<char*>(const_cast<void*>(p)) + i * slot;
}

// The forward; with a second output (save-attention-stats) the statistics go there.
class CudnnAttentionKernel final : public DeviceKernel {
 public:
  CudnnAttentionKernel(DeviceHandle* dh, BuiltGraph fwd, size_t slot)
      : dh_(dh), fwd_(std::move(fwd)), slot_(slot) {}
  size_t WorkspaceBytes() const override { return static_cast<size_t>(fwd_.workspace); }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<void*>(in[0])},
                                               {kK, Slot(in[1], 1)},
                                               {kV, Slot(in[2], 2)},
                                               {kO, out[0]}};
    if (out.size() > 1) pack[kStats] = out[1];
    std::lock_guard<std::mutex> lock(dh_->mu);
    return Execute(*dh_, ctx.stream, *fwd_.graph, pack, fwd_.workspace > 0 ? workspace : nullptr,
                   "cuDNN SDPA forward");
  }

 private:
  void* Slot(const void* p, int i) const { return SlotOf(p, i, slot_); }
  DeviceHandle* dh_;
  BuiltGraph fwd_;
  size_t slot_;
};

// Workspace: O [b, h, tq, dv] (the node's layout), the statistics f32 [b, h, tq], then cuDNN's
// own workspace (the larger of the two graphs'). {saved_stats=1} (no `fwd`): O and the
// statistics are the node's last two inputs, and only the backward runs.
class CudnnAttentionGradKernel final : public DeviceKernel {
 public:
  CudnnAttentionGradKernel(DeviceHandle* dh, const Problem& p, std::optional<BuiltGraph> fwd,
                           BuiltGraph bwd)
      : dh_(dh), fwd_(std::move(fwd)), bwd_(std::move(bwd)), slot_(p.SlotBytes()) {
    if (!fwd_.has_value()) {
      bytes_ = AlignUp(static_cast<size_t>(bwd_.workspace));
      return;
    }
    const size_t o_bytes = static_cast<size_t>(p.b * p.h * p.tq * p.dv) * 2;  // f16 / bf16
    stats_off_ = AlignUp(o_bytes);
    cudnn_off_ = stats_off_ + AlignUp(sizeof(float) * static_cast<size_t>(p.b * p.h * p.tq));
    bytes_ = cudnn_off_ + AlignUp(static_cast<size_t>(std::max(fwd_->workspace, bwd_.workspace)));
  }
  size_t WorkspaceBytes() const override { return bytes_; }
  absl::Status Launch(const LaunchContext& ctx, absl::Span<const void* const> in,
                      absl::Span<void* const> out, void* workspace) override {
    char* ws = static_cast<char*>(workspace);
    const bool saved = !fwd_.has_value();
    void* o = saved ? const_cast<void*>(in[in.size() - 2]) : ws;
    void* stats = saved ? const_cast<void*>(in[in.size() - 1]) : ws + stats_off_;
    void* scratch = ws + cudnn_off_;
    std::unordered_map<int64_t, void*> fwd = {{kQ, const_cast<void*>(in[1])},
                                              {kK, Slot(in[2], 1)},
                                              {kV, Slot(in[3], 2)},
                                              {kO, o},
                                              {kStats, stats}};
    // Packed (bt3hd): the one output holds dq, dk and dv in its slots.
    const bool packed = slot_ > 0;
    std::unordered_map<int64_t, void*> bwd = {{kQ, const_cast<void*>(in[1])},
                                              {kK, Slot(in[2], 1)},
                                              {kV, Slot(in[3], 2)},
                                              {kO, o},
                                              {kDo, const_cast<void*>(in[0])},
                                              {kStats, stats},
                                              {kDq, out[0]},
                                              {kDk, packed ? Slot(out[0], 1) : out[1]},
                                              {kDv, packed ? Slot(out[0], 2) : out[2]}};
    std::lock_guard<std::mutex> lock(dh_->mu);
    if (!saved) {
      PTC_RETURN_IF_ERROR(Execute(*dh_, ctx.stream, *fwd_->graph, fwd,
                                  fwd_->workspace > 0 ? scratch : nullptr, "cuDNN SDPA forward"));
    }
    return Execute(*dh_, ctx.stream, *bwd_.graph, bwd, bwd_.workspace > 0 ? scratch : nullptr,
                   "cuDNN SDPA backward");
  }

 private:
  void* Slot(const void* p, int i) const { return SlotOf(p, i, slot_); }
  DeviceHandle* dh_;
  std::optional<BuiltGraph> fwd_;
  BuiltGraph bwd_;
  size_t slot_;
  size_t stats_off_ = 0, cudnn_off_ = 0, bytes_ = 0;
};

// The device handle, or a decline that says why cuDNN is unusable.
absl::StatusOr<std::pair<int, DeviceHandle*>> UsableHandle(const ir::Node& node) {
  auto h = HandleForCurrentDevice();
  if (!h.ok()) {
    NoteOnce(h.status());
    return Decline(node, h.status().message());
  }
  return h;
}

}  // namespace

bool BuiltWithCudnn() { return true; }

absl::Status CudnnAttentionAvailable() {
  auto h = HandleForCurrentDevice();
  return h.ok() ? absl::OkStatus() : h.status();
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateCudnnAttention(const ir::Node& node) {
  if (node.num_outputs() != 1 && node.num_outputs() != 2) {
    return Decline(node, "attention has one or two outputs");
  }
  PTC_ASSIGN_OR_RETURN(Problem p, Describe(node, 0));
  if (node.output(0)->type() !=
      ir::TensorType{node.input(0)->type().dtype,
                     p.bthd ? ir::Shape{p.b, p.tq, p.h, p.dv} : ir::Shape{p.b, p.h, p.tq, p.dv}}) {
    return Decline(node, "unexpected output type");
  }
  const bool stats = node.num_outputs() == 2;  // the log-sum-exp, f32 [b, h, tq]
  if (stats && node.output(1)->type() != ir::TensorType{ir::DType::kF32, {p.b, p.h, p.tq}}) {
    return Decline(node, "unexpected statistics type");
  }
  PTC_ASSIGN_OR_RETURN(auto dh, UsableHandle(node));
  auto fwd = CachedGraph(p.Key(dh.first, stats ? "fwd_stats" : "fwd"), [&] {
    std::lock_guard<std::mutex> lock(dh.second->mu);  // the handle is shared
    return BuildForward(p, stats, dh.second->handle);
  });
  if (!fwd.ok()) return Decline(node, fwd.status().message());
  NoteOnce(absl::OkStatus());
  g_forward_kernels.fetch_add(1, std::memory_order_relaxed);
  return std::unique_ptr<DeviceKernel>(
      new CudnnAttentionKernel(dh.second, *std::move(fwd), p.SlotBytes()));
}

absl::StatusOr<std::unique_ptr<DeviceKernel>> CreateCudnnAttentionGrad(const ir::Node& node) {
  if (node.num_outputs() < 1 || node.num_inputs() < 4) {
    return Decline(node, "attention_grad takes (dy, q, k, v [, mask]) -> (dq, dk, dv)");
  }
  auto saved = node.GetInt("saved_stats", 0);
  if (!saved.ok()) return Decline(node, "bad saved_stats attribute");
  PTC_ASSIGN_OR_RETURN(Problem p, Describe(node, 1, *saved ? 2 : 0));
  const int grads = p.packed ? 1 : 3;  // bt3hd: the packed gradient
  if (static_cast<int>(node.num_outputs()) != grads) {
    return Decline(node, "attention_grad takes (dy, q, k, v [, mask]) -> (dq, dk, dv)");
  }
  for (int i = 0; i < grads; ++i) {
    if (node.output(i)->type() != node.input(i + 1)->type()) {
      return Decline(node, "each gradient must have its operand's type");
    }
  }
  const ir::TensorType dy{node.input(1)->type().dtype, p.bthd ? ir::Shape{p.b, p.tq, p.h, p.dv}
                                                              : ir::Shape{p.b, p.h, p.tq, p.dv}};
  if (node.input(0)->type() != dy) return Decline(node, "dy must have the output's type");
  PTC_ASSIGN_OR_RETURN(auto dh, UsableHandle(node));
  std::optional<BuiltGraph> fwd;  // none with saved statistics
  if (!*saved) {
    auto built = CachedGraph(p.Key(dh.first, "fwd_stats"), [&] {
      std::lock_guard<std::mutex> lock(dh.second->mu);
      return BuildForward(p, /*stats=*/true, dh.second->handle);
    });
    if (!built.ok()) return Decline(node, built.status().message());
    fwd = *std::move(built);
  }
  auto bwd = CachedGraph(p.Key(dh.first, "bwd"), [&] {
    std::lock_guard<std::mutex> lock(dh.second->mu);
    return BuildBackward(p, dh.second->handle);
  });
  if (!bwd.ok()) return Decline(node, bwd.status().message());
  NoteOnce(absl::OkStatus());
  g_backward_kernels.fetch_add(1, std::memory_order_relaxed);
  return std::unique_ptr<DeviceKernel>(
      new CudnnAttentionGradKernel(dh.second, p, std::move(fwd), *std::move(bwd)));
}

#endif  // PTC_HAVE_CUDNN

}  // namespace ptc::cuda
