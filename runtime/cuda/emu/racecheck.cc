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
// A cp.async's write spans its issue to its wait (any barrier count in between). A read of a
// shared byte that no thread of the block has written yet is an error too (uninitialized).
//
// Global memory (cudaMalloc's), between the blocks of a launch: blocks may run in any order
// and no kernel of ptc orders them (no fences, no flags), so a byte that one block writes and
// another block reads or writes in the same launch is a race. Kept per launch, per byte: the
// writing block and the reading block(s). Threads of one block on global memory are not
// checked. PTC_CUDA_EMU_RACECHECK_GLOBAL=0 turns the global part off (it costs 6 bytes of
// shadow per byte a launch touches).
//
// Atomics (device_shim.h) are not instrumented: atomic against atomic is no race, and atomic
// against a plain access is not checked.
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
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

// Global memory: per byte, the launch's writing block and up to two reading blocks as (linear
// block index mod 65535) + 1; 0 none, r[1] == kSeveral: more than two blocks read it. Two
// blocks whose indexes agree mod 65535 count as one (a race between them can be missed, none
// invented).
constexpr uint16_t kSeveral = 0xffff;
struct GlobalCell {
  uint16_t w, r[2];
};
constexpr size_t kPageBytes = 4096;
struct GlobalPage {
  GlobalCell cells[kPageBytes];
};

struct FreshRead {  // a read of a shared byte no thread of the block had written
  const Region* region;
  size_t offset;
  Acc acc;
};

// Per-instruction warp requests (bank conflicts with PTC_CUDA_EMU_BANKS, global-memory sectors
// with PTC_CUDA_EMU_SECTORS): a warp's request is the k-th execution of one instruction (pc) by
// its lanes; its lanes' addresses give its cost (wavefronts, sectors) and the ideal.
struct LaneAccess {
  uint64_t offset;  // shared: in the region (taken as 128-byte aligned, as on a GPU); global:
                    // the address
  uint8_t lane, bytes;
};
struct RequestKey {
  const void* pc;
  const void* region;
  uint32_t warp, k;
  bool operator==(const RequestKey& o) const {
    return pc == o.pc && region == o.region && warp == o.warp && k == o.k;
  }
};
struct RequestKeyHash {
  size_t operator()(const RequestKey& k) const {
    return std::hash<const void*>()(k.pc) ^ (size_t{k.warp} << 40) ^
           (size_t{k.k} * 0x9e3779b97f4a7c15ull) ^ std::hash<const void*>()(k.region);
  }
};
struct Counter {
  bool on = false;
  int lines = 0;  // the table at exit: its most costly instructions (0: none)
  std::unordered_map<uint64_t, uint32_t> executions;  // (pc, thread) -> times so far (block)
  std::unordered_map<RequestKey, std::vector<LaneAccess>, RequestKeyHash> requests;  // block
  std::map<const void*, RequestStat> stats;  // by pc, over the process
};

// The sectors: per launch, the distinct 32-byte sectors it touched (its DRAM traffic at the
// least), per kernel over the process.
struct Traffic {
  std::unordered_map<uint64_t, uint8_t> launch_sectors;  // sector -> 1 read, 2 written, 3 both
  std::string launch_kernel;
  std::map<std::string, KernelTraffic> by_kernel;
};

struct State {
  uint64_t block = 0;
  std::vector<FreshRead> fresh_reads;
  Counter counters[2];  // by Requests: banks, sectors
  Traffic traffic;
  uint16_t block_tag = 1;  // this block's tag in GlobalCell
  bool global = true;      // PTC_CUDA_EMU_RACECHECK_GLOBAL
  std::map<uintptr_t, size_t> allocations;  // base -> bytes (cudaMalloc)
  uintptr_t last_base = 0, last_end = 0;     // the allocation found last
  std::unordered_map<uintptr_t, std::unique_ptr<GlobalPage>> pages;  // this launch's shadow
  std::vector<std::unique_ptr<GlobalPage>> free_pages;
  uintptr_t page_key = 0;     // the shadow page used last
  GlobalPage* page = nullptr;
  uint32_t barriers = 0;
  std::vector<uint32_t> wsync;  // per warp
  Region dynamic;
  std::vector<Region> statics;
  uintptr_t static_lo = UINTPTR_MAX, static_hi = 0;
  uint64_t checked = 0;  // shared-memory bytes checked (tests read it)
};

std::string Symbolize(const void* pc);

// The counters' environment: PREFIX=1 prints the 20 costliest instructions at exit (=N: N of
// them); PREFIX_FAIL=1 exits 1 at exit if an instruction costs more than its ideal, unless an
// entry of PREFIX_ALLOW (comma-separated) starts its kernel's name or its "file.cu:line"
// (Unallowed): a guard for the kernels known to be ideal.
const char* const kCounterEnv[2] = {"PTC_CUDA_EMU_BANKS", "PTC_CUDA_EMU_SECTORS"};
const char* const kCounterUnit[2] = {"wavefronts", "sectors"};

std::string Env(const std::string& name) {
  const char* e = std::getenv(name.c_str());
  return e != nullptr ? e : "";
}

void AtExit();

// One for the process: the emulation runs one launch at a time (emu.cc's launch lock), and
// allocations may come from any thread (under allocations_mu).
State& St() {
  static State* s = [] {
    auto* st = new State;
    st->global = Env("PTC_CUDA_EMU_RACECHECK_GLOBAL") != "0";
    bool any = false;
    for (int c = 0; c < 2; ++c) {
      const int lines = std::atoi(Env(kCounterEnv[c]).c_str());
      st->counters[c].lines = lines == 1 ? 20 : lines;
      st->counters[c].on = lines > 0;
      any |= lines > 0;
    }
    if (any) std::atexit(AtExit);
    return st;
  }();
  return *s;
}

Counter& Count(Requests which) { return St().counters[static_cast<int>(which)]; }

void AtExit() {
  for (int c = 0; c < 2; ++c) {
    const auto which = static_cast<Requests>(c);
    if (Count(which).lines <= 0) continue;
    std::fputs(RequestTable(which, Count(which).lines).c_str(), stderr);
    if (which == Requests::kSectors) std::fputs(TrafficTable().c_str(), stderr);
  }
  for (int c = 0; c < 2; ++c) {
    const auto which = static_cast<Requests>(c);
    const std::string prefix = kCounterEnv[c];
    if (!Count(which).on || Env(prefix + "_FAIL") != "1") continue;
    std::vector<std::string> allow;
    for (std::string rest = Env(prefix + "_ALLOW"); !rest.empty();) {
      const size_t comma = rest.find(',');
      allow.push_back(rest.substr(0, comma));
      rest = comma == std::string::npos ? "" : rest.substr(comma + 1);
    }
    const std::vector<std::string> bad = Unallowed(which, allow);
    if (!bad.empty()) {
      for (const std::string& line : bad) {
        std::fprintf(stderr, "%s_FAIL: %s\n", prefix.c_str(), line.c_str());
      }
      std::fflush(stderr);
      std::_Exit(1);
    }
  }
}
std::mutex allocations_mu;

// "void (anonymous namespace)::ns::Kernel<T, 4>(float*)::{lambda(int)#1}::operator()(int)
// const" -> "ns::Kernel::{lambda#1}::operator const": no return type, template arguments or
// parameter lists.
std::string ShortFunction(std::string fn) {
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
  return shortened;
}

// "/work/x/codegen/cuda/train.cu:368 (discriminator 2)" -> "train.cu:368".
std::string ShortLocation(std::string line) {
  const size_t disc = line.find(" (discriminator");
  if (disc != std::string::npos) line.resize(disc);
  const size_t slash = line.rfind('/');
  return slash != std::string::npos ? line.substr(slash + 1) : line;
}

bool InKernelSource(const std::string& location) {  // a .cu file's line
  const size_t colon = location.rfind(':');
  return colon != std::string::npos && colon >= 3 && location.compare(colon - 3, 3, ".cu") == 0;
}

// "file.cu:line" of the innermost frame of pc's chain of inlined calls that is in a kernel
// source, so that a helper inlined from a header (device_shim.h's __ldg, device_util.cuh's
// Load) is named by its line in the kernel; then " (function)" when that frame is not inlined,
// or " from file.cu:line" when it is inlined into a kernel (the call site in the kernel's body).
std::string SymbolizeUncached(const void* pc) {
  if (pc == nullptr) return "?";
  Dl_info info{};
  if (dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return "?";
  const uintptr_t at = reinterpret_cast<uintptr_t>(pc) - 1;  // the call, not its return
  const uintptr_t base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  char cmd[1024];
  std::snprintf(cmd, sizeof cmd, "addr2line -C -f -i -e '%s' 0x%lx 2>/dev/null", info.dli_fname,
                static_cast<unsigned long>(at - base));
  auto strip = [](std::string& x) {
    while (!x.empty() && (x.back() == '\n' || x.back() == '\r')) x.pop_back();
  };
  std::vector<std::pair<std::string, std::string>> frames;  // (function, location), innermost
                                                             // first
  if (FILE* p = popen(cmd, "r")) {
    char buf[2048];
    while (std::fgets(buf, sizeof buf, p)) {
      std::string f = buf, l;
      if (std::fgets(buf, sizeof buf, p)) l = buf;
      strip(f);
      strip(l);
      frames.emplace_back(f, l);
    }
    pclose(p);
  }
  if (frames.empty() || frames[0].second.empty() || frames[0].second.rfind("??", 0) == 0) {
    if (info.dli_sname != nullptr) return info.dli_sname;
    char b[64];
    std::snprintf(b, sizeof b, "%s+0x%lx", info.dli_fname, static_cast<unsigned long>(at - base));
    return b;
  }
  size_t chosen = 0;
  while (chosen + 1 < frames.size() && !InKernelSource(frames[chosen].second)) ++chosen;
  if (!InKernelSource(frames[chosen].second)) chosen = 0;
  std::string out = ShortLocation(frames[chosen].second);
  if (chosen + 1 == frames.size()) {
    // The function that holds pc (an inlined frame's name is not reliable: GCC's instrumentation
    // calls may carry the enclosing function's scope).
    const std::string fn = ShortFunction(frames[chosen].first);
    if (!fn.empty()) out += " (" + fn + ")";
  } else if (InKernelSource(frames.back().second)) {
    out += " from " + ShortLocation(frames.back().second);
  }
  return out;
}

std::string Symbolize(const void* pc) {
  static std::mutex mu;
  static std::map<const void*, std::string>* cache = new std::map<const void*, std::string>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(pc);
  if (it == cache->end()) it = cache->emplace(pc, SymbolizeUncached(pc)).first;
  return it->second;
}

std::string RegionName(const Region& r) {
  return r.name != nullptr ? r.name : (&r == &St().dynamic ? "dynamic" : "static");
}

std::string Thread(int tid) {
  const uint3 t = ThreadIndex(tid);
  return "thread (" + std::to_string(t.x) + "," + std::to_string(t.y) + "," +
         std::to_string(t.z) + ")";
}

// A conflict's name, in the emulation's order of the two accesses.
const char* Kind(bool first_write, bool second_write) {
  return first_write && second_write ? "write-after-write"
         : first_write               ? "read-after-write"
                                     : "write-after-read";
}

[[noreturn]] void Report(const Region& r, size_t offset, const Acc& prev, bool prev_write,
                         const Acc& now, bool now_write) {
  const char* kind = Kind(prev_write, now_write);
  std::string what = std::string("race on shared memory (") + kind + ") at " + RegionName(r) +
                     " + " +
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
    if (c.block != s.block) {
      // Reported at the block's end unless a race with a concurrent write is reported first.
      if (!write && s.fresh_reads.size() < 4) s.fresh_reads.push_back({&r, i, a});
      c = Cell{s.block, {}, {}};
    }
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

std::string Block(uint16_t tag) {
  // The tag is the linear index mod 65535 + 1: name it by the index when that is unambiguous.
  const dim3 g = t_grid_dim;
  const uint64_t blocks = uint64_t{g.x} * g.y * g.z;
  if (tag == kSeveral) return "other blocks";
  if (blocks > 65535) return "another block";
  const uint64_t i = tag - 1u;
  return "block (" + std::to_string(i % g.x) + "," + std::to_string(i / g.x % g.y) + "," +
         std::to_string(i / (uint64_t{g.x} * g.y)) + ")";
}

[[noreturn]] void ReportGlobal(uintptr_t base, size_t size, uintptr_t at, uint16_t other,
                               bool other_write, bool now_write, const void* pc) {
  const char* kind = Kind(other_write, now_write);
  char where[96];
  std::snprintf(where, sizeof where, "0x%lx + %lu of %lu bytes", static_cast<unsigned long>(base),
                static_cast<unsigned long>(at - base), static_cast<unsigned long>(size));
  Fatal(std::string("race on global memory between blocks (") + kind + ") at allocation " +
        where + ": " + (other_write ? "written" : "read") + " by " + Block(other) +
        " of this launch, " + (now_write ? "written" : "read") + " here at " + Symbolize(pc) +
        "; the blocks of a launch may run in any order");
}

// Whether a is in a cudaMalloc allocation (then [s.last_base, s.last_end) is that one).
bool InAllocation(uintptr_t a) {
  State& s = St();
  if (a < s.last_base || a >= s.last_end) {
    std::lock_guard<std::mutex> lock(allocations_mu);
    auto it = s.allocations.upper_bound(a);
    if (it == s.allocations.begin()) return false;
    --it;
    if (a - it->first >= it->second) return false;
    s.last_base = it->first;
    s.last_end = it->first + it->second;
  }
  return true;
}

// [a, a + bytes) of the allocation last found by InAllocation.
void CheckGlobal(uintptr_t a, size_t bytes, bool write, const void* pc) {
  State& s = St();
  const uint16_t me = s.block_tag;
  const size_t size = s.last_end - s.last_base;
  for (size_t i = 0; i < bytes; ++i) {
    const uintptr_t b = a + i;
    if (b / kPageBytes != s.page_key || s.page == nullptr) {
      std::unique_ptr<GlobalPage>& page = s.pages[b / kPageBytes];
      if (page == nullptr) {
        if (!s.free_pages.empty()) {
          page = std::move(s.free_pages.back());
          s.free_pages.pop_back();
        } else {
          page = std::make_unique<GlobalPage>();
        }
        std::memset(page->cells, 0, sizeof page->cells);
      }
      s.page_key = b / kPageBytes;
      s.page = page.get();
    }
    GlobalCell& c = s.page->cells[b % kPageBytes];
    if (c.w != 0 && c.w != me) ReportGlobal(s.last_base, size, b, c.w, true, write, pc);
    if (write) {
      for (const uint16_t r : c.r) {
        if (r != 0 && r != me) ReportGlobal(s.last_base, size, b, r, false, true, pc);
      }
      c.w = me;
    } else if (c.r[0] == 0 || c.r[0] == me) {
      c.r[0] = me;
    } else if (c.r[1] == 0 || c.r[1] == me) {
      c.r[1] = me;
    } else {
      c.r[1] = kSeveral;
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

// One lane's part of a warp's request (the k-th execution of pc by the lane).
void RequestRecord(Counter& c, const void* region, uint64_t offset, size_t bytes, int tid,
                   const void* pc) {
  const uint32_t k = c.executions[reinterpret_cast<uint64_t>(pc) * 1024 + tid]++;
  auto& lanes = c.requests[RequestKey{pc, region, static_cast<uint32_t>(tid / 32), k}];
  lanes.push_back(LaneAccess{offset, static_cast<uint8_t>(tid % 32), static_cast<uint8_t>(bytes)});
}

// A shared-memory request's wavefronts and ideal: 4-byte (or narrower) accesses are served a
// warp at a time, 8-byte ones a half warp, 16-byte ones a quarter warp; in each such phase a
// bank (4-byte word index mod 32) serves one distinct word per wavefront (lanes reading one
// word share it). The ideal is the phase's distinct words over 32.
std::pair<uint64_t, uint64_t> Wavefronts(const std::vector<LaneAccess>& lanes) {
  int width = 1;
  for (const LaneAccess& l : lanes) width = std::max<int>(width, l.bytes);
  const int per_phase = width <= 4 ? 32 : width <= 8 ? 16 : 8;
  uint64_t waves = 0, ideal = 0;
  for (int phase = 0; phase < 32 / per_phase; ++phase) {
    std::vector<uint64_t> words;
    for (const LaneAccess& l : lanes) {
      if (l.lane / per_phase != phase) continue;
      for (uint64_t w = l.offset / 4; w <= (l.offset + l.bytes - 1) / 4; ++w) words.push_back(w);
    }
    if (words.empty()) continue;
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    int per_bank[32] = {};
    int most = 0;
    for (const uint64_t w : words) most = std::max(most, ++per_bank[w % 32]);
    waves += static_cast<uint64_t>(most);
    ideal += (words.size() + 31) / 32;
  }
  return {waves, ideal};
}

// A global-memory request's sectors: the distinct 32-byte sectors its lanes' bytes fall in
// (as Nsight Compute's l1tex sectors per request count them). The ideal is its distinct bytes
// over 32: the same bytes, contiguous and aligned.
std::pair<uint64_t, uint64_t> Sectors(const std::vector<LaneAccess>& lanes) {
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [begin, end) by address
  spans.reserve(lanes.size());
  for (const LaneAccess& l : lanes) spans.emplace_back(l.offset, l.offset + l.bytes);
  std::sort(spans.begin(), spans.end());
  uint64_t bytes = 0, sectors = 0, last_sector = UINT64_MAX, end = 0;
  for (const auto& [b, e] : spans) {
    const uint64_t from = std::max(b, end);
    if (from < e) bytes += e - from;
    end = std::max(end, e);
    for (uint64_t sec = b / 32; sec <= (e - 1) / 32; ++sec) {
      if (last_sector != UINT64_MAX && sec <= last_sector) continue;
      ++sectors;
      last_sector = sec;
    }
  }
  return {sectors, (bytes + 31) / 32};
}

// The block's requests into the counter's statistics.
void Flush(Requests which) {
  Counter& c = Count(which);
  if (c.requests.empty()) return;
  // Every request of the block is the running launch's.
  KernelTraffic* traffic =
      which == Requests::kSectors ? &St().traffic.by_kernel[KernelName()] : nullptr;
  for (const auto& [key, lanes] : c.requests) {
    const auto [cost, ideal] =
        which == Requests::kBanks ? Wavefronts(lanes) : Sectors(lanes);
    RequestStat& st = c.stats[key.pc];
    if (st.kernel.empty()) st.kernel = KernelName();
    st.pc = key.pc;
    ++st.requests;
    st.cost += cost;
    st.ideal += ideal;
    if (traffic != nullptr) {
      ++traffic->requests;
      traffic->sectors += cost;
      traffic->ideal += ideal;
    }
  }
  c.requests.clear();
  c.executions.clear();
}

// The launch's distinct sectors into its kernel's traffic.
void FlushTraffic() {
  Traffic& t = St().traffic;
  if (t.launch_kernel.empty()) return;
  KernelTraffic& k = t.by_kernel[t.launch_kernel];
  k.kernel = t.launch_kernel;
  ++k.launches;
  for (const auto& [sector, rw] : t.launch_sectors) {
    k.read_sectors += rw & 1;
    k.written_sectors += (rw & 2) >> 1;
  }
  t.launch_sectors.clear();
  t.launch_kernel.clear();
}

void Record(const void* p, size_t bytes, bool write, Acc a, bool banks = true) {
  size_t offset = 0;
  Region* r = Find(p, &offset);
  State& s = St();
  if (r != nullptr) {
    Check(*r, offset, bytes, write, a);
    Counter& c = Count(Requests::kBanks);
    if (banks && c.on) RequestRecord(c, r, offset, bytes, a.tid, a.pc);
    return;
  }
  Counter& c = Count(Requests::kSectors);
  if (!s.global && !c.on) return;
  const auto at = reinterpret_cast<uintptr_t>(p);
  if (!InAllocation(at)) return;
  if (at + bytes > s.last_end) bytes = s.last_end - at;
  if (s.global) CheckGlobal(at, bytes, write, a.pc);
  if (c.on) {
    RequestRecord(c, nullptr, at, bytes, a.tid, a.pc);
    if (s.traffic.launch_kernel.empty()) s.traffic.launch_kernel = KernelName();
    for (uint64_t sec = at / 32; sec <= (at + bytes - 1) / 32; ++sec) {
      s.traffic.launch_sectors[sec] |= write ? 2 : 1;
    }
  }
}

}  // namespace

void LaunchStart() {
  State& s = St();
  if (Count(Requests::kSectors).on) FlushTraffic();
  for (auto& [addr, page] : s.pages) s.free_pages.push_back(std::move(page));
  s.pages.clear();
  s.page = nullptr;
}

void Allocated(const void* p, size_t bytes) {
  State& s = St();
  std::lock_guard<std::mutex> lock(allocations_mu);
  s.allocations[reinterpret_cast<uintptr_t>(p)] = bytes;
}

void Freed(const void* p) {
  State& s = St();
  std::lock_guard<std::mutex> lock(allocations_mu);
  s.allocations.erase(reinterpret_cast<uintptr_t>(p));
  s.last_base = s.last_end = 0;
}

void BlockStart(uint64_t block_serial, uint64_t block_linear, int threads, const void* dynamic,
                size_t dynamic_bytes) {
  State& s = St();
  s.block = block_serial;
  s.fresh_reads.clear();
  s.block_tag = static_cast<uint16_t>(block_linear % 65535 + 1);
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

void BlockEnd() {
  State& s = St();
  for (int c = 0; c < 2; ++c) {
    if (s.counters[c].on) Flush(static_cast<Requests>(c));
  }
  if (s.fresh_reads.empty()) return;
  const FreshRead& f = s.fresh_reads.front();
  Fatal("read of uninitialized shared memory at " + RegionName(*f.region) + " + " +
        std::to_string(f.offset) +
        " bytes by " + Thread(f.acc.tid) + " at " + Symbolize(f.acc.pc) +
        ": no thread of the block had written it (on a GPU it holds whatever an earlier block "
        "left there)");
}

void BarrierOpened() { ++St().barriers; }

void WarpSynced(int warp) {
  State& s = St();
  if (static_cast<size_t>(warp) < s.wsync.size()) ++s.wsync[static_cast<size_t>(warp)];
}

uint32_t Barriers() { return St().barriers; }

namespace {
// The running thread's plain access at pc, now.
Acc Now(int tid, const void* pc) {
  State& s = St();
  const size_t warp = static_cast<size_t>(tid / 32);
  const uint32_t ws = warp < s.wsync.size() ? s.wsync[warp] : 0;
  return Acc{tid, s.barriers, s.barriers, ws, pc};
}
}  // namespace

void Access(const void* p, size_t bytes, bool write, const void* pc) {
  const int tid = CurrentThread();
  if (tid >= 0) Record(p, bytes, write, Now(tid, pc));
}

void LdmatrixRead(const void* p, size_t bytes, const void* pc) {
  const int tid = CurrentThread();
  if (tid >= 0) Record(p, bytes, false, Now(tid, pc), /*banks=*/false);
}

void LdmatrixRows(const void* const* rows, const void* pc) {
  const int tid = CurrentThread();
  Counter& c = Count(Requests::kBanks);
  if (tid < 0 || !c.on) return;
  // Lanes 8m..8m+7 give matrix m's 8 rows of 16 bytes: four phases of 8 rows, as 16-byte
  // accesses of a quarter warp are. Recorded once for the warp, as its lane 0.
  const int first = tid - tid % 32;
  for (int j = 0; j < 32; ++j) {
    size_t offset = 0;
    const Region* r = Find(rows[j], &offset);
    if (r != nullptr) RequestRecord(c, r, offset, 16, first + j, pc);
  }
}

std::vector<RequestStat> RequestStats(Requests which) {
  std::vector<RequestStat> out;
  for (const auto& [pc, st] : Count(which).stats) out.push_back(st);
  std::sort(out.begin(), out.end(), [](const RequestStat& a, const RequestStat& b) {
    return a.cost - a.ideal > b.cost - b.ideal;
  });
  return out;
}

void ResetRequestStats(Requests which) {
  Count(which).stats.clear();
  if (which == Requests::kSectors) {
    St().traffic.by_kernel.clear();
    St().traffic.launch_sectors.clear();
    St().traffic.launch_kernel.clear();
  }
}

void CountRequests(Requests which, bool on) { Count(which).on = on; }

std::string RequestTable(Requests which, int most) {
  const std::vector<RequestStat> stats = RequestStats(which);
  uint64_t req = 0, cost = 0, ideal = 0;
  for (const RequestStat& b : stats) {
    req += b.requests;
    cost += b.cost;
    ideal += b.ideal;
  }
  const bool banks = which == Requests::kBanks;
  const char* unit = kCounterUnit[static_cast<int>(which)];
  std::string out = std::string(banks ? "shared-memory bank conflicts"
                                      : "global-memory coalescing") +
                    " (" + kCounterEnv[static_cast<int>(which)] +
                    (banks ? ": 32 banks of 4 bytes; " : ": 32-byte sectors; ") +
                    std::to_string(stats.size()) + " instructions, " + std::to_string(req) +
                    " warp requests, " + std::to_string(cost) + " " + unit + " for an ideal " +
                    std::to_string(ideal) + ")\n";
  char line[512];
  std::snprintf(line, sizeof line, "%10s %8s %8s  %-28s %s\n", "requests",
                banks ? "waves/r" : "sect/r", "ideal/r", "kernel", "instruction");
  out += line;
  int shown = 0;
  for (const RequestStat& b : ExcessByLine(which)) {
    if (shown++ >= most) break;
    std::snprintf(line, sizeof line, "%10llu %8.2f %8.2f  %-28s %s\n",
                  static_cast<unsigned long long>(b.requests),
                  static_cast<double>(b.cost) / static_cast<double>(b.requests),
                  static_cast<double>(b.ideal) / static_cast<double>(b.requests),
                  b.kernel.c_str(), b.where.c_str());
    out += line;
  }
  return out;
}

std::vector<RequestStat> ExcessByLine(Requests which) {
  std::map<std::pair<std::string, std::string>, RequestStat> merged;  // (kernel, where)
  for (const RequestStat& b : RequestStats(which)) {
    if (b.cost <= b.ideal) continue;
    const std::string where = Symbolize(b.pc);
    RequestStat& m = merged[{b.kernel, where}];
    if (m.requests == 0) {
      m = b;
      m.where = where;
    } else {
      m.requests += b.requests;
      m.cost += b.cost;
      m.ideal += b.ideal;
    }
  }
  std::vector<RequestStat> out;
  for (auto& [key, m] : merged) out.push_back(std::move(m));
  std::sort(out.begin(), out.end(), [](const RequestStat& a, const RequestStat& b) {
    return a.cost - a.ideal > b.cost - b.ideal;
  });
  return out;
}

std::vector<std::string> Unallowed(Requests which, const std::vector<std::string>& allow) {
  std::vector<std::string> out;
  for (const RequestStat& b : ExcessByLine(which)) {
    bool allowed = false;
    for (const std::string& a : allow) {
      allowed |= !a.empty() && (b.kernel.rfind(a, 0) == 0 || b.where.rfind(a, 0) == 0);
    }
    if (allowed) continue;
    char line[1024];
    std::snprintf(line, sizeof line, "%s (%s) takes %.2f %s per request for an ideal %.2f",
                  b.where.c_str(), b.kernel.c_str(),
                  static_cast<double>(b.cost) / static_cast<double>(b.requests),
                  kCounterUnit[static_cast<int>(which)],
                  static_cast<double>(b.ideal) / static_cast<double>(b.requests));
    out.push_back(line);
  }
  return out;
}

std::vector<KernelTraffic> TrafficByKernel() {
  FlushTraffic();
  std::vector<KernelTraffic> out;
  for (const auto& [name, t] : St().traffic.by_kernel) {
    out.push_back(t);
    out.back().kernel = name;
  }
  std::sort(out.begin(), out.end(), [](const KernelTraffic& a, const KernelTraffic& b) {
    return a.sectors > b.sectors;
  });
  return out;
}

std::string TrafficTable() {
  const std::vector<KernelTraffic> kernels = TrafficByKernel();
  std::string out =
      "global-memory traffic by kernel (PTC_CUDA_EMU_SECTORS: sectors requested, and the "
      "distinct ones each launch touched: its DRAM traffic at the least)\n";
  char line[512];
  std::snprintf(line, sizeof line, "%8s %10s %8s %8s %12s %12s %7s  %s\n", "launches", "requests",
                "sect/r", "ideal/r", "read MB", "written MB", "reuse", "kernel");
  out += line;
  for (const KernelTraffic& k : kernels) {
    const double distinct = static_cast<double>(k.read_sectors + k.written_sectors);
    const double requests = static_cast<double>(std::max<uint64_t>(k.requests, 1));
    std::snprintf(line, sizeof line, "%8llu %10llu %8.2f %8.2f %12.3f %12.3f %7.2f  %s\n",
                  static_cast<unsigned long long>(k.launches),
                  static_cast<unsigned long long>(k.requests),
                  static_cast<double>(k.sectors) / requests,
                  static_cast<double>(k.ideal) / requests,
                  static_cast<double>(k.read_sectors) * 32.0 / 1e6,
                  static_cast<double>(k.written_sectors) * 32.0 / 1e6,
                  distinct > 0 ? static_cast<double>(k.sectors) / distinct : 0.0, k.kernel.c_str());
    out += line;
  }
  return out;
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
// Access ignores host code of the kernels' files (no current thread).
inline void Hook(const void* p, size_t n, bool write, const void* pc) {
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
