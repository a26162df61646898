// The CUDA CPU emulation's host-side interface (runtime/cuda/emu/README.md): what the emulated
// cudart (emu.cc), the emulated cuBLASLt (cublaslt_emu.cc) and the device shim
// (device_shim.h) share. Only the emulation build (cmake/cuda_emu.cmake) uses it.
//
// The emulation runs every kernel of codegen/cuda on the CPU: one fiber per CUDA thread,
// blocks one after another, __syncthreads and the warp intrinsics as barriers between the
// fibers. Device memory is host memory (cudaMalloc is malloc: under AddressSanitizer every
// out-of-bounds access of a kernel is reported). Work on a stream runs at once, except while
// the stream is being captured into a CUDA graph: then it is recorded and runs at each
// cudaGraphLaunch.
#ifndef PTC_RUNTIME_CUDA_EMU_EMU_H_
#define PTC_RUNTIME_CUDA_EMU_EMU_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace ptc::emu {

// Runs `work` on `stream` now, or records it when the stream is capturing a graph (it then runs
// at every launch of the instantiated graph). Returns the error a real stream would give (a
// capture that was invalidated, an unknown stream).
cudaError_t Enqueue(cudaStream_t stream, std::function<void()> work);

// Sets the error that the next cudaGetLastError / cudaPeekAtLastError returns (the first one
// sticks until it is read, as in cudart).
void SetLastError(cudaError_t error);

// A fatal emulation finding (a barrier only part of the block reached, a warp collective whose
// lanes diverged or exited, a shared-memory overflow): prints `what` with the kernel's name and
// the thread, and aborts. These are bugs a GPU would hang on or silently get wrong.
[[noreturn]] void Fatal(const std::string& what);

// The kernel launch (device_shim.h's rewritten <<<...>>>): `thread` runs once per CUDA thread
// of every block. `name` is for messages.
cudaError_t LaunchKernel(const void* func, const char* name, dim3 grid, dim3 block,
                         size_t dynamic_smem, cudaStream_t stream, std::function<void()> thread);

// A plan's generated kernel (codegen/cuda/nvrtc_codegen.h) for the emulation: its CUBIN cannot
// run here, so the runtime hands over its source (runtime/cuda/generated_kernels.cc), compiled
// for the host (codegen/cuda/host_kernel.h; with AddressSanitizer in the memcheck build) into a
// library whose one kernel cudaLibraryGetKernel returns and cudaLaunchKernel runs (on the
// stream, or recorded by a capture), thread by thread. Compiled kernels are kept in
// $PTC_CUDA_EMU_KERNEL_CACHE (default $TMPDIR/ptc-emu-kernels) across processes.
// PTC_CUDA_EMU_GENERATED=0 declines every kernel (cudaErrorInvalidKernelImage, as a CUBIN of
// another architecture): the runtime then takes its fused_elementwise interpreter.
cudaError_t LoadGeneratedKernel(cudaLibrary_t* library, const std::string& name,
                                const std::string& source);

// The emulated device's properties (cudaGetDeviceProperties reports them).
constexpr int kMultiProcessors = 4;
constexpr size_t kTotalMemory = size_t{16} << 30;
constexpr size_t kSharedPerBlock = 48 << 10;         // without the opt-in attribute
constexpr size_t kSharedPerBlockOptin = 227 << 10;  // sm_90

// ---- Device side (the kernels' view, through device_shim.h) ----

// The running CUDA thread (set by the scheduler before it resumes a fiber).
extern thread_local uint3 t_thread_idx;
extern thread_local uint3 t_block_idx;
extern thread_local dim3 t_block_dim;
extern thread_local dim3 t_grid_dim;

// Block barriers. `op`: 0 plain, 1 or, 2 and, 3 count; returns the combined predicate.
int SyncThreads(int op, int pred, const char* file, int line);

// Warp collectives: the calling lane's `bytes` (<= 64) of `value` are exchanged with the lanes
// of `mask` (every one of which must reach a collective with the same mask); returns the 32
// lanes' values (lane j at j * bytes; lanes outside the mask zero), valid until this lane's
// next collective.
const unsigned char* WarpExchange(unsigned mask, const void* value, size_t bytes,
                                  const char* what);
int LaneId();

// Dynamic shared memory of the running block (`extern __shared__ T name[]`).
unsigned char* DynamicShared(const char* name = nullptr);
// Fills a static __shared__ variable with 0xff bytes (NaN for floats) the first time a thread of
// a new block declares it: a kernel that reads shared memory before writing it sees garbage, as
// on a GPU. `name` (the declaration's) is for the race checker's reports.
void PoisonShared(void* p, size_t bytes, const char* name = nullptr);

template <typename T>
T ShflFrom(unsigned mask, T v, int src, bool own, const char* what) {
  static_assert(sizeof(T) <= 64 && std::is_trivially_copyable_v<T>);
  const unsigned char* all = WarpExchange(mask, &v, sizeof(T), what);
  if (own) return v;
  if (((mask >> src) & 1u) == 0) {
    Fatal(std::string(what) + ": source lane " + std::to_string(src) + " is not in the mask");
  }
  T out;
  std::memcpy(&out, all + static_cast<size_t>(src) * sizeof(T), sizeof(T));
  return out;
}

// Launches of the rewritten `kernel<<<...>>>(args)`: the arguments are converted to the
// kernel's parameter types at the launch (by value, as a real launch copies them).
template <typename... P>
struct KernelLauncher {
  void (*fn)(P...);
  const char* name;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <typename... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    std::tuple<std::remove_cv_t<P>...> params(static_cast<P>(std::forward<A>(args))...);
    void (*f)(P...) = fn;
    LaunchKernel(reinterpret_cast<const void*>(f), name, grid, block, smem, stream,
                 [f, params]() { std::apply(f, params); });
  }
};
template <typename... P>
KernelLauncher<P...> Launcher(void (*fn)(P...), const char* name, dim3 grid, dim3 block,
                              size_t smem = 0, cudaStream_t stream = nullptr) {
  return KernelLauncher<P...>{fn, name, grid, block, smem, stream};
}

// Tensor-core instructions (attention_tc.cu): warp collectives with the PTX ISA's fragment
// layouts. cp.async copies are held per thread until its wait (the latest a copy may land),
// or done at once with PTC_CUDA_EMU_CP_ASYNC=early (the earliest).
void MmaM16N8K16(bool bf16, float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
void LdmatrixX4Trans(uint32_t (&r)[4], const void* row_address);
void CpAsync(void* smem, const void* gmem, int bytes, int src_bytes);
void CpAsyncWaitAll();

// The running kernel thread's index in its block (x fastest), or -1 outside a kernel.
int CurrentThread();
// The running launch's kernel name ("" outside a kernel).
const char* KernelName();
// Thread index `linear` of the running block as (x, y, z).
uint3 ThreadIndex(int linear);

// The shared-memory race checker (racecheck.cc; built into the racecheck variant only, where
// PTC_EMU_RACECHECK is 1 and the kernels are compiled with GCC's -fsanitize=thread
// instrumentation, whose __tsan_* calls racecheck.cc defines instead of the TSan runtime).
// Two accesses to the same shared-memory byte by different threads of a block, at least one of
// them a write, race unless a __syncthreads opened between them (or, for lanes of one warp, a
// warp collective of the whole warp completed between them). A race stops the kernel with both
// accesses' threads and source lines.
namespace race {
// A launch starts (the global memory's shadow restarts).
void LaunchStart();
// Device memory (cudaMalloc / cudaFree): the global memory the checker watches.
void Allocated(const void* p, size_t bytes);
void Freed(const void* p);
// A new block (linear index block_linear in its grid) starts: its barrier count and warp
// counts restart, and the dynamic shared memory is [dynamic, dynamic + dynamic_bytes).
void BlockStart(uint64_t block_serial, uint64_t block_linear, int threads, const void* dynamic,
                size_t dynamic_bytes);
// The name of an extern __shared__ declaration of the running kernel (for the reports).
void DynamicName(const char* name);
// The block's threads have all exited: a read of shared memory that no thread of the block had
// written (and that raced with no write) is reported now.
void BlockEnd();
// A static __shared__ variable (registered at its first declaration; later calls are no-ops).
void SharedVariable(const void* p, size_t bytes, const char* name);
void BarrierOpened();
void WarpSynced(int warp);
// The running thread reads or writes [p, p + bytes) at `pc` (ignored unless shared memory).
void Access(const void* p, size_t bytes, bool write, const void* pc);
// The block's barrier count (to stamp a cp.async at its issue).
uint32_t Barriers();
// A cp.async of the running thread lands: it wrote [p, p + bytes) at some time between its
// issue (barrier count `issued`) and now (its wait).
void AsyncWrite(const void* p, size_t bytes, uint32_t issued, const void* pc);
// Shared-memory bytes checked so far (0 unless the checker is built in).
uint64_t CheckedBytes();
// ldmatrix (emu.cc): the lane's reads, checked for races (not counted as bank requests), and
// the warp's 32 row addresses, counted as one request of four 8-row phases.
void LdmatrixRead(const void* p, size_t bytes, const void* pc);
void LdmatrixRows(const void* const* rows, const void* pc);

// Warp requests per instruction (printed at exit, most excess first): a request is the k-th
// execution of an instruction by the lanes of a warp.
// - kBanks, with PTC_CUDA_EMU_BANKS=1: shared-memory requests, the wavefronts they take on
//   sm_90's 32 banks of 4 bytes, and the ideal;
// - kSectors, with PTC_CUDA_EMU_SECTORS=1: global-memory (cudaMalloc'd) requests, the 32-byte
//   sectors they touch, and the ideal (their distinct bytes over 32): uncoalesced accesses.
enum class Requests { kBanks = 0, kSectors = 1 };
struct RequestStat {
  std::string kernel;  // the launch's name
  const void* pc = nullptr;
  uint64_t requests = 0, cost = 0, ideal = 0;  // cost: wavefronts or sectors
  std::string where;  // ExcessByLine: "file.cu:line (function)" or "file.cu:line from file.cu:line"
};
std::vector<RequestStat> RequestStats(Requests which);  // by instruction, most excess first
// The instructions that cost more than their ideal, merged by kernel and source line (an
// unrolled or inlined line has several instructions), most excess first.
std::vector<RequestStat> ExcessByLine(Requests which);
// Those of ExcessByLine whose kernel name and `where` start with no entry of `allow`, as
// "where (kernel) takes X wavefronts per request for an ideal Y" lines.
std::vector<std::string> Unallowed(Requests which, const std::vector<std::string>& allow);
void ResetRequestStats(Requests which);
void CountRequests(Requests which, bool on);  // as the variable =1 does (no table at exit)
std::string RequestTable(Requests which, int most);  // the table printed at exit, `most` lines
// Global memory per kernel (kSectors): its requests' sectors and ideal, and the distinct
// sectors each launch read and wrote (summed over its launches): the DRAM traffic at the least.
struct KernelTraffic {
  std::string kernel;
  uint64_t launches = 0, requests = 0, sectors = 0, ideal = 0;
  uint64_t read_sectors = 0, written_sectors = 0;
};
std::vector<KernelTraffic> TrafficByKernel();  // most sectors first
std::string TrafficTable();
}  // namespace race

}  // namespace ptc::emu

#endif  // PTC_RUNTIME_CUDA_EMU_EMU_H_
