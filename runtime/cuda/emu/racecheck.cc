// The CUDA CPU emulation's shared-memory race checker (emu.h, namespace race): the racecheck
// variant of the emulated backend compiles the kernels (codegen/cuda/*.cu) with GCC's
// -fsanitize=thread instrumentation, which calls __tsan_read4(p), __tsan_write16(p), ... before
// every load and store. This file defines those calls (the TSan runtime is not linked) and
// keeps, for every byte of the running block's shared memory, the last write and the reads
// since it: which thread, at which of the block's barrier counts, and the source address.
//
// Fibers switch only at barriers, so the emulation runs a block's threads one after another;
// the shadow makes the order irrelevant. Two accesses to one byte by different threads, at
// least one a write, race unless
// - a __syncthreads opened between them (the access's barrier count is below the current), or
// - they are lanes of one warp and a collective of the whole warp (shuffle, ballot, mma,
//   ldmatrix, __syncwarp) completed between them.
// A cp.async's write spans its issue to its wait (any barrier count in between).
//
// Atomics (device_shim.h) are not instrumented: atomic against atomic is no race, and atomic
// against a plain access is not checked. Global memory is not checked (racecheck's scope).
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "runtime/cuda/emu/emu.h"

namespace ptc::emu::race {
namespace {

struct Acc {
  int32_t tid = -1;       // -1: none
  uint32_t lo = 0, hi = 0;  // barrier counts the access spans (lo == hi but for cp.async)
  uint32_t wsync = 0;     // the warp's collective count at the access (UINT32_MAX: cp.async)
  const void* pc = nullptr;
};

struct Cell {
  uint64_t block = 0;  // the block serial the cell's accesses belong to (older ones are void)
  Acc w;
  Acc r[2];  // reads since the write by up to two distinct threads
};

struct Region {
  const unsigned char* base = nullptr;
  size_t bytes = 0;
  const char* name = nullptr;
  std::vector<Cell> cells;
};

struct State {
  uint64_t block = 0;
  uint32_t barriers = 0;
  std::vector<uint32_t> wsync;  // per warp
  Region dynamic;
  std::vector<Region> statics;
  uintptr_t static_lo = UINTPTR_MAX, static_hi = 0;
  uint64_t checked = 0;  // shared-memory bytes checked (tests read it)
};

State& St() {
  static thread_local State s;
  return s;
}

std::string Symbolize(const void* pc) {
  if (pc == nullptr) return "?";
  Dl_info info{};
  if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return "?";
  const uintptr_t at = reinterpret_cast<uintptr_t>(pc) - 1;  // the call, not its return
  const uintptr_t base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  char cmd[1024];
  std::snprintf(cmd, sizeof cmd, "addr2line -C -f -e '%s' 0x%lx 2>/dev/null", info.dli_fname,
                static_cast<unsigned long>(at - base));
  std::string fn, line;
  if (FILE* p = popen(cmd, "r")) {
    char buf[2048];
    if (std::fgets(buf, sizeof buf, p)) fn = buf;
    if (std::fgets(buf, sizeof buf, p)) line = buf;
    pclose(p);
  }
  auto strip = [](std::string& x) {
    while (!x.empty() && (x.back() == '\n' || x.back() == '\r')) x.pop_back();
  };
  strip(fn);
  strip(line);
  if (line.empty() || line.rfind("??", 0) == 0) {
    if (info.dli_sname != nullptr) return info.dli_sname;
    char b[64];
    std::snprintf(b, sizeof b, "%s+0x%lx", info.dli_fname, static_cast<unsigned long>(at - base));
    return b;
  }
  const size_t slash = line.rfind('/');
  if (slash != std::string::npos) line = line.substr(slash + 1);
  // "void (anonymous namespace)::ns::Kernel<T, 4>(float*)::{lambda(int)#1}::operator()(int)
  // const" -> "ns::Kernel::{lambda#1}::operator const": no return type, template arguments or
  // parameter lists.
  for (const std::string anon = "(anonymous namespace)::";;) {
    const size_t a = fn.find(anon);
    if (a == std::string::npos) break;
    fn.erase(a, anon.size());
  }
  std::string shortened;
  int parens = 0, angles = 0;
  for (const char ch : fn) {
    if (ch == '(') {
      ++parens;
    } else if (ch == ')') {
      parens -= parens > 0;
    } else if (ch == '<' && parens == 0) {
      ++angles;
    } else if (ch == '>' && parens == 0) {
      angles -= angles > 0;
    } else if (parens == 0 && angles == 0) {
      shortened += ch;
    }
  }
  const size_t space = shortened.find(' ');
  if (space != std::string::npos && shortened.find("::") > space) shortened.erase(0, space + 1);
  fn = shortened;
  return fn.empty() ? line : line + " (" + fn + ")";
}

std::string Thread(int tid) {
  const uint3 t = ThreadIndex(tid);
  return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," +
         std::to_string(t.z) + ")";
}

[[noreturn]] void Report(const Region& r, size_t offset, const Acc& prev, bool prev_write,
                         const Acc& now, bool now_write) {
  const char* kind = prev_write && now_write ? "write-after-write"
                     : prev_write            ? "read-after-write"
                                             : "write-after-read";
  std::string name = r.name != nullptr ? r.name : (&r == &St().dynamic ? "dynamic" : "static");
  std::string what = std::string("race on shared memory (") + kind + ") at " + name + " + " +
                     std::to_string(offset) + " bytes: " + (prev_write ? "write" : "read") +
                     " by " + Thread(prev.tid) + " at " + Symbolize(prev.pc) + ", then " +
                     (now_write ? "write" : "read") + " by " + Thread(now.tid) + " at " +
                     Symbolize(now.pc) +
                     ", with no __syncthreads between them (barrier " + std::to_string(now.hi) +
                     " of the block)";
  Fatal(what);
}

// Whether the earlier access p and the access n (different threads) may run concurrently.
bool Concurrent(const Acc& p, const Acc& n) {
  if (p.tid < 0 || p.tid == n.tid) return false;
  if (p.hi < n.lo || n.hi < p.lo) return false;  // a barrier opened between them
  if (p.tid / 32 == n.tid / 32 && p.wsync != UINT32_MAX && n.wsync != UINT32_MAX &&
      p.wsync != n.wsync) {
    return false;  // a collective of their whole warp completed between them
  }
  return true;
}

void Check(Region& r, size_t offset, size_t bytes, bool write, const Acc& a) {
  State& s = St();
  if (r.cells.size() < r.bytes) r.cells.resize(r.bytes);
  if (offset + bytes > r.bytes) bytes = r.bytes - offset;
  s.checked += bytes;
  for (size_t i = offset; i < offset + bytes; ++i) {
    Cell& c = r.cells[i];
    if (c.block != s.block) c = Cell{s.block, {}, {}};
    if (Concurrent(c.w, a)) Report(r, i, c.w, true, a, write);
    if (write) {
      for (const Acc& rd : c.r) {
        if (Concurrent(rd, a)) Report(r, i, rd, false, a, true);
      }
      c.w = a;
      c.r[0] = c.r[1] = Acc{};
    } else {
      // Reads before the last barrier are ordered with whatever follows: drop them.
      for (Acc& rd : c.r) {
        if (rd.tid >= 0 && rd.hi < a.lo) rd = Acc{};
      }
      if (c.r[0].tid < 0 || c.r[0].tid == a.tid) {
        c.r[0] = a;
      } else if (c.r[1].tid < 0 || c.r[1].tid == a.tid) {
        c.r[1] = a;
      }
    }
  }
}

// The region that holds p, or null.
Region* Find(const void* p, size_t* offset) {
  State& s = St();
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto d = reinterpret_cast<uintptr_t>(s.dynamic.base);
  if (a - d < s.dynamic.bytes) {
    *offset = a - d;
    return &s.dynamic;
  }
  if (a < s.static_lo || a >= s.static_hi) return nullptr;
  for (Region& r : s.statics) {
    const auto b = reinterpret_cast<uintptr_t>(r.base);
    if (a - b < r.bytes) {
      *offset = a - b;
      return &r;
    }
  }
  return nullptr;
}

void Record(const void* p, size_t bytes, bool write, Acc a) {
  size_t offset = 0;
  Region* r = Find(p, &offset);
  if (r != nullptr) Check(*r, offset, bytes, write, a);
}

}  // namespace

void BlockStart(uint64_t block_serial, int threads, const void* dynamic, size_t dynamic_bytes) {
  State& s = St();
  s.block = block_serial;
  s.barriers = 0;
  s.wsync.assign(static_cast<size_t>((threads + 31) / 32), 0);
  s.dynamic.base = static_cast<const unsigned char*>(dynamic);
  s.dynamic.bytes = dynamic_bytes;
  s.dynamic.name = nullptr;
}

void DynamicName(const char* name) {
  State& s = St();
  if (s.dynamic.name == nullptr) s.dynamic.name = name;
}

void SharedVariable(const void* p, size_t bytes, const char* name) {
  State& s = St();
  for (const Region& r : s.statics) {
    if (r.base == p) return;
  }
  Region r;
  r.base = static_cast<const unsigned char*>(p);
  r.bytes = bytes;
  r.name = name;
  s.statics.push_back(std::move(r));
  const auto a = reinterpret_cast<uintptr_t>(p);
  if (a < s.static_lo) s.static_lo = a;
  if (a + bytes > s.static_hi) s.static_hi = a + bytes;
}

void BarrierOpened() { ++St().barriers; }

void WarpSynced(int warp) {
  State& s = St();
  if (static_cast<size_t>(warp) < s.wsync.size()) ++s.wsync[static_cast<size_t>(warp)];
}

uint32_t Barriers() { return St().barriers; }

void Access(const void* p, size_t bytes, bool write, const void* pc) {
  const int tid = CurrentThread();
  if (tid < 0) return;
  State& s = St();
  const size_t warp = static_cast<size_t>(tid / 32);
  const uint32_t ws = warp < s.wsync.size() ? s.wsync[warp] : 0;
  Record(p, bytes, write, Acc{tid, s.barriers, s.barriers, ws, pc});
}

void AsyncWrite(const void* p, size_t bytes, uint32_t issued, const void* pc) {
  const int tid = CurrentThread();
  if (tid < 0) return;
  State& s = St();
  Record(p, bytes, true, Acc{tid, issued, s.barriers, UINT32_MAX, pc});
}

uint64_t CheckedBytes() { return St().checked; }

}  // namespace ptc::emu::race

// =============================================================================================
// The instrumentation's entry points (GCC -fsanitize=thread; compiled with
// --param=tsan-instrument-func-entry-exit=0). Only the kernels' files are instrumented.

namespace {
inline void Hook(const void* p, size_t n, bool write, const void* pc) {
  if (ptc::emu::CurrentThread() < 0) return;  // host code of the kernels' files
  ptc::emu::race::Access(p, n, write, pc);
}
}  // namespace

extern "C" {

void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}

#define PTC_TSAN_RW(n)                                                                           \
  void __tsan_read##n(void* p) { Hook(p, n, false, __builtin_return_address(0)); }             \
  void __tsan_write##n(void* p) { Hook(p, n, true, __builtin_return_address(0)); }             \
  void __tsan_unaligned_read##n(void* p) { Hook(p, n, false, __builtin_return_address(0)); }   \
  void __tsan_unaligned_write##n(void* p) { Hook(p, n, true, __builtin_return_address(0)); }   \
  void __tsan_volatile_read##n(void* p) { Hook(p, n, false, __builtin_return_address(0)); }    \
  void __tsan_volatile_write##n(void* p) { Hook(p, n, true, __builtin_return_address(0)); }
PTC_TSAN_RW(1)
PTC_TSAN_RW(2)
PTC_TSAN_RW(4)
PTC_TSAN_RW(8)
PTC_TSAN_RW(16)
#undef PTC_TSAN_RW

void __tsan_read_range(void* p, unsigned long n) { Hook(p, n, false, __builtin_return_address(0)); }
void __tsan_write_range(void* p, unsigned long n) { Hook(p, n, true, __builtin_return_address(0)); }

// Atomics in the instrumented files (host code: std::shared_ptr, function statics' guards, ...):
// done as the sequentially consistent builtins, the memory order arguments ignored.
#define PTC_TSAN_ATOMIC(n, T)                                                                   \
  T __tsan_atomic##n##_load(const volatile T* a, int) {                                         \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                \
  }                                                                                             \
  void __tsan_atomic##n##_store(volatile T* a, T v, int) {                                      \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                   \
  }                                                                                             \
  T __tsan_atomic##n##_exchange(volatile T* a, T v, int) {                                      \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_add(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_sub(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_and(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_or(volatile T* a, T v, int) {                                      \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                           \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_xor(volatile T* a, T v, int) {                                     \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                          \
  }                                                                                             \
  T __tsan_atomic##n##_fetch_nand(volatile T* a, T v, int) {                                    \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                         \
  }                                                                                             \
  int __tsan_atomic##n##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {          \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);     \
  }                                                                                             \
  int __tsan_atomic##n##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {            \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);      \
  }                                                                                             \
  T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T c, T v, int, int) {                \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
    return c;                                                                                   \
  }
PTC_TSAN_ATOMIC(8, uint8_t)
PTC_TSAN_ATOMIC(16, uint16_t)
PTC_TSAN_ATOMIC(32, uint32_t)
PTC_TSAN_ATOMIC(64, uint64_t)
#undef PTC_TSAN_ATOMIC

void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

}  // extern "C"
