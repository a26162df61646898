// The CUDA CPU emulation: the fiber scheduler that runs kernels (device_shim.h's side) and the
// part of the CUDA runtime API (cudart) that ptc uses, on host memory. See emu.h and
// runtime/cuda/emu/README.md.
#include "runtime/cuda/emu/emu.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <cuda_fp16.h>

#include "codegen/cuda/host_kernel.h"

#if defined(__SANITIZE_ADDRESS__)
#define PTC_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTC_EMU_ASAN 1
#endif
#endif
#ifndef PTC_EMU_ASAN
#define PTC_EMU_ASAN 0
#endif
#if defined(PTC_CUDA_EMU_RACECHECK) && PTC_CUDA_EMU_RACECHECK
#define PTC_EMU_RACECHECK 1
#else
#define PTC_EMU_RACECHECK 0
#endif
#if PTC_EMU_ASAN
#include <sanitizer/common_interface_defs.h>

// No leak report at exit: the emulation's runtime state and the tests' process-wide caches
// live until exit on purpose, and LeakSanitizer needs ptrace, which containers may forbid.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

namespace ptc::emu {

thread_local uint3 t_thread_idx;
thread_local uint3 t_block_idx;
thread_local dim3 t_block_dim;
thread_local dim3 t_grid_dim;

namespace {

// ---------------------------------------------------------------------------------------------
// Fibers: one per CUDA thread of the running block.

constexpr size_t kStackBytes = 256 << 10;
constexpr size_t kSlotBytes = 64;

enum class State { kRunnable, kBlockBarrier, kWarpCollective, kDone };

struct CpAsyncCopy {
  void* dst;
  const void* src;
  int bytes, src_bytes;
  uint32_t issued;  // the block's barrier count at the issue (race checker)
  const void* pc;
};

// The context switch: the callee-saved registers, the SSE and x87 control words and the stack
// pointer (no signal mask: ucontext's swapcontext makes two system calls per switch).
extern "C" void ptc_emu_switch(void** save_sp, void* to_sp);
asm(R"(
  .text
  .globl ptc_emu_switch
  .type ptc_emu_switch, @function
ptc_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ptc_emu_switch, .-ptc_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");

struct Fiber {
  Fiber() {
    stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) Fatal("cannot map a fiber stack");
  }
  ~Fiber() { munmap(stack, kStackBytes); }
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  void* sp = nullptr;  // saved stack pointer while switched out
  void* stack = nullptr;
  uint3 tid{};
  int lane = 0;
  State state = State::kDone;
  // Block barrier.
  const char* file = nullptr;
  int line = 0, op = 0, pred = 0, result = 0;
  // Warp collective: what this lane offers, the mask, the exchanged values once released.
  unsigned mask = 0;
  const char* what = nullptr;
  size_t bytes = 0;
  unsigned char offer[kSlotBytes];
  unsigned char all[32 * kSlotBytes];
  std::vector<CpAsyncCopy> pending_copies;
};

struct Launch {
  std::string name;
  dim3 grid, block;
  const std::function<void()>* thread = nullptr;
  std::vector<unsigned char> dynamic_smem;
};

struct Scheduler {
  void* main_sp = nullptr;
  std::vector<std::unique_ptr<Fiber>> pool;  // fibers live across blocks and launches
  std::vector<Fiber*> fibers;                // the running block's threads
  Fiber* current = nullptr;
  Launch* launch = nullptr;
#if PTC_EMU_ASAN
  const void* main_stack_bottom = nullptr;
  size_t main_stack_size = 0;
#endif
  // Blocks run so far, by any launch: a static __shared__ variable is poisoned when a block
  // whose number differs from the one that last poisoned it first declares it.
  uint64_t block_epoch = 0;
  std::unordered_map<const void*, uint64_t> poisoned;  // shared variable -> block epoch
};

thread_local Scheduler* t_sched = nullptr;

Scheduler& Sched() {
  if (t_sched == nullptr) t_sched = new Scheduler;
  return *t_sched;
}

std::string Where() {
  Scheduler& s = Sched();
  if (s.launch == nullptr) return "host";
  std::string w = "kernel " + s.launch->name + " block (" + std::to_string(t_block_idx.x) + "," +
                  std::to_string(t_block_idx.y) + "," + std::to_string(t_block_idx.z) + ")";
  if (s.current != nullptr) {
    w += " thread (" + std::to_string(s.current->tid.x) + "," + std::to_string(s.current->tid.y) +
         "," + std::to_string(s.current->tid.z) + ")";
  }
  return w;
}

// Switches from the scheduler into fiber f (returns when f yields or ends).
void Resume(Scheduler& s, Fiber& f) {
  s.current = &f;
  t_thread_idx = f.tid;
#if PTC_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
#endif
  ptc_emu_switch(&s.main_sp, f.sp);
#if PTC_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  s.current = nullptr;
}

// From fiber f back to the scheduler.
void Yield(Scheduler& s, Fiber& f) {
#if PTC_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, s.main_stack_bottom, s.main_stack_size);
#endif
  ptc_emu_switch(&f.sp, s.main_sp);
#if PTC_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, &s.main_stack_bottom, &s.main_stack_size);
#endif
}

// A fiber's life: run the launch's thread function for the thread it is set up as, report
// done, and wait to be set up again (for the next block or launch).
[[noreturn]] void FiberMain() {
  Scheduler& s = Sched();
#if PTC_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.main_stack_bottom, &s.main_stack_size);
#endif
  for (;;) {
    Fiber* f = s.current;
    (*s.launch->thread)();
    if (!f->pending_copies.empty()) {
      Fatal("the thread ended with cp.async copies it never waited for");
    }
    f->state = State::kDone;
    Yield(s, *f);
  }
}

// A new fiber's stack: FiberMain as the return address of ptc_emu_switch's frame.
void* InitialStack(void* stack) {
  auto top = (reinterpret_cast<uintptr_t>(stack) + kStackBytes) & ~uintptr_t{15};
  auto* p = reinterpret_cast<uint64_t*>(top - 16);
  p[0] = reinterpret_cast<uint64_t>(&FiberMain);  // after `ret`, rsp = top - 8 as after a call
  p[1] = 0;
  uint64_t* sp = p - 7;  // r15 r14 r13 r12 rbx rbp, then the control words below them
  for (int i = 1; i < 7; ++i) sp[i] = 0;
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  std::memcpy(reinterpret_cast<char*>(sp), &mxcsr, 4);
  std::memcpy(reinterpret_cast<char*>(sp) + 4, &fpucw, 2);
  return sp;
}

std::string StateName(const Fiber& f) {
  switch (f.state) {
    case State::kRunnable: return "runnable";
    case State::kDone: return "exited";
    case State::kBlockBarrier:
      return std::string("at __syncthreads (") + f.file + ":" + std::to_string(f.line) + ")";
    case State::kWarpCollective: {
      char m[16];
      std::snprintf(m, sizeof m, "%08x", f.mask);
      return std::string("at ") + f.what + " (mask " + m + ")";
    }
  }
  return "?";
}

// Releases the warp collectives whose lanes have all arrived; true if any was.
bool ReleaseWarps(Scheduler& s, int num_warps) {
  bool released = false;
  const int n = static_cast<int>(s.fibers.size());
  for (int w = 0; w < num_warps; ++w) {
    Fiber* lanes[32] = {};
    for (int l = 0; l < 32; ++l) {
      const int i = w * 32 + l;
      if (i < n) lanes[l] = s.fibers[i];
    }
    for (int l = 0; l < 32; ++l) {
      Fiber* f = lanes[l];
      if (f == nullptr || f->state != State::kWarpCollective) continue;
      const unsigned mask = f->mask;
      bool ready = true;
      for (int j = 0; j < 32 && ready; ++j) {
        if (((mask >> j) & 1u) == 0) continue;
        Fiber* g = lanes[j];
        if (g == nullptr || g->state == State::kDone) {
          s.current = f;
          Fatal(std::string(f->what) + ": lane " + std::to_string(j) + " of the mask " +
                (g == nullptr ? "does not exist (the block is smaller)" : "has exited"));
        }
        if (g->state != State::kWarpCollective || g->mask != mask) ready = false;
      }
      if (!ready) continue;
      if (((mask >> l) & 1u) == 0) {
        s.current = f;
        Fatal(std::string(f->what) + ": the calling lane is not in its own mask");
      }
      for (int j = 0; j < 32; ++j) {
        if (((mask >> j) & 1u) == 0) continue;
        Fiber* g = lanes[j];
        for (int k = 0; k < 32; ++k) {
          unsigned char* dst = g->all + static_cast<size_t>(k) * g->bytes;
          if (((mask >> k) & 1u) != 0 && lanes[k]->bytes == g->bytes) {
            std::memcpy(dst, lanes[k]->offer, g->bytes);
          } else {
            std::memset(dst, 0, g->bytes);
          }
        }
      }
      for (int j = 0; j < 32; ++j) {
        if (((mask >> j) & 1u) != 0) lanes[j]->state = State::kRunnable;
      }
#if PTC_EMU_RACECHECK
      // Orders the warp's accesses only when every lane of the warp took part.
      bool whole = true;
      for (int j = 0; j < 32; ++j) {
        whole &= lanes[j] == nullptr || ((mask >> j) & 1u) != 0 || lanes[j]->state == State::kDone;
      }
      if (whole) race::WarpSynced(w);
#endif
      released = true;
    }
  }
  return released;
}

// Releases the block barrier when every live thread waits at it; true if it did.
bool ReleaseBlock(Scheduler& s) {
  Fiber* first = nullptr;
  int count = 0, any = 0, all = 1;
  for (Fiber* fp : s.fibers) {
    Fiber& f = *fp;
    if (f.state == State::kDone) continue;
    if (f.state != State::kBlockBarrier) return false;
    if (first == nullptr) first = &f;
    if (f.line != first->line || std::strcmp(f.file, first->file) != 0 || f.op != first->op) {
      s.current = &f;
      Fatal("threads of one block wait at different __syncthreads: " + StateName(*first) +
            " and " + StateName(f));
    }
    count += f.pred;
    any |= f.pred;
    all &= f.pred;
  }
  if (first == nullptr) return false;
  const int result = first->op == 1 ? any : first->op == 2 ? all : first->op == 3 ? count : 0;
#if PTC_EMU_RACECHECK
  race::BarrierOpened();
#endif
  for (Fiber* f : s.fibers) {
    if (f->state == State::kBlockBarrier) {
      f->result = result;
      f->state = State::kRunnable;
    }
  }
  return true;
}

void RunBlock(Scheduler& s, Launch& launch, uint3 block) {
  t_block_idx = block;
  ++s.block_epoch;
  const dim3 b = launch.block;
  const int n = static_cast<int>(b.x * b.y * b.z);
  while (static_cast<int>(s.pool.size()) < n) {
    auto f = std::make_unique<Fiber>();
    f->sp = InitialStack(f->stack);
    s.pool.push_back(std::move(f));
  }
  s.fibers.resize(n);
  for (int i = 0; i < n; ++i) {
    s.fibers[i] = s.pool[i].get();
    Fiber& f = *s.fibers[i];
    f.tid = uint3{static_cast<unsigned>(i % b.x), static_cast<unsigned>((i / b.x) % b.y),
                  static_cast<unsigned>(i / (b.x * b.y))};
    f.lane = i % 32;
    f.state = State::kRunnable;
    f.pending_copies.clear();
  }
  if (!launch.dynamic_smem.empty()) {
    std::memset(launch.dynamic_smem.data(), 0xff, launch.dynamic_smem.size());
  }
#if PTC_EMU_RACECHECK
  const uint64_t linear =
      block.x + uint64_t{launch.grid.x} * (block.y + uint64_t{launch.grid.y} * block.z);
  race::BlockStart(s.block_epoch, linear, n, launch.dynamic_smem.data(),
                   launch.dynamic_smem.size());
#endif
  const int num_warps = (n + 31) / 32;
  for (;;) {
    bool ran = false;
    for (Fiber* f : s.fibers) {
      if (f->state == State::kRunnable) {
        Resume(s, *f);
        ran = true;
      }
    }
    bool done = true;
    for (const Fiber* f : s.fibers) done &= f->state == State::kDone;
    if (done) {
#if PTC_EMU_RACECHECK
      race::BlockEnd();
#endif
      break;
    }
    if (ReleaseWarps(s, num_warps)) continue;
    if (ReleaseBlock(s)) continue;
    if (!ran) {
      std::string states;
      for (const Fiber* fp : s.fibers) {
        const Fiber& f = *fp;
        if (f.state == State::kDone) continue;
        states += "\n  thread (" + std::to_string(f.tid.x) + "," + std::to_string(f.tid.y) +
                  "," + std::to_string(f.tid.z) + ") " + StateName(f);
        if (states.size() > 2000) break;
      }
      Fatal("deadlock: no thread of the block can go on (a barrier or warp collective that "
            "only part of its threads reach):" + states);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Streams, events, graphs, memory.

struct Graph {
  std::vector<std::function<void()>> work;
};

struct StreamState {
  Graph* capture = nullptr;
  bool capture_invalidated = false;
};

struct EventState {
  std::chrono::steady_clock::time_point time{};
  bool recorded = false;
};

struct Runtime {
  std::mutex mu;
  std::map<cudaStream_t, StreamState> streams;  // nullptr: the legacy default stream
  std::map<const void*, int> func_max_dynamic_smem;
  std::map<const void*, size_t> allocations;
  size_t allocated = 0;
};

Runtime& Rt() {
  static Runtime* rt = [] {
    auto* r = new Runtime;
    r->streams[nullptr] = StreamState{};
    return r;
  }();
  return *rt;
}

thread_local cudaError_t t_last_error = cudaSuccess;

// The order a launch runs its blocks in (PTC_CUDA_EMU_BLOCK_ORDER): forward (x fastest, the
// default), reverse, or shuffle (a fixed permutation). Blocks of a launch may run in any order
// on a GPU; a kernel whose result depends on it (a block reading what another block of the
// same launch writes) fails its tests under another order.
enum class BlockOrder { kForward, kReverse, kShuffle };
BlockOrder TheBlockOrder() {
  static const BlockOrder order = [] {
    const char* e = std::getenv("PTC_CUDA_EMU_BLOCK_ORDER");
    const std::string v = e != nullptr ? e : "";
    if (v.empty() || v == "forward") return BlockOrder::kForward;
    if (v == "reverse") return BlockOrder::kReverse;
    if (v == "shuffle") return BlockOrder::kShuffle;
    std::fprintf(stderr, "ptc cuda emulation: PTC_CUDA_EMU_BLOCK_ORDER=%s is not forward, "
                         "reverse or shuffle\n", v.c_str());
    std::abort();
  }();
  return order;
}

// One emulated launch at a time: fibers and the device-side state are per host thread, but the
// shared-memory statics of the kernels are process-wide.
std::recursive_mutex g_launch_mu;

}  // namespace

void Fatal(const std::string& what) {
  std::fprintf(stderr, "ptc cuda emulation: %s: %s\n", Where().c_str(), what.c_str());
  std::fflush(stderr);
  std::abort();
}

void SetLastError(cudaError_t error) {
  if (t_last_error == cudaSuccess) t_last_error = error;
}

cudaError_t Enqueue(cudaStream_t stream, std::function<void()> work) {
  Runtime& rt = Rt();
  {
    std::lock_guard<std::mutex> lock(rt.mu);
    auto it = rt.streams.find(stream);
    if (it == rt.streams.end()) return cudaErrorInvalidResourceHandle;
    if (it->second.capture != nullptr) {
      it->second.capture->work.push_back(std::move(work));
      return cudaSuccess;
    }
    // Work on the legacy stream while another stream captures (global mode) would invalidate
    // the capture; ptc captures in thread-local mode, so it does not.
  }
  work();
  return cudaSuccess;
}

cudaError_t LaunchKernel(const void* func, const char* name, dim3 grid, dim3 block,
                         size_t dynamic_smem, cudaStream_t stream, std::function<void()> thread) {
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  cudaError_t err = cudaSuccess;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 ||
      grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu) {
    err = cudaErrorInvalidConfiguration;
  } else if (dynamic_smem > kSharedPerBlock) {
    Runtime& rt = Rt();
    std::lock_guard<std::mutex> lock(rt.mu);
    auto it = rt.func_max_dynamic_smem.find(func);
    const size_t allowed = it == rt.func_max_dynamic_smem.end() ? kSharedPerBlock : it->second;
    if (dynamic_smem > allowed) err = cudaErrorInvalidValue;
  }
  if (err != cudaSuccess) {
    SetLastError(err);
    return err;
  }
  auto run = [name = std::string(name), grid, block, dynamic_smem,
              thread = std::move(thread)]() {
    std::lock_guard<std::recursive_mutex> lock(g_launch_mu);
    Scheduler& s = Sched();
    if (s.launch != nullptr) Fatal("a kernel launched from inside a kernel");
    Launch launch;
    launch.name = name;
    launch.grid = grid;
    launch.block = block;
    launch.thread = &thread;
    launch.dynamic_smem.resize(dynamic_smem);
    s.launch = &launch;
#if PTC_EMU_RACECHECK
    race::LaunchStart();
#endif
    t_block_dim = block;
    t_grid_dim = grid;
    const uint64_t blocks = uint64_t{grid.x} * grid.y * grid.z;
    const BlockOrder order = TheBlockOrder();
    // shuffle: i -> (a * i + c) mod blocks with a odd and coprime to blocks (a permutation).
    uint64_t a = 1;
    if (order == BlockOrder::kShuffle && blocks > 2) {
      a = (blocks / 2 + 1) | 1;
      while (std::gcd(a, blocks) != 1) a += 2;
    }
    for (uint64_t i = 0; i < blocks; ++i) {
      const uint64_t b = order == BlockOrder::kReverse   ? blocks - 1 - i
                         : order == BlockOrder::kShuffle ? (a * i + blocks / 3) % blocks
                                                         : i;
      RunBlock(s, launch,
               uint3{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                     static_cast<unsigned>(b / (uint64_t{grid.x} * grid.y))});
    }
    s.launch = nullptr;
  };
  err = Enqueue(stream, std::move(run));
  if (err != cudaSuccess) SetLastError(err);
  return err;
}

// ---------------------------------------------------------------------------------------------
// Device side (device_shim.h).

int SyncThreads(int op, int pred, const char* file, int line) {
  Scheduler& s = Sched();
  Fiber* f = s.current;
  if (f == nullptr) Fatal("__syncthreads outside a kernel");
  f->state = State::kBlockBarrier;
  f->op = op;
  f->pred = pred;
  f->file = file;
  f->line = line;
  Yield(s, *f);
  return f->result;
}

const unsigned char* WarpExchange(unsigned mask, const void* value, size_t bytes,
                                  const char* what) {
  Scheduler& s = Sched();
  Fiber* f = s.current;
  if (f == nullptr) Fatal(std::string(what) + " outside a kernel");
  if (bytes > kSlotBytes) Fatal("warp collective of more than 64 bytes");
  std::memcpy(f->offer, value, bytes);
  f->bytes = bytes;
  f->mask = mask;
  f->what = what;
  f->state = State::kWarpCollective;
  Yield(s, *f);
  return f->all;
}

int LaneId() {
  Scheduler& s = Sched();
  return s.current != nullptr ? s.current->lane : 0;
}

unsigned char* DynamicShared(const char* name) {
  Scheduler& s = Sched();
  if (s.launch == nullptr) Fatal("extern __shared__ outside a kernel");
#if PTC_EMU_RACECHECK
  race::DynamicName(name);
#else
  (void)name;
#endif
  return s.launch->dynamic_smem.data();
}

void PoisonShared(void* p, size_t bytes, const char* name) {
  Scheduler& s = Sched();
  if (s.launch == nullptr) return;
  uint64_t& epoch = s.poisoned[p];
  if (epoch == s.block_epoch) return;
  epoch = s.block_epoch;
  std::memset(p, 0xff, bytes);
#if PTC_EMU_RACECHECK
  race::SharedVariable(p, bytes, name);
#else
  (void)name;
#endif
}

const char* KernelName() {
  Scheduler& s = Sched();
  return s.launch != nullptr ? s.launch->name.c_str() : "";
}

int CurrentThread() {
  Scheduler& s = Sched();
  if (s.current == nullptr) return -1;
  const uint3 t = s.current->tid;
  return static_cast<int>(t.x + t_block_dim.x * (t.y + t_block_dim.y * t.z));
}

uint3 ThreadIndex(int linear) {
  const dim3 b = t_block_dim;
  const unsigned i = static_cast<unsigned>(linear);
  return uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: the PTX ISA's fragment layouts. Lane l,
// g = l / 4, t = l % 4: A (16x16, row) a0,a1: (g, 2t..2t+1), a2,a3: (g+8, ..), a4,a5:
// (g, 2t+8..), a6,a7: (g+8, 2t+8..); B (16x8, col) b0,b1: (k = 2t..2t+1, n = g), b2,b3:
// (k = 2t+8.., n = g); C/D (16x8) c0,c1: (g, 2t..2t+1), c2,c3: (g+8, 2t..2t+1).
namespace {
float HalfBits(uint16_t h, bool bf16) {
  if (bf16) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float x;
    std::memcpy(&x, &u, 4);
    return x;
  }
  return __half2float(__ushort_as_half(h));
}
}  // namespace

void MmaM16N8K16(bool bf16, float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  struct Frag {
    uint32_t a[4], b[2];
  } mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  const unsigned char* all = WarpExchange(0xffffffffu, &mine, sizeof mine, "mma.sync");
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    Frag fr;
    std::memcpy(&fr, all + l * sizeof(Frag), sizeof fr);
    const int g = l / 4, t = l % 4;
    auto lo = [&](uint32_t r) { return HalfBits(static_cast<uint16_t>(r & 0xffff), bf16); };
    auto hi = [&](uint32_t r) { return HalfBits(static_cast<uint16_t>(r >> 16), bf16); };
    A[g][2 * t] = lo(fr.a[0]);
    A[g][2 * t + 1] = hi(fr.a[0]);
    A[g + 8][2 * t] = lo(fr.a[1]);
    A[g + 8][2 * t + 1] = hi(fr.a[1]);
    A[g][2 * t + 8] = lo(fr.a[2]);
    A[g][2 * t + 9] = hi(fr.a[2]);
    A[g + 8][2 * t + 8] = lo(fr.a[3]);
    A[g + 8][2 * t + 9] = hi(fr.a[3]);
    B[2 * t][g] = lo(fr.b[0]);
    B[2 * t + 1][g] = hi(fr.b[0]);
    B[2 * t + 8][g] = lo(fr.b[1]);
    B[2 * t + 9][g] = hi(fr.b[1]);
  }
  const int l = LaneId(), g = l / 4, t = l % 4;
  const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
  for (int i = 0; i < 4; ++i) {
    float acc = c[i];
    for (int k = 0; k < 16; ++k) acc += A[rows[i]][k] * B[k][cols[i]];
    c[i] = acc;
  }
}

// ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16: lanes 8m..8m+7 give the row addresses of
// matrix m (8 rows of 8 b16); with .trans, lane l's register r[m] holds matrix m's elements
// (row 2(l%4), column l/4) and (row 2(l%4)+1, column l/4).
void LdmatrixX4Trans(uint32_t (&r)[4], const void* row_address) {
  const unsigned char* all =
      WarpExchange(0xffffffffu, &row_address, sizeof row_address, "ldmatrix");
  const int l = LaneId();
#if PTC_EMU_RACECHECK
  if (l == 0) {
    const void* rows[32];
    std::memcpy(rows, all, sizeof rows);
    race::LdmatrixRows(rows, __builtin_return_address(0));
  }
#endif
  for (int m = 0; m < 4; ++m) {
    uint16_t v[2];
    for (int h = 0; h < 2; ++h) {
      const void* row;
      std::memcpy(&row, all + (8 * m + 2 * (l % 4) + h) * sizeof(void*), sizeof row);
      std::memcpy(&v[h], static_cast<const uint16_t*>(row) + l / 4, 2);
#if PTC_EMU_RACECHECK
      race::LdmatrixRead(static_cast<const uint16_t*>(row) + l / 4, 2,
                         __builtin_return_address(0));
#endif
    }
    r[m] = static_cast<uint32_t>(v[0]) | (static_cast<uint32_t>(v[1]) << 16);
  }
}

namespace {
bool CpAsyncEarly() {
  static const bool early = [] {
    const char* e = std::getenv("PTC_CUDA_EMU_CP_ASYNC");
    return e != nullptr && std::string(e) == "early";
  }();
  return early;
}
void DoCopy(const CpAsyncCopy& c) {
  std::memcpy(c.dst, c.src, c.src_bytes);
  std::memset(static_cast<unsigned char*>(c.dst) + c.src_bytes, 0, c.bytes - c.src_bytes);
}
}  // namespace

void CpAsync(void* smem, const void* gmem, int bytes, int src_bytes) {
  if (reinterpret_cast<uintptr_t>(smem) % bytes != 0 ||
      (src_bytes > 0 && reinterpret_cast<uintptr_t>(gmem) % bytes != 0)) {
    Fatal("cp.async of " + std::to_string(bytes) + " bytes at a misaligned address");
  }
  uint32_t issued = 0;
#if PTC_EMU_RACECHECK
  issued = race::Barriers();
#endif
  const CpAsyncCopy c{smem, gmem, bytes, src_bytes, issued, __builtin_return_address(0)};
#if PTC_EMU_RACECHECK
  if (src_bytes > 0) race::Access(gmem, static_cast<size_t>(src_bytes), false, c.pc);
#endif
  Scheduler& s = Sched();
  if (s.current == nullptr) {
    DoCopy(c);
    return;
  }
  // Early: the data lands now, and the copy stays pending until the wait all the same (for
  // the race checker and the check that every copy is waited for).
  if (CpAsyncEarly()) DoCopy(c);
  s.current->pending_copies.push_back(c);
}

void CpAsyncWaitAll() {
  Scheduler& s = Sched();
  if (s.current == nullptr) return;
  const bool early = CpAsyncEarly();
  for (const CpAsyncCopy& c : s.current->pending_copies) {
    if (!early) DoCopy(c);
#if PTC_EMU_RACECHECK
    race::AsyncWrite(c.dst, static_cast<size_t>(c.bytes), c.issued, c.pc);
#endif
  }
  s.current->pending_copies.clear();
}

namespace {

// The generated kernels loaded (LoadGeneratedKernel): a library is its one kernel.
struct GeneratedLibrary {
  std::string name;
  std::shared_ptr<cuda::codegen::HostKernel> kernel;
};
std::mutex& GeneratedMutex() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::set<const void*>& GeneratedLibraries() {
  static auto* s = new std::set<const void*>;
  return *s;
}
const GeneratedLibrary* FindGenerated(const void* p) {
  std::lock_guard<std::mutex> lock(GeneratedMutex());
  return GeneratedLibraries().count(p) > 0 ? static_cast<const GeneratedLibrary*>(p) : nullptr;
}

}  // namespace

cudaError_t LoadGeneratedKernel(cudaLibrary_t* library, const std::string& name,
                                const std::string& source) {
  if (const char* e = std::getenv("PTC_CUDA_EMU_GENERATED"); e != nullptr && std::string(e) == "0") {
    SetLastError(cudaErrorInvalidKernelImage);
    return cudaErrorInvalidKernelImage;
  }
  cuda::codegen::HostKernelOptions options;
  options.address_sanitizer = PTC_EMU_ASAN != 0;
  if (const char* c = std::getenv("PTC_CUDA_EMU_KERNEL_CACHE"); c != nullptr && *c != '\0') {
    options.cache_dir = c;
  } else {
    std::error_code ec;
    options.cache_dir = (std::filesystem::temp_directory_path(ec) / "ptc-emu-kernels").string();
  }
  auto kernel = cuda::codegen::HostKernel::Compile(name, source, options);
  if (!kernel.ok()) {
    static std::atomic<bool> reported{false};
    if (!reported.exchange(true)) {  // the first failure only (the runtime says the fallback)
      std::fprintf(stderr, "ptc cuda emulation: generated kernel %s not compiled for the host: %s\n",
                   name.c_str(), std::string(kernel.status().message()).substr(0, 2000).c_str());
    }
    SetLastError(cudaErrorInvalidKernelImage);
    return cudaErrorInvalidKernelImage;
  }
  auto* lib = new GeneratedLibrary{name, *std::move(kernel)};
  {
    std::lock_guard<std::mutex> lock(GeneratedMutex());
    GeneratedLibraries().insert(lib);
  }
  *library = reinterpret_cast<cudaLibrary_t>(lib);
  return cudaSuccess;
}

}  // namespace ptc::emu

// =============================================================================================
// The CUDA runtime API subset (cuda_runtime_api.h's declarations).

using ptc::emu::Rt;
using ptc::emu::SetLastError;

namespace {
cudaError_t Fail(cudaError_t e) {
  SetLastError(e);
  return e;
}
cudaError_t SyncCheck(cudaStream_t stream) {
  // A synchronous call on a capturing stream invalidates the capture in CUDA.
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.streams.find(stream);
  if (it == rt.streams.end()) return cudaErrorInvalidResourceHandle;
  if (it->second.capture != nullptr) {
    it->second.capture_invalidated = true;
    return cudaErrorStreamCaptureUnsupported;
  }
  return cudaSuccess;
}
bool AnyCapture() {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  for (auto& [s, st] : rt.streams) {
    if (st.capture != nullptr) return true;
  }
  return false;
}
}  // namespace

extern "C" {

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = ptc::emu::t_last_error;
  ptc::emu::t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return ptc::emu::t_last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorInvalidKernelImage: return "cudaErrorInvalidKernelImage";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorNotSupported: return "operation not supported (CPU emulation)";
    case cudaErrorInvalidKernelImage:
      return "device kernel image is invalid (the CPU emulation runs no CUBIN)";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    default: return "error (CPU emulation)";
  }
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return Fail(cudaErrorInvalidDevice);
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device != 0) return Fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::snprintf(prop->name, sizeof prop->name, "ptc CUDA CPU emulation");
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = ptc::emu::kMultiProcessors;
  prop->totalGlobalMem = ptc::emu::kTotalMemory;
  prop->sharedMemPerBlock = ptc::emu::kSharedPerBlock;
  prop->sharedMemPerBlockOptin = ptc::emu::kSharedPerBlockOptin;
  prop->sharedMemPerMultiprocessor = 228 << 10;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->l2CacheSize = 50 << 20;
  prop->memoryBusWidth = 5120;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return Fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = ptc::emu::kMultiProcessors; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = static_cast<int>(ptc::emu::kSharedPerBlockOptin);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = static_cast<int>(ptc::emu::kSharedPerBlock);
      break;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = 2048; break;
    default: *value = 0; break;
  }
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  if (AnyCapture()) return Fail(cudaErrorStreamCaptureUnsupported);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  if (bytes > ptc::emu::kTotalMemory - rt.allocated) {
    *ptr = nullptr;
    return Fail(cudaErrorMemoryAllocation);
  }
  // 256-byte aligned, as cudaMalloc's (cuBLASLt and the vector paths rely on it).
  void* p = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  if (p == nullptr) return Fail(cudaErrorMemoryAllocation);
  // Uninitialized device memory reads as 0xff bytes (NaN for floats, -1 for integers), as
  // shared memory does: a kernel or a plan that reads a buffer before anything wrote it shows
  // (a GPU's fresh allocations are often zeros, which hides it).
  std::memset(p, 0xff, bytes);
  rt.allocations[p] = bytes;
#if PTC_EMU_RACECHECK
  ptc::emu::race::Allocated(p, bytes);
#endif
  rt.allocated += bytes;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFree(void* ptr) {
  if (ptr == nullptr) return cudaSuccess;
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.allocations.find(ptr);
  if (it == rt.allocations.end()) return Fail(cudaErrorInvalidValue);
  rt.allocated -= it->second;
  rt.allocations.erase(it);
#if PTC_EMU_RACECHECK
  ptc::emu::race::Freed(ptr);
#endif
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  *ptr = std::aligned_alloc(256, (std::max<size_t>(bytes, 1) + 255) / 256 * 256);
  return *ptr != nullptr ? cudaSuccess : Fail(cudaErrorMemoryAllocation);
}
cudaError_t cudaFreeHost(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  *total_bytes = ptc::emu::kTotalMemory;
  *free_bytes = ptc::emu::kTotalMemory - rt.allocated;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (AnyCapture()) return Fail(cudaErrorStreamCaptureUnsupported);
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind,
                            cudaStream_t stream) {
  const cudaError_t e = ptc::emu::Enqueue(stream, [=] {
    if (bytes > 0) std::memmove(dst, src, bytes);
  });
  return e == cudaSuccess ? e : Fail(e);
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind, cudaStream_t stream) {
  if (width > dpitch || width > spitch) return Fail(cudaErrorInvalidPitchValue);
  auto* d = static_cast<unsigned char*>(dst);
  const auto* sp = static_cast<const unsigned char*>(src);
  const cudaError_t e = ptc::emu::Enqueue(stream, [=] {
    for (size_t r = 0; r < height; ++r) std::memmove(d + r * dpitch, sp + r * spitch, width);
  });
  return e == cudaSuccess ? e : Fail(e);
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (AnyCapture()) return Fail(cudaErrorStreamCaptureUnsupported);
  std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  const cudaError_t e = ptc::emu::Enqueue(stream, [=] { std::memset(dst, value, bytes); });
  return e == cudaSuccess ? e : Fail(e);
}
cudaError_t cudaMemset2DAsync(void* dst, size_t pitch, int value, size_t width, size_t height,
                              cudaStream_t stream) {
  if (width > pitch) return Fail(cudaErrorInvalidPitchValue);
  auto* d = static_cast<unsigned char*>(dst);
  const cudaError_t e = ptc::emu::Enqueue(stream, [=] {
    for (size_t r = 0; r < height; ++r) std::memset(d + r * pitch, value, width);
  });
  return e == cudaSuccess ? e : Fail(e);
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  *stream = reinterpret_cast<cudaStream_t>(new char);
  rt.streams[*stream] = {};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  return cudaStreamCreate(stream);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.streams.find(stream);
  if (stream == nullptr || it == rt.streams.end()) return Fail(cudaErrorInvalidResourceHandle);
  rt.streams.erase(it);
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  const cudaError_t e = SyncCheck(stream);
  return e == cudaSuccess ? e : Fail(e);
}
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode) {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.streams.find(stream);
  if (stream == nullptr || it == rt.streams.end()) return Fail(cudaErrorStreamCaptureUnsupported);
  if (it->second.capture != nullptr) return Fail(cudaErrorIllegalState);
  it->second.capture = new ptc::emu::Graph;
  it->second.capture_invalidated = false;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  auto& rt = Rt();
  std::lock_guard<std::mutex> lock(rt.mu);
  auto it = rt.streams.find(stream);
  if (it == rt.streams.end() || it->second.capture == nullptr) {
    return Fail(cudaErrorIllegalState);
  }
  ptc::emu::Graph* g = it->second.capture;
  it->second.capture = nullptr;
  if (it->second.capture_invalidated) {
    delete g;
    *graph = nullptr;
    return Fail(cudaErrorStreamCaptureInvalidated);
  }
  *graph = reinterpret_cast<cudaGraph_t>(g);
  return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t* nodes, size_t* count) {
  auto* g = reinterpret_cast<ptc::emu::Graph*>(graph);
  if (nodes == nullptr) {
    *count = g->work.size();
    return cudaSuccess;
  }
  const size_t n = std::min(*count, g->work.size());
  for (size_t i = 0; i < n; ++i) nodes[i] = reinterpret_cast<cudaGraphNode_t>(i + 1);
  *count = n;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  auto* g = reinterpret_cast<ptc::emu::Graph*>(graph);
  *exec = reinterpret_cast<cudaGraphExec_t>(new ptc::emu::Graph(*g));
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  auto* g = reinterpret_cast<ptc::emu::Graph*>(exec);
  for (const auto& w : g->work) {
    const cudaError_t e = ptc::emu::Enqueue(stream, w);
    if (e != cudaSuccess) return Fail(e);
  }
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<ptc::emu::Graph*>(graph);
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<ptc::emu::Graph*>(exec);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new ptc::emu::EventState);
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  return cudaEventCreate(event);
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<ptc::emu::EventState*>(event);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  auto* ev = reinterpret_cast<ptc::emu::EventState*>(event);
  const cudaError_t e = ptc::emu::Enqueue(stream, [ev] {
    ev->time = std::chrono::steady_clock::now();
    ev->recorded = true;
  });
  return e == cudaSuccess ? e : Fail(e);
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  auto* a = reinterpret_cast<ptc::emu::EventState*>(start);
  auto* b = reinterpret_cast<ptc::emu::EventState*>(end);
  if (!a->recorded || !b->recorded) return Fail(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(b->time - a->time).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || static_cast<size_t>(value) > ptc::emu::kSharedPerBlockOptin) {
      return Fail(cudaErrorInvalidValue);
    }
    auto& rt = Rt();
    std::lock_guard<std::mutex> lock(rt.mu);
    rt.func_max_dynamic_smem[func] = value;
  }
  return cudaSuccess;
}
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, const void*, int block_size,
                                                          size_t dynamic_smem) {
  if (block_size <= 0 || block_size > 1024) return Fail(cudaErrorInvalidValue);
  int n = std::min(32, 2048 / block_size);
  if (dynamic_smem > 0) n = std::min<int>(n, static_cast<int>((228 << 10) / dynamic_smem));
  *blocks = std::max(n, 0);
  return cudaSuccess;
}

// Generated (NVRTC) kernels are CUBINs: the emulation cannot run them. The runtime hands it their
// source instead (ptc::emu::LoadGeneratedKernel); these calls serve those libraries.
cudaError_t cudaLibraryLoadData(cudaLibrary_t*, const void*, cudaJitOption*, void**, unsigned int,
                                cudaLibraryOption*, void**, unsigned int) {
  return Fail(cudaErrorInvalidKernelImage);
}
cudaError_t cudaLibraryUnload(cudaLibrary_t library) {
  std::unique_ptr<const ptc::emu::GeneratedLibrary> lib;
  {
    std::lock_guard<std::mutex> lock(ptc::emu::GeneratedMutex());
    if (ptc::emu::GeneratedLibraries().erase(library) == 0) return Fail(cudaErrorInvalidValue);
    lib.reset(reinterpret_cast<const ptc::emu::GeneratedLibrary*>(library));
  }
  return cudaSuccess;
}
cudaError_t cudaLibraryGetKernel(cudaKernel_t* kernel, cudaLibrary_t library, const char* name) {
  const ptc::emu::GeneratedLibrary* lib = ptc::emu::FindGenerated(library);
  if (lib == nullptr) return Fail(cudaErrorInvalidResourceHandle);
  if (name == nullptr || lib->name != name) return Fail(cudaErrorSymbolNotFound);
  *kernel = reinterpret_cast<cudaKernel_t>(library);
  return cudaSuccess;
}
// Only generated kernels are launched this way (the others through device_shim.h's Launcher).
cudaError_t cudaLaunchKernel(const void* func, dim3 grid, dim3 block, void** args,
                             size_t dynamic_smem, cudaStream_t stream) {
  const ptc::emu::GeneratedLibrary* lib = ptc::emu::FindGenerated(func);
  if (lib == nullptr) return Fail(cudaErrorInvalidDeviceFunction);
  if (block.x == 0 || block.x > 1024 || block.y != 1 || block.z != 1 || grid.x == 0 ||
      grid.y != 1 || grid.z != 1 || dynamic_smem != 0) {
    return Fail(cudaErrorInvalidConfiguration);
  }
  // The arguments' values now (every parameter is 8 bytes), as a launch copies them.
  std::vector<uint64_t> values(static_cast<size_t>(lib->kernel->num_params()));
  for (size_t i = 0; i < values.size(); ++i) std::memcpy(&values[i], args[i], 8);
  std::shared_ptr<ptc::cuda::codegen::HostKernel> kernel = lib->kernel;
  const unsigned g = grid.x, b = block.x;
  const cudaError_t err = ptc::emu::Enqueue(stream, [kernel, values, g, b] {
    std::vector<uint64_t> v = values;
    std::vector<void*> a;
    for (uint64_t& x : v) a.push_back(&x);
    kernel->Launch(a.data(), g, b);
  });
  return err == cudaSuccess ? cudaSuccess : Fail(err);
}

}  // extern "C"
